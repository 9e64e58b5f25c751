"""notebooks/walkthrough.ipynb runs end to end (distil -> export -> parity -> report) through the
Python API (``import kdsnn``), as the docs build executes it (docs/tutorials/ links to it).

The notebook is executed with nbclient on a kernel that is *this* interpreter (a kernelspec
written to a temporary JUPYTER_PATH, so whatever ``python`` is on PATH does not matter).
Its run directory goes to a temporary folder and its epochs are cut to 1 through the
notebook's own parameters (environment variables) to keep the test short.
"""
import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "walkthrough.ipynb"
KERNEL = "kdsnn-test-python"
TIMEOUT = 170  # seconds, the whole notebook


def test_committed_notebook_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert "import lava.proc.lif.process" in code[0].source.lstrip().splitlines()[0]
    source = "\n".join(c.source for c in code)
    for call in ("kdsnn.train_teacher(", "kdsnn.distill(", "kdsnn.export(", "kdsnn.parity(",
                 "kdsnn.report("):
        assert call in source, call  # the Python API, not the command line
    assert "kdsnn.cli" not in source and "main(" not in source


def test_docs_show_the_notebook():
    link = ROOT / "docs" / "tutorials" / "walkthrough.ipynb"
    assert link.resolve() == NOTEBOOK.resolve()


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "kdsnn test", "language": "python"}))
    run = tmp_path / "run"
    for key, value in {"JUPYTER_PATH": str(tmp_path / "jupyter"),
                       "KDSNN_NOTEBOOK_RUN": str(run), "KDSNN_NOTEBOOK_EPOCHS": "1",
                       "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0"}.items():
        monkeypatch.setenv(key, value)
    return run


def test_walkthrough_runs(kernel_env):
    run = kernel_env
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name=KERNEL, timeout=TIMEOUT, startup_timeout=60, allow_errors=False,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError on the first failing cell

    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    for rel in ("export/manifest.json", "export/student.quant.nir", "export/student.net",
                "export/student.nir", "export/student.onnx", "parity/parity.json",
                "parity/parity.md", "parity/parity.png", "report/report.json",
                "report/report.md", "report/energy.png", "report/firing_rate.png",
                "report/ops_per_layer.png"):
        assert (run / rel).is_file(), rel
    parity = json.loads((run / "parity/parity.json").read_text())
    assert parity["samples"] == 12 and parity["bit_exact_emulation_vs_lava"]
    assert json.loads((run / "report/report.json").read_text())["meta"]["samples"] == 32

    # the plots and the tables are shown inline
    mimes = [set(o.get("data", {})) for c in nb.cells if c.cell_type == "code"
             for o in c.outputs if o.output_type == "display_data"]
    assert sum("image/png" in m for m in mimes) >= 4  # parity + report plots
    assert sum("text/markdown" in m for m in mimes) >= 3  # quantize, parity, report tables
