"""Linear chains between neuron layers in foreign NIR files (issue 30, item 1).

Every chain of linear NIR nodes between two neuron layers (pooling -> Conv2d, Conv2d ->
Conv2d, Conv2d -> pooling, Scale, pooling -> Flatten -> Affine, Affine -> Affine, ...) is
imported as one exact kdsnn connection, or refused by name.  The NIR paper's own CNN
(``tests/data/nir_paper/cnn_sinabs.nir``: SumPool2d directly followed by Conv2d) imports,
its float forward equals norse's ``from_nir`` forward spike for spike, and its quantized
graph runs in Lava's fixed_pt models bit for bit as kdsnn's integer emulation.
"""
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from export.graph import run_float
from foreign_nir import norse_forward
from export.nir_io import nir_to_graph
from kd_snn.errors import KdsnnError

PAPER = Path(__file__).parent / "data" / "nir_paper"
CNN = PAPER / "cnn_sinabs.nir"


def _spikes(shape, T, seed, rate=0.3):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((T, 1, *shape), generator=g) < rate).float()


# -------------------------------------------------------------- the NIR paper's CNN
def test_cnn_sinabs_imports_with_pool_and_conv_composed():
    g = nir_to_graph(CNN, dt=1.0)  # sinabs writes IF(r = 1) in steps
    assert g.input_shape == (2, 34, 34)
    shapes = [(l.name, l.shape, [(c.kind, c.stride, c.padding) for c in l.connections])
              for l in g.layers]
    assert shapes == [
        ("n1", (16, 16, 16), [("conv", (2, 2), (1, 1))]),
        ("n3", (16, 16, 16), [("conv", (1, 1), (1, 1))]),
        # SumPool2d(2) -> Conv2d(3x3, padding 1): one 6x6 conv, stride 2, padding 2
        ("n6", (8, 8, 8), [("conv", (2, 2), (2, 2))]),
        # SumPool2d(2) -> Flatten(start_dim=0) -> Affine(128 -> 256): one dense 512 -> 256
        ("n10", (256,), [("dense", (1, 1), (0, 0))]),
        ("n12", (10,), [("dense", (1, 1), (0, 0))]),
    ]
    conv = g.layers[2].connections[0].weight
    src = nir.read(str(CNN)).nodes["5"].weight
    assert conv.shape == (8, 16, 6, 6)
    # the composed kernel holds the file's weights, each repeated over its 2x2 window
    assert np.array_equal(conv, np.repeat(np.repeat(src.astype(np.float64), 2, 2), 2, 3))
    for layer in g.layers:  # IF(r=1, v_threshold=1, v_reset=0) at dt = 1
        assert np.all(layer.alpha == 0) and np.all(layer.beta == 1)
        assert np.all(layer.threshold == 1) and np.all(layer.bias == 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cnn_sinabs_float_forward_equals_norse(seed):
    """kdsnn's float forward of the file == norse's ``from_nir`` forward: every output
    spike, batch 1 (norse's Flatten(start_dim=0) flattens the batch axis too)."""
    T = 20
    x = _spikes((2, 34, 34), T, seed)
    ref = norse_forward(nir.read(str(CNN)), x)
    g = nir_to_graph(CNN, dt=1.0)
    _, rec = run_float(g, x.double(), record=True)
    got = rec[g.layers[-1].name].reshape(T, 1, -1)
    assert ref.sum() > 0 and rec["n10"].sum() > 0
    assert torch.equal(got.float(), ref)


def test_cnn_sinabs_runs_in_lava_bit_exact_with_the_emulation():
    """Imported, quantized (the composed strided conv on the file's integers), emulated and
    run by Lava's stock fixed_pt Conv/Dense/LIF models: spikes of every layer and the
    readout equal bit for bit."""
    import lava.proc.lif.process  # noqa: F401 - Lava first (multiprocessing start method)

    from export.emulate import emulate
    from export.imported import fit_to_data
    from export.quantize import encode_input, quantize
    from hardware.lava_sim import LavaRunner

    T = 6
    g = fit_to_data(nir_to_graph(CNN, dt=1.0), (2, 34, 34), 10, T, "direct")
    x = torch.cat([_spikes((2, 34, 34), T, s) for s in (3, 4, 5)], 1).double()
    q = quantize(g, x)
    xi = encode_input(x[:, :2])
    v_emu, s_emu = emulate(q, xi)
    with LavaRunner(q, chunk_samples=2, conv_model="lava") as runner:
        v_lava, s_lava = runner.run(xi)
    assert torch.equal(v_emu, v_lava)
    assert set(s_emu) == set(s_lava)
    for name in s_emu:
        assert torch.equal(s_emu[name], s_lava[name]), name
    assert all(int(s_emu[n].sum()) > 0 for n in ("n1", "n3", "n6", "n10"))


# ------------------------------------------------------------ chains, built with nir
def _if(shape, thr=1.0):
    return nir.IF(r=np.ones(shape), v_threshold=np.full(shape, thr), v_reset=np.zeros(shape))


def _graph(in_shape, chain, out_shape, tail=True, seed=0):
    """input -> IF0 (of ``in_shape``) -> chain nodes -> IF1 (``out_shape``) [-> Affine ->
    IF2] -> output; weights seeded."""
    rng = np.random.default_rng(seed)
    nodes = {"input": nir.Input(input_type={"input": np.array(in_shape)}),
             "pre": nir.Conv2d(input_shape=in_shape[1:], weight=rng.normal(0, 1, (
                 in_shape[0], in_shape[0], 1, 1)), stride=1, padding=0, dilation=1,
                               groups=1, bias=np.zeros(in_shape[0])),
             "if0": _if(in_shape, 0.5)}
    edges = [("input", "pre"), ("pre", "if0")]
    prev = "if0"
    for k, node in enumerate(chain):
        nodes[f"c{k}"] = node
        edges.append((prev, f"c{k}"))
        prev = f"c{k}"
    nodes["if1"] = _if(out_shape, 0.8)
    edges.append((prev, "if1"))
    last = "if1"
    if tail:
        n = int(np.prod(out_shape))
        if len(out_shape) > 1:
            nodes["flat"] = nir.Flatten(input_type={"input": np.array(out_shape)},
                                        start_dim=0)
            edges.append(("if1", "flat"))
            last = "flat"
        nodes["fc"] = nir.Affine(weight=rng.normal(0, 1, (5, n)), bias=np.zeros(5))
        nodes["if2"] = _if((5,), 0.7)
        edges += [(last, "fc"), ("fc", "if2")]
        last = "if2"
    nodes["output"] = nir.Output(output_type={"output": np.array([5])})
    edges.append((last, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _conv(rng, co, ci, k, s=1, p=0, hw=None, bias=False):
    return nir.Conv2d(input_shape=hw, weight=rng.normal(0, 0.6, (co, ci, k, k)), stride=s,
                      padding=p, dilation=1, groups=1,
                      bias=rng.normal(0, 0.2, co) if bias else np.zeros(co))


def _pool(k, kind=nir.SumPool2d):
    return kind(kernel_size=np.array([k, k]), stride=np.array([k, k]),
                padding=np.array([0, 0]))


R = np.random.default_rng(7)
CHAINS = {  # name -> (input shape, chain nodes, output shape, norse maps every node)
    "sumpool->conv(p1)": ((3, 8, 8), [_pool(2), _conv(R, 4, 3, 3, p=1, hw=(4, 4))],
                          (4, 4, 4), True),
    "conv->conv(p0)": ((3, 8, 8), [_conv(R, 4, 3, 3, p=1, hw=(8, 8), bias=True),
                                   _conv(R, 5, 4, 3, s=2, hw=(8, 8), bias=True)],
                       (5, 3, 3), True),
    "conv(s2)->sumpool": ((3, 10, 10), [_conv(R, 4, 3, 3, s=2, p=1, hw=(10, 10)), _pool(2)],
                          (4, 2, 2), True),
    "sumpool->sumpool": ((2, 8, 8), [_pool(2), _pool(2)], (2, 2, 2), True),
    "conv->sumpool->flatten->affine": (
        (2, 6, 6), [_conv(R, 3, 2, 3, p=1, hw=(6, 6), bias=True), _pool(2),
                    nir.Flatten(input_type={"input": np.array([3, 3, 3])}, start_dim=0),
                    nir.Affine(weight=R.normal(0, 0.5, (6, 27)), bias=R.normal(0, .1, 6))],
        (6,), True),
    "flatten->affine->affine": (
        (2, 3, 3), [nir.Flatten(input_type={"input": np.array([2, 3, 3])}, start_dim=0),
                    nir.Affine(weight=R.normal(0, 0.5, (7, 18)), bias=R.normal(0, .1, 7)),
                    nir.Linear(weight=R.normal(0, 0.5, (4, 7)))], (4,), True),
    "scale->conv": ((3, 5, 5), [nir.Scale(scale=np.array([0.5, 2.0, -1.0]).reshape(3, 1, 1)
                                          * np.ones((3, 5, 5))),
                                _conv(R, 4, 3, 3, p=1, hw=(5, 5))], (4, 5, 5), False),
    "avgpool->conv": ((2, 8, 8), [_pool(2, nir.AvgPool2d), _conv(R, 3, 2, 3, p=1, hw=(4, 4))],
                      (3, 4, 4), False),
    "conv->scale": ((2, 4, 4), [_conv(R, 3, 2, 3, p=1, hw=(4, 4), bias=True),
                                nir.Scale(scale=np.full((3, 4, 4), 0.25))], (3, 4, 4), False),
}


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_linear_chain_is_one_exact_connection(name):
    in_shape, chain, out_shape, norse_maps = CHAINS[name]
    g = _graph(in_shape, chain, out_shape)
    imported = nir_to_graph(g, dt=1.0)
    assert [l.name for l in imported.layers] == ["if0", "if1", "if2"]
    conn = imported.layers[1].connections
    assert len(conn) == 1 and conn[0].source == "if0"
    assert imported.layers[1].shape == tuple(out_shape)
    T = 12
    x = torch.cat([_spikes(in_shape, T, s, 0.5) for s in range(3)], 1)
    _, rec = run_float(imported, x.double(), record=True)
    assert rec["if1"].sum() > 0 and rec["if2"].sum() > 0
    # the chain against the nodes applied one by one, on the spikes if0 emitted
    ref = rec["if0"].reshape(T * 3, *in_shape)
    for node in chain:
        ref = _apply(node, ref)
    bias = imported.layers[1].bias
    got = conn[0].apply(rec["if0"].reshape(T * 3, *in_shape)).reshape(ref.shape) + \
        torch.as_tensor(bias).reshape(1, *ref.shape[1:])
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-9)
    if norse_maps:  # and the whole network against norse, spike for spike, at batch 1
        for b in range(3):
            want = norse_forward(g, x[:, b:b + 1])
            assert torch.equal(rec["if2"][:, b:b + 1].float().reshape(want.shape), want)


def _apply(node, x):
    import torch.nn.functional as tF
    if isinstance(node, nir.Conv2d):
        return tF.conv2d(x, torch.as_tensor(node.weight), torch.as_tensor(node.bias),
                         stride=tuple(node.stride), padding=tuple(node.padding))
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        k = tuple(int(v) for v in node.kernel_size)
        y = tF.avg_pool2d(x, k, k)
        return y * (k[0] * k[1]) if isinstance(node, nir.SumPool2d) else y
    if isinstance(node, nir.Flatten):
        return x.reshape(x.shape[0], -1)
    if isinstance(node, nir.Scale):
        return x * torch.as_tensor(node.scale)
    y = x @ torch.as_tensor(node.weight).T
    return y + torch.as_tensor(node.bias) if isinstance(node, nir.Affine) else y


@pytest.mark.parametrize("chain,in_shape,out_shape,match", [
    # a padded conv after a conv: the padding is zeros in NIR, conv1's border values here
    ([_conv(R, 3, 2, 3, p=1, hw=(6, 6)), _conv(R, 3, 3, 3, p=1, hw=(6, 6))],
     (2, 6, 6), (3, 6, 6), "not one exact connection"),
    # pooling 5 rows by 2 drops the last row; the padded conv after it would read it
    ([_pool(2), _conv(R, 3, 2, 3, p=1, hw=(2, 2))], (2, 5, 5), (3, 2, 2),
     "not one exact connection"),
    ([nir.Flatten(input_type={"input": np.array([2, 4, 4])}, start_dim=0),
      _conv(R, 3, 2, 3, hw=(4, 4))], (2, 4, 4), (3, 2, 2), "flat input"),
    ([nir.Scale(scale=np.arange(32.0).reshape(2, 4, 4)), _conv(R, 3, 2, 3, hw=(4, 4))],
     (2, 4, 4), (3, 2, 2), "scales positions"),
    ([nir.Delay(delay=np.ones((2, 4, 4)))], (2, 4, 4), (2, 4, 4), "'c0' \\(Delay\\)"),
])
def test_inexact_chains_are_refused_by_name(chain, in_shape, out_shape, match):
    g = _graph(in_shape, chain, out_shape, tail=False)
    with pytest.raises(KdsnnError, match=match):
        nir_to_graph(g, dt=1.0)


def test_a_dense_readout_on_a_large_feature_map_reads_back(tmp_path):
    """ResNet-19 w8's readout reads 512 x 8 x 8 values: the Flatten before its Affine is no
    matrix at all (it once was an identity of 32768 x 32768, refused as too large)."""
    from export.graph import Connection, DeployGraph, NeuronLayer
    from export.nir_io import write_nir
    from export.quant_nir import read_quant_nir, write_quant_nir
    from export.quantize import quantize

    rng = np.random.default_rng(0)
    conv = Connection("input", "conv", rng.normal(0, 0.5, (16, 1, 1, 1)))
    feat = NeuronLayer("feat", (16, 32, 32), (conv,), 0.0, 0.0, 0.5, 1.0)
    fc = NeuronLayer("fc", (3,), (Connection("feat", "dense",
                                             rng.normal(0, 0.01, (3, 16 * 32 * 32))),),
                     0.0, 0.0, 1.0, 1.0, spiking=False)
    graph = DeployGraph((1, 32, 32), (feat, fc), 2)
    assert (16 * 32 * 32) ** 2 > 1 << 27  # the identity would hold > 2**27 values
    write_nir(graph, tmp_path / "g.nir")
    back = nir_to_graph(tmp_path / "g.nir")
    assert np.array_equal(back.layer("fc").connections[0].weight,
                          graph.layer("fc").connections[0].weight)
    q = quantize(graph)
    write_quant_nir(tmp_path / "q.nir", q)
    assert read_quant_nir(tmp_path / "q.nir").digest() == q.digest()
