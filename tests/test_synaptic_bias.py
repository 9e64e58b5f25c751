"""Synaptic biases (issue 30, item 2): a constant current into a layer's synaptic input,
``i = alpha*i + W x + b``, expressed as a dense connection from the always-on source
``export.graph.CLOCK`` (on Loihi a bias axon).  The NIR-paper Braille file with biases is
in tests/test_nir_recurrent.py; here the construction rules, a convolutional layer's bias
in Lava, the membrane-bias form of a layer without current decay, and the ONNX export."""
import numpy as np
import pytest
import torch

from export.graph import CLOCK, Connection, DeployGraph, NeuronLayer, float_logits, run_float


def _conv_graph(alpha=0.5, T=4):
    rng = np.random.default_rng(1)
    conv = Connection("input", "conv", rng.normal(0, 1, (3, 2, 3, 3)), padding=(1, 1))
    clock = Connection(CLOCK, "dense", rng.normal(0, 0.4, (48, 1)))
    a = NeuronLayer("a", (3, 4, 4), (conv, clock), 0.0, alpha, 0.8, 1.0)
    out = NeuronLayer("r", (3,), (Connection("a", "dense", rng.normal(0, 1, (3, 48))),),
                      0.1, 0.0, 0.0, 1.0, spiking=False)
    return DeployGraph((2, 4, 4), (a, out), T)


def test_a_clock_connection_is_a_constant_current_each_step():
    g = _conv_graph()
    x = torch.rand(4, 3, 2, 4, 4, dtype=torch.float64)
    _, rec = run_float(g, x, record=True)
    a = g.layers[0]
    w = torch.as_tensor(a.connections[0].weight)
    b = torch.as_tensor(a.connections[1].weight[:, 0]).reshape(3, 4, 4)
    i = v = torch.zeros(3, 3, 4, 4, dtype=torch.float64)
    for t in range(4):
        i = 0.5 * i + torch.nn.functional.conv2d(x[t], w, padding=1) + b
        v = 0.8 * v + i
        s = (v > 1.0).double()
        v = v * (1 - s)
        assert torch.equal(s, rec["a"][t])
    torch.testing.assert_close(float_logits(g, x), run_float(g, x)[0], rtol=0, atol=1e-12)


def test_construction_rules():
    w = np.ones((3, 1))
    ff = Connection("input", "dense", np.ones((3, 2)))
    with pytest.raises(ValueError, match="one column"):
        Connection(CLOCK, "dense", np.ones((3, 2)))
    with pytest.raises(ValueError, match="invalid layer name"):
        NeuronLayer(CLOCK, (3,), (ff,), 0, 0, 0, 1)
    two = NeuronLayer("a", (3,), (ff, Connection(CLOCK, "dense", w),
                                  Connection(CLOCK, "dense", w)), 0, 0.5, 0, 1)
    with pytest.raises(ValueError, match="one dense connection into a spiking layer"):
        DeployGraph((2,), (two,))
    only = NeuronLayer("a", (3,), (Connection(CLOCK, "dense", w),), 0, 0.5, 0, 1)
    with pytest.raises(ValueError, match="only a recurrent or clock input"):
        DeployGraph((2,), (only,))
    readout = NeuronLayer("r", (3,), (ff, Connection(CLOCK, "dense", w)), 0, 0, 0, 1,
                          spiking=False)
    with pytest.raises(ValueError, match="readout's bias is its membrane bias"):
        DeployGraph((2,), (readout,))


def test_conv_layer_bias_in_lava_equals_the_emulation():
    """A (C, H, W) layer's bias axon: its rows in C, H, W order become Lava's (W, H, C)."""
    import lava.proc.lif.process  # noqa: F401 - Lava first (multiprocessing start method)

    from export.emulate import emulate
    from export.quantize import encode_input, quantize
    from hardware.lava_sim import LavaRunner
    g = _conv_graph()
    x = torch.rand(4, 4, 2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    q = quantize(g, x)
    xi = encode_input(x)
    v_emu, s_emu = emulate(q, xi)
    with LavaRunner(q, chunk_samples=3, conv_model="fast") as runner:
        v_lava, s_lava = runner.run(xi)
    assert int(s_emu["a"].sum()) > 0
    assert torch.equal(v_emu, v_lava) and torch.equal(s_emu["a"], s_lava["a"])


def test_without_current_decay_nir_writes_the_membrane_bias(tmp_path):
    """alpha = 0: a synaptic bias is the membrane bias exactly; NIR gets it as an Affine
    bias into a LIF (as before), read back as the membrane bias, same spikes."""
    from export.nir_io import nir_to_graph, write_nir
    rng = np.random.default_rng(3)
    a = NeuronLayer("a", (4,), (Connection("input", "dense", rng.normal(0, 1, (4, 3))),
                                Connection(CLOCK, "dense", rng.normal(0, .5, (4, 1)))),
                    0.0, 0.0, 0.7, 1.0)
    out = NeuronLayer("r", (2,), (Connection("a", "dense", rng.normal(0, 1, (2, 4))),),
                      0.0, 0.0, 0.0, 1.0, spiking=False)
    g = DeployGraph((3,), (a, out), 6)
    g2 = nir_to_graph(write_nir(g, tmp_path / "g.nir"))
    assert [c.source for c in g2.layers[0].connections] == ["input"]
    assert np.allclose(g2.layers[0].bias, g.layers[0].connections[1].weight[:, 0])
    x = torch.rand(6, 5, 3, dtype=torch.float64)
    assert torch.equal(run_float(g, x, record=True)[1]["a"], run_float(g2, x, record=True)[1]["a"])


def test_onnx_student_adds_the_bias_each_step(tmp_path):
    pytest.importorskip("onnxruntime")
    from export.onnx_export import check_onnx, export_onnx_student
    g = _conv_graph()
    x = torch.rand(4, 3, 2, 4, 4)
    path = export_onnx_student(g, tmp_path / "student.onnx", static_input=False)
    logits, rec = run_float(g, x.double(), record=True)
    assert check_onnx(path, x.numpy(), [logits.numpy(), rec["a"].numpy()]) < 1e-4
