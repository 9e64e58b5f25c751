"""The chain after training computes nothing twice, and parity splits over machines.

* export stores the integer emulation's full-test accuracy with the quantized graph's
  digest; parity reuses it (and says so), and recomputes it when the graph changed;
* parity keeps Lava's spikes; the report reuses them for the same graph and samples, with
  the same counts a fresh Lava run gives;
* ``--shard K/N`` in N concurrent processes + ``--merge`` == one run, byte for byte;
* shard/merge misuse is one error line.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kdsnn.cli import main

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--set", "teacher.epochs=1", "--set", "student.epochs=1", "--set", "teacher.width=1",
        "--set", "student.width=1", "--no-progress"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    run = tmp_path_factory.mktemp("chain") / "run"
    assert main(["teacher", "--config", "digits", str(run), *FAST]) == 0
    assert main(["distill", str(run), "--no-progress"]) == 0
    assert main(["export", str(run), "--target", "lava", "--calib", "64", "--no-progress"]) == 0
    return run


def _copy(run: Path, dst: Path) -> Path:
    shutil.copytree(run, dst, ignore=shutil.ignore_patterns("parity", "report", ".kdsnn*"))
    return dst


def test_parity_reuses_export_accuracy_and_keeps_spikes(exported, tmp_path, capsys):
    run = _copy(exported, tmp_path / "r")
    capsys.readouterr()
    assert main(["parity", str(run), "--samples", "8"]) == 0
    out = capsys.readouterr().out
    assert "reused from export/quantize.json" in out
    assert "Lava's stock Conv/Dense models run on every one of the" in out
    assert "spike trains of the first 2 sample(s) (8 steps each): bit-exact" in out
    res = json.loads((run / "parity" / "parity.json").read_text())
    quant = json.loads((run / "export" / "quantize.json").read_text())
    assert res["emulation_full_test"]["quantized"] == quant["accuracy"]["quantized"]
    assert res["emulation_full_test"]["graph_sha256"] == quant["graph_sha256"]
    assert res["conv_model"] == "fast" and res["stock_conv_check"]["bit_exact"] is True
    assert "lava_seconds" not in res and "jobs" not in res  # timing lives in run.json
    assert json.loads((run / "parity" / "run.json").read_text())["seconds"] > 0
    assert (run / "parity" / "lava_spikes.npz").is_file()


def test_a_changed_graph_is_not_served_from_the_cache(exported, tmp_path, capsys):
    run = _copy(exported, tmp_path / "r")
    q = run / "export" / "quantize.json"
    record = json.loads(q.read_text())
    record["graph_sha256"] = "0" * 64  # as if written for another quantized graph
    q.write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["parity", str(run), "--samples", "4", "--stock-check", "0"]) == 0
    out = capsys.readouterr().out
    assert "computing (not stored for this quantized graph yet)" in out
    assert "NOT re-checked" in out
    assert "**not re-checked**" in (run / "parity" / "parity.md").read_text()


def test_report_reuses_parity_spikes_with_identical_counts(exported, tmp_path, capsys):
    run = _copy(exported, tmp_path / "r")
    assert main(["parity", str(run), "--samples", "12", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["report", str(run), "--source", "lava", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "reused from the parity run (12 of the 12 samples" in out
    reused = json.loads((run / "report" / "report.json").read_text())
    (run / "parity" / "lava_spikes.npz").unlink()
    assert main(["report", str(run), "--source", "lava", "--samples", "12",
                 "--no-progress"]) == 0
    assert "running Lava on 12 samples" in capsys.readouterr().out
    fresh = json.loads((run / "report" / "report.json").read_text())
    assert reused["meta"]["samples"] == fresh["meta"]["samples"] == 12
    assert reused["student"] == fresh["student"]


def _kdsnn(*args):
    return subprocess.Popen([sys.executable, "-m", "kdsnn", *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_shards_in_parallel_merge_to_the_bytes_of_one_run(exported, tmp_path):
    one = _copy(exported, tmp_path / "one")
    split = _copy(exported, tmp_path / "split")
    assert main(["parity", str(one), "--samples", "9", "--no-progress"]) == 0
    procs = [_kdsnn("parity", split, "--samples", "9", "--shard", f"{k}/3", "--no-progress")
             for k in (1, 2, 3)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert not (split / "parity" / "parity.json").exists()
    assert main(["parity", str(split), "--merge", "--no-progress"]) == 0
    for name in ("parity.json", "parity.md"):
        assert (split / "parity" / name).read_bytes() == (one / "parity" / name).read_bytes()
    merged = json.loads((split / "parity" / "run.json").read_text())
    assert merged["shards"] == 3 and len(merged["shard_seconds"]) == 3
    assert merged["device"] == "cpu"  # where the merge computed (not a shard's name)
    assert (split / "parity" / "lava_spikes.npz").is_file()


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kdsnn: error: "), err
    return err[0]


def test_shard_and_merge_misuse_is_one_line(exported, tmp_path, capsys):
    run = _copy(exported, tmp_path / "r")
    assert "K/N" in _error(capsys, ["parity", str(run), "--shard", "0/3"])
    assert "K/N" in _error(capsys, ["parity", str(run), "--shard", "three"])
    assert "no parity shards" in _error(capsys, ["parity", str(run), "--merge"])
    assert main(["parity", str(run), "--samples", "4", "--shard", "1/2", "--no-progress"]) == 0
    assert "2/2 missing" in _error(capsys, ["parity", str(run), "--merge"])
    assert main(["parity", str(run), "--samples", "6", "--shard", "2/2", "--no-progress"]) == 0
    assert "other samples" in _error(capsys, ["parity", str(run), "--merge"])
    assert not (run / "parity" / "parity.json").exists()
    bare = _copy(exported, tmp_path / "bare")
    shutil.rmtree(bare / "export")
    assert "no quantized export" in _error(capsys, ["parity", str(bare), "--shard", "1/2"])
