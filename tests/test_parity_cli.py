"""``kdsnn parity`` with the fast Conv model: re-checked against Lava's stock model, and the
integer emulation over the whole test split next to the Lava-certified subset."""
import json

from kdsnn.cli import main

FAST = ["--set", "teacher.epochs=1", "--set", "student.epochs=1", "--set", "teacher.width=1",
        "--set", "student.width=1", "--no-progress"]


def test_parity_fast_conv_is_rechecked_with_the_stock_model(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["teacher", "--config", "digits", str(run), *FAST]) == 0
    assert main(["distill", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["parity", str(run), "--samples", "6", "--conv-model", "fast",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "whole test split (360 samples)" in out and "bit for bit: yes" in out
    res = json.loads((run / "parity" / "parity.json").read_text())
    stock = res["stock_conv_check"]
    assert stock["samples"] == 2 and stock["bit_exact"] is True and not stock["mismatches"]
    assert stock["steps"] == 2 * 4 and stock["synapses"] >= 3  # digits: T = 4, conv + dense
    full = res["emulation_full_test"]
    assert full["samples"] == 360 and 0 < full["quantized"] <= 1
    md = (run / "parity" / "parity.md").read_text()
    assert "Which figure is which" in md and "PyConvModelFixed" in md
    metrics = json.loads((run / "metrics.json").read_text())["parity"]
    assert metrics["emulation_full_test"]["samples"] == 360
