"""NIR export/import: round trip, file properties, and interop with the REAL importers.

Which batch sizes work: our exported graphs flatten with ``Flatten(start_dim=-3,
end_dim=-1)``, which nir's type checks accept and which both importers turn into
``torch.nn.Flatten(-3, -1)``; so snntorch (``import_from_nir``) and norse (``from_nir``)
reproduce run_float at batch 1 AND at batch > 1 (tested below at B=1 and B=4).  The
usual ``start_dim=0`` (what snntorch/norse's own exporters write) flattens the batch
axis in the importers and crashes at batch > 1: ``test_flatten_start_dim0_breaks_batch``
pins that failure mode so a future importer fix is noticed.

What the importers cannot do (tested as explicit refusals, see nir_io's docstring):
snntorch: one threshold per layer only (asserts), no v_leak (so no CubaLIF bias).
norse must be called with ``dt=metadata["dt"]`` (its default 1e-3 is wrong for us), and
is exact on sequential graphs only (fan-in is evaluated one step late, pinned below);
snntorch reproduces residual fan-in graphs exactly.

Everything runs in float64 (importers included, see ``_in_float64``): in float32 the
importers' kernels round differently from kdsnn's, and from one CPU to another, and these
small random nets have membranes within ~5e-6 of a threshold, so whether a spike flips
would depend on the machine; in float64 it would take a membrane within ~1e-13.  (The
importers keep float32 copies of the weights: a perturbation of ~1e-7, but the same one on
every machine.)
"""
from __future__ import annotations

import contextlib
import io
import os
import warnings

import nir
import numpy as np
import pytest
import torch

from export.graph import Connection, DeployGraph, NeuronLayer, run_float
from export.nir_io import graph_to_nir, nir_to_graph, read_nir, write_nir
from kd_snn.errors import KdsnnError

T = 6


def _layer(name, shape, conns, alpha=0.0, beta=0.5, thr=1.0, bias=0.0, spiking=True):
    return NeuronLayer(name, shape, tuple(conns), bias=bias, alpha=alpha, beta=beta,
                       threshold=thr, spiking=spiking)


def _chan(rng, c, hw, scale=0.2):
    return np.repeat(rng.normal(0, scale, c), hw[0] * hw[1]).reshape(c, *hw)


def sequential_graph(seed=0, alpha=(0.0, 0.0, 0.0), per_neuron_thr=False, bias=True):
    """conv -> conv(stride 2) -> dense -> readout, random weights/biases/thresholds."""
    rng = np.random.default_rng(seed)
    betas = rng.uniform(0.2, 0.9, 3)
    thr = rng.uniform(0.4, 1.2, 3)

    def th(i, shape):
        return rng.uniform(0.4, 1.2, shape) if per_neuron_thr else thr[i]

    def bb(val):
        return val if bias else 0.0

    l1 = _layer("conv1", (4, 8, 8),
                [Connection("input", "conv", rng.normal(0, 0.5, (4, 2, 3, 3)), padding=(1, 1))],
                alpha=alpha[0], beta=betas[0], thr=th(0, (4, 8, 8)),
                bias=bb(_chan(rng, 4, (8, 8))))
    l2 = _layer("conv2", (6, 4, 4),
                [Connection("conv1", "conv", rng.normal(0, 0.5, (6, 4, 3, 3)), stride=(2, 2),
                            padding=(1, 1))],
                alpha=alpha[1], beta=betas[1], thr=th(1, (6, 4, 4)),
                bias=bb(_chan(rng, 6, (4, 4))))
    l3 = _layer("fc1", (12,), [Connection("conv2", "dense", rng.normal(0, 0.3, (12, 96)))],
                alpha=alpha[2], beta=betas[2], thr=th(2, (12,)), bias=bb(rng.normal(0, .2, 12)))
    l4 = _layer("readout", (5,), [Connection("fc1", "dense", rng.normal(0, 0.5, (5, 12)))],
                bias=rng.normal(0, 0.2, 5), spiking=False)
    return DeployGraph((2, 8, 8), (l1, l2, l3, l4), time_steps=T, encoding="direct",
                       metadata={"source": "test"})


def residual_graph(seed=1):
    """stem -> a (CubaLIF, per-neuron bias/threshold) -> b (fan-in: conv + 1x1 shortcut)
    -> down (conv s2 + 2x2/s2 shortcut) and pool (avgpool + sumpool fan-in) -> fc (dense
    fan-in from both) -> readout."""
    rng = np.random.default_rng(seed)
    w = lambda *s: rng.normal(0, 0.4, s)  # noqa: E731
    stem = _layer("stem", (4, 8, 8), [Connection("input", "conv", w(4, 2, 3, 3), padding=(1, 1))],
                  beta=0.6, thr=0.8, bias=_chan(rng, 4, (8, 8)))
    a = _layer("block.a", (4, 8, 8), [Connection("stem", "conv", w(4, 4, 3, 3), padding=(1, 1))],
               alpha=0.3, beta=0.5, thr=rng.uniform(0.5, 1.0, (4, 8, 8)),
               bias=rng.normal(0, 0.1, (4, 8, 8)))
    b = _layer("block.b", (4, 8, 8),
               [Connection("block.a", "conv", w(4, 4, 3, 3), padding=(1, 1)),
                Connection("stem", "conv", w(4, 4, 1, 1))],
               beta=0.7, thr=0.9, bias=_chan(rng, 4, (8, 8)))
    down = _layer("down", (6, 4, 4),
                  [Connection("block.b", "conv", w(6, 4, 3, 3), stride=(2, 2), padding=(1, 1)),
                   Connection("block.b", "conv", w(6, 4, 2, 2), stride=(2, 2))],
                  beta=0.5, thr=0.7, bias=_chan(rng, 6, (4, 4)))
    pool = _layer("pool", (4, 4, 4), [Connection("block.b", "avgpool", kernel=(2, 2)),
                                      Connection("stem", "sumpool", kernel=(2, 2))],
                  beta=0.4, thr=0.3, bias=rng.normal(0, 0.1, (4, 4, 4)))
    fc = _layer("fc", (8,), [Connection("down", "dense", w(8, 96)),
                             Connection("pool", "dense", w(8, 64))],
                beta=0.5, thr=0.6, bias=rng.normal(0, 0.2, 8))
    ro = _layer("readout", (3,), [Connection("fc", "dense", w(3, 8))],
                bias=rng.normal(0, 0.2, 3), spiking=False)
    return DeployGraph((2, 8, 8), (stem, a, b, down, pool, fc, ro), time_steps=T)


def _inputs(batch, seed=0, shape=(2, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(T, batch, *shape, generator=g, dtype=torch.float64) * 1.5


# ---------------------------------------------------------------- real importers
def _first(output):
    """A module's output tensor (neuron modules return ``(output, state)``)."""
    return (output[0] if isinstance(output, tuple) else output).detach()


def _in_float64(model):
    """``model`` in float64, with every module's floating inputs cast to float64: snntorch's
    surrogates emit float32 spikes (0 or 1, so the cast is exact)."""
    def cast(_module, args):
        return tuple(a.double() if torch.is_tensor(a) and a.is_floating_point() else a
                     for a in args)
    for module in model.double().modules():
        module.register_forward_pre_hook(cast)
    return model


def _record(model, layers):
    """Per-step outputs of the named submodules, filled as ``model`` runs."""
    mods = dict(model.named_modules())
    rec = {name: [] for name in layers}
    for name in layers:
        mods[name].register_forward_hook(lambda m, i, o, n=name: rec[n].append(_first(o)))
    return rec


def _stacked(outs, rec):
    return torch.stack(outs), {k: torch.stack(v).double() for k, v in rec.items()}


def run_snntorch(path, x, layers):
    from snntorch.import_nir import import_from_nir
    with contextlib.redirect_stdout(io.StringIO()):  # snntorch prints every w_scale array
        model = _in_float64(import_from_nir(nir.read(str(path))))
    rec = _record(model, layers)
    with torch.no_grad():
        outs = [_first(model(x[t])) for t in range(x.shape[0])]
    return _stacked(outs, rec)


def run_norse(path, x, layers):
    import norse.torch as norse
    g = nir.read(str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = _in_float64(norse.from_nir(g, dt=float(g.metadata["dt"])))
    rec = _record(model, layers)
    outs, state = [], None
    with torch.no_grad():
        for t in range(x.shape[0]):
            o, state = model(x[t], state)
            outs.append(o)
    return _stacked(outs, rec)


RUNNERS = {"snntorch": run_snntorch, "norse": run_norse}


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("tool", ["snntorch", "norse"])
def test_importers_reproduce_lif_graph(tmp_path, tool, batch):
    g = sequential_graph()
    path = write_nir(g, tmp_path / "seq.nir")
    x = _inputs(batch)
    logits, spikes = run_float(g, x, record=True)
    out, rec = RUNNERS[tool](path, x, ["conv1", "conv2", "fc1"])
    for name in ("conv1", "conv2", "fc1"):
        assert rec[name].shape == spikes[name].shape
        assert torch.equal(rec[name], spikes[name]), f"{tool} spikes differ at {name}"
        assert spikes[name].sum() > 0 and (1 - spikes[name]).sum() > 0  # non-trivial
    # the Output stream is the readout current per step; logits are its mean over T
    assert out.shape == (T, batch, 5)
    torch.testing.assert_close(out.mean(0), logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("tool", ["snntorch", "norse"])
def test_importers_reproduce_cuba_graph(tmp_path, tool, batch):
    """CubaLIF layers (alpha > 0): exact without bias (v_leak = 0)."""
    g = sequential_graph(seed=3, alpha=(0.4, 0.25, 0.6), bias=False)
    ng = graph_to_nir(g)
    assert [type(ng.nodes[k]).__name__ for k in ("conv1", "conv2", "fc1")] == ["CubaLIF"] * 3
    path = write_nir(g, tmp_path / "cuba.nir")
    x = _inputs(batch, seed=5)
    logits, spikes = run_float(g, x, record=True)
    out, rec = RUNNERS[tool](path, x, ["conv1", "conv2", "fc1"])
    for name in ("conv1", "conv2", "fc1"):
        assert torch.equal(rec[name], spikes[name]), f"{tool} spikes differ at {name}"
        assert spikes[name].sum() > 0
    torch.testing.assert_close(out.mean(0), logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 4])
def test_norse_per_neuron_thresholds(tmp_path, batch):
    g = sequential_graph(seed=4, per_neuron_thr=True)
    path = write_nir(g, tmp_path / "pn.nir")
    x = _inputs(batch, seed=2)
    logits, spikes = run_float(g, x, record=True)
    out, rec = run_norse(path, x, ["conv1", "conv2", "fc1"])
    for name in ("conv1", "conv2", "fc1"):
        assert torch.equal(rec[name], spikes[name])
    torch.testing.assert_close(out.mean(0), logits, rtol=1e-5, atol=1e-5)


def test_snntorch_refuses_per_neuron_thresholds(tmp_path):
    path = write_nir(sequential_graph(seed=4, per_neuron_thr=True), tmp_path / "pn.nir")
    with pytest.raises(AssertionError, match="must be same for all neurons"):
        run_snntorch(path, _inputs(1), [])


def test_snntorch_refuses_cuba_bias(tmp_path):
    """CubaLIF bias lives in v_leak (exact NIR); snntorch asserts v_leak == 0."""
    g = sequential_graph(seed=3, alpha=(0.4, 0.25, 0.6), bias=True)
    assert np.any(graph_to_nir(g).nodes["conv1"].v_leak != 0)
    path = write_nir(g, tmp_path / "cb.nir")
    with pytest.raises(AssertionError, match="v_leak"):
        run_snntorch(path, _inputs(1), [])


@pytest.mark.parametrize("tool", ["snntorch", "norse"])
def test_flatten_start_dim0_breaks_batch(tmp_path, tool):
    """The importers' known bug: Flatten(start_dim=0) also flattens the batch."""
    g = sequential_graph()
    ng = graph_to_nir(g)
    flat = ng.nodes["fc1_syn0_flatten"]
    assert (flat.start_dim, flat.end_dim) == (-3, -1)  # our workaround
    ng.nodes["fc1_syn0_flatten"] = nir.Flatten(input_type=np.array([6, 4, 4]), start_dim=0)
    path = tmp_path / "sd0.nir"
    nir.write(str(path), ng)
    # batch 1 still runs, batch > 1 crashes inside the imported model
    RUNNERS[tool](path, _inputs(1), [])
    with pytest.raises(RuntimeError):
        RUNNERS[tool](path, _inputs(3), [])


def residual_lif_graph(seed=2):
    """LIF-only residual graph (what fold produces from a spiking ResNet): fan-in of a
    conv path and a 1x1 shortcut, a stride-2 block with a 2x2/s2 shortcut, dense readout."""
    rng = np.random.default_rng(seed)
    w = lambda *s: rng.normal(0, 0.5, s)  # noqa: E731
    stem = _layer("stem", (4, 8, 8), [Connection("input", "conv", w(4, 2, 3, 3), padding=(1, 1))],
                  beta=0.5, thr=0.8, bias=_chan(rng, 4, (8, 8)))
    a = _layer("a", (4, 8, 8), [Connection("stem", "conv", w(4, 4, 3, 3), padding=(1, 1))],
               beta=0.5, thr=0.9, bias=_chan(rng, 4, (8, 8)))
    b = _layer("b", (4, 8, 8), [Connection("a", "conv", w(4, 4, 3, 3), padding=(1, 1)),
                                Connection("stem", "conv", w(4, 4, 1, 1))],
               beta=0.5, thr=0.7, bias=_chan(rng, 4, (8, 8)))
    down = _layer("down", (6, 4, 4),
                  [Connection("b", "conv", w(6, 4, 3, 3), stride=(2, 2), padding=(1, 1)),
                   Connection("b", "conv", w(6, 4, 2, 2), stride=(2, 2))],
                  beta=0.5, thr=0.6, bias=_chan(rng, 6, (4, 4)))
    ro = _layer("readout", (5,), [Connection("down", "dense", w(5, 96))],
                bias=rng.normal(0, 0.2, 5), spiking=False)
    return DeployGraph((2, 8, 8), (stem, a, b, down, ro), time_steps=T)


@pytest.mark.parametrize("batch", [1, 4])
def test_snntorch_residual_fan_in_exact(tmp_path, batch):
    """snntorch (nirtorch.nir_to_torch) sums fan-in edges in topological order: exact."""
    g = residual_lif_graph()
    path = write_nir(g, tmp_path / "res.nir")
    x = _inputs(batch, seed=9)
    logits, spikes = run_float(g, x, record=True)
    out, rec = run_snntorch(path, x, ["stem", "a", "b", "down"])
    for name in ("stem", "a", "b", "down"):
        assert torch.equal(rec[name], spikes[name]), name
    assert spikes["down"].sum() > 0
    torch.testing.assert_close(out.mean(0), logits, rtol=1e-5, atol=1e-5)


def test_norse_residual_fan_in_is_wrong(tmp_path):
    """Known norse limitations (pinned): norse.from_nir uses nirtorch's deprecated
    GraphExecutor, which runs the nodes in DFS pre-order and returns the output of the
    last node it ran.  In a diamond (fan-in) one branch runs after the merge node, so
    (1) the merge node reads that branch's output from the previous time step, and
    (2) the model returns the last such branch - here block b's 1x1 shortcut conv,
    (B, 4, 8, 8) - instead of the readout's logits (B, 5).  No edge/node order fixes a
    diamond, so norse is exact only on sequential graphs (tested above)."""
    g = residual_lif_graph()
    path = write_nir(g, tmp_path / "res.nir")
    x = _inputs(2, seed=9)
    _, spikes = run_float(g, x, record=True)
    out, rec = run_norse(path, x, ["stem", "b", "b_syn1_conv"])
    assert torch.equal(rec["stem"], spikes["stem"])
    assert not torch.equal(rec["b"], spikes["b"])
    assert out.shape == (T, 2, 4, 8, 8) and torch.equal(out, rec["b_syn1_conv"])


# ---------------------------------------------------------------- file and structure
def test_nir_structure_and_metadata(tmp_path):
    g = sequential_graph()
    path = write_nir(g, tmp_path / "m.nir")
    ng = read_nir(path)  # nir.read with type checks
    ng.infer_types()
    assert ng.check_types()
    md = ng.metadata
    assert float(md["dt"]) == 1e-4
    assert md["reset"] == "zero" and md["threshold_comparison"] == "strict >"
    assert int(md["time_steps"]) == T and md["input_encoding"] == "direct"
    assert md["kdsnn_version"] and md["readout_layer"] == "readout"
    kinds = {k: type(n).__name__ for k, n in ng.nodes.items()}
    assert kinds["conv1"] == "LIF" and kinds["conv1_syn0_conv"] == "Conv2d"
    assert kinds["fc1_syn0_flatten"] == "Flatten" and kinds["readout_syn0_dense"] == "Affine"
    assert tuple(ng.nodes["conv1_syn0_conv"].input_shape) == (8, 8)
    for k in ("conv1", "conv2", "fc1"):
        node = ng.nodes[k]
        for field in ("tau", "r", "v_leak", "v_threshold", "v_reset"):
            assert getattr(node, field).shape == g.layer(k).shape  # per neuron, no ()
    assert ("readout_syn0_dense", "output") in ng.edges


def test_roundtrip_residual_exact(tmp_path):
    g = residual_graph()
    ng = graph_to_nir(g)
    # fan-in: two edges into the same neuron node, avgpool = SumPool2d + Scale
    assert sum(1 for _, b in ng.edges if b == "block_b") == 2
    assert any(isinstance(n, nir.Scale) for n in ng.nodes.values())
    assert isinstance(ng.nodes["block_a"], nir.CubaLIF)
    path = write_nir(g, tmp_path / "res.nir")
    g2 = nir_to_graph(path)
    assert [l.name for l in g2.layers] == [l.name for l in g.layers]
    assert g2.time_steps == g.time_steps and g2.input_shape == g.input_shape
    for la, lb in zip(g.layers, g2.layers):
        for key in ("alpha", "beta", "threshold", "bias"):
            assert np.array_equal(getattr(la, key), getattr(lb, key)), (la.name, key)
        assert [(c.source, c.kind) for c in la.connections] == \
               [(c.source, c.kind) for c in lb.connections]
    x = _inputs(3, seed=7)
    lo1, sp1 = run_float(g, x, record=True)
    lo2, sp2 = run_float(g2, x, record=True)
    assert torch.equal(lo1, lo2)
    for k in sp1:
        assert torch.equal(sp1[k], sp2[k])
    assert sum(v.sum() for v in sp1.values()) > 0
    # from the in-memory NIRGraph too
    lo3, _ = run_float(nir_to_graph(ng), x)
    assert torch.equal(lo1, lo3)


def test_import_without_kdsnn_metadata_derives_parameters(tmp_path):
    """A foreign-looking file (no kdsnn_* node metadata): parameters come from NIR fields."""
    g = residual_graph()
    ng = graph_to_nir(g)
    for node in ng.nodes.values():
        node.metadata = {}
    g2 = nir_to_graph(ng)
    for la, lb in zip(g.layers, g2.layers):
        # a readout's alpha/beta/threshold are unused and not stored outside metadata
        for key in ("alpha", "beta", "threshold", "bias") if la.spiking else ("bias",):
            np.testing.assert_allclose(getattr(lb, key), getattr(la, key), rtol=1e-9,
                                       atol=1e-12)
    x = _inputs(2, seed=8, shape=(2, 8, 8)).double()
    lo1, _ = run_float(g, x)
    lo2, _ = run_float(g2, x)
    torch.testing.assert_close(lo1, lo2)


def test_edited_file_is_detected():
    ng = graph_to_nir(sequential_graph())
    ng.nodes["conv1"].v_threshold = ng.nodes["conv1"].v_threshold * 2
    with pytest.raises(KdsnnError, match="threshold"):
        nir_to_graph(ng)


def test_write_is_deterministic_and_atomic(tmp_path):
    g = residual_graph()
    a = write_nir(g, tmp_path / "a.nir").read_bytes()
    b = write_nir(graph_to_nir(g), tmp_path / "b.nir").read_bytes()
    c = write_nir(g, tmp_path / "a.nir").read_bytes()  # overwrite
    assert a == b == c
    assert sorted(os.listdir(tmp_path)) == ["a.nir", "b.nir"]  # no temp files left
    # a failing write leaves the previous file intact
    with pytest.raises(Exception):
        write_nir(nir.NIRGraph.__new__(nir.NIRGraph), tmp_path / "a.nir")
    assert (tmp_path / "a.nir").read_bytes() == a
    assert sorted(os.listdir(tmp_path)) == ["a.nir", "b.nir"]


def test_unknown_connection_kind_refused():
    g = sequential_graph()
    conn = g.layers[1].connections[0]
    object.__setattr__(conn, "kind", "maxpool")
    with pytest.raises(KdsnnError, match="maxpool"):
        graph_to_nir(g)


def test_unexpressible_parameters_refused():
    rng = np.random.default_rng(0)
    conn = Connection("input", "dense", rng.normal(size=(3, 4)))
    mixed = DeployGraph((4,), (_layer("l", (3,), [conn], beta=[1.0, 0.5, 0.5]),))
    with pytest.raises(KdsnnError, match="beta=1"):
        graph_to_nir(mixed)
    cuba_if = DeployGraph((4,), (_layer("l", (3,), [conn], alpha=0.5, beta=1.0),))
    with pytest.raises(KdsnnError, match="infinite"):
        graph_to_nir(cuba_if)
    # IF (alpha 0, beta 1) is exported as nir.IF and round-trips
    if_graph = DeployGraph((4,), (_layer("l", (3,), [conn], beta=1.0, bias=0.3, thr=0.7),))
    ng = graph_to_nir(if_graph)
    assert isinstance(ng.nodes["l"], nir.IF)
    x = torch.rand(T, 2, 4, dtype=torch.float64)
    _, s1 = run_float(if_graph, x, record=True)
    _, s2 = run_float(nir_to_graph(ng), x, record=True)
    assert torch.equal(s1["l"], s2["l"])


def test_read_errors_are_kdsnn_errors(tmp_path):
    with pytest.raises(KdsnnError, match="not found"):
        nir_to_graph(tmp_path / "missing.nir")
    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(KdsnnError, match="cannot read"):
        nir_to_graph(bad)
