"""What the command-line tests share: run ``kdsnn`` in a fresh interpreter, snapshot a run
directory, and check the one-line usage error."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def kdsnn(*args):
    """``python -m kdsnn ARGS`` in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "kdsnn", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True,
                          env=dict(os.environ, PYTHONHASHSEED="0", MPLBACKEND="Agg",
                                   OMP_NUM_THREADS=str(torch.get_num_threads())))


def snapshot(path: Path) -> dict:
    """Every file and folder under ``path`` with its bytes' hash (None for folders)."""
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): (sha256(p) if p.is_file() else None)
            for p in sorted(path.rglob("*"))}


def assert_usage_error(proc, *words):
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("kdsnn: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
