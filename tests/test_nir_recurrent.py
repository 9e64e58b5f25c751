"""Recurrent spiking networks from NIR (issue 30, item 2): a neuron layer recurrent onto
itself through a Linear/Affine (a NIR cycle neuron -> Affine -> neuron, as snntorch's
RLeaky/RSynaptic and the NIR paper's Braille networks write it).

Semantics (snntorch's, norse's): the recurrent input at step t is the layer's spikes of
step t - 1, none at t = 0.  kdsnn's float forward equals norse's ``from_nir`` forward of
the NIR paper's Braille file spike for spike; the integer emulation and Lava's stock
fixed_pt models run the quantized graph bit for bit, samples streamed back to back (the
recurrent Dense's buffer is emptied between samples; without that the next sample would
start with the last spikes of the previous one, which the test shows).
"""
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from export.graph import float_logits, run_float
from export.nir_io import nir_to_graph, write_nir
from foreign_nir import norse_forward
from kd_snn.errors import KdsnnError

PAPER = Path(__file__).parent / "data" / "nir_paper"
BRAILLE = PAPER / "braille_noDelay_noBias_subtract.nir"
BRAILLE_BIAS = PAPER / "braille_noDelay_bias_zero.nir"


def _spikes(n, T, B, seed, rate=0.3):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((T, B, n), generator=g) < rate).float()


def test_braille_imports_with_its_recurrence():
    g = nir_to_graph(BRAILLE)
    assert [(l.name, l.shape) for l in g.layers] == [("lif1_lif", (40,)), ("lif2", (7,))]
    conns = g.layers[0].connections
    assert [(c.source, c.kind) for c in conns] == [("input", "dense"), ("lif1_lif", "dense")]
    w_rec = nir.read(str(BRAILLE)).nodes["lif1.w_rec"].weight
    assert np.array_equal(conns[1].weight, w_rec.astype(np.float64))
    assert g.has_recurrence()
    # CubaLIF at dt = 1e-4: alpha 0.75, beta 0.85 (layer 2: 0.45, 0.7), threshold 1
    assert np.allclose(g.layers[0].alpha, 0.75) and np.allclose(g.layers[0].beta, 0.85)
    assert np.allclose(g.layers[0].threshold, 1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_braille_float_forward_equals_norse(seed):
    T = 40
    x = _spikes(12, T, 1, seed)
    want = norse_forward(nir.read(str(BRAILLE)), x, dt=1e-4)
    g = nir_to_graph(BRAILLE)
    _, rec = run_float(g, x.double(), record=True)
    assert want.sum() > 0 and rec["lif1_lif"].sum() > 0
    assert torch.equal(rec["lif2"].float().reshape(want.shape), want)


def test_recurrence_is_the_previous_step_and_round_trips(tmp_path):
    """The recurrent input at step t is the spikes of step t - 1 (checked against a loop
    written here); the graph written back to NIR keeps the cycle and reads back the same;
    float_logits (layer by layer elsewhere) runs the recurrence."""
    g = nir_to_graph(BRAILLE)
    x = _spikes(12, 25, 3, 5).double()
    _, rec = run_float(g, x, record=True)
    l1 = g.layers[0]
    w_in, w_rec = (torch.as_tensor(c.weight) for c in l1.connections)
    a, b = (torch.as_tensor(getattr(l1, k)) for k in ("alpha", "beta"))
    i = v = s = torch.zeros(3, 40, dtype=torch.float64)
    for t in range(x.shape[0]):
        i = a * i + x[t] @ w_in.T + s @ w_rec.T  # s: the spikes of step t - 1
        v = b * v + i
        s = (v > 1.0).double()
        v = v * (1 - s)
        assert torch.equal(s, rec["lif1_lif"][t])
    path = write_nir(g, tmp_path / "braille.nir")
    back = nir.read(str(path))
    assert any(a_ == b_ or (b_, a_) in back.edges for a_, b_ in back.edges)  # a cycle
    g2 = nir_to_graph(path)
    _, rec2 = run_float(g2, x, record=True)
    assert all(torch.equal(rec[k], rec2[k]) for k in rec)
    from export.imported import fit_to_data
    gf = fit_to_data(g, (12,), 7, 25, "direct")
    torch.testing.assert_close(float_logits(gf, x), run_float(gf, x)[0], rtol=0, atol=0)


@pytest.fixture(scope="module")
def braille_quant():
    from export.imported import fit_to_data
    from export.quantize import encode_input, quantize
    T = 20
    g = fit_to_data(nir_to_graph(BRAILLE), (12,), 7, T, "direct")
    x = _spikes(12, T, 6, 11, rate=0.7).double()
    q = quantize(g, x)
    return g, q, x, encode_input(x)


def test_braille_quantized_keeps_the_float_spikes(braille_quant):
    g, q, x, xi = braille_quant
    rep = q.metadata["report"]
    assert rep["lif1_lif"]["spike_agreement"] > 0.95 and rep["lif2"]["spike_agreement"] > 0.9
    assert rep["_readout"]["argmax_agreement"] >= 5 / 6


def test_braille_lava_equals_the_emulation_bit_for_bit(braille_quant, monkeypatch):
    """Lava's stock fixed_pt LIF and Dense (the recurrent Dense included), 6 samples
    streamed back to back in segments of 4: every spike of both layers and the readout
    equal the emulation's.  Without emptying the recurrent buffer between samples the run
    differs (a sample would start with the previous sample's last spikes)."""
    import lava.proc.lif.process  # noqa: F401 - Lava first (multiprocessing start method)

    from export.emulate import emulate
    from hardware.lava_sim import LavaRunner
    _, q, _, xi = braille_quant
    v_emu, s_emu = emulate(q, xi)
    with LavaRunner(q, chunk_samples=4, conv_model="lava") as runner:
        v_lava, s_lava = runner.run(xi)
    assert torch.equal(v_emu, v_lava)
    assert set(s_emu) == set(s_lava)
    for name in s_emu:
        assert torch.equal(s_emu[name], s_lava[name]), name
    assert int(s_emu["lif1_lif"][-1].sum()) > 0  # last-step spikes that the buffer holds
    monkeypatch.setattr(LavaRunner, "_clear_recurrent", lambda self: None)
    with LavaRunner(q, chunk_samples=4, conv_model="fast") as runner:
        _, s_stale = runner.run(xi)
    assert not torch.equal(s_stale["lif1_lif"], s_emu["lif1_lif"])


def test_snntorch_rleaky_export_imports_spike_for_spike(tmp_path):
    """snntorch 1.0's own RLeaky, exported by its ``export_to_nir`` (a flat NIR cycle
    ``lif1.lif -> lif1.w_rec -> lif1.lif``, the recurrent Linear with its bias): kdsnn's
    forward gives snntorch's spikes in both layers exactly and its readout within float32.
    (The whole CLI chain to bit-exact Lava runs it in tests/test_import_chain.py.)"""
    import foreign_nir as F
    try:
        fe = F.snntorch_recurrent(tmp_path)
    except F.LibraryMissing as exc:
        pytest.skip(str(exc))
    g = nir_to_graph(fe.path)
    assert [c.source for c in g.layers[0].connections] == ["input", g.layers[0].name]
    x = fe.inputs.double().reshape(fe.inputs.shape[0], fe.inputs.shape[1], *g.input_shape)
    logits, rec = run_float(g, x, record=True)
    for layer, theirs in zip([l for l in g.layers if l.spiking], fe.spikes):
        assert theirs.sum() > 0
        assert torch.equal(rec[layer.name], theirs.double().reshape(rec[layer.name].shape))
    torch.testing.assert_close(logits, fe.readout.double().mean(0), rtol=0, atol=1e-5)


def test_energy_counts_the_recurrent_synapses():
    """SynOps of the recurrent Dense: every spike of the layer times its non-zero
    fan-out in w_rec (each spike is sent through it, as on Loihi)."""
    from export.imported import fit_to_data
    from hardware.energy.graph_stats import analyze_graph
    T = 10
    g = fit_to_data(nir_to_graph(BRAILLE), (12,), 7, T, "direct")
    x = _spikes(12, T, 3, 1, rate=0.7).double()
    stats = analyze_graph(g, x)
    _, rec = run_float(g, x, record=True)
    w_rec = g.layers[0].connections[1].weight
    want = float(((rec["lif1_lif"] != 0).double()
                  * torch.as_tensor((w_rec != 0).sum(0), dtype=torch.float64)).sum()) / 3
    got = next(l for l in stats.layers if l.name == "lif1_lif").synops_by_source["lif1_lif"]
    assert want > 0 and abs(got - want) < 1e-9


def _cycle_graph(second_layer_cycle=False, conv=False):
    rng = np.random.default_rng(0)
    lif = lambda n: nir.LIF(tau=np.full(n, 5e-4), r=np.ones(n), v_leak=np.zeros(n),  # noqa
                            v_threshold=np.full(n, 0.1), v_reset=np.zeros(n))
    nodes = {"input": nir.Input(input_type={"input": np.array([4])}),
             "fc": nir.Linear(weight=rng.normal(0, 1, (5, 4))), "a": lif(5),
             "fc2": nir.Linear(weight=rng.normal(0, 1, (5, 5))), "b": lif(5),
             "back": nir.Linear(weight=rng.normal(0, 1, (5, 5))),
             "out": nir.Linear(weight=rng.normal(0, 1, (3, 5))),
             "output": nir.Output(output_type={"output": np.array([3])})}
    edges = [("input", "fc"), ("fc", "a"), ("a", "fc2"), ("fc2", "b"), ("b", "out"),
             ("out", "output")]
    edges.append(("b", "back") if second_layer_cycle else ("a", "back"))
    edges.append(("back", "a"))
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def test_self_recurrence_in_a_synthetic_graph_and_longer_cycles_refused():
    g = nir_to_graph(_cycle_graph())
    assert [c.source for c in g.layer("a").connections] == ["input", "a"]
    with pytest.raises(KdsnnError, match="cycle through .*not one neuron layer recurrent "
                                         "onto itself.*arrive late"):
        nir_to_graph(_cycle_graph(second_layer_cycle=True))


def _bias_moved_into_fc1():
    """The Braille bias file with w_rec's bias added to fc1's: the same NIR graph (both are
    constant currents into lif1.lif at every step), which norse's executor runs as NIR
    means it (it feeds a cycle nothing at its first step, the recurrent Affine's bias
    included; snntorch's RSynaptic, which wrote the file, adds that bias at t = 0 too)."""
    g = nir.read(str(BRAILLE_BIAS))
    rec = g.nodes["lif1.w_rec"]
    g.nodes["fc1"].bias = g.nodes["fc1"].bias + rec.bias
    rec.bias = np.zeros_like(rec.bias)
    return g


def test_braille_with_biases_imports_them_as_synaptic_biases():
    """The paper's other Braille file feeds biased Affines into CubaLIFs: each bias is a
    constant synaptic current (filtered by the current decay), a clock connection whose
    weights are the biases (fc1's and the recurrent w_rec's summed; fc2's), not a
    membrane bias."""
    from export.graph import CLOCK
    g = nir_to_graph(BRAILLE_BIAS)
    src = nir.read(str(BRAILLE_BIAS)).nodes
    l1, l2 = g.layers
    assert [c.source for c in l1.connections] == ["input", "lif1_lif", CLOCK]
    assert [c.source for c in l2.connections] == ["lif1_lif", CLOCK]
    want1 = src["fc1"].bias.astype(np.float64) + src["lif1.w_rec"].bias.astype(np.float64)
    assert np.array_equal(l1.connections[2].weight[:, 0], want1)
    assert np.array_equal(l2.connections[1].weight[:, 0], src["fc2"].bias.astype(np.float64))
    assert not np.any(l1.bias) and not np.any(l2.bias)
    assert np.allclose(l1.alpha, 0.55)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_braille_with_biases_float_forward_equals_norse(seed, tmp_path):
    """Every output spike equals norse 1.1's from_nir forward (T = 40, batch 1) of the file
    with w_rec's bias moved into fc1 (the same NIR graph, see ``_bias_moved_into_fc1``)
    and of kdsnn's own export of the imported graph (which writes the whole synaptic bias
    as fc1's Affine bias); that export reads back to the same graph."""
    T = 40
    x = _spikes(12, T, 1, seed)
    g = nir_to_graph(BRAILLE_BIAS)
    _, rec = run_float(g, x.double(), record=True)
    got = rec["lif2"].float()
    assert got.sum() > 0 and rec["lif1_lif"].sum() > 0
    want = norse_forward(_bias_moved_into_fc1(), x, dt=1e-4)
    assert torch.equal(got.reshape(want.shape), want)
    path = write_nir(g, tmp_path / "braille_bias.nir")
    assert torch.equal(got.reshape(want.shape), norse_forward(nir.read(str(path)), x, dt=1e-4))
    g2 = nir_to_graph(path)
    for a, b in zip(g.layers, g2.layers):
        assert [c.source for c in a.connections] == [c.source for c in b.connections]
        assert all(np.array_equal(c.weight, d.weight) for c, d in zip(a.connections,
                                                                      b.connections))
        assert all(np.array_equal(getattr(a, k), getattr(b, k))
                   for k in ("alpha", "beta", "threshold", "bias"))


def test_braille_with_biases_lava_equals_the_emulation_bit_for_bit(tmp_path):
    """Quantized (the biases on their layer's scale, 8-bit mantissas like every synapse),
    4 samples streamed in segments of 3 through Lava's stock fixed_pt LIF and Dense, the
    biases as bias axons (a one-neuron source per depth fired during the layers' sample
    windows, a Dense of the bias weights): every spike and the readout equal the
    emulation's; the quantized NIR file reads back to the same Loihi network; the energy
    count charges each bias synapse once per step."""
    import lava.proc.lif.process  # noqa: F401 - Lava first (multiprocessing start method)

    from export.emulate import emulate
    from export.graph import CLOCK
    from export.imported import fit_to_data
    from export.quant_nir import read_quant_nir, write_quant_nir
    from export.quantize import encode_input, quantize
    from hardware.energy.graph_stats import analyze_graph
    from hardware.lava_sim import LavaRunner
    T = 20
    g = fit_to_data(nir_to_graph(BRAILLE_BIAS), (12,), 7, T, "direct")
    x = _spikes(12, T, 4, 3, rate=0.7).double()
    q = quantize(g, x)
    clocks = [c for l in q.layers for c in l.connections if c.source == CLOCK]
    assert len(clocks) == 2 and all(c.kind == "dense" and c.message_bits == 0 for c in clocks)
    xi = encode_input(x)
    v_emu, s_emu = emulate(q, xi)
    with LavaRunner(q, chunk_samples=3, conv_model="lava") as runner:
        v_lava, s_lava = runner.run(xi)
    assert torch.equal(v_emu, v_lava)
    for name in s_emu:
        assert int(s_emu[name].sum()) > 0
        assert torch.equal(s_emu[name], s_lava[name]), name
    from hardware.stock_check import check_synapses  # parity's re-check of fast models
    assert check_synapses(q, xi, s_lava, "fast", jobs=1)["bit_exact"]
    assert read_quant_nir(write_quant_nir(tmp_path / "q.nir", q)).digest() == q.digest()
    stats = analyze_graph(q, x, spikes=s_lava, source="lava")
    for layer in q.layers:
        clock = [c for c in layer.connections if c.source == CLOCK]
        if clock:
            got = next(l for l in stats.layers if l.name == layer.name).synops_by_source
            assert got[CLOCK] == T * int(np.count_nonzero(clock[0].weight))


def test_onnx_student_of_a_recurrent_graph(tmp_path):
    """The ONNX export of the student (T unrolled) feeds the recurrence the previous
    step's spikes too: onnxruntime gives run_float's logits and spikes."""
    pytest.importorskip("onnxruntime")
    from export.imported import fit_to_data
    from export.onnx_export import check_onnx, export_onnx_student
    T = 12
    g = fit_to_data(nir_to_graph(BRAILLE), (12,), 7, T, "direct")
    x = _spikes(12, T, 3, 4, rate=0.7)
    path = export_onnx_student(g, tmp_path / "student.onnx", static_input=False)
    logits, rec = run_float(g, x.double(), record=True)
    diff = check_onnx(path, x.numpy(), [logits.numpy(), rec["lif2"].numpy()])
    assert diff < 1e-4
