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
        "--reference", "samd_nld", *TINY]


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
    main_table = md.split("Paired against")[0]
    rows = [ln for ln in main_table.splitlines()
            if ln.startswith("| ") and ln.split("|")[1].strip() in ablate.VARIANTS]
    assert [r.split("|")[1].strip() for r in rows] == order
    assert all(r.split("|")[4].strip() == "2" for r in rows)
    # paired by seed, against none and against --reference samd_nld
    acc = {(r["variant"], r["seed"]): r["test_accuracy"] for r in obj["runs"]}
    pair = det["paired"]["none"]["samd_nld"]
    assert pair["seeds"] == [0, 1] and pair["ci95"] is not None
    assert pair["mean"] == pytest.approx(sum(acc["samd_nld", k] - acc["none", k]
                                             for k in (0, 1)) / 2)
    assert set(det["paired"]) == {"none", "logit_kd", "samd_nld"}  # every pair
    assert set(det["paired"]["samd_nld"]) == {"none", "logit_kd"}
    assert det["paired"]["samd_nld"]["none"]["mean"] == pytest.approx(-pair["mean"])
    assert obj["reference"] == "samd_nld" and "--reference samd_nld" in obj["command"]
    assert obj["cpu_seconds_total"] > 0
    assert "paired Δ (pp) [95 % CI]" in md and "Paired against `samd_nld`" in md


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
    (["--variants", "none", "--reference", "samd"], "--reference"),
    (["--reference", "teacher"], "--reference"),
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


def test_modes_and_shared_teacher(grid, tmp_path, capsys):
    """--teacher: no teacher runs, every student (both modes) distils from that one model;
    --modes reference sets the reference student's keys; curves and the 2-SE column."""
    teacher = grid / "digits" / "teacher" / "seed0"
    out = tmp_path / "modes"
    args = [str(out), "--data", "digits", "--seeds", "0", "1", "--variants", "none",
            "samd_nld", "--modes", "spiking", "reference", "--teacher", str(teacher), *TINY,
            "--set", "student.epochs=2"]
    assert cli_main(["ablate", *args]) == 0
    obj = json.loads((out / "ablation.json").read_text())
    assert obj["complete"] and obj["total_runs"] == 8  # 2 modes x 2 variants x 2 seeds
    assert obj["modes"] == ["spiking", "reference"]
    assert obj["teacher"]["path"] == str(teacher) and len(obj["teacher"]["sha256"]) == 64
    assert obj["teacher"]["curve"] and obj["teacher"]["train_samples"] == 128
    assert {r["variant"] for r in obj["runs"]} == {"none", "samd_nld"}
    for r in obj["runs"]:
        c = r["config"]
        assert len(r["curve"]) == 2 and r["best_test_accuracy"] == max(r["curve"])
        assert r["budget"]["epochs"] == 2 and r["budget"]["train_samples"] == 128
        assert r["budget"]["time_steps"] == (1 if r["mode"] == "reference" else 4)
        sub = "digits" if r["mode"] == "spiking" else "digits/reference"
        assert r["group"] == sub
        assert (out / sub / r["variant"] / f"seed{r['seed']}" / "config.yaml").is_file()
        if r["mode"] == "reference":
            assert c["data"]["time_steps"] == 1 and c["student"]["last_block"] == "relu"
            assert c["student"]["head"] == "reference" and c["neuron"]["surrogate"] == "triangle"
            assert c["neuron"]["detach_reset"] is False and c["loss"]["samd_norm"] == "batch"
            assert c["loss"]["teacher_mode"] == "train" and c["loss"]["camcam_detach"] is True
        else:
            assert c["data"]["time_steps"] == 4 and c["student"]["last_block"] == "spiking"
    for g in ("digits", "digits/reference"):
        s = obj["datasets_detail"][g]["summary"]
        assert set(s) == {"none", "samd_nld"} and "teacher" not in s
        assert s["samd_nld"]["delta"] == pytest.approx(s["samd_nld"]["mean"] - s["none"]["mean"])
        assert "se_delta" in s["samd_nld"] and isinstance(s["samd_nld"]["exceeds_2se"], bool)
        assert len(obj["datasets_detail"][g]["curves"]["none"]) == 2
    assert (out / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "ablation.md").read_text()
    assert "## digits/reference" in md and "2 SE" in md and "learning curve" in md
    assert "one shared teacher" in md
    # a finished ablation is not silently mixed with another teacher's students
    other = grid / "digits" / "teacher" / "seed1"
    capsys.readouterr()
    assert cli_main(["ablate", *[str(other) if a == str(teacher) else a for a in args]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kdsnn: error:") and "another teacher" in err and "\n" not in err
    # ... nor with students of per-seed teachers (and the other way round)
    assert cli_main(["ablate", *[a for a in args if a not in ("--teacher", str(teacher))]]) == 2
    assert "one teacher per seed" in capsys.readouterr().err
    assert cli_main(["ablate", str(grid), *ARGS, "--teacher", str(teacher)]) == 2
    assert "one teacher per seed" in capsys.readouterr().err


def test_compare_two_standard_errors():
    summary = {"none": ablate.stats([0.80, 0.81, 0.82]), "a": ablate.stats([0.83, 0.84, 0.85]),
               "b": ablate.stats([0.80, 0.83, 0.82])}
    ablate.compare(summary)
    se = (0.01 ** 2 / 3 + 0.01 ** 2 / 3) ** 0.5
    assert summary["a"]["delta"] == pytest.approx(0.03)
    assert summary["a"]["se_delta"] == pytest.approx(se) and summary["a"]["exceeds_2se"]
    assert not summary["b"]["exceeds_2se"] and "delta" not in summary["none"]


def test_paired_differences_by_hand():
    """Per-seed differences 1, 2, 3 pp: mean 2, sd 1, t(0.975, 2) = 4.302653, so the 95 %
    interval is 2 +- 4.302653 / sqrt(3) = [-0.4841, 4.4841] pp; t = 2 sqrt(3) = 3.4641 gives
    p = 0.07418 (two-sided, 2 dof). Seed 3 has no partner and is left out."""
    pr = ablate.paired({0: 0.83, 1: 0.84, 2: 0.86}, {0: 0.82, 1: 0.82, 2: 0.83, 3: 0.90})
    assert pr["seeds"] == [0, 1, 2] and pr["n"] == 3
    assert pr["mean"] == pytest.approx(0.02) and pr["sd"] == pytest.approx(0.01)
    assert pr["ci95"] == pytest.approx([-0.004841, 0.044841], abs=1e-6)
    assert pr["p_value"] == pytest.approx(0.07418, abs=1e-5)
    assert (pr["wins"], pr["losses"], pr["ties"]) == (3, 0, 0)
    pr = ablate.paired({0: 0.80, 1: 0.80, 2: 0.79}, {0: 0.80, 1: 0.79, 2: 0.80})
    assert (pr["wins"], pr["losses"], pr["ties"]) == (1, 1, 1)
    assert pr["mean"] == pytest.approx(0) and pr["p_value"] == pytest.approx(1)
    assert pr["ci95"] == pytest.approx([-0.024841, 0.024841], abs=1e-6)
    pr = ablate.paired({0: 0.81, 1: 0.82}, {0: 0.80, 1: 0.81})  # sd 0: a point interval
    assert pr["ci95"] == pytest.approx([0.01, 0.01]) and pr["p_value"] == 0.0
    pr = ablate.paired({0: 0.81}, {0: 0.80, 1: 0.8})
    assert pr["n"] == 1 and pr["ci95"] is None and pr["p_value"] is None
    assert ablate.paired_cells(pr) == ("+1.00", "1 / 0 / 0")
    assert ablate.paired_cells(ablate.paired({0: 0.83, 1: 0.84, 2: 0.86},
                                             {0: 0.82, 1: 0.82, 2: 0.83})) == \
        ("+2.00 [-0.48, +4.48]", "3 / 0 / 0")


def test_refresh_pairs_the_counted_seeds():
    """refresh() recomputes the paired analysis of an older result file from its runs:
    extra seeds count only where the spread rule ran them."""
    def run(group, variant, seed, acc):
        return {"data": "d", "group": group, "variant": variant, "seed": seed,
                "status": "done", "test_accuracy": acc}
    runs = [run(g, v, k, 0.80 + 0.01 * k + (0.02 if v == "samd_nld" else 0))
            for g in ("d", "d/reference") for v in ("none", "samd_nld") for k in (0, 1, 2)]
    runs += [run("d", "teacher", 0, 0.9), run("d", "none", 2, 0.5)]  # (d, none, 2) replaced
    obj = {"seeds": [0, 1], "extra_seeds": [2], "reference": None, "runs": runs[:-1],
           "datasets_detail": {"d": {"extra_seeds": {"ran": False}},
                               "d/reference": {"extra_seeds": {"ran": True}}}}
    ablate.refresh(obj)
    spiking = obj["datasets_detail"]["d"]["paired"]
    assert set(spiking) == {"none", "samd_nld"} and spiking["none"]["samd_nld"]["seeds"] == [0, 1]
    ref = obj["datasets_detail"]["d/reference"]["paired"]["none"]["samd_nld"]
    assert ref["seeds"] == [0, 1, 2] and ref["mean"] == pytest.approx(0.02)
    assert ref["wins"] == 3


@pytest.mark.parametrize("bad, words", [
    (["--modes", "bogus"], "bogus"), (["--modes", "spiking", "spiking"], "duplicates"),
    (["--teacher", "no/such/run"], "no/such/run"),
])
def test_bad_mode_or_teacher_one_line(tmp_path, capsys, bad, words):
    assert cli_main(["ablate", str(tmp_path / "x"), "--data", "digits", *bad]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kdsnn: error:") and words in err and "\n" not in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("threshold", ["0", "1000"])
def test_extra_seeds_run_only_where_the_spread_asks(grid, tmp_path, capsys, threshold):
    out = tmp_path / f"extra{threshold}"
    teacher = grid / "digits" / "teacher" / "seed0"
    assert cli_main(["ablate", str(out), "--data", "digits", "--seeds", "0", "1",
                     "--extra-seeds", "2", "--extra-if-std", threshold, "--variants", "none",
                     "samd_nld", "--teacher", str(teacher), *TINY]) == 0
    obj = json.loads((out / "ablation.json").read_text())
    extra = obj["datasets_detail"]["digits"]["extra_seeds"]
    spread = max(100 * ablate.stats([r["test_accuracy"] for r in obj["runs"]
                                     if r["variant"] == v and r["seed"] in (0, 1)])["std"]
                 for v in ("none", "samd_nld"))
    assert extra["base_spread_pp"] == pytest.approx(spread, abs=1e-3)
    assert extra["ran"] == (spread > float(threshold))
    seeds = sorted({r["seed"] for r in obj["runs"]})
    assert seeds == ([0, 1, 2] if extra["ran"] else [0, 1])
    assert obj["complete"] and obj["total_runs"] == len(obj["runs"]) == 2 * len(seeds)
    assert obj["datasets_detail"]["digits"]["summary"]["none"]["n"] == len(seeds)
    assert "extra seeds " + ("ran" if extra["ran"] else "were not needed") in \
        (out / "ablation.md").read_text()


def test_teacher_ignores_the_student_modes(tmp_path):
    """A seed's teacher is the base config's ANN, whatever --modes lists first."""
    tasks = ablate.plan(tmp_path, ["digits"], [0], ["teacher", "none"], None,
                        TINY[1::2], ["reference", "spiking"])
    teacher = [t for t in tasks if t.variant == "teacher"]
    assert len(teacher) == 1 and teacher[0].cfg.data.time_steps == 4
    assert teacher[0].cfg.loss.teacher_mode == "eval" and teacher[0].mode == "spiking"
    ref = next(t for t in tasks if t.mode == "reference")
    assert ref.cfg.data.time_steps == 1 and ref.teacher is teacher[0]


@pytest.mark.parametrize("bad, words", [
    (["--seeds", "0", "--extra-seeds", "1"], "at least 2"),
    (["--seeds", "0", "1", "--extra-seeds", "1"], "already in"),
    (["--variants", "teacher", "teacher", "--teacher", "T"], "at least one student"),
])
def test_bad_extra_seeds_one_line(grid, tmp_path, capsys, bad, words):
    bad = [str(grid / "digits" / "teacher" / "seed0") if a == "T" else a for a in bad]
    assert cli_main(["ablate", str(tmp_path / "x"), "--data", "digits", *bad]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kdsnn: error:") and words in err and "\n" not in err
    assert not (tmp_path / "x").exists()


def test_teacher_of_another_data_set_is_refused(grid, tmp_path, capsys):
    teacher = grid / "digits" / "teacher" / "seed0"  # 10 classes, 1 channel
    assert cli_main(["ablate", str(tmp_path / "x"), "--data", "fashion_mnist_events",
                     "--teacher", str(teacher), "--variants", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kdsnn: error:") and "channels" in err and "\n" not in err
    assert not (tmp_path / "x").exists()


def test_shards_over_processes_then_merge(grid, tmp_path):
    """Two parts in two processes at once, then the merge: the runs train as in the single
    run (same accuracies), and the merge writes what the single command writes from them."""
    import subprocess
    import sys
    out = tmp_path / "sharded"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "kdsnn", "ablate", str(out), *ARGS]
    procs = [subprocess.Popen(cmd + ["--shard", f"{k}/2"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for k in (1, 2)]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    parts = [json.loads((out / "shards" / f"{k}-of-2.json").read_text()) for k in (1, 2)]
    keys = [set(p["runs"]) for p in parts]
    assert not keys[0] & keys[1] and len(keys[0] | keys[1]) == 8  # disjoint, all of the plan
    assert not (out / "ablation.json").exists()  # the parts write no result files
    assert cli_main(["ablate", str(out), *ARGS, "--merge"]) == 0
    merged = {ext: (out / f"ablation.{ext}").read_bytes() for ext in ("json", "md")}
    assert cli_main(["ablate", str(out), *ARGS]) == 0  # the single command, nothing to train
    single = {ext: (out / f"ablation.{ext}").read_bytes() for ext in ("json", "md")}

    def steady(ext, data):  # the invocation's own wall time is the one field that differs
        if ext == "json":
            obj = json.loads(data)
            obj.pop("elapsed_seconds_this_invocation")
            return obj
        return [ln for ln in data.decode().splitlines() if "invocation took" not in ln]
    assert all(steady(e, merged[e]) == steady(e, single[e]) for e in merged)
    acc = lambda path: {(r["variant"], r["seed"]): r["test_accuracy"]  # noqa: E731
                        for r in json.loads((path / "ablation.json").read_text())["runs"]}
    assert acc(out) == acc(grid)


def test_merge_refuses_missing_runs(tmp_path, capsys):
    out = tmp_path / "partial"
    assert cli_main(["ablate", str(out), *ARGS, "--merge"]) == 2
    assert "not finished" in capsys.readouterr().err
    assert cli_main(["ablate", str(out), *ARGS, "--shard", "3/2"]) == 2
