"""End-to-end CLI: teacher -> distill -> eval on digits, resume, and bad input."""
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from kdsnn.cli import main

FAST = ["--set", "teacher.epochs=2", "--set", "student.epochs=2", "--set", "data.batch_size=64",
        "--set", "teacher.width=1", "--set", "student.width=1", "--no-progress"]


def kdsnn(*args):
    return subprocess.run([sys.executable, "-m", "kdsnn", *args], capture_output=True, text=True,
                          env=same_threads())


def same_threads(**extra):
    """The environment of a child that computes bit-identically to this process."""
    return dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS=str(torch.get_num_threads()),
                **extra)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "demo"
    assert main(["teacher", "--config", "digits", str(run), *FAST]) == 0
    assert main(["distill", str(run), "--no-progress"]) == 0
    return run


def test_run_directory_layout(demo_run):
    for rel in ("config.yaml", "metrics.json", "teacher/model.safetensors", "teacher/model.json",
                "teacher/metrics.csv", "teacher/train.log", "student/model.safetensors",
                "student/state.safetensors", "student/metrics.csv"):
        assert (demo_run / rel).is_file(), rel
    metrics = json.loads((demo_run / "metrics.json").read_text())
    assert 0 < metrics["teacher"]["test_accuracy"] <= 1
    assert 0 < metrics["student"]["test_accuracy"] <= 1
    meta = json.loads((demo_run / "student/model.json").read_text())
    assert meta["seed"] == 0 and meta["model"]["spiking"] and "torch" in meta["versions"]
    rows = (demo_run / "student/metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,") and len(rows) == 3


def test_eval_reports_accuracy(demo_run, capsys):
    assert main(["eval", str(demo_run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "teacher test accuracy" in out and "student test accuracy" in out


def test_same_seed_same_weights(demo_run, tmp_path):
    run2 = tmp_path / "again"
    assert main(["teacher", "--config", "digits", str(run2), *FAST]) == 0
    a = load_file(demo_run / "teacher/model.safetensors")
    b = load_file(run2 / "teacher/model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)


def test_resume_after_crash_mid_epoch_is_bit_identical(demo_run, tmp_path):
    # reference: uninterrupted student run with mid-epoch checkpoints
    args = ["--set", "student.checkpoint_every=5", "--no-progress", "--teacher",
            str(demo_run / "teacher")]
    ref = tmp_path / "ref"
    assert main(["distill", "--config", str(demo_run / "config.yaml"), str(ref), *args]) == 0
    crashed = tmp_path / "crashed"
    env = same_threads(KDSNN_FAIL_AT_STEP="30")  # 22 steps/epoch: dies mid epoch 2
    proc = subprocess.run([sys.executable, "-m", "kdsnn", "distill", "--config",
                           str(demo_run / "config.yaml"), str(crashed), *args],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 3, proc.stderr
    assert not (crashed / "student/model.safetensors").exists()
    assert main(["distill", str(crashed), "--resume", *args]) == 0
    a = load_file(ref / "student/model.safetensors")
    b = load_file(crashed / "student/model.safetensors")
    assert set(a) == set(b) and all((a[k] == b[k]).all() for k in a)
    assert (ref / "student/metrics.csv").read_text() == (crashed / "student/metrics.csv").read_text()


@pytest.mark.parametrize("args, words", [
    (["teacher", "--config", "digits", "{run}", "--set", "student.epcohs=1"],
     "unknown config key 'student.epcohs'"),
    (["teacher", "--config", "digits", "{run}", "--set", "data.name=imagenet"],
     "imagenet"),
    (["teacher", "--config", "nope", "{run}"], "unknown config 'nope'"),
    (["distill", "--config", "digits", "{run}"], "no teacher at"),
    (["eval", "{run}"], "no config.yaml"),
])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, args, words):
    run = tmp_path / "r"
    proc = kdsnn(*[a.replace("{run}", str(run)) for a in args])
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert words in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not run.exists() or not any(run.iterdir())


def test_mismatched_teacher_and_corrupt_checkpoint(demo_run, tmp_path):
    # a teacher trained for another data set
    bad = tmp_path / "bad.safetensors"
    data = (demo_run / "teacher/model.safetensors").read_bytes()
    bad.write_bytes(data[:100])
    proc = kdsnn("distill", "--config", str(demo_run / "config.yaml"), str(tmp_path / "r"),
                 "--teacher", str(bad))
    assert proc.returncode == 2 and "corrupt" in proc.stderr
    proc = kdsnn("distill", "--config", str(demo_run / "config.yaml"), str(tmp_path / "r2"),
                 "--teacher", str(demo_run / "student/model.safetensors"))
    assert proc.returncode == 2 and "is not an ANN teacher" in proc.stderr


def test_existing_model_needs_force(demo_run):
    proc = kdsnn("teacher", str(demo_run))
    assert proc.returncode == 2 and "--force" in proc.stderr


def test_spikformer_student_distils_with_samd_nld_and_export_refuses_it(demo_run, tmp_path):
    run = tmp_path / "sf"
    assert main(["distill", "--config", str(demo_run / "config.yaml"), str(run),
                 "--teacher", str(demo_run / "teacher"), "--set", "student.model=spikformer",
                 "--set", "student.model_kwargs={depth: 1, dim: 32}", "--set",
                 "student.epochs=2", "--no-progress"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    rows = (run / "student/metrics.csv").read_text().splitlines()[1:]
    losses = [float(r.split(",")[2]) for r in rows]
    assert metrics["student"]["loss"] == "samd_nld" and losses[1] < losses[0]
    assert metrics["student"]["test_accuracy"] > 0.15  # above chance (0.1) after 44 steps
    proc = kdsnn("export", str(run), "--target", "nir")
    assert proc.returncode == 2 and "SpikingPatchSplitting" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (run / "export" / "student.nir").exists()
