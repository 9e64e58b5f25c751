"""``kdsnn report --conventions``: presets and AXIS=VALUE pairs from the command line."""
import json
import shutil
from pathlib import Path

import pytest

from kdsnn.cli import main

FAST = ["--set", "teacher.epochs=1", "--set", "student.epochs=1", "--set", "data.batch_size=64",
        "--set", "teacher.width=1", "--set", "student.width=1", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("conv") / "run"
    assert main(["teacher", "--config", "digits", str(run), *FAST]) == 0
    assert main(["distill", str(run), "--no-progress"]) == 0
    return run


def test_report_conventions_preset_and_pairs(trained, tmp_path, capsys):
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    assert main(["report", str(run), "--samples", "4", "--conventions", "neurobench",
                 "padding=counted"]) == 0
    rep = json.loads((run / "report" / "report.json").read_text())
    applied = rep["conventions"]["applied"]
    assert applied["padding"] == "counted" and applied["membrane"] == "changed"
    assert applied["mac_weights"] == "nonzero" and applied["readout"] == "excluded"
    nb = rep["neurobench"]
    assert nb["record"] == "torch" and nb["total"]["MembraneUpdates"] > 0
    assert len(nb["layers"]) == len(rep["student"][0]["layers"])


@pytest.mark.parametrize("words,message", [
    (["fastest"], "unknown conventions preset 'fastest'"),
    (["padding=sometimes"], "padding must be one of"),
    (["neurobench", "--source", "lava"], "membrane=changed"),
])
def test_report_bad_conventions_refused(trained, tmp_path, capsys, words, message):
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    before = sorted(str(p) for p in run.rglob("*"))
    capsys.readouterr()
    assert main(["report", str(run), "--samples", "2", "--conventions", *words]) == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert len(err) == 1 and err[0].startswith("kdsnn: error: ") and message in err[0], err
    assert sorted(str(p) for p in run.rglob("*")) == before
