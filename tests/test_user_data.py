"""A user's own data set (issue 30, item 3): ``kdsnn import model.nir RUN --data my.npz``,
static samples or sequences, through export, parity and report; and every file kdsnn must
refuse, refused in one line before anything is written."""
import json
import pickle
import sys
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import snapshot  # noqa: E402

import kdsnn  # noqa: E402
from kd_snn.data.static import digits_arrays  # noqa: E402
from kd_snn.errors import KdsnnError  # noqa: E402
from kdsnn.cli import main  # noqa: E402

BRAILLE = Path(__file__).parent / "data" / "nir_paper" / "braille_noDelay_noBias_subtract.nir"
T_SEQ = 10


@pytest.fixture(scope="module")
def mlp(tmp_path_factory) -> Path:
    """A dense spiking MLP reading 64 values (a flat digits image), 10 classes."""
    rng = np.random.default_rng(0)
    n = 24
    lif = nir.LIF(tau=np.full(n, 5e-4), r=np.ones(n), v_leak=np.zeros(n),
                  v_threshold=np.full(n, 0.5), v_reset=np.zeros(n))
    nodes = {"input": nir.Input(input_type={"input": np.array([64])}),
             "fc": nir.Affine(weight=rng.normal(0, 0.3, (n, 64)), bias=np.zeros(n)),
             "lif": lif, "out": nir.Affine(weight=rng.normal(0, 1, (10, n)), bias=np.zeros(10)),
             "output": nir.Output(output_type={"output": np.array([10])})}
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "out"), ("out", "output")]
    path = tmp_path_factory.mktemp("nir") / "mlp.nir"
    nir.write(str(path), nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))
    return path


def _digits(n_train=48, n_test=24):
    """digits as uint8 0..255 images (N, 1, 8, 8) and labels."""
    (xtr, ytr), (xte, yte) = digits_arrays("train"), digits_arrays("test")
    u8 = lambda x: np.round(x * 255).astype(np.uint8)  # noqa: E731
    return u8(xtr[:n_train]), ytr[:n_train], u8(xte[:n_test]), yte[:n_test]


def _sequences(n_train=16, n_test=8, seed=1):
    """Braille-like sequences (N, T, 12), graded values k/255 (what Loihi's 8-bit input
    carries exactly), labels of 7 classes."""
    r = np.random.default_rng(seed)
    x = lambda n: (r.integers(0, 256, (n, T_SEQ, 12)) * (r.random((n, T_SEQ, 12)) < .4)  # noqa
                   / 255).astype(np.float32)
    return x(n_train), r.integers(0, 7, n_train), x(n_test), r.integers(0, 7, n_test)


def _npz(path: Path, x_train, y_train, x_test, y_test, **extra) -> Path:
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, **extra)
    return path


def _ok(argv, capsys):
    rc = main([str(a) for a in argv] + ["--no-progress"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


def test_static_npz_through_export_and_report(mlp, tmp_path, capsys):
    """uint8 images (N, 1, 8, 8) for a network reading 64 values (its first layer dense):
    static, scaled by 1/255 as the shipped data sets; the same data given as float in
    [0, 1] and flat (N, 64) through the Python API gives the same student and accuracy."""
    from kd_snn.run import sample_inputs
    from kd_snn.rundir import RunDir

    xtr, ytr, xte, yte = _digits()
    data = _npz(tmp_path / "digits.npz", xtr, ytr, xte, yte)
    run = tmp_path / "run"
    out = _ok(["import", mlp, run, "--data", data], capsys)
    assert "input (1, 8, 8), T = 4" in out
    cfg = RunDir(run).load_config()
    opts = cfg.data.options
    assert cfg.data.name == "arrays" and opts["layout"] == "static"
    assert opts["file"] == str(data.resolve()) and opts["sample_shape"] == [1, 8, 8]
    x, y = sample_inputs(cfg, "test", 5)
    assert x.shape == (4, 5, 1, 8, 8) and np.array_equal(y, yte[:5])
    assert torch.equal(x[2], torch.from_numpy(xte[:5].astype(np.float32) / np.float32(255))
                       .double())
    _ok(["export", run, "--target", "quant", "--target", "nir", "--target", "onnx"], capsys)
    _ok(["report", run, "--source", "torch", "--samples", "8"], capsys)
    rep = json.loads((run / "report" / "report.json").read_text())
    assert rep["student"][0]["input_mode"] == "macs"  # analog input, as direct encoding
    first = rep["student"][0]["layers"][0]["mac_counts"]["input"]
    assert first["repeats"] is True  # a static sample repeats over the T steps

    flat = _npz(tmp_path / "flat.npz", (xtr / np.float32(255)).reshape(len(xtr), 64), ytr,
                (xte / np.float32(255)).reshape(len(xte), 64), yte)
    r = kdsnn.import_nir(tmp_path / "flat_run", mlp, data=str(flat), progress=False)
    assert r.input_shape == (64,) and r.time_steps == 4
    metrics = json.loads((run / "metrics.json").read_text())["student"]
    assert r.test_accuracy == metrics["test_accuracy"] and r.test_samples == 24


def test_sequence_npz_through_parity_and_report(tmp_path, capsys):
    """Sequences (N, T, 12) for the NIR paper's recurrent Braille network: step t of a
    sample is x[:, t], T is the data's, Lava equals the emulation bit for bit, and the
    report charges the analog first layer at every step (the input does not repeat)."""
    from kd_snn.run import sample_inputs
    from kd_snn.rundir import RunDir

    xtr, ytr, xte, yte = _sequences()
    data = _npz(tmp_path / "braille.npz", xtr, ytr, xte, yte, num_classes=np.int64(7))
    run = tmp_path / "run"
    out = _ok(["import", BRAILLE, run, "--data", data], capsys)
    assert f"input (12,), T = {T_SEQ}" in out
    cfg = RunDir(run).load_config()
    assert cfg.data.options["layout"] == "sequence" and cfg.data.time_steps == T_SEQ
    x, y = sample_inputs(cfg, "test", 3)
    assert torch.equal(x, torch.from_numpy(xte[:3]).double().transpose(0, 1))
    _ok(["export", run, "--target", "quant", "--target", "lava"], capsys)
    _ok(["parity", run, "--samples", "2", "--no-full-test"], capsys)
    parity = json.loads((run / "parity" / "parity.json").read_text())
    assert parity["bit_exact_emulation_vs_lava"] is True and parity["samples"] == 2
    _ok(["report", run, "--source", "both"], capsys)
    rep = json.loads((run / "report" / "report.json").read_text())
    first = rep["student"][0]["layers"][0]
    assert first["mac_counts"]["input"]["repeats"] is False
    assert first["macs_in"] == first["macs_per_step"] * T_SEQ  # charged at every step


def _refused(capsys, argv, *words, run=None):
    rc = main([str(a) for a in argv] + ["--no-progress"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1 and err[0].startswith("kdsnn: error: "), err
    assert "Traceback" not in err[0]
    for w in words:
        assert w in err[0], err[0]
    return err[0]


class _Payload:
    """Unpickling this would create ``marker``: an object array must never be loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _bad_files(tmp: Path) -> dict:
    """case -> (path, words the one-line error must hold)"""
    xtr, ytr, xte, yte = _digits(8, 4)
    f = lambda x: (x / np.float32(255))  # noqa: E731
    cases = {}

    def add(name, words, **arrays):
        a = dict(x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
        a.update(arrays)
        a = {k: v for k, v in a.items() if v is not None}
        path = tmp / f"{name}.npz"
        np.savez(path, **a)
        cases[name] = (path, words)

    cases["missing"] = (tmp / "nope.npz", ["not found"])
    (tmp / "text.npz").write_text("x_train,y_train\n1,2\n")
    cases["not_npz"] = (tmp / "text.npz", ["not an .npz archive"])
    good = _npz(tmp / "good.npz", xtr, ytr, xte, yte).read_bytes()
    (tmp / "truncated.npz").write_bytes(good[:len(good) // 2])
    cases["truncated"] = (tmp / "truncated.npz", ["not an .npz archive, or is truncated"])
    flipped = bytearray(good)
    at = good.find(b"\x93NUMPY") + 200  # inside x_train's data (its header takes 128)
    flipped[at:at + 16] = bytes(16)
    (tmp / "flipped.npz").write_bytes(bytes(flipped))
    cases["flipped"] = (tmp / "flipped.npz", ["corrupt"])
    (tmp / "pickle.npz").write_bytes(pickle.dumps({"x_train": xtr}))
    cases["pickle"] = (tmp / "pickle.npz", ["not an .npz archive"])
    obj = np.empty(len(xtr), dtype=object)
    obj[:] = [_Payload(tmp / "UNPICKLED") for _ in range(len(xtr))]
    add("object", ["'x_train'", "Python objects", "never unpickles"], x_train=obj)
    add("no_key", ["no 'y_test'"], y_test=None)
    add("complex", ["'x_test'", "complex", "real numbers"], x_test=f(xte) + 0j)
    add("strings", ["'x_train'", "dtype <U"], x_train=np.array([["a"]] * len(xtr)))
    add("nan", ["NaN"], x_train=np.where(xtr > 100, np.nan, f(xtr)))
    add("inf", ["infinite"], x_test=np.where(xte > 100, np.inf, f(xte)))
    add("above_one", ["[0, 1]", "scale to [0, 1] or give uint8 0..255"], x_train=f(xtr) * 2)
    add("negative", ["from -1", "scale to [0, 1]"], x_test=f(xte) - 1)
    add("int16", ["int16 from 0 to 255", "uint8"], x_train=xtr.astype(np.int16))
    add("float_labels", ["'y_train'", "labels must be integers"], y_train=ytr.astype(float))
    add("labels_2d", ["'y_test'", "one label per sample"], y_test=yte[:, None])
    add("labels_short", ["'y_train'", f"({len(xtr)},)"], y_train=ytr[:-1])
    add("negative_label", ["negative label -1"], y_test=np.r_[yte[:-1], -1])
    add("label_too_big", ["label 10", "10 outputs", "0..9"], y_train=np.r_[ytr[:-1], 10])
    add("num_classes", ["num_classes = 12", "10 outputs"], num_classes=np.int64(12))
    add("empty", ["'x_test'", "at least one sample"], x_test=xte[:0], y_test=yte[:0])
    add("splits_disagree", ["x_train's samples are (1, 8, 8)", "x_test's are (1, 8, 9)"],
        x_test=np.zeros((len(xte), 1, 8, 9), np.uint8))
    add("no_fit", ["(7, 7) fit neither way", "(N, 64)", "(N, T, 64)"],
        x_train=np.zeros((8, 7, 7), np.uint8), x_test=np.zeros((4, 7, 7), np.uint8))
    return cases


def test_bad_files_are_refused_in_one_line_and_write_nothing(mlp, tmp_path, capsys):
    """Every hostile or malformed file: one line naming the file's problem, exit 2, no run
    directory made; an existing run (here: --force into an imported one) stays as it was."""
    cases = _bad_files(tmp_path)
    for name, (path, words) in cases.items():
        run = tmp_path / f"run_{name}"
        msg = _refused(capsys, ["import", mlp, run, "--data", path], *words)
        assert "data file" in msg, (name, msg)
        assert not run.exists(), name
    assert not (tmp_path / "UNPICKLED").exists()  # the object array was never unpickled
    with pytest.raises(KdsnnError, match="NaN"):  # the Python API refuses alike
        kdsnn.import_nir(tmp_path / "api", mlp, data=str(cases["nan"][0]), progress=False)
    good = tmp_path / "good_run"
    _ok(["import", mlp, good, "--data", tmp_path / "good.npz"], capsys)
    before = snapshot(good)
    _refused(capsys, ["import", mlp, good, "--data", cases["label_too_big"][0], "--force"],
             "label 10")
    assert snapshot(good) == before


def test_sequence_refusals(tmp_path, capsys):
    xtr, ytr, xte, yte = _sequences(4, 2)
    data = _npz(tmp_path / "seq.npz", xtr, ytr, xte, yte)
    run = tmp_path / "run"
    _refused(capsys, ["import", BRAILLE, run, "--data", data, "--time-steps", "7"],
             "--time-steps 7", f"have {T_SEQ} steps")
    _refused(capsys, ["import", BRAILLE, run, "--data", data, "--teacher", "t.onnx"],
             "sequences")
    _refused(capsys, ["import", BRAILLE, run, "--data", "arrays"], "--data FILE.npz")
    assert not run.exists()


def test_a_changed_or_vanished_file_is_refused_later(mlp, tmp_path, capsys):
    xtr, ytr, xte, yte = _digits(16, 8)
    data = _npz(tmp_path / "d.npz", xtr, ytr, xte, yte)
    run = tmp_path / "run"
    _ok(["import", mlp, run, "--data", data], capsys)
    before = snapshot(run)
    _npz(data, xtr, ytr, xte, (yte + 1) % 10)  # same shapes, other labels
    _refused(capsys, ["export", run, "--target", "quant"], "changed since the run was made")
    data.unlink()
    _refused(capsys, ["export", run, "--target", "quant"], "is missing")
    assert snapshot(run) == before
