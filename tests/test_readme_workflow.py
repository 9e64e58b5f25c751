"""The docs' chain table is what benchmarks/results/workflow.json gives (no figure by hand)."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_workflow_block_matches_the_results_file(tmp_path):
    spec = importlib.util.spec_from_file_location("workflow", ROOT / "benchmarks" / "workflow.py")
    workflow = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(workflow)
    results = json.loads((ROOT / "benchmarks" / "results" / "workflow.json").read_text())
    page = ROOT / "docs" / "results" / "benchmarks.md"
    readme = tmp_path / page.name
    readme.write_text(page.read_text())
    workflow.write_readme(results, readme)
    assert readme.read_text() == page.read_text(), \
        "run: .venv/bin/python benchmarks/workflow.py --readme"
    assert (ROOT / "benchmarks" / "results" / "workflow.md").read_text() == \
        workflow.markdown(results)
