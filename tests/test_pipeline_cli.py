"""CLI after training: quantize, export, parity, report on a tiny trained digits run.

One run is trained once per module (width 1, 2 + 2 epochs) and exported once; every
test that changes files works on its own copy.  Exit codes and stderr are checked in
fresh interpreters (``python -m kd_snn``).
"""
import json
import shutil
import sys
from pathlib import Path

import pytest

from kdsnn.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import assert_usage_error, kdsnn, sha256, snapshot  # noqa: E402,F401

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--set", "teacher.epochs=2", "--set", "student.epochs=2", "--set", "data.batch_size=64",
        "--set", "teacher.width=1", "--set", "student.width=1", "--no-progress"]
ARTIFACTS = ("manifest.json", "quantize.json", "quantize.md",
             "student.nir", "student.quant.nir", "student.onnx", "teacher.onnx", "student.net")
EXPORT = ["--target", "all", "--calib", "128"]  # 128 calibration images: quicker, still fine
PNG = b"\x89PNG\r\n\x1a\n"


def copy_run(src: Path, dst: Path, with_export: bool = False) -> Path:
    keep = {"config.yaml", "metrics.json", "teacher", "student"} | ({"export"} if with_export
                                                                    else set())
    shutil.copytree(src, dst, ignore=lambda d, names: [n for n in names if Path(d) == src
                                                       and n not in keep])
    return dst


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("pipeline") / "trained"
    assert main(["teacher", "--config", "digits", str(run), *FAST]) == 0
    assert main(["distill", str(run), "--no-progress"]) == 0
    return run


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    run = copy_run(trained, tmp_path_factory.mktemp("pipeline") / "exported")
    assert main(["export", str(run), *EXPORT]) == 0
    return run


# --------------------------------------------------------------------------- export
def test_export_all_writes_manifest_and_artifacts(exported):
    out = exported / "export"
    for name in ARTIFACTS:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    m = json.loads((out / "manifest.json").read_text())
    assert m["schema"] == "kdsnn.export/1"
    assert m["source"] == {"checkpoint": "student/model.safetensors",
                           "sha256": sha256(exported / "student/model.safetensors")}
    assert {"kdsnn", "torch", "numpy", "python"} <= set(m["versions"])
    assert all(isinstance(v, str) and v for v in m["versions"].values())
    assert m["time_steps"] == 4 and m["input_shape"] == [1, 8, 8]
    assert [l["name"] for l in m["layers"]][-1] == "fc" and not m["layers"][-1]["spiking"]
    assert set(m["targets"]) == {"quant", "nir", "onnx", "lava"}
    listed = set()
    for target, info in m["targets"].items():
        assert info["files"], target
        for name, digest in info["files"].items():
            assert digest == sha256(out / name), f"{target}: {name} hash differs from the file"
            listed.add(name)
    assert listed | {"manifest.json"} == set(ARTIFACTS)  # every artifact is hashed
    assert m["targets"]["lava"]["netx"] == "student.net"
    assert m["targets"]["lava"]["latency_steps"] == len(m["layers"])
    assert set(m["targets"]["quant"]["scales"]) == {l["name"] for l in m["layers"]}
    checks = m["targets"]["onnx"]["onnxruntime"]
    assert checks["student_max_abs_diff"] < 1e-4 and checks["teacher_max_abs_diff"] < 1e-4


def test_quantized_accuracy_is_reported(exported):
    acc = json.loads((exported / "export/manifest.json").read_text())["targets"]["quant"][
        "accuracy"]
    assert acc["samples"] == 360  # the whole digits test split
    assert acc["quantized"] > 0.5 and acc["float"] > 0.5
    assert acc == json.loads((exported / "export/quantize.json").read_text())["accuracy"]
    assert json.loads((exported / "metrics.json").read_text())["quantized"] == acc
    assert "Loihi fixed-point quantization" in (exported / "export/quantize.md").read_text()


def test_export_twice_gives_identical_bytes(exported, tmp_path):
    before = {p.name: p.read_bytes() for p in (exported / "export").iterdir()}
    assert set(before) == set(ARTIFACTS)
    again = copy_run(exported, tmp_path / "again", with_export=False)
    proc = kdsnn("export", again, *EXPORT)  # a fresh interpreter ...
    assert proc.returncode == 0, proc.stderr
    assert main(["export", str(exported), *EXPORT]) == 0  # ... and the same one
    for where in (exported / "export", again / "export"):
        after = {p.name: p.read_bytes() for p in where.iterdir()}
        assert set(after) == set(before)
        differ = sorted(n for n in before if after[n] != before[n])
        assert not differ, f"not byte-identical on re-export ({where.parent.name}): {differ}"


def test_quantize_command(trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path / "q")
    assert main(["quantize", str(run), "--samples", "100", "--calib", "64"]) == 0
    assert "quantize.md" in capsys.readouterr().out
    out = run / "export"
    assert {p.name for p in out.iterdir()} == {"manifest.json", "student.quant.nir",
                                               "quantize.json", "quantize.md"}
    m = json.loads((out / "manifest.json").read_text())
    assert set(m["targets"]) == {"quant"}
    acc = m["targets"]["quant"]["accuracy"]
    assert acc["samples"] == 100 and acc["quantized"] > 0.5
    assert json.loads((run / "metrics.json").read_text())["quantized"]["samples"] == 100


# --------------------------------------------------------------------------- parity
def test_parity_emulation_equals_lava_bit_for_bit(exported, capsys):
    assert main(["parity", str(exported), "--samples", "20", "--no-progress"]) == 0
    assert "bit for bit: yes" in capsys.readouterr().out
    out = exported / "parity"
    res = json.loads((out / "parity.json").read_text())
    assert res["schema"] == "kdsnn.parity/1" and res["samples"] == 20
    assert res["bit_exact_emulation_vs_lava"] is True
    assert res["prediction_agreement"]["emulation_vs_lava"] == 1.0
    assert res["accuracy"]["emulation"] == res["accuracy"]["lava"]
    assert res["latency_steps"] == 4 and res["time_steps"] == 4
    assert [l["name"] for l in res["layers"]] == ["conv1", "conv2", "conv3"]
    for layer in res["layers"]:
        agree = layer["agreement"]["emulation_vs_lava"]
        assert len(agree) == 4 and all(a == 1.0 for a in agree), (layer["name"], agree)
        assert layer["bit_exact"] and layer["spikes"]["emulation"] == layer["spikes"]["lava"]
    assert "bit for bit" in (out / "parity.md").read_text()
    assert (out / "parity.png").read_bytes().startswith(PNG)
    metrics = json.loads((exported / "metrics.json").read_text())["parity"]
    assert metrics["bit_exact"] is True and metrics["samples"] == 20


# --------------------------------------------------------------------------- report
def test_report_writes_json_markdown_plots(exported, capsys):
    out = exported / "report"
    shutil.rmtree(out, ignore_errors=True)
    assert main(["report", str(exported), "--samples", "16"]) == 0
    assert "uJ/inference" in capsys.readouterr().out
    rep = json.loads((out / "report.json").read_text())
    assert rep["schema"] == "kdsnn.report/2" and rep["meta"]["samples"] == 16
    assert [s["label"] for s in rep["student"]] == ["torch"]
    assert set(rep["energy"]) == {"cmos45nm_fp32", "cmos45nm_int8", "loihi"}
    assert rep["teacher"]["macs"] > 0 and rep["conventions"]["applied"]["first_layer"] == "once"
    assert not (out / "report.html").exists()
    assert "## Energy per inference" in (out / "report.md").read_text()
    assert rep["files"]["plots"]
    for name in rep["files"]["plots"]:
        assert (out / name).read_bytes().startswith(PNG), name


def test_report_html_and_lava_source(exported):
    out = exported / "report"
    assert main(["report", str(exported), "--samples", "8", "--source", "both", "--html"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert [s["label"] for s in rep["student"]] == ["torch", "lava"]
    page = (out / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "data:image/svg+xml;base64," in page
    assert "http://" not in page and "https://" not in page  # self-contained


def test_report_compares_like_with_like_and_a_rerun_drops_nothing(exported, capsys):
    out = exported / "report"
    assert main(["parity", str(exported), "--samples", "8", "--stock-check", "0",
                 "--no-full-test", "--no-progress"]) == 0
    assert main(["report", str(exported), "--samples", "8", "--source", "both", "--html",
                 "--no-progress"]) == 0
    rep = json.loads((out / "report.json").read_text())
    groups = {g["key"]: g for g in rep["accuracy_groups"]}
    same = groups["same_samples"]  # teacher, float, emulation and Lava on parity's 8 samples
    assert same["n"] == 8 and {m["model"] for m in same["models"]} >= {"teacher", "float",
                                                                        "emulation", "lava"}
    assert same["bit_exact"] is True and groups["full_split"]["n"] == 360
    printed = capsys.readouterr().out
    assert f"report: {out / 'report.html'}" in printed and f"{out / 'report.md'}" in printed
    before = (out / "report.json").read_bytes()
    assert main(["report", str(exported), "--samples", "8", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--source both" in err and "--replace" in err and err.count("\n") == 1
    assert (out / "report.json").read_bytes() == before  # refused before any work
    assert main(["report", str(exported), "--samples", "8", "--replace", "--no-progress"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert [s["label"] for s in rep["student"]] == ["torch"]
    assert (out / "report.html").is_file()  # what a rerun can remake, it keeps


# --------------------------------------------------------------------------- bad input
def test_export_without_student(trained, tmp_path):
    run = copy_run(trained, tmp_path / "nostudent")
    shutil.rmtree(run / "student")
    before = snapshot(run)
    assert_usage_error(kdsnn("export", run, "--target", "all"), "no trained student")
    assert snapshot(run) == before


def test_export_unknown_target(trained, tmp_path):
    run = copy_run(trained, tmp_path / "target")
    before = snapshot(run)
    assert_usage_error(kdsnn("export", run, "--target", "loihi3"),
                       "unknown export target 'loihi3'")
    assert snapshot(run) == before


def test_export_corrupt_student_checkpoint(trained, tmp_path):
    run = copy_run(trained, tmp_path / "corrupt")
    ckpt = run / "student/model.safetensors"
    with open(ckpt, "r+b") as f:
        f.truncate(ckpt.stat().st_size // 2)
    before = snapshot(run)
    assert_usage_error(kdsnn("export", run, "--target", "all"), "model.safetensors")
    assert snapshot(run) == before


@pytest.mark.parametrize("command", [["export", "--target", "all"], ["parity"]])
def test_run_dir_does_not_exist(tmp_path, command):
    run = tmp_path / "nowhere"
    assert_usage_error(kdsnn(command[0], run, *command[1:]), "not a kdsnn run directory")
    assert not run.exists()


def _corrupt_quant_run(exported, dst: Path, how: str) -> Path:
    run = copy_run(exported, dst, with_export=True)
    qpath = run / "export/student.quant.nir"
    if how == "truncated":
        with open(qpath, "r+b") as f:
            f.truncate(qpath.stat().st_size // 2)
    else:
        qpath.write_bytes(b"this is not a NIR file\n" * 8)
    return run


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_parity_corrupt_quant_file(exported, tmp_path, how):
    run = _corrupt_quant_run(exported, tmp_path / how, how)
    before = snapshot(run)
    assert_usage_error(kdsnn("parity", run, "--samples", "5", "--no-progress"),
                       "student.quant.nir", "corrupt")
    assert snapshot(run) == before
    assert not (run / "parity").exists()
