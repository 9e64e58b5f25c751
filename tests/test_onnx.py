"""ONNX export: onnxruntime vs PyTorch for a teacher-like CNN and a folded student graph;
byte-identical re-exports; atomic writes; dynamic batch."""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn

from export.graph import Connection, DeployGraph, NeuronLayer, run_float
from export.onnx_export import (StudentModule, check_onnx, export_onnx_student,
                                export_onnx_teacher)
from kd_snn.errors import KdsnnError

T = 5


class TinyTeacher(nn.Module):
    def __init__(self, k=7):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.fc = nn.Linear(16, k)

    def forward_features(self, x):
        f = self.features(x)
        return self.fc(f.mean((2, 3))), f

    def forward(self, x):
        return self.forward_features(x)[0]


def _teacher():
    torch.manual_seed(0)
    m = TinyTeacher()
    with torch.no_grad():  # non-trivial BN statistics
        for bn in (m.features[1], m.features[4]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    return m


def _layer(name, shape, conns, alpha=0.0, beta=0.5, thr=1.0, bias=0.0, spiking=True):
    return NeuronLayer(name, shape, tuple(conns), bias=bias, alpha=alpha, beta=beta,
                       threshold=thr, spiking=spiking)


def dyadic(a, bits):
    """``a`` rounded to a multiple of 2**-bits."""
    return np.round(np.asarray(a) * 2.0 ** bits) / 2.0 ** bits


def student_graph(encoding="direct", seed=0):
    """Residual student: conv -> CUBA conv -> fan-in (conv + 1x1) -> s2 conv & pools -> fc.

    Weights, biases and inputs are multiples of 2**-3 / 2**-4 and the decays 1/2 or 1/4,
    so every membrane needs < 24 significant bits: float32 computes it exactly, in any
    summation order.  onnxruntime's kernels and torch's then agree bit for bit on every
    CPU, so the spikes can be compared exactly (thresholds only enter comparisons).
    """
    rng = np.random.default_rng(seed)
    w = lambda *s: dyadic(rng.normal(0, 0.5, s), 3)  # noqa: E731
    b = lambda scale, *s: dyadic(rng.normal(0, scale, s), 4)  # noqa: E731
    l1 = _layer("stem", (4, 8, 8), [Connection("input", "conv", w(4, 3, 3, 3), padding=(1, 1))],
                beta=0.5, thr=0.8, bias=b(0.2, 4, 8, 8))
    l2 = _layer("a", (4, 8, 8), [Connection("stem", "conv", w(4, 4, 3, 3), padding=(1, 1))],
                alpha=0.5, beta=0.5, thr=rng.uniform(0.4, 1.0, (4, 8, 8)), bias=b(0.1, 4, 8, 8))
    l3 = _layer("b", (4, 8, 8), [Connection("a", "conv", w(4, 4, 3, 3), padding=(1, 1)),
                                 Connection("stem", "conv", w(4, 4, 1, 1))],
                beta=0.5, thr=0.9, bias=0.125)
    l4 = _layer("down", (6, 4, 4), [Connection("b", "conv", w(6, 4, 3, 3), stride=(2, 2),
                                               padding=(1, 1)),
                                    Connection("stem", "conv", w(6, 4, 2, 2), stride=(2, 2))],
                beta=0.5, thr=0.7)
    l5 = _layer("pool", (4, 4, 4), [Connection("b", "avgpool", kernel=(2, 2)),
                                    Connection("stem", "sumpool", kernel=(2, 2))],
                beta=0.25, thr=0.3)
    l6 = _layer("fc1", (10,), [Connection("down", "dense", w(10, 96)),
                               Connection("pool", "dense", w(10, 64))],
                beta=0.5, thr=0.6, bias=b(0.2, 10))
    ro = _layer("readout", (7,), [Connection("fc1", "dense", w(7, 10))],
                bias=b(0.2, 7), spiking=False)
    return DeployGraph((3, 8, 8), (l1, l2, l3, l4, l5, l6, ro), time_steps=T, encoding=encoding)


def test_teacher_onnx_matches_torch(tmp_path):
    m = _teacher()
    path = export_onnx_teacher(m, (3, 8, 8), tmp_path / "teacher.onnx")
    onnx.checker.check_model(onnx.load(str(path)))
    assert m.training  # mode restored
    m.eval()
    for batch in (1, 5):  # dynamic batch axis
        x = torch.randn(batch, 3, 8, 8, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            ref = m(x)
        assert check_onnx(path, x, ref) < 1e-5


@pytest.mark.parametrize("encoding", ["direct", "poisson"])
def test_student_onnx_matches_run_float(tmp_path, encoding):
    g = student_graph(encoding)
    path = export_onnx_student(g, tmp_path / "student.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version == 17
    static = encoding == "direct"
    assert [i.name for i in model.graph.input] == ["x"]
    assert [o.name for o in model.graph.output] == ["logits", "spikes"]
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        gen = torch.Generator().manual_seed(batch)
        if static:
            img = torch.as_tensor(dyadic(torch.rand(batch, 3, 8, 8, generator=gen) * 2, 4))
            x_seq = img.unsqueeze(0).repeat(T, 1, 1, 1, 1)
            feed = img
        else:
            x_seq = (torch.rand(T, batch, 3, 8, 8, generator=gen) < 0.4).float()
            feed = x_seq
        logits, spikes = run_float(g, x_seq, record=True)
        last = spikes["fc1"]
        assert last.sum() > 0 and (1 - last).sum() > 0
        out_logits, out_spikes = sess.run(None, {"x": feed.numpy()})
        assert out_spikes.shape == tuple(last.shape)
        assert np.array_equal(out_spikes, last.numpy())  # spikes equal
        np.testing.assert_allclose(out_logits, logits.numpy(), rtol=1e-5, atol=1e-5)
        assert check_onnx(path, feed, (logits, last)) < 1e-5
        # the torch module itself equals run_float exactly
        with torch.no_grad():
            tl, ts = StudentModule(g)(feed)
        assert torch.equal(ts, last) and torch.equal(tl, logits)


def test_exports_are_byte_identical_and_atomic(tmp_path):
    g = student_graph()
    a = export_onnx_student(g, tmp_path / "s1.onnx").read_bytes()
    b = export_onnx_student(student_graph(), tmp_path / "s2.onnx").read_bytes()
    assert a == b
    m = _teacher()
    t1 = export_onnx_teacher(m, (3, 8, 8), tmp_path / "t1.onnx").read_bytes()
    t2 = export_onnx_teacher(m, (3, 8, 8), tmp_path / "t2.onnx").read_bytes()
    assert t1 == t2
    assert sorted(os.listdir(tmp_path)) == ["s1.onnx", "s2.onnx", "t1.onnx", "t2.onnx"]
    # a failing export leaves the existing file untouched and no temp file behind
    with pytest.raises(Exception):
        export_onnx_teacher(m, (5, 8, 8), tmp_path / "t1.onnx")  # wrong channel count
    assert (tmp_path / "t1.onnx").read_bytes() == t1
    assert sorted(os.listdir(tmp_path)) == ["s1.onnx", "s2.onnx", "t1.onnx", "t2.onnx"]


def test_check_onnx_reports_difference(tmp_path):
    m = _teacher().eval()
    path = export_onnx_teacher(m, (3, 8, 8), tmp_path / "t.onnx")
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        ref = m(x)
    assert check_onnx(path, {"image": x}, [ref]) < 1e-5
    assert check_onnx(path, x, ref + 0.5) == pytest.approx(0.5, abs=1e-5)
    with pytest.raises(KdsnnError, match="shape"):
        check_onnx(path, x, ref[:1])


def test_student_export_refuses_bad_input(tmp_path):
    with pytest.raises(KdsnnError):
        export_onnx_student("not a graph", tmp_path / "x.onnx")
    with pytest.raises(KdsnnError, match="shape"):
        export_onnx_teacher(_teacher(), (8, 8), tmp_path / "x.onnx")
