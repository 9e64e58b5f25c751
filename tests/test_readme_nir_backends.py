"""The docs' third-party NIR importer table is what benchmarks/results/nir_backends.json gives
(no figure by hand; the peers' venvs are not needed: this only renders the committed JSON)."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location(
        "nir_backends", ROOT / "benchmarks" / "nir_backends.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_nir_backends_block_matches_the_results_file(tmp_path):
    nb = _module()
    results = json.loads((ROOT / "benchmarks" / "results" / "nir_backends.json").read_text())
    page = ROOT / "docs" / "results" / "nir-importers.md"
    readme = tmp_path / page.name
    readme.write_text(page.read_text())
    nb.write_readme(results, readme)
    assert readme.read_text() == page.read_text(), \
        "run: .venv/bin/python benchmarks/nir_backends.py --readme"
    assert (ROOT / "benchmarks" / "results" / "nir_backends.md").read_text() == \
        nb.markdown(results)


def test_every_row_is_measured_and_every_failure_has_a_cause():
    """No 'supported' cell without a figure; each fail/differ names the peer's file."""
    nb = _module()
    results = json.loads((ROOT / "benchmarks" / "results" / "nir_backends.json").read_text())
    assert set(results["peer_order"]) >= {"snntorch", "norse", "sinabs", "rockpool", "spyx"}
    cells = nb.summarize(results)
    for (peer, graph), cell in cells.items():
        if cell["verdict"] == "not installed":
            assert not results["peers"][peer]["installed"]
            continue
        assert cell["text"], (peer, graph)  # a measured figure or the exception
        if cell["verdict"] == "exact":
            for b in results["batches"]:
                row = results["cases"][f"{peer}/default/{graph}/{b}"]
                assert row["spike_agreement"] == 1.0
                assert row["max_abs_diff_logits"] is None or \
                    row["max_abs_diff_logits"] <= results["tolerance"]
        else:
            assert ".py" in cell["cause"], (peer, graph)
    # what the field notes say, as measured: snntorch and norse read kdsnn's LIF files exactly
    for peer in ("snntorch", "norse"):
        for graph in ("lif_mlp", "conv_lif", "cuba_mlp"):
            assert cells[(peer, graph)]["verdict"] == "exact", (peer, graph)


def test_a_missing_peer_is_reported_not_passed(tmp_path, monkeypatch):
    nb = _module()
    monkeypatch.setattr(nb, "PEER_DIR", tmp_path)
    (tmp_path / "spyx").mkdir()
    (tmp_path / "spyx" / "install.log").write_text("ERROR: No matching distribution\n")
    py, why = nb.peer_python("spyx")
    assert py is None and "not installed" in why and "No matching distribution" in why
    results = {"peer_order": ["spyx"], "graph_order": ["g"], "batches": ["b1"],
               "peers": {"spyx": {"installed": False, "reason": why}}, "cases": {}}
    assert nb.summarize(results)[("spyx", "g")]["verdict"] == "not installed"
