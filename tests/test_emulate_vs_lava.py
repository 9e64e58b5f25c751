"""``export.emulate`` against Lava's own fixed_pt ProcessModels, bit for bit.

Unit level: random integer inputs through Lava's LIF, Dense and Conv processes (negative
weights, both exponent signs, bias, 24-bit wrap of u / Conv output, v saturation).
Graph level: hand-built random DeployGraphs (sequential conv/dense, and residual with
fan-in balanced by relays), quantized, emulated and run in Lava: spikes equal at every
layer and step, readout v equal.
"""
import numpy as np
import pytest
import torch

from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.conv.process import Conv
from lava.proc.dense.process import Dense
from lava.proc.io.sink import RingBuffer as Sink
from lava.proc.io.source import RingBuffer as Source
from lava.proc.lif.process import LIF
from lava.proc.monitor.process import Monitor
from lava.utils.weightutils import SignMode

from export.emulate import emulate, lif_step, synapse
from export.graph import Connection, DeployGraph, NeuronLayer, run_float
from export.latency import balance_latency, is_balanced
from export.quantize import QuantConnection, encode_input, quantize
from hardware.lava_sim import LavaRunner, conv_weight_to_lava, from_lava, run_config, to_lava

CFG = Loihi2SimCfg(select_tag="fixed_pt")


def _run(proc, steps, cfg=CFG):
    try:
        proc.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
        return True
    except Exception:
        proc.stop()
        raise


# ---------------------------------------------------------------------------------------
# unit level
# ---------------------------------------------------------------------------------------
def test_lif_bit_exact_with_wrap_saturation_bias():
    rng = np.random.default_rng(1)
    n, steps = 24, 12
    # large inputs: a_in << 6 exceeds 2**23 (u wraps, even past one period), v saturates
    a_in = rng.integers(-300_000, 300_000, size=(n, steps)).astype(np.int32)
    a_in[:8] = rng.integers(-40, 60, size=(8, steps))  # small ones spike normally
    du, dv, vth = 1500, 300, 25
    bias_mant = rng.integers(-4095, 4096, size=n)
    bias_exp = rng.integers(0, 8, size=n)
    src = Source(data=a_in)
    lif = LIF(shape=(n,), du=du, dv=dv, vth=vth, bias_mant=bias_mant, bias_exp=bias_exp)
    src.s_out.connect(lif.a_in)
    mons = {k: Monitor() for k in ("u", "v", "s_out")}
    mons["u"].probe(lif.u, steps)
    mons["v"].probe(lif.v, steps)
    mons["s_out"].probe(lif.s_out, steps)
    _run(lif, steps)
    try:
        got = {k: m.get_data()[lif.name][k].astype(np.int64) for k, m in mons.items()}
    finally:
        lif.stop()
    u = torch.zeros(n, dtype=torch.int64)
    v = torch.zeros(n, dtype=torch.int64)
    bias = torch.as_tensor(np.left_shift(bias_mant, bias_exp))
    exp_u, exp_v, exp_s = [], [], []
    for t in range(steps):  # source -> LIF has no synapse: no latency
        s, u, v, _, _ = lif_step(torch.as_tensor(a_in[:, t], dtype=torch.int64), u, v,
                                 du, dv, bias, vth)
        exp_u.append(u.numpy())
        exp_v.append(v.numpy())
        exp_s.append(s.numpy().astype(np.int64))
    np.testing.assert_array_equal(got["u"], np.stack(exp_u))
    np.testing.assert_array_equal(got["v"], np.stack(exp_v))
    np.testing.assert_array_equal(got["s_out"], np.stack(exp_s))
    assert np.abs(got["u"]).max() > 2 ** 22 and np.stack(exp_s).sum() > 0
    assert (np.abs(got["v"]) == 2 ** 23 - 1).any(), "saturation not exercised"


def _synapse_run(proc_in_port_owner, syn, data, out_shape, steps, cfg=CFG):
    src = Source(data=data)
    src.s_out.connect(syn.s_in)
    sink = Sink(shape=out_shape, buffer=steps)
    syn.a_out.connect(sink.a_in)
    _run(src, steps, cfg)
    try:
        return sink.data.get().astype(np.int64)
    finally:
        src.stop()


@pytest.mark.parametrize("exp,graded", [(-3, False), (0, True), (2, False), (-1, True)])
def test_dense_bit_exact(exp, graded):
    rng = np.random.default_rng(10 + exp)
    n_in, n_out, steps = 40, 7, 6
    m = rng.integers(-128, 128, size=(n_out, n_in))
    m[0] = -np.abs(m[0])  # an all-inhibitory row, a -128 and a 127
    m[1, 0], m[1, 1] = -128, 127
    if graded:
        x = rng.integers(0, 256, size=(steps, n_in))
    else:
        x = (rng.random((steps, n_in)) < 0.5).astype(np.int64)
    conn = QuantConnection("input" if graded else "a", "dense", m, exp,
                           message_bits=8 if graded else 0)
    syn = Dense(weights=(2 * m).astype(np.int32), weight_exp=exp - 1, num_weight_bits=8,
                sign_mode=SignMode.MIXED, num_message_bits=8 if graded else 0)
    got = _synapse_run(None, syn, x.T.astype(np.int32), (n_out,), steps)  # (n_out, steps)
    exp_out = synapse(conn, torch.as_tensor(x)).numpy()  # (steps, n_out)
    # Dense sends at step t+1 what it received at step t
    np.testing.assert_array_equal(got[:, 1:].T, exp_out[:-1])
    assert (exp_out < 0).any()


@pytest.mark.parametrize("conv_model", ["lava", "fast", "int64"])
@pytest.mark.parametrize("exp,graded,stride,padding,groups",
                         [(0, True, (1, 1), (1, 1), 1), (3, False, (2, 1), (0, 1), 1),
                          (7, True, (1, 2), (1, 0), 1), (1, False, (1, 1), (0, 0), 3),
                          (2, False, (2, 2), (0, 0), 256)])
def test_conv_bit_exact(exp, graded, stride, padding, groups, conv_model):
    """Stock PyConvModelFixed and our fast model; groups=256 (depthwise, as pools and
    relays) exceeds Lava's int8 ``groups`` Var and is regrouped (block-diagonal)."""
    rng = np.random.default_rng(20 + exp)
    ci, co, h, w, steps = 3, 6, 7, 5, 4
    k = 3
    if groups == 256:
        ci, co, h, w, k = 256, 256, 4, 2, 2
    m = rng.integers(-128, 128, size=(co, ci // groups, k, k))
    if graded:
        x = rng.integers(0, 256, size=(steps, ci, h, w))
    else:
        x = (rng.random((steps, ci, h, w)) < 0.5).astype(np.int64)
    conn = QuantConnection("input" if graded else "a", "conv", m, exp, stride, padding,
                           groups, message_bits=8 if graded else 0)
    exp_out = synapse(conn, torch.as_tensor(x)).numpy()  # (steps, co, oh, ow)
    out_shape = exp_out.shape[1:]
    weight, lava_groups = conn.grouped_weight()
    assert lava_groups == (64 if groups == 256 else groups)
    syn = Conv(weight=conv_weight_to_lava(weight << exp).astype(np.int32),
               input_shape=(w, h, ci), padding=padding[::-1], stride=stride[::-1],
               groups=lava_groups, num_message_bits=8 if graded else 0)
    data = np.moveaxis(to_lava(x, (ci, h, w)), 0, -1).astype(np.int32)  # (W, H, C, steps)
    got = _synapse_run(None, syn, data, (out_shape[2], out_shape[1], out_shape[0]), steps,
                       run_config(conv_model))
    got = from_lava(np.moveaxis(got, -1, 0), out_shape, 1)  # (steps, co, oh, ow)
    np.testing.assert_array_equal(got[1:], exp_out[:-1])
    if exp == 7:
        raw = torch.nn.functional.conv2d(torch.as_tensor(x, dtype=torch.float64),
                                         torch.as_tensor(m << exp, dtype=torch.float64),
                                         stride=stride, padding=padding)
        assert raw.abs().max() > 2 ** 23, "24-bit wrap not exercised"


# ---------------------------------------------------------------------------------------
# graph level
# ---------------------------------------------------------------------------------------
def sequential_graph(seed=0, T=4):
    rng = np.random.default_rng(seed)
    c1 = Connection("input", "conv", rng.normal(0, 0.5, (4, 2, 3, 3)), (1, 1), (1, 1))
    l1 = NeuronLayer("c1", (4, 6, 5), (c1,), rng.normal(0, 0.1, (4, 6, 5)), 0.0, 0.8, 1.0)
    c2 = Connection("c1", "conv", rng.normal(0, 0.4, (3, 4, 3, 3)), (2, 1), (0, 1))
    l2 = NeuronLayer("c2", (3, 2, 5), (c2,), 0.05, 0.5, 0.9, 1.0)
    c3 = Connection("c2", "dense", rng.normal(0, 0.4, (8, 30)))
    l3 = NeuronLayer("d1", (8,), (c3,), rng.normal(0, 0.1, 8), 0.0, 0.7, 0.6)
    c4 = Connection("d1", "dense", rng.normal(0, 0.5, (5, 8)))
    l4 = NeuronLayer("fc", (5,), (c4,), rng.normal(0, 0.1, 5), 0.0, 1.0, 1.0, spiking=False)
    return DeployGraph((2, 6, 5), (l1, l2, l3, l4), T)


def residual_graph(seed=0, T=4):
    rng = np.random.default_rng(seed)
    c1 = Connection("input", "conv", rng.normal(0, 0.6, (4, 2, 3, 3)), (1, 1), (1, 1))
    l1 = NeuronLayer("stem", (4, 6, 6), (c1,), 0.0, 0.0, 0.5, 1.0)
    c2 = Connection("stem", "conv", rng.normal(0, 0.5, (4, 4, 3, 3)), (1, 1), (1, 1))
    l2 = NeuronLayer("b.lif1", (4, 6, 6), (c2,), rng.normal(0, 0.1, (4, 1, 1)), 0.0, 0.5, 1.0)
    c3 = Connection("b.lif1", "conv", rng.normal(0, 0.5, (4, 4, 3, 3)), (1, 1), (1, 1))
    short = Connection("stem", "conv", np.eye(4)[:, :, None, None])
    l3 = NeuronLayer("b.lif2", (4, 6, 6), (c3, short), 0.0, 0.0, 0.5, 1.0)
    pool = Connection("b.lif2", "avgpool", kernel=(2, 2))
    l4 = NeuronLayer("pool", (4, 3, 3), (pool,), 0.0, 0.0, 0.0, 0.2)
    c5 = Connection("pool", "dense", rng.normal(0, 0.4, (6, 36)))
    l5 = NeuronLayer("fc", (6,), (c5,), rng.normal(0, 0.1, 6), 0.0, 1.0, 1.0, spiking=False)
    return DeployGraph((2, 6, 6), (l1, l2, l3, l4, l5), T)


def _check_graph(graph, seed, n_samples=6, chunk=4, conv_model="lava"):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(graph.time_steps, n_samples, *graph.input_shape, generator=g,
                   dtype=torch.float64)
    q = quantize(graph, x)
    xi = encode_input(x)
    v_emu, s_emu = emulate(q, xi)
    with LavaRunner(q, chunk_samples=chunk, conv_model=conv_model) as runner:
        v_lava, s_lava = runner.run(xi)  # several segments + batch padding
        v2, s2 = runner.run(xi[:, 3:5])  # the compiled network is reused
    assert torch.equal(v2, v_lava[3:5])
    assert all(torch.equal(s2[k], s_lava[k][:, 3:5]) for k in s2)
    assert set(s_emu) == set(s_lava)
    for name in s_emu:
        assert torch.equal(s_emu[name], s_lava[name]), f"spikes differ in layer {name}"
    assert torch.equal(v_emu, v_lava)
    assert sum(int(s.sum()) for s in s_emu.values()) > 0
    # quantization keeps float spikes mostly
    _, s_float = run_float(graph, x, record=True)
    agree = {n: float((s_emu[n].double() == s_float[n]).double().mean()) for n in s_float}
    assert min(agree.values()) > 0.9, agree
    return q, agree


def test_sequential_graph_emulate_equals_lava():
    _check_graph(sequential_graph(3), seed=3)


def test_residual_graph_balanced_emulate_equals_lava():
    graph = residual_graph(5)
    assert not is_balanced(graph)
    bal = balance_latency(graph)
    assert is_balanced(bal) and bal.metadata["relays"] == ["stem.relay1"]
    x = torch.rand(4, 3, 2, 6, 6, dtype=torch.float64)
    # relays are an exact identity in synchronous execution
    lo, so = run_float(graph, x, record=True)
    lb, sb = run_float(bal, x, record=True)
    assert torch.equal(lo, lb) and all(torch.equal(so[k], sb[k]) for k in so)
    q, _ = _check_graph(bal, seed=5, conv_model="fast")
    relay = q.layer("stem.relay1")
    assert (relay.vth, relay.du, relay.dv) == (0, 4095, 4095)
    assert q.depths() == {"stem": 1, "b.lif1": 2, "stem.relay1": 2, "b.lif2": 3,
                          "pool": 4, "fc": 5}


@pytest.mark.parametrize("make", [sequential_graph, residual_graph])
def test_lava_built_from_the_nir_file_equals_emulation(tmp_path, make):
    """Lava's process network rebuilt from student.quant.nir alone (nir.read) runs the
    integer emulation bit for bit: sequential and residual (relay) graphs."""
    from export.quant_nir import read_quant_nir, write_quant_nir
    from hardware.lava_sim import run_lava_from_files
    graph = balance_latency(make(8))
    x = torch.rand(graph.time_steps, 5, *graph.input_shape, dtype=torch.float64,
                   generator=torch.Generator().manual_seed(8))
    q = quantize(graph, x)
    path = tmp_path / "student.quant.nir"
    write_quant_nir(path, q)
    digest = q.digest()
    del q
    xi = encode_input(x)
    v_lava, s_lava = run_lava_from_files(path, xi, record=True, conv_model="lava")
    q_file = read_quant_nir(path)
    assert q_file.digest() == digest
    v_emu, s_emu = emulate(q_file, xi)
    assert torch.equal(v_emu, v_lava)
    assert set(s_emu) == set(s_lava)
    assert all(torch.equal(s_emu[k], s_lava[k]) for k in s_emu)


def test_float32_accumulation_only_where_the_bound_proves_it_exact():
    """float32 sums integers exactly up to 2**24: a layer whose bound exceeds it runs in
    float64, and the result is the exact integer sum either way."""
    from export.emulate import FLOAT32_EXACT, accumulation_bound, accumulation_dtype
    from export.quantize import QuantConnection

    small = QuantConnection("input", "dense", np.full((2, 64), 100, np.int64), message_bits=8)
    assert accumulation_bound(small) == 64 * 100 * 255 <= FLOAT32_EXACT
    assert accumulation_dtype(small) == torch.float32
    big = QuantConnection("input", "dense", np.full((2, 1024), 127, np.int64), message_bits=8)
    assert accumulation_bound(big) == 1024 * 127 * 255 > FLOAT32_EXACT
    assert accumulation_dtype(big) == torch.float64
    x = torch.full((3, 1024), 255, dtype=torch.int64)
    x[1, ::3] = 254  # sums that float32 could not hold exactly
    got = synapse(big, x)
    exact = (x * 127).sum(1, keepdim=True).expand(3, 2)  # 2 m, then weight_exp - 1 = -1
    assert torch.equal(got, exact)
    spikes = QuantConnection("c", "conv", np.full((4, 2, 3, 3), 127, np.int64), padding=(1, 1))
    assert accumulation_dtype(spikes) == torch.float32  # binary input: 18 * 127


@pytest.mark.parametrize("du,dv,scale,bias_exp", [(4095, 300, 40, 0), (1500, 0, 300_000, 6),
                                                  (0, 4095, 2 ** 24, 0), (4095, 1024, 2 ** 26, 7),
                                                  (100, 2000, 50, 12), (0, 100, 2 ** 17 - 1, 0)])
def test_lif_layer_equals_the_step_loop(du, dv, scale, bias_exp):
    """``emulate.lif_layer`` (float64 state, wraps only where a bound says they occur) ==
    looping ``lif_step`` in int64, including u wraps, v saturation and int32 carries."""
    from export.emulate import UV_MAX, _lif_layer_steps, lif_layer
    g = torch.Generator().manual_seed(du + dv + bias_exp)
    a = torch.randint(-scale, scale + 1, (5, 3, 17), generator=g, dtype=torch.int64)
    if scale == 2 ** 17 - 1:  # the fast path's own u wrap: u' accumulates past 2**23
        a[:, 0] = scale
        stats = {}
        _lif_layer_steps(a, du, dv, torch.zeros(3, 17, dtype=torch.int64), 0, stats)
        assert stats["max_u"] > UV_MAX
    bias = torch.randint(-4095, 4096, (3, 17), generator=g, dtype=torch.int64) << bias_exp
    from export import lif_kernel
    kernels = [lambda *args: lif_layer(*args)]  # the kernel where it builds, else torch
    if lif_kernel.available():
        kernels += [lambda a, *args: lif_kernel.lif_layer_native(a, *args),
                    lambda a, *args: lif_kernel.lif_layer_native(a.double(), *args)]
        monkey = pytest.MonkeyPatch()
        monkey.setattr(lif_kernel, "available", lambda: False)
        s0, v0 = lif_layer(a, du, dv, bias, 25)  # the torch path
        monkey.undo()
        s1, v1 = lif_kernel.lif_layer_native(a, du, dv, bias, 25)
        assert torch.equal(s0, s1) and torch.equal(v0, v1)
    for vth in (0, 25, 2 ** 17 - 1):
        for run in kernels:
            got_stats, want_stats = {"readout": vth > 2 ** 16}, {"readout": vth > 2 ** 16}
            s1, v1 = run(a, du, dv, bias, vth, got_stats)
            s2, v2 = _lif_layer_steps(a, du, dv, bias, vth, want_stats)
            assert torch.equal(s1, s2) and torch.equal(v1, v2) and v1.dtype == torch.int64
            assert got_stats == want_stats


@pytest.mark.parametrize("make", [sequential_graph, residual_graph])
def test_float_logits_layerwise_equals_run_float(make):
    from export.graph import float_logits
    graph = balance_latency(make(4))
    x = torch.rand(graph.time_steps, 7, *graph.input_shape, dtype=torch.float64,
                   generator=torch.Generator().manual_seed(4))
    want = run_float(graph, x)[0]
    got = float_logits(graph, x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=1e-9)  # float64: summation order only


@pytest.mark.parametrize("scale", [2 ** 31 - 1, 2 ** 40])
def test_lif_kernel_at_the_int32_limits(scale):
    """The kernel's 32-bit lanes == the int64 step loop for inputs at and past int32 (wrapped
    first, as Lava's int32 a_in), in every input dtype, at the decays' corners."""
    from export import lif_kernel
    from export.emulate import _lif_layer_steps
    if not lif_kernel.available():
        pytest.skip("no C++ compiler: the kernel is not built")
    g = torch.Generator().manual_seed(scale % 1000)
    a = torch.randint(-scale, scale + 1, (7, 2, 300), generator=g, dtype=torch.int64)
    a[:, :, :8] = torch.tensor([-(2 ** 31), 2 ** 31 - 1, 2 ** 31, -(2 ** 31) - 1,
                                0, 1, -1, 2 ** 17])
    bias = torch.randint(-4095, 4096, (300,), generator=g, dtype=torch.int64) << 20
    for du, dv in ((0, 0), (4095, 4095), (0, 4095), (4095, 0), (1, 4094)):
        for vth in (-3, 0, 2 ** 17 - 1, 2 ** 30):
            want_stats, got_stats = {"readout": True}, {"readout": True}
            s2, v2 = _lif_layer_steps(a, du, dv, bias, vth, want_stats)
            for x in (a, a.double(), a.float()):
                s1, v1 = lif_kernel.lif_layer_native(x, du, dv, bias, vth, got_stats)
                if x.dtype == torch.float32:  # float32 rounds the large inputs: its own want
                    s2f, v2f = _lif_layer_steps(x.to(torch.int64), du, dv, bias, vth, {})
                    assert torch.equal(s1, s2f) and torch.equal(v1, v2f)
                    continue
                assert torch.equal(s1, s2) and torch.equal(v1, v2)
                assert got_stats == want_stats


def test_streamed_batches_equal_the_emulation():
    """``LavaRunner.stream``: uneven batches streamed back to back (one latency drain, at
    the end; batches smaller than the latency; segments cutting batches) give each batch's
    emulation results, in order, and leave the runner usable."""
    graph = balance_latency(residual_graph(5))
    x = torch.rand(4, 7, *graph.input_shape, generator=torch.Generator().manual_seed(9),
                   dtype=torch.float64)
    q = quantize(graph, x)
    xi = encode_input(x)
    v_emu, s_emu = emulate(q, xi)
    with LavaRunner(q, chunk_samples=2, conv_model="fast") as runner:
        outs = list(runner.stream([xi[:, :3], xi[:, 3:4], xi[:, 4:7]]))
        v_again, _ = runner.run(xi[:, 5:7])
    assert [o[0].shape[0] for o in outs] == [3, 1, 3]
    assert torch.equal(torch.cat([o[0] for o in outs]), v_emu)
    for name in s_emu:
        assert torch.equal(torch.cat([o[1][name] for o in outs], 1), s_emu[name]), name
    assert torch.equal(v_again, v_emu[5:7])
