"""Loihi fixed-point quantization: field ranges, scale choice, readout, relays, files."""
import importlib
import json

import numpy as np
import pytest
import torch

from export.emulate import emulate
from export.graph import Connection, DeployGraph, NeuronLayer, run_float
from export.latency import balance_latency
from export.quantize import (VTH_MAX, QuantGraph, encode_input, load_quant, quantize,
                             save_quant)
from kd_snn.neurons.functional import loihi_decays
from tests.test_emulate_vs_lava import residual_graph, sequential_graph


def _x(graph, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(graph.time_steps, n, *graph.input_shape, generator=g,
                      dtype=torch.float64)


def test_fields_in_range_and_decays():
    graph = balance_latency(residual_graph(1))
    q = quantize(graph, _x(graph))
    for layer, fl in zip(q.layers, graph.layers):
        assert layer.name == fl.name and layer.shape == fl.shape
        assert 0 <= layer.vth <= VTH_MAX
        assert np.abs(layer.bias_mant).max() <= 4095
        assert layer.bias_exp.min() >= 0 and layer.bias_exp.max() <= 7
        for c in layer.connections:
            assert c.weight.min() >= -128 and c.weight.max() <= 127
            assert -8 <= c.weight_exp <= 7
            if c.kind == "conv":
                assert c.weight_exp >= 0
        if layer.spiking and layer.name not in graph.metadata["relays"]:
            assert (layer.du, layer.dv) == loihi_decays(float(fl.alpha.flat[0]),
                                                        float(fl.beta.flat[0]))
            assert layer.vth == round(float(fl.threshold.flat[0]) * layer.scale)
    out = q.output
    assert (out.du, out.dv, out.vth, out.spiking) == (4095, 0, VTH_MAX, False)
    # pools become depthwise convs, the input connection carries 1/255
    pool = q.layer("pool").connections[0]
    assert pool.kind == "conv" and pool.groups == 4 and pool.origin == "avgpool"
    stem = q.layer("stem")
    assert stem.connections[0].message_bits == 8
    assert stem.connections[0].scale == pytest.approx(stem.scale / 255)


def test_report_and_float_agreement():
    graph = sequential_graph(2)
    x = _x(graph, 16)
    q = quantize(graph, x)
    rep = q.metadata["report"]
    for layer in graph.layers:
        r = rep[layer.name]
        assert r["scale"] > 0 and r["bound"] in ("vth", "overflow", "weights", "bias")
        for c in r["connections"]:
            assert c["clipped_frac"] == 0.0 and 0 <= c["rel_error"] < 0.02
        if layer.spiking:
            assert r["spike_agreement"] > 0.95 and not r["overflow"]
    # tiny random nets are chaotic near threshold: even 8-bit input rounding alone moves
    # a few argmaxes; the readout itself is checked exactly below
    assert rep["_readout"]["argmax_agreement"] >= 0.75
    # readout quantization alone (same input spikes): logits within ~1 %
    xi = encode_input(x)
    v, spikes = emulate(q, xi)
    ro = graph.output
    cur = torch.stack([ro.connections[0].apply(s.double()) for s in spikes["d1"]])
    ref = (cur + torch.as_tensor(ro.bias)).mean(0)
    got = torch.as_tensor(q.logits(v.numpy()))
    assert float((got - ref).norm() / ref.norm()) < 0.01
    json.dumps(q.metadata)  # report is JSON-able


def test_scale_search_halves_on_overflow():
    graph = sequential_graph(4)
    x = _x(graph)
    q = quantize(graph, x, headroom=8.0)  # deliberately too optimistic
    rep = q.metadata["report"]
    assert any(rep[l.name]["halvings"] > 0 for l in graph.layers)
    stats = {}
    emulate(q, encode_input(x), stats=stats)
    assert not any(s["overflow"] for s in stats.values())


def test_worst_case_without_calibration_never_overflows():
    graph = sequential_graph(5)
    q = quantize(graph)  # no data: worst-case bounds
    assert q.metadata["calibrated"] is False
    stats = {}
    emulate(q, torch.randint(0, 256, (graph.time_steps, 16, *graph.input_shape)),
            stats=stats)
    assert not any(s["overflow"] for s in stats.values())


def test_serialisation_roundtrip(tmp_path):
    graph = balance_latency(residual_graph(2))
    q = quantize(graph, _x(graph))
    arrays, meta = q.to_arrays()
    assert all(a.dtype == np.int64 for a in arrays.values())
    json.dumps(meta)
    q2 = QuantGraph.from_arrays(arrays, json.loads(json.dumps(meta)))
    path = tmp_path / "net.quant.npz"
    save_quant(path, q)
    with np.load(path, allow_pickle=False) as z:  # no pickle needed
        assert "__kdsnn_meta__" in z.files
    q3 = load_quant(path)
    xi = encode_input(_x(graph, 3, seed=9))
    v1, s1 = emulate(q, xi)
    for other in (q2, q3):
        v2, s2 = emulate(other, xi)
        assert torch.equal(v1, v2) and all(torch.equal(s1[k], s2[k]) for k in s1)
        assert [l.name for l in other.layers] == [l.name for l in q.layers]


def test_relay_is_exact_and_refusals():
    graph = balance_latency(residual_graph(3))
    q = quantize(graph, _x(graph))
    xi = encode_input(_x(graph, 4, seed=1))
    _, s = emulate(q, xi)
    assert torch.equal(s["stem.relay1"], s["stem"])
    bad = DeployGraph((3,), (NeuronLayer("a", (2,), (Connection("input", "dense",
                                                                  np.ones((2, 3))),),
                                         0.0, 0.0, 0.5, np.array([1.0, 2.0])),))
    with pytest.raises(ValueError, match="uniform"):
        quantize(bad)
    skip = DeployGraph((3,), (
        NeuronLayer("a", (3,), (Connection("input", "dense", np.eye(3)),), 0.0, 0.0, 0.5, 1.0),
        NeuronLayer("b", (3,), (Connection("a", "dense", np.eye(3)),
                                Connection("input", "dense", np.eye(3))), 0.0, 0.0, 0.5, 1.0)))
    with pytest.raises(ValueError, match="graded input"):
        balance_latency(skip)
    with pytest.raises(ValueError, match="balance_latency"):
        quantize(residual_graph(3)).depths()


def test_float_spikes_mostly_kept_on_residual():
    graph = balance_latency(residual_graph(6))
    x = _x(graph, 16, seed=4)
    q = quantize(graph, x)
    _, s_q = emulate(q, encode_input(x))
    _, s_f = run_float(graph, x, record=True)
    for name in s_f:
        assert float((s_q[name].double() == s_f[name]).double().mean()) > 0.95, name


def test_quantized_network_as_float_graph_follows_the_emulation():
    """quant_to_deploy (what student.quant.nir holds) tracks the integer emulation."""
    from export.graph import run_float
    from export.nir_io import graph_to_nir, nir_to_graph
    from export.quantize import quant_to_deploy

    torch.manual_seed(3)
    rng = np.random.default_rng(3)
    graph = DeployGraph((2, 6, 6), (
        NeuronLayer("c1", (4, 6, 6), (Connection("input", "conv", rng.normal(0, 0.6, (4, 2, 3, 3)),
                                                 padding=(1, 1)),),
                    bias=0.05, alpha=0.0, beta=0.5, threshold=1.0),
        NeuronLayer("c2", (6, 3, 3), (Connection("c1", "conv", rng.normal(0, 0.5, (6, 4, 3, 3)),
                                                 stride=(2, 2), padding=(1, 1)),),
                    bias=0.0, alpha=0.0, beta=0.75, threshold=1.0),
        NeuronLayer("fc", (5,), (Connection("c2", "dense", rng.normal(0, 0.3, (5, 54))),),
                    bias=0.0, alpha=0.0, beta=1.0, threshold=1.0, spiking=False)),
        time_steps=4)
    x = torch.rand(4, 32, 2, 6, 6, dtype=torch.float64)
    q = quantize(graph, x)
    back = nir_to_graph(graph_to_nir(quant_to_deploy(q)))
    logits, spikes = run_float(back, x, record=True)
    v, spikes_q = emulate(q, encode_input(x))
    for name in ("c1", "c2"):
        agree = (spikes[name].numpy() == spikes_q[name].numpy()).mean()
        assert agree > 0.95, (name, agree)
    assert (logits.argmax(1).numpy() == np.asarray(v).argmax(1)).mean() > 0.8


def test_layers_import_one_way():
    """export.fixed_point (vocabulary) <- export.emulate <- export.quantize: neither of the
    lower modules imports a higher one (read from their source: the package's __init__
    imports them all, so the import order alone no longer shows it)."""
    import ast
    from pathlib import Path
    root = Path(__file__).resolve().parents[1] / "export"
    for low, high in (("fixed_point", ("emulate", "quantize")), ("emulate", ("quantize",))):
        tree = ast.parse((root / f"{low}.py").read_text())
        names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        for h in high:
            assert not names & {f"export.{h}", h}, f"export.{low} imports export.{h}"


def test_calibration_in_chunks_gives_the_same_graph_and_report(monkeypatch):
    """Large students calibrate chunk by chunk (memory); the maxima, the scale search,
    spike agreement and readout figures are those of one piece."""
    import json
    import sys
    from pathlib import Path

    import torch

    Q = importlib.import_module("export.quantize")  # the module (export.quantize is the function)
    from export.latency import balance_latency
    sys.path.insert(0, str(Path(__file__).parent))
    from tests.test_emulate_vs_lava import residual_graph

    graph = balance_latency(residual_graph(2))
    x = torch.rand(4, 37, *graph.input_shape, dtype=torch.float64,
                   generator=torch.Generator().manual_seed(1))
    whole = Q.quantize(graph, x)
    monkeypatch.setattr(Q, "calib_chunk", lambda g, budget_bytes=0: 5)
    chunked = Q.quantize(graph, x)
    assert chunked.digest() == whole.digest()
    assert json.dumps(chunked.metadata, sort_keys=True) == json.dumps(whole.metadata,
                                                                       sort_keys=True)


def test_calibration_spikes_kept_or_recomputed_give_the_same_graph_and_report(monkeypatch):
    """The quantizer keeps the calibration's float spikes bit-packed when they fit and runs
    the float pass again per chunk when they do not: the same graph and report either way."""
    import json

    Q = importlib.import_module("export.quantize")  # the module (export.quantize is the function)
    from export.latency import balance_latency
    from tests.test_emulate_vs_lava import residual_graph

    g = balance_latency(residual_graph(4))
    x = torch.rand(g.time_steps, 21, *g.input_shape, dtype=torch.float64,
                   generator=torch.Generator().manual_seed(1))
    monkeypatch.setattr(Q, "calib_chunk", lambda graph, budget_bytes=0: 8)  # 3 chunks
    kept = Q.quantize(g, x)
    monkeypatch.setattr(Q, "_keep_calib_spikes", lambda *a, **k: False)
    again = Q.quantize(g, x)
    assert kept.digest() == again.digest()
    dump = lambda q: json.dumps(q.metadata, sort_keys=True, default=Q.json_default)  # noqa: E731
    assert dump(kept) == dump(again)
    assert 0 < kept.metadata["report"]["b.lif2"]["spike_agreement"] <= 1


@pytest.mark.parametrize("exp", [0, 3])
def test_a_relay_synapse_is_a_per_channel_product_equal_to_its_convolution(exp):
    """Depthwise 1x1 stride-1 synapses (latency balancing's relays) skip the convolution:
    one product per output, the very integers conv2d sums (and the float relay is x)."""
    import torch
    import torch.nn.functional as tF
    from export.emulate import _Synapse
    from export.fixed_point import QuantConnection
    from export.graph import Connection

    gen = np.random.default_rng(exp + 5)
    w = gen.integers(-128, 128, (6, 1, 1, 1))
    conn = QuantConnection("a", "conv", w, exp, (1, 1), (0, 0), 6)
    sy = _Synapse(conn, "cpu")
    assert sy.depthwise_1x1
    x = torch.as_tensor(gen.integers(0, 2, (5, 6, 4, 4)))
    ref = tF.conv2d(x.double(), torch.as_tensor(w).double(), groups=6) * 2.0 ** exp
    assert torch.equal(sy.exact_float(x, torch.float64), ref)
    assert torch.equal(sy.exact_float(x, torch.float32), ref.float())
    assert torch.equal(sy.accumulate(x), torch.round(tF.conv2d(
        x.double(), torch.as_tensor(w).double(), groups=6)).to(torch.int64))
    relay = Connection("a", "sumpool", kernel=(1, 1))
    xf = torch.rand(3, 6, 4, 4)
    assert torch.equal(relay.apply(xf), xf)
