"""Event data end to end: saccade events -> binary-spike student -> Lava, bit for bit."""
import json

from kdsnn.cli import main

ARGS = ["--set", "data.name=digits_events", "--set", "teacher.epochs=1", "--set",
        "student.epochs=1", "--set", "teacher.width=1", "--set", "student.width=1",
        "--set", "data.batch_size=64", "--no-progress"]


def test_event_student_exports_and_matches_lava(tmp_path):
    run = tmp_path / "events"
    assert main(["teacher", "--config", "digits", str(run), *ARGS]) == 0
    assert main(["distill", str(run), "--no-progress"]) == 0
    assert main(["export", str(run), "--target", "lava", "--samples", "60"]) == 0
    assert main(["parity", str(run), "--samples", "8", "--no-progress"]) == 0
    result = json.loads((run / "parity/parity.json").read_text())
    assert result["bit_exact_emulation_vs_lava"]
    assert result["layers"][0]["neurons"] > 0
    manifest = json.loads((run / "export/manifest.json").read_text())
    assert manifest["encoding"] == "frames" and manifest["input_shape"][0] == 2
    assert "student.net" in manifest["targets"]["lava"]["files"]
