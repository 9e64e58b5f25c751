"""torchrun + DDP (gloo on CPU) equals a single process with the same global batch."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

ARGS = ["--set", "teacher.epochs=1", "--set", "student.epochs=1", "--set", "teacher.width=1",
        "--set", "student.width=1", "--set", "data.batch_size=64",
        "--set", "loss.preset=samd", "--no-progress"]


def _run(cmd, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def _torchrun():
    exe = Path(sys.executable).with_name("torchrun")
    if not exe.exists():
        pytest.skip("torchrun not installed next to the interpreter")
    return [str(exe), "--nproc_per_node", "2", "--master_port", "29533", "-m", "kdsnn"]


def _max_diff(a_path, b_path):
    a, b = load_file(a_path), load_file(b_path)
    assert set(a) == set(b)
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def test_two_gloo_processes_match_one_process(tmp_path):
    single = [sys.executable, "-m", "kdsnn"]
    for stage in ("teacher", "distill"):
        cfg = ["--config", "digits"] if stage == "teacher" else []
        _run(single + [stage, *cfg, "single", *ARGS], tmp_path)
        _run(_torchrun() + [stage, *cfg, "multi", *ARGS], tmp_path)
    for stage in ("teacher", "student"):
        diff = _max_diff(tmp_path / f"single/{stage}/model.safetensors",
                         tmp_path / f"multi/{stage}/model.safetensors")
        assert diff < 1e-4, (stage, diff)
        # metrics reduced across ranks, written once by rank 0
        a = (tmp_path / f"single/{stage}/metrics.csv").read_text().splitlines()[1].split(",")
        b = (tmp_path / f"multi/{stage}/metrics.csv").read_text().splitlines()[1].split(",")
        assert a[0] == b[0] and abs(float(a[3]) - float(b[3])) < 0.02  # train accuracy
    assert not list((tmp_path / "multi").rglob("*.tmp"))
