"""Every resume is bit-identical or refused; one writer per run directory; readable logs.

Bit-identity here compares two runs of the same code in the same process kind with the
same thread count (the suite's), which is exact by construction: the same kernels see
the same shapes in the same order.
"""
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kd_snn import checkpoint as ckpt
from kd_snn.progress import LineProgress
from kd_snn.rundir import LOCK_NAME, RunDir
from kd_snn.trainer import restore_scaler
from kdsnn.cli import main

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--set", "teacher.epochs=1", "--set", "student.epochs=2", "--set", "data.batch_size=64",
        "--set", "teacher.width=1", "--set", "student.width=1", "--no-progress"]


def cli(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "kdsnn", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True,
                          env=dict(os.environ, PYTHONHASHSEED="0",
                                   OMP_NUM_THREADS=str(torch.get_num_threads()), **(env or {})),
                          **kw)


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    base = tmp_path_factory.mktemp("resume")
    a, b = base / "a", base / "b"
    assert main(["teacher", "--config", "digits", str(a), *FAST]) == 0
    assert main(["teacher", "--config", "digits", str(b), *FAST, "--set", "seed=1"]) == 0
    return a, b


def _same_weights(x: Path, y: Path) -> None:
    a, b = load_file(x), load_file(y)
    assert set(a) == set(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_feature_kd_resume_restores_the_adapter(teachers, tmp_path):
    a, _ = teachers
    args = ["--set", "loss.preset=feature", "--set", "student.checkpoint_every=5",
            "--teacher", a / "teacher", "--no-progress"]
    ref, crashed = tmp_path / "ref", tmp_path / "crashed"
    assert main(["distill", "--config", str(a / "config.yaml"), str(ref), *map(str, args)]) == 0
    proc = cli("distill", "--config", a / "config.yaml", crashed, *args,
               env={"KDSNN_FAIL_AT_STEP": "30"})  # 22 steps per epoch: dies in epoch 2
    assert proc.returncode == 3, proc.stderr
    state = load_file(crashed / "student" / "state.safetensors")
    assert any(k.startswith("extra.criterion.") for k in state)  # the adapter is saved
    assert main(["distill", str(crashed), "--resume", *map(str, args)]) == 0
    _same_weights(ref / "student" / "model.safetensors",
                  crashed / "student" / "model.safetensors")


def test_resume_with_another_teacher_is_refused(teachers, tmp_path, capsys):
    a, b = teachers
    run = tmp_path / "r"
    proc = cli("distill", "--config", a / "config.yaml", run, "--teacher", b / "teacher",
               "--set", "student.checkpoint_every=5", "--no-progress",
               env={"KDSNN_FAIL_AT_STEP": "5"})
    assert proc.returncode == 3, proc.stderr
    meta = ckpt.read_meta(run / "student" / "state.safetensors")
    expected = hashlib.sha256((b / "teacher" / "model.safetensors").read_bytes()).hexdigest()
    assert meta["teacher_sha256"] == expected
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["distill", str(run), "--resume", "--teacher", str(a / "teacher"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "another teacher" in err and len(err.splitlines()) == 1
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert main(["distill", str(run), "--resume", "--teacher", str(b / "teacher"),
                 "--no-progress"]) == 0


def test_grad_scaler_state_round_trips_through_a_checkpoint(tmp_path):
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=3)
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p], lr=0.1)
    for loss in (p.sum(), p.sum() * float("inf"), p.sum()):  # one skipped step halves the scale
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    state = scaler.state_dict()
    assert state["scale"] == 2.0 ** 9 and state["_growth_tracker"] == 1
    path = tmp_path / "s.safetensors"
    ckpt.save_checkpoint(path, torch.nn.Linear(1, 1), {"scaler": state})
    _, meta = ckpt.load_checkpoint(path)
    fresh = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)
    restore_scaler(fresh, meta["scaler"])
    assert fresh.state_dict() == state


def test_stale_temp_files_are_removed_by_the_next_writer(teachers, tmp_path):
    import shutil
    run = Path(shutil.copytree(teachers[0], tmp_path / "run"))
    stale = [run / "teacher" / ".state.safetensors.ab12cd.tmp",
             run / ".metrics.json.x1y2z3.kdsnn.tmp"]
    for s in stale:
        s.write_bytes(b"half a file")
    assert main(["eval", str(run), "--no-progress"]) == 0
    assert not any(s.exists() for s in stale)
    assert not (run / LOCK_NAME).exists()


def test_manifest_hashes_the_checkpoint_bytes_that_were_read(teachers, tmp_path):
    a, _ = teachers
    run = tmp_path / "s"
    assert main(["distill", "--config", str(a / "config.yaml"), str(run), "--teacher",
                 str(a / "teacher"), "--set", "student.epochs=1", "--no-progress"]) == 0
    data = (run / "student" / "model.safetensors").read_bytes()
    _, meta = ckpt.load_checkpoint(run / "student" / "model.safetensors")
    assert meta["file_sha256"] == hashlib.sha256(data).hexdigest()
    assert main(["export", str(run), "--target", "nir", "--no-progress"]) == 0
    manifest = json.loads((run / "export" / "manifest.json").read_text())
    assert manifest["source"]["sha256"] == hashlib.sha256(data).hexdigest()


def test_second_writer_is_refused_with_the_holders_pid(teachers, tmp_path):
    import shutil
    run = Path(shutil.copytree(teachers[0], tmp_path / "run"))
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from kd_snn.rundir import RunDir\n"
         "with RunDir(sys.argv[1]).lock():\n    print('held', flush=True); time.sleep(60)",
         str(run)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = sorted(p.name for p in run.iterdir())
        proc = cli("distill", run, "--no-progress")
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert "in use by another kdsnn process" in lines[0] and f"PID {holder.pid}" in lines[0]
        assert sorted(p.name for p in run.iterdir()) == before
    finally:
        holder.kill()
        holder.wait()
    # a killed holder released the lock: the next writer runs
    assert main(["eval", str(run), "--which", "teacher", "--no-progress"]) == 0


def test_lock_taken_by_a_failing_command_leaves_nothing(tmp_path):
    new = tmp_path / "a" / "b"
    with pytest.raises(RuntimeError):
        with RunDir(new).lock():
            assert (new / LOCK_NAME).exists()
            raise RuntimeError("fails")
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("total", [1000, 1874, 156])
def test_non_terminal_progress_is_a_few_lines(total):
    out = io.StringIO()  # 1874: a 10 % mark that rounds down must not print twice
    bar = LineProgress(total=total, desc="student", unit="step", every=10, stream=out)
    for _ in range(total):
        bar.update(1)
        bar.set_postfix(loss="0.1")
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 10 and "\r" not in out.getvalue()
    steps = [int(ln.split()[1].split("/")[0]) for ln in lines]
    assert steps == sorted(set(steps))
    assert lines[-1].startswith(f"student: {total}/{total} step (100%")


def test_training_log_to_a_file_has_no_bars(tmp_path):
    proc = cli("teacher", "--config", "digits", tmp_path / "r", "--set", "teacher.epochs=2",
               "--set", "teacher.width=1")  # progress on, stderr is a pipe
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr
    assert len(proc.stderr.splitlines()) <= 30, proc.stderr
    assert "teacher epoch 2/2" in proc.stderr
