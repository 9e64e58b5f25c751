"""``kdsnn import``: networks written by other libraries' NIR exporters go through kdsnn's
whole chain (import -> quantize/export -> Lava parity -> report) as a distilled student does."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import foreign_nir as F  # noqa: E402
from cli_helpers import assert_usage_error, kdsnn, snapshot  # noqa: E402

from kdsnn.cli import main  # noqa: E402


#: library -> (make(out_dir) -> ForeignExport, extra import args)
LIBRARIES = {
    "snntorch": (lambda d: F.snntorch_sequential(d, per_layer=True), []),
    "snntorch_spiking_output": (F.snntorch_spiking_output, []),
    "snntorch_recurrent": (F.snntorch_recurrent, []),  # RLeaky: a NIR cycle
    "norse": (lambda d: F.norse_mlp(d, per_layer=True), ["--dt", "1e-6"]),
    "spikingjelly_residual": (lambda d: F.spikingjelly_net(d, residual=True), []),
    "sinabs": (lambda d: F.sinabs_net(d), ["--dt", "1"]),
}


def _foreign(name, out_dir):
    make, extra = LIBRARIES[name]
    try:
        return make(out_dir), extra
    except F.LibraryMissing as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("library", sorted(LIBRARIES))
def test_a_foreign_network_runs_the_chain_to_bit_exact_lava(library, tmp_path, capsys):
    from export.graph import run_float
    from kdsnn.runs import load_student
    from kd_snn.rundir import RunDir

    fe, extra = _foreign(library, tmp_path / "lib")
    run = tmp_path / "run"
    assert main(["import", str(fe.path), str(run), "--data", "digits", "--no-progress",
                 *extra]) == 0
    out = capsys.readouterr().out
    assert "imported" in out and "next: kdsnn export" in out
    # the run's student is the library's network: kdsnn's forward == the library's forward
    _, _, graph = load_student(RunDir(run))
    x = fe.inputs.double().reshape(fe.inputs.shape[0], fe.inputs.shape[1], *graph.input_shape)
    logits, _ = run_float(graph, x)
    assert np.allclose(logits.numpy(), fe.readout.double().mean(0).numpy(), atol=1e-5)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["student"]["test_samples"] == 360
    record = json.loads((run / "student/imported.json").read_text())
    if library == "snntorch_spiking_output":  # read by spike counts: an added readout
        assert graph.layers[-1].name == "spike_count" and "spike counts" in record["readout"]
        assert "reads it by spike counts" in out
    else:
        assert "spike_count" not in record["layers"] and "added" not in record["readout"]
    # then the whole chain
    assert main(["export", str(run), "--target", "lava", "--calib", "64", "--no-progress"]) == 0
    assert main(["parity", str(run), "--samples", "6", "--stock-check", "1", "--no-progress",
                 "--no-full-test"]) == 0
    parity = json.loads((run / "parity/parity.json").read_text())
    assert parity["bit_exact_emulation_vs_lava"] is True
    assert parity["stock_conv_check"]["bit_exact"] is True
    assert parity["process_network"]["file"] == "export/student.quant.nir"
    assert "built from export/student.quant.nir" in capsys.readouterr().out


def _onnx_teacher(path: Path, size: int = 8, classes: int = 10) -> torch.nn.Module:
    from export.onnx_export import export_onnx_teacher

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
        torch.nn.Conv2d(4, 6, 3, padding=1, groups=2), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(6 * (size // 2) ** 2, classes)).eval()
    with torch.no_grad():
        net[3].weight[0, 0] = 0.0  # zero weights: the nonzero-weight counts differ
    export_onnx_teacher(net, (1, size, size), path)
    return net


def _teacher_checkpoint(path: Path, data: str) -> Path:
    """A kdsnn ANN teacher checkpoint (untrained) that says it was trained on ``data``."""
    from kd_snn import checkpoint as ckpt
    from kd_snn.run import build_model

    spec = {"in_channels": 1, "input_size": [8, 8], "kwargs": {}, "name": "cnn",
            "normalize": "none", "num_classes": 10, "spiking": False, "width": 1}
    ckpt.save_checkpoint(path, build_model(spec, "test"), {"stage": "teacher", "model": spec,
                                                           "data": data})
    return path


def test_onnx_teacher_counts_equal_the_torch_counts(tmp_path):
    from hardware.energy import count_teacher
    from hardware.energy.teacher_onnx import count_onnx_teacher

    net = _onnx_teacher(tmp_path / "t.onnx")
    x = torch.rand(5, 1, 8, 8)
    x[x < 0.3] = 0
    ref = count_teacher(net, (1, 8, 8), x=x)
    got = count_onnx_teacher(tmp_path / "t.onnx", (1, 8, 8), x=x)
    assert len(got.layers) == len(ref.layers) == 3
    for a, b in zip(got.layers, ref.layers):
        assert (a.in_bounds, a.padded, a.input, a.in_bounds_nzw, a.padded_nzw) == \
            (b.in_bounds, b.padded, b.input, b.in_bounds_nzw, b.padded_nzw)
        assert (a.nonzero is None) == (b.nonzero is None)
        if a.nonzero is not None:
            assert a.nonzero == pytest.approx(b.nonzero) and \
                a.nonzero_nzw == pytest.approx(b.nonzero_nzw)


def test_import_with_an_onnx_teacher_reports_the_ratio(tmp_path, capsys):
    fe, extra = _foreign("snntorch", tmp_path / "lib")
    _onnx_teacher(tmp_path / "teacher.onnx")
    run = tmp_path / "run"
    assert main(["import", str(fe.path), str(run), "--data", "digits", "--teacher",
                 str(tmp_path / "teacher.onnx"), "--no-progress"]) == 0
    assert (run / "teacher/model.onnx").is_file()
    assert main(["report", str(run), "--samples", "16", "--no-progress"]) == 0
    report = json.loads((run / "report/report.json").read_text())
    text = json.dumps(report)
    assert "teacher" in text and report["teacher"]
    assert main(["eval", str(run), "--which", "student", "--no-progress"]) == 0
    assert "student test accuracy" in capsys.readouterr().out


def test_import_without_teacher_reports_without_ratio(tmp_path):
    fe, _ = _foreign("snntorch", tmp_path / "lib")
    run = tmp_path / "run"
    assert main(["import", str(fe.path), str(run), "--data", "digits", "--no-progress"]) == 0
    assert main(["report", str(run), "--samples", "8", "--no-progress"]) == 0
    assert (run / "report/report.md").is_file()


# ---------------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def snn_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("lib")
    try:
        return F.snntorch_sequential(d, per_layer=True).path
    except F.LibraryMissing as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("case, words", [
    ("missing", ("NIR file not found",)),
    ("not_nir", ("NIR",)),
    ("data", ("unknown",)),
    ("shape", ("takes input",)),
    ("time_steps", ("--time-steps must be > 0",)),
    ("teacher", ("not found",)),
    ("huge_time_steps", ("data.time_steps", "<=")),
    ("teacher_other_data", ("trained on 'fashion_mnist'", "not 'digits'")),
    ("onnx_input", ("takes input 1x28x28", "1x8x8")),
    ("onnx_classes", ("gives 7 scores", "10 classes")),
])
def test_bad_import_is_one_line_and_writes_nothing(snn_file, tmp_path, case, words):
    run = tmp_path / "run"
    model, data, extra = str(snn_file), "digits", []
    if case == "missing":
        model = str(tmp_path / "nope.nir")
    elif case == "not_nir":
        bad = tmp_path / "bad.nir"
        bad.write_bytes(b"not an HDF5 file\n" * 20)
        model = str(bad)
    elif case == "data":
        data = "no_such_data"
    elif case == "shape":
        data = "fashion_mnist"  # 28x28: the file takes 8x8
    elif case == "time_steps":
        extra = ["--time-steps", "0"]
    elif case == "teacher":
        extra = ["--teacher", str(tmp_path / "missing.onnx")]
    elif case == "huge_time_steps":
        extra = ["--time-steps", str(10 ** 9)]
    elif case == "teacher_other_data":
        extra = ["--teacher", str(_teacher_checkpoint(tmp_path / "t.safetensors",
                                                      "fashion_mnist"))]
    elif case in ("onnx_input", "onnx_classes"):
        _onnx_teacher(tmp_path / "t.onnx", **({"size": 28} if case == "onnx_input"
                                              else {"classes": 7}))
        extra = ["--teacher", str(tmp_path / "t.onnx")]
    assert_usage_error(kdsnn("import", model, run, "--data", data, "--no-progress", *extra),
                       *words)
    assert not run.exists()


def test_reimport_needs_force_and_per_neuron_thresholds_stop_at_quantize(tmp_path):
    fe = F.snntorch_sequential(tmp_path / "lib", per_layer=False)  # per-neuron thresholds
    run = tmp_path / "run"
    proc = kdsnn("import", fe.path, run, "--data", "digits", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "Loihi cannot run it as it is" in proc.stdout
    before = snapshot(run)
    assert_usage_error(kdsnn("import", fe.path, run, "--data", "digits", "--no-progress"),
                       "--force")
    assert_usage_error(kdsnn("export", run, "--target", "lava", "--no-progress"),
                       "cannot quantize", "threshold")
    assert_usage_error(kdsnn("distill", run, "--no-progress"), "imported from NIR")
    assert snapshot(run) == before


@pytest.fixture(scope="module")
def bad_nir(tmp_path_factory):
    from test_nir_foreign import _bad_files
    return _bad_files(tmp_path_factory.mktemp("bad"))


def test_every_bad_nir_file_is_one_line_at_import_and_writes_nothing(bad_nir, tmp_path,
                                                                     capsys):
    from test_nir_foreign import BAD
    for case in BAD:
        path, _ = bad_nir[case]
        run = tmp_path / case.replace(" ", "_")
        assert main(["import", str(path), str(run), "--data", "digits", "--no-progress"]) == 2
        err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
        assert len(err) == 1 and err[0].startswith("kdsnn: error: "), (case, err)
        assert not run.exists(), case


def test_import_into_a_run_that_holds_a_teacher(tmp_path, capsys):
    fe, _ = _foreign("snntorch", tmp_path / "lib")
    run = tmp_path / "run"
    assert main(["teacher", "--config", "digits", str(run), "--set", "teacher.epochs=1",
                 "--set", "teacher.width=1", "--no-progress"]) == 0
    assert main(["import", str(fe.path), str(run), "--data", "fashion_mnist",
                 "--no-progress"]) == 2
    assert "is a run on 'digits'" in capsys.readouterr().err
    assert main(["import", str(fe.path), str(run), "--data", "digits", "--no-progress"]) == 0
    assert main(["report", str(run), "--samples", "8", "--no-progress"]) == 0
    report = json.loads((run / "report/report.json").read_text())
    assert report["teacher"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"teacher", "student"} <= set(metrics)


def test_force_reimport_clears_what_the_old_student_made(tmp_path, capsys):
    """--force replaces the student and drops export/, parity/ and report/ (made from the
    old one); an export left from another student is refused by parity, never mixed."""
    old = F.snntorch_sequential(tmp_path / "a", seed=0, per_layer=True)
    new = F.snntorch_sequential(tmp_path / "b", seed=3, per_layer=True)
    run = tmp_path / "run"
    assert main(["import", str(old.path), str(run), "--data", "digits", "--no-progress"]) == 0
    assert main(["export", str(run), "--target", "lava", "--calib", "32",
                 "--no-progress"]) == 0
    assert main(["report", str(run), "--samples", "4", "--source", "torch",
                 "--no-progress"]) == 0
    stale = (run / "export/student.quant.nir").read_bytes()
    assert main(["import", str(new.path), str(run), "--data", "digits", "--force",
                 "--no-progress"]) == 0
    assert not [p for sub in ("export", "parity", "report") for p in (run / sub).rglob("*")
                if p.is_file()]
    # an export that outlived its student (copied back by hand) is refused in one line
    (run / "export").mkdir(exist_ok=True)
    manifest = {"source": {"checkpoint": "student/model.nir", "sha256": "0" * 64}}
    (run / "export/manifest.json").write_text(json.dumps(manifest))
    (run / "export/student.quant.nir").write_bytes(stale)
    capsys.readouterr()
    assert main(["parity", str(run), "--samples", "2", "--no-progress", "--no-full-test"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "made from another student" in err[0]


def test_teacher_rules_for_a_run_that_has_one(tmp_path, capsys):
    """A run's own kdsnn teacher is never replaced by --teacher; an imported one may be,
    with --force; without --teacher the run's T and teacher are kept."""
    fe = F.snntorch_sequential(tmp_path / "lib", per_layer=True)
    onnx = tmp_path / "t.onnx"
    _onnx_teacher(onnx)
    run = tmp_path / "run"
    assert main(["teacher", "--config", "digits", str(run), "--set", "teacher.epochs=1",
                 "--set", "teacher.width=1", "--set", "data.time_steps=3",
                 "--no-progress"]) == 0
    before = snapshot(run)
    capsys.readouterr()
    assert main(["import", str(fe.path), str(run), "--data", "digits", "--teacher", str(onnx),
                 "--no-progress"]) == 2
    assert "already has a teacher" in capsys.readouterr().err
    assert snapshot(run) == before
    # T: the run says 3, the data set's default differs; no --time-steps -> the run's T
    assert main(["import", str(fe.path), str(run), "--data", "digits", "--no-progress"]) == 0
    record = json.loads((run / "student/imported.json").read_text())
    assert record["time_steps"] == 3 and record["dt"] == pytest.approx(1e-4)
    assert not (run / "teacher/model.onnx").exists()
    # an imported teacher can be replaced with --force
    other = tmp_path / "other"
    assert main(["import", str(fe.path), str(other), "--data", "digits", "--teacher",
                 str(onnx), "--no-progress"]) == 0
    ckpt = _teacher_checkpoint(tmp_path / "t.safetensors", "digits")
    assert main(["import", str(fe.path), str(other), "--data", "digits", "--teacher",
                 str(ckpt), "--force", "--no-progress"]) == 0
    assert (other / "teacher/model.safetensors").is_file()
    assert not (other / "teacher/model.onnx").exists()
