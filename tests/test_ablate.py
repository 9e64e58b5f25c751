"""kdsnn ablate: fixed-budget variant x seed grid on digits, result files, skip, resume."""
import json
import os
import time

import pytest
from safetensors.torch import load_file

from kd_snn import ablate
from kdsnn.cli import main as cli_main

TINY = ["--set", "teacher.epochs=1", "--set", "student.epochs=1", "--set", "data.batch_size=64",
        "--set", "data.options.limit=128"]
ARGS = ["--data", "digits", "--seeds", "0", "1", "--variants", "none", "logit_kd", "samd_nld",
        *TINY]


class Crash(BaseException):
    pass


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("ablation") / "out"
    assert cli_main(["ablate", str(out), *ARGS]) == 0
    return out


def test_writes_json_and_table(grid, capsys):
    obj = json.loads((grid / "ablation.json").read_text())
    assert obj["complete"] and obj["finished_runs"] == obj["total_runs"] == 8  # 2 teachers
    assert obj["datasets"] == ["digits"] and obj["seeds"] == [0, 1]
    for run in obj["runs"]:
        assert run["status"] == "done" and 0 <= run["test_accuracy"] <= 1
        assert run["config"]["seed"] == run["seed"] and run["config"]["data"]["name"] == "digits"
        assert (grid / "digits" / run["variant"] / f"seed{run['seed']}" / "config.yaml").is_file()
    presets = {r["variant"]: r["config"]["loss"]["preset"] for r in obj["runs"]}
    assert presets["none"] == "none" and presets["samd_nld"] == "samd_nld"
    # one budget for every run apart from the variant's loss keys and the seed
    configs = [r["config"] for r in obj["runs"]]
    for c in configs:
        assert (c["student"], c["teacher"], c["data"]) == \
            (configs[0]["student"], configs[0]["teacher"], configs[0]["data"])
    det = obj["datasets_detail"]["digits"]
    assert det["budget"]["student"]["epochs"] == 1 and det["budget"]["train_samples"] == 128
    summary = det["summary"]
    order = ["teacher", "none", "logit_kd", "samd_nld"]
    assert set(summary) == set(order)
    for s in summary.values():
        assert s["n"] == 2 and s["std"] is not None and len(s["values"]) == 2
    md = (grid / "ablation.md").read_text()
    assert "first 128 training samples" in md and "T = 4" in md and "`cnn`" in md
    rows = [ln for ln in md.splitlines()
            if ln.startswith("| ") and ln.split("|")[1].strip() in ablate.VARIANTS]
    assert [r.split("|")[1].strip() for r in rows] == order
    assert all(r.split("|")[4].strip() == "2" for r in rows)


def test_rerun_skips_finished_runs(grid, capsys):
    model = grid / "digits" / "samd_nld" / "seed1" / "student" / "model.safetensors"
    before = model.stat().st_mtime_ns
    t = time.time()
    assert cli_main(["ablate", str(grid), *ARGS]) == 0
    out = capsys.readouterr().out
    assert "8 runs (8 already finished)" in out and "[" not in out
    assert time.time() - t < 10 and model.stat().st_mtime_ns == before
    assert json.loads((grid / "ablation.json").read_text())["complete"]


def test_interrupted_run_resumes(grid, tmp_path, monkeypatch, capsys):
    out = tmp_path / "crash"
    args = [str(out), "--data", "digits", "--seeds", "0", "--variants", "samd_nld", *TINY]

    def crash(code):
        raise Crash(code)

    monkeypatch.setenv(ablate.FAIL_ENV, "1")  # 2 steps per epoch: crash mid-epoch
    monkeypatch.setattr(os, "_exit", crash)
    with pytest.raises(Crash):
        cli_main(["ablate", *args])
    teacher = out / "digits" / "teacher" / "seed0" / "teacher"
    assert (teacher / "state.safetensors").is_file() and not (teacher / "model.safetensors").exists()
    monkeypatch.delenv(ablate.FAIL_ENV)
    capsys.readouterr()
    assert cli_main(["ablate", *args]) == 0
    text = capsys.readouterr().out
    assert "digits/teacher/seed0" in text and "(resumed)" in text
    assert "resumed teacher at epoch 0 step 1" in (teacher / "train.log").read_text()
    runs = json.loads((out / "ablation.json").read_text())["runs"]
    assert [r["resumed"] for r in runs] == [True, False]
    # resuming replays the interrupted run exactly: same weights as the uninterrupted grid
    a = load_file(teacher / "model.safetensors")
    b = load_file(grid / "digits" / "teacher" / "seed0" / "teacher" / "model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)


def test_changed_budget_is_refused(grid, capsys):
    assert cli_main(["ablate", str(grid), *ARGS, "--set", "student.lr=0.05"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kdsnn: error:") and "different config" in err and "\n" not in err


@pytest.mark.parametrize("bad, words", [
    (["--jobs", "0"], "--jobs"), (["--variants", "bogus"], "bogus"),
    (["--data", "nope"], "nope"), (["--seeds", "1", "1"], "duplicates"),
    (["--set", "loss.preset=none"], "loss.preset"), (["--set", "student.epochs=0"], "epochs"),
])
def test_bad_options_one_line(tmp_path, capsys, bad, words):
    assert cli_main(["ablate", str(tmp_path / "x"), "--data", "digits", *bad]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kdsnn: error:") and words in err and "\n" not in err
    assert not (tmp_path / "x").exists()


def test_parallel_jobs(grid, tmp_path, capsys):
    out = tmp_path / "par"  # two teachers at once, each in a worker process
    assert cli_main(["ablate", str(out), "--data", "digits", "--seeds", "0", "1", "--variants",
                        "teacher", "--jobs", "2", *TINY]) == 0
    obj = json.loads((out / "ablation.json").read_text())
    assert obj["complete"] and obj["jobs"] == 2 and len(obj["runs"]) == 2
    assert all(r["cpu_seconds"] > 0 for r in obj["runs"])
