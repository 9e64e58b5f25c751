"""Every failure is one line ``kdsnn: error: ...``, exit 2, and the run directory as it was.

A run is trained and exported once per module; every case works on its own copy and
compares the whole directory (names and bytes, hidden files included) before and
after.  Cases that need a full or read-only file system mount a small tmpfs and are
skipped where mounting is not allowed.
"""
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from kd_snn.errors import KdsnnError
from kdsnn.cli import main

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--set", "teacher.epochs=1", "--set", "student.epochs=1", "--set", "data.batch_size=64",
        "--set", "teacher.width=1", "--set", "student.width=1", "--no-progress"]


def tree(path: Path) -> dict:
    """Every file and folder under ``path`` (hidden ones too) with its bytes' hash."""
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): (hashlib.sha256(p.read_bytes()).hexdigest()
                                       if p.is_file() else None)
            for p in sorted(path.rglob("*"))}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("bad") / "run"
    assert main(["teacher", "--config", "digits", str(run), *FAST]) == 0
    assert main(["distill", str(run), "--no-progress", "--set", "student.checkpoint_every=5"]) == 0
    assert main(["export", str(run), "--target", "quant", "--target", "nir", "--target", "lava",
                 "--calib", "64", "--no-progress"]) == 0
    return run


@pytest.fixture
def run(trained, tmp_path):
    return Path(shutil.copytree(trained, tmp_path / "run"))


def refused(capsys, args, *words, where=None):
    """Run the CLI in-process; assert exit 2, one stderr line with ``words``, nothing written."""
    where = Path(where) if where is not None else None
    before = tree(where) if where is not None else None
    capsys.readouterr()
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("kdsnn: error: "), err
    for w in words:
        assert w in lines[0], lines[0]
    if where is not None:
        assert tree(where) == before
    return lines[0]


def cli(*args, **kw):
    """``python -m kdsnn ARGS`` in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "kdsnn", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, **kw,
                          env=dict(os.environ, PYTHONHASHSEED="0", MPLBACKEND="Agg"))


# 2. one line, exit 2, nothing written -------------------------------------------------
BROKEN_CONFIGS = {
    "invalid yaml": b"data: [unclosed\nseed: 0\n",
    "python tag": b"seed: !!python/object/apply:os.system ['echo hacked']\n",
    "random bytes": bytes(range(256)) * 4,
    "a list": b"- 1\n- 2\n",
}
COMMANDS = {
    "eval": ["eval", "{run}"],
    "distill": ["distill", "{run}", "--force"],
    "export": ["export", "{run}", "--target", "quant"],
    "parity": ["parity", "{run}", "--samples", "1"],
    "report": ["report", "{run}", "--samples", "2"],
}


@pytest.mark.parametrize("kind", BROKEN_CONFIGS)
@pytest.mark.parametrize("command", COMMANDS)
def test_broken_config_yaml(run, capsys, kind, command):
    (run / "config.yaml").write_bytes(BROKEN_CONFIGS[kind])
    args = [a.replace("{run}", str(run)) for a in COMMANDS[command]]
    refused(capsys, args, "config", where=run)
    assert not Path("hacked").exists()


@pytest.mark.parametrize("content", [b'{"student": {"test_acc', bytes(range(200)), b"[1, 2]",
                                     b'{"student": 3}'])
@pytest.mark.parametrize("command", ["eval", "export", "report"])
def test_broken_metrics_json(run, capsys, content, command):
    (run / "metrics.json").write_bytes(content)
    args = [a.replace("{run}", str(run)) for a in COMMANDS[command]]
    refused(capsys, args, "metrics.json", where=run)


@pytest.mark.parametrize("content", [b'{"schema": "kdsnn.exp', bytes(range(200)), b"[]"])
def test_broken_manifest_json(run, capsys, content):
    (run / "export" / "manifest.json").write_bytes(content)
    refused(capsys, ["export", run, "--target", "nir"], "manifest.json", where=run)


def test_compare_report_that_is_a_list(run, tmp_path, capsys):
    other = tmp_path / "other"
    (other / "report").mkdir(parents=True)
    (other / "report" / "report.json").write_text("[1, 2, 3]")
    refused(capsys, ["report", run, "--samples", "2", "--compare", other], "report.json",
            where=run)


def _rewrite_meta(path: Path, change) -> None:
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
    meta = change(json.loads(header["kdsnn"]))
    save_file(load_file(path), str(path), metadata={"kdsnn": json.dumps(meta)})


@pytest.mark.parametrize("change, words", [
    (lambda m: [m], "not an object"),
    (lambda m: {**m, "model": {**m["model"], "kwargs": {"bogus": 1}}}, "does not build"),
    (lambda m: {**m, "model": {k: v for k, v in m["model"].items() if k != "width"}},
     "misses 'width'"),
])
def test_checkpoint_with_wrong_metadata(run, capsys, change, words):
    _rewrite_meta(run / "student" / "model.safetensors", change)
    refused(capsys, ["eval", run, "--which", "student"], words, where=run)


def test_run_path_is_a_file_or_below_one(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    refused(capsys, ["teacher", "--config", "digits", f, *FAST], "is a file", where=tmp_path)
    refused(capsys, ["teacher", "--config", "digits", f / "run", *FAST], "which is a file",
            where=tmp_path)
    refused(capsys, ["export", f, "--target", "nir"], "is a file", where=tmp_path)


def test_refusals_write_nothing(run, tmp_path, capsys):
    new = tmp_path / "new"
    refused(capsys, ["teacher", "--config", "digits", new, "--set", "data.batch_size=100000",
                     "--no-progress"], "exceeds the training set", where=tmp_path)
    assert not new.exists()
    refused(capsys, ["teacher", "--config", "digits", new, "--resume", "--no-progress"],
            "nothing to resume", where=tmp_path)
    assert not new.exists()
    refused(capsys, ["teacher", "--config", "digits", new, "--set", "loss.preset=nosuch"],
            "nosuch", where=tmp_path)
    refused(capsys, ["distill", run, "--resume", "--set", "student.epochs=16"],
            "config changed", where=run)
    refused(capsys, ["teacher", "--config", "digits", new, "--set", "data.root=/nonexistent/x"],
            "data.root", "/nonexistent/x", where=tmp_path)
    refused(capsys, ["teacher", "--config", "digits", new, "--set", "data.name=fashion_mnist",
                     "--set", "data.root=/nonexistent/y"], "/nonexistent/y", where=tmp_path)


def test_eval_with_broken_student_writes_no_teacher_result(run, capsys):
    path = run / "student" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:200])
    refused(capsys, ["eval", run], "corrupt", where=run)


def test_failing_report_leaves_no_file(run, tmp_path, capsys):
    assert main(["report", str(run), "--samples", "2"]) == 0
    bad = tmp_path / "bad_profile.yaml"
    bad.write_text("name: bad\nunits: [1, 2]\n")
    refused(capsys, ["report", run, "--samples", "2", "--html", "--profile", "loihi",
                     "--profile", bad], where=run)


def test_argparse_errors_are_one_line(capsys, tmp_path):
    refused(capsys, ["export", tmp_path / "r"], "--target")
    refused(capsys, ["nosuchcommand"], "nosuchcommand")
    refused(capsys, ["parity", tmp_path / "r", "--samples", "many"], "--samples")


def test_calib_zero_names_calib(run, capsys):
    refused(capsys, ["export", run, "--target", "quant", "--calib", "0"], "--calib", where=run)
    refused(capsys, ["quantize", run, "--samples", "0"], "--samples", where=run)


def test_nir_that_kdsnn_cannot_express_is_a_kdsnn_error(run):
    import nir
    import numpy as np

    from export.nir_io import nir_to_graph
    g = nir.read(str(run / "export" / "student.nir"))
    lif = next(k for k, n in g.nodes.items() if isinstance(n, nir.LIF))
    node = g.nodes[lif]
    g.nodes[lif] = nir.LIF(tau=-np.abs(node.tau), r=node.r, v_leak=node.v_leak,
                           v_threshold=node.v_threshold, metadata=node.metadata)
    with pytest.raises(KdsnnError, match="NIR import"):
        nir_to_graph(g)


# a full disk and a read-only file system ---------------------------------------------
@contextlib.contextmanager
def tmpfs(where: Path, size: str = "64m"):
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("mounting a tmpfs is not allowed here")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill_up(mount: Path) -> None:
    """Leave no free byte on ``mount``."""
    fd = os.open(mount / ".filler", os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (1 << 16, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * chunk)
    finally:
        os.close(fd)


@pytest.mark.parametrize("args", [
    ["export", "{run}", "--target", "lava", "--calib", "32", "--samples", "32"],  # netx HDF5
    ["export", "{run}", "--target", "nir"],
    ["report", "{run}", "--samples", "2", "--html"],
    ["distill", "{run}", "--force", "--no-progress"],  # checkpoints
], ids=["netx", "nir", "report", "checkpoint"])
def test_full_disk_is_one_line_and_leaves_no_temp_file(trained, tmp_path, args):
    with tmpfs(tmp_path / "mnt") as mnt:
        run = Path(shutil.copytree(trained, mnt / "run"))
        shutil.rmtree(run / "export" if "export" in args else run / "report", ignore_errors=True)
        fill_up(mnt)
        before = tree(run)
        proc = cli(*[a.replace("{run}", str(run)) for a in args])
        lines = [l for l in proc.stderr.splitlines() if l.startswith("kdsnn: error")]
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert "No space left" in lines[0]
        if args[0] != "distill":  # training writes as it goes; its files stay whole
            assert tree(run) == before
        assert not [p for p in run.rglob("*.tmp")]


def test_read_only_run_directory(trained, tmp_path, capsys):
    with tmpfs(tmp_path / "mnt") as mnt:
        run = Path(shutil.copytree(trained, mnt / "run"))
        before = tree(run)
        r = subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True)
        if r.returncode != 0:
            pytest.skip("remounting read-only is not allowed here")
        refused(capsys, ["export", run, "--target", "nir"], "read-only", where=run)
        refused(capsys, ["eval", run], "read-only", where=run)
        refused(capsys, ["teacher", "--config", "digits", mnt / "new", *FAST], "read-only")
        assert tree(run) == before
