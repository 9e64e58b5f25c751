"""The docs' worked import example is what benchmarks/results/import_snntorch.json gives."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_import_example_matches_the_results_file(tmp_path):
    spec = importlib.util.spec_from_file_location("import_snntorch",
                                                  ROOT / "benchmarks" / "import_snntorch.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = json.loads((ROOT / "benchmarks" / "results" / "import_snntorch.json").read_text())
    page = ROOT / "docs" / "guides" / "import-nir.md"
    readme = tmp_path / page.name
    readme.write_text(page.read_text())
    bench.write_readme(results, readme)
    assert readme.read_text() == page.read_text(), \
        "run: .venv/bin/python benchmarks/import_snntorch.py --readme"
    assert (ROOT / "benchmarks" / "results" / "import_snntorch.md").read_text() == \
        bench.markdown(results)
    assert results["bit_exact_emulation_vs_lava"] is True
