"""NIR written by OTHER libraries' exporters imports into kdsnn with the library's forward;
bad NIR files are refused with KdsnnError (never another exception, a hang or a huge
allocation).

How the comparison is made (see ``tests/foreign_nir.py`` for the networks): each library
runs its own forward in float32 on 16 digits test images (the same frame for T = 4 steps);
kdsnn runs ``run_float`` on ``nir_to_graph(file)`` in float64.  The files hold float32
parameters that the exporters derived in float32 (e.g. snntorch's ``tau = dt/(1-beta)``,
so kdsnn's ``beta = 1 - dt/tau`` is snntorch's beta to ~1e-7): the readout is compared
within a float32 tolerance (measured max differences 1e-8 .. 5e-8 on the logits), never
bit for bit.  Spikes: a spike can legitimately differ where a membrane lies within float32
rounding of its threshold, so each disagreement must lie within ``NEAR`` (relative) of the
threshold in kdsnn's membrane, and such near-threshold events must be rare.  Measured
here: no spike differs in any file; the closest relative margins to threshold are
1.7e-4 .. 5.8e-4 (above ``NEAR`` and ~1000x the ~1e-7 float32 rounding); logits differ by
1.1e-8 .. 4.8e-8, per-step readouts by at most 1.2e-7 (snntorch 4.4e-8 logits, norse
4.8e-8, spikingjelly 1.1e-8, spikingjelly residual 2.1e-8, sinabs 4.1e-8).
"""
from __future__ import annotations

import time

import h5py
import nir
import numpy as np
import pytest
import torch

import foreign_nir as F
from export.graph import INPUT, run_float
from export.nir_io import nir_to_graph, read_nir
from kd_snn.errors import KdsnnError

NEAR = 1e-4  # relative margin to threshold below which float32 rounding may flip a spike
READOUT_ATOL = 1e-5  # float32 readouts of size ~1-10
LIBS = ["snntorch", "norse", "spikingjelly", "spikingjelly_residual", "sinabs"]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    out = tmp_path_factory.mktemp("foreign")
    cache = {}

    def get(name):
        if name not in cache:
            try:
                cache[name] = F.ALL[name](out)
            except F.LibraryMissing as exc:
                cache[name] = exc
        if isinstance(cache[name], F.LibraryMissing):
            pytest.skip(f"{name}: {cache[name]}")
        return cache[name]
    return get


def _membranes(graph, x):
    """kdsnn's float recurrence (as ``run_float``) recording, per spiking layer, the
    membrane before the threshold, its spikes, and the readout per step."""
    T, B = x.shape[:2]
    state = {l.name: (torch.zeros(B, *l.shape, dtype=x.dtype),) * 2 for l in graph.layers}
    par = {l.name: [torch.as_tensor(getattr(l, k), dtype=x.dtype)
                    for k in ("alpha", "beta", "threshold", "bias")] for l in graph.layers}
    mem = {l.name: [] for l in graph.layers if l.spiking}
    spk = {l.name: [] for l in graph.layers if l.spiking}
    readout = []
    for t in range(T):
        out = {INPUT: x[t]}
        for layer in graph.layers:
            cur = sum(c.apply(out[c.source]) for c in layer.connections).reshape(B, *layer.shape)
            a, b, thr, bias = par[layer.name]
            if not layer.spiking:
                readout.append((cur + bias).reshape(B, -1))
                continue
            i, v = state[layer.name]
            i = a * i + cur
            v = b * v + i + bias
            mem[layer.name].append(v)
            s = (v > thr).to(x.dtype)
            spk[layer.name].append(s)
            state[layer.name] = (i, v * (1 - s))
            out[layer.name] = s
    return ({k: torch.stack(v) for k, v in mem.items()},
            {k: torch.stack(v) for k, v in spk.items()}, torch.stack(readout))


@pytest.mark.parametrize("name", LIBS)
def test_foreign_import_matches_library(exports, name):
    ex = exports(name)
    graph = nir_to_graph(ex.path, **ex.import_kwargs)
    spiking = [l for l in graph.layers if l.spiking]
    assert len(spiking) == len(ex.spikes) and not graph.output.spiking
    assert graph.output.shape == (F.CLASSES,)
    x = ex.inputs.double()
    logits, rec = run_float(graph, x, record=True)
    mem, spk, readout = _membranes(graph, x)
    assert torch.allclose(readout.mean(0), logits, rtol=0, atol=1e-12)  # _membranes == run_float
    near_total = 0
    for layer, theirs in zip(spiking, ex.spikes):
        ours = rec[layer.name]
        assert torch.equal(ours, spk[layer.name])
        theirs = theirs.double().reshape(ours.shape)
        assert 0.001 < float(theirs.mean()) < 0.5, (layer.name, "network (nearly) silent/saturated")
        thr = torch.as_tensor(layer.threshold)
        margin = (mem[layer.name] - thr).abs() / thr.abs().clamp_min(1.0)
        differ = ours != theirs
        assert bool((margin[differ] <= NEAR).all()), (layer.name, "spike differs far from thr")
        near_total += int((margin <= NEAR).sum())
        assert int(differ.sum()) <= max(1, int(1e-3 * ours.numel())), layer.name
    assert near_total <= 1e-3 * sum(s.numel() for s in ex.spikes)
    # readout: kdsnn's logits are the mean over T of the per-step readout
    their_readout = ex.readout.double().reshape(readout.shape)
    assert float((readout - their_readout).abs().max()) < READOUT_ATOL
    assert float((logits - their_readout.mean(0)).abs().max()) < READOUT_ATOL
    # layer names are python identifiers even where the file's are not (norse, sinabs: "0")
    assert all(l.name.isidentifier() for l in graph.layers)


def test_snntorch_residual_export_is_refused(exports):
    """snntorch 1.0's exporter (nirtorch's deprecated hook tracer) cannot write a residual
    add: it connects both summands to the graph's Output and gives the neuron a second
    Input node.  The file is not the network; kdsnn refuses it with one sentence."""
    ex = exports("snntorch_residual")
    with pytest.raises(KdsnnError, match="exactly one Input and one Output"):
        nir_to_graph(ex.path)


def test_norse_without_its_dt_is_refused(exports):
    ex = exports("norse")
    with pytest.raises(KdsnnError, match=r"outside \[0, 1\].*dt"):
        nir_to_graph(ex.path)  # norse's tau = dt/tau_mem_inv read at dt = 1e-4


# ------------------------------------------------------------ foreign conventions, small
def _lif(n, tau=5e-4, r=None, thr=0.5, reset=0.0, leak=0.0, scalar=False):
    shape = () if scalar else (n,)
    full = lambda v: np.full(shape, v, dtype=np.float32)  # noqa: E731
    return nir.LIF(tau=full(tau), r=full(tau / 1e-4 if r is None else r), v_leak=full(leak),
                   v_threshold=full(thr), v_reset=full(reset))


def _mlp(readout=None, neuron=None, input_type=(4,), flatten=None, names=None):
    """input -> [flatten] -> fc -> lif -> out (Affine) -> output, seeded."""
    rng = np.random.default_rng(0)
    n_in = int(np.prod(input_type[-3:] if len(input_type) > 2 else input_type))
    nodes = {"input": nir.Input(input_type={"input": np.array(input_type)}),
             "fc": nir.Affine(weight=rng.normal(0, 1, (3, n_in)), bias=rng.normal(0, .1, 3)),
             "lif": neuron if neuron is not None else _lif(3),
             "out": readout if readout is not None else nir.Affine(
                 weight=rng.normal(0, 1, (2, 3)), bias=np.zeros(2)),
             "output": nir.Output(output_type={"output": np.array([2])})}
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "out"), ("out", "output")]
    if flatten is not None:
        nodes["flat"] = flatten
        edges = [("input", "flat"), ("flat", "fc")] + edges[1:]
    if names:
        nodes = {names.get(k, k): v for k, v in nodes.items()}
        edges = [(names.get(a, a), names.get(b, b)) for a, b in edges]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _write(tmp_path, g, name="g.nir"):
    path = tmp_path / name
    nir.write(str(path), g)
    return path


def test_conventions_scalar_params_flatten_batch_names(tmp_path):
    ref = nir_to_graph(_write(tmp_path, _mlp(), "ref.nir"))
    # scalar-shaped neuron parameters (shape ()) broadcast to the input's shape (in memory:
    # nir 1.0.8's writer cannot store shape-() arrays, older files and graphs may hold them)
    g = nir_to_graph(_mlp(neuron=_lif(3, scalar=True)))
    assert g.layers[0].shape == (3,)
    for key in ("alpha", "beta", "threshold", "bias"):
        assert np.allclose(getattr(g.layers[0], key), getattr(ref.layers[0], key))
    # an Input type with a batch axis; Flatten with start_dim 0 or 1 before the dense layer
    for start in (0, 1, -3):
        fl = nir.Flatten(input_type={"input": np.array([1, 2, 2])}, start_dim=start)
        g = nir_to_graph(_write(tmp_path, _mlp(input_type=(1, 1, 2, 2), flatten=fl),
                                f"flat{start}.nir"))
        assert g.input_shape == (1, 2, 2)
        assert np.array_equal(g.layers[0].connections[0].weight,
                              ref.layers[0].connections[0].weight)
    g = nir_to_graph(_write(tmp_path, _mlp(input_type=(1, 4)), "batch.nir"))
    assert g.input_shape == (4,)
    # node names that are not python identifiers
    g = nir_to_graph(_write(tmp_path, _mlp(names={"lif": "0", "fc": "fc.0", "out": "a b"}),
                            "names.nir"))
    assert [l.name for l in g.layers] == ["n0", "readout"]
    # Linear (no bias) and Affine both read
    lin = _mlp(readout=nir.Linear(weight=np.ones((2, 3))))
    assert np.array_equal(nir_to_graph(lin).layers[-1].bias, np.zeros(2))
    # the same forward as the reference
    x = torch.rand(4, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a = run_float(ref, x)[0]
    b = run_float(nir_to_graph(_mlp(neuron=_lif(3, scalar=True))), x)[0]
    assert torch.allclose(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("graph,match", [
    (lambda: _mlp(readout=nir.LI(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2))), "'out' \\(LI\\).*readout"),
    (lambda: _mlp(neuron=nir.Threshold(threshold=np.ones(3))), "'lif' \\(Threshold\\)"),
    (lambda: _mlp(readout=nir.Delay(delay=np.ones(2))), "'out' \\(Delay\\)"),
    (lambda: _mlp(neuron=_lif(3, reset=-0.5, leak=-0.5)), "'lif'.*v_reset"),
    (lambda: _mlp(neuron=_lif(3, tau=1e-5)), "'lif'.*outside \\[0, 1\\]"),
    (lambda: _mlp(neuron=_lif(3, r=0.0)), "'lif' has r <= 0"),
])
def test_inexpressible_foreign_nodes_are_refused(graph, match):
    with pytest.raises(KdsnnError, match=match):
        nir_to_graph(graph())


def test_an_affine_bias_into_a_cuba_lif_is_a_synaptic_bias():
    """(Refused before issue 30's Braille work.) The bias of the Affine feeding a CubaLIF
    is a constant synaptic current: a clock connection of those weights, not v's bias."""
    from export.graph import CLOCK
    g = _mlp(neuron=nir.CubaLIF(tau_syn=np.full(3, 2e-4), tau_mem=np.full(3, 5e-4),
                                r=np.full(3, 5.0), v_leak=np.zeros(3),
                                v_threshold=np.ones(3), w_in=np.full(3, 2.0)))
    layer = nir_to_graph(g).layers[0]
    fc = next(n for n in g.nodes.values() if isinstance(n, nir.Affine)
              and n.weight.shape[0] == 3)
    assert [c.source for c in layer.connections][-1] == CLOCK
    assert np.array_equal(layer.connections[-1].weight[:, 0], fc.bias.astype(np.float64))
    assert not np.any(layer.bias)


def test_dt_argument(tmp_path):
    g = _mlp(neuron=_lif(3, tau=0.5, r=5000.0))  # a file in steps of dt = 0.1 (beta 0.8)
    a = nir_to_graph(g, dt=0.1)
    assert np.allclose(a.layers[0].beta, 0.8)
    g.metadata = {"dt": 0.1}
    assert np.allclose(nir_to_graph(g).layers[0].beta, 0.8)
    with pytest.raises(KdsnnError, match="states dt"):
        nir_to_graph(g, dt=1e-4)


# ------------------------------------------------------------------------- bad files
def _good(tmp_path, name="good.nir"):
    return _write(tmp_path, _mlp(), name)


def _edit(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)
    return path


def _set_str(f, key, value):
    del f[key]
    f[key] = value


def _bad_files(tmp_path):
    good = _good(tmp_path)
    data = good.read_bytes()
    files = {}
    (tmp_path / "trunc.nir").write_bytes(data[: len(data) // 2])
    files["truncated HDF5"] = (tmp_path / "trunc.nir", "truncated or corrupt|cannot read")
    (tmp_path / "text.nir").write_bytes(b"this is not HDF5\n" * 10)
    files["not HDF5"] = (tmp_path / "text.nir", "not an HDF5 file")
    (tmp_path / "empty.nir").write_bytes(b"")
    files["empty"] = (tmp_path / "empty.nir", "empty")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["data"] = np.arange(10)
    files["HDF5, not NIR"] = (tmp_path / "other.h5", "not a NIR graph")
    files["unknown node type"] = (_edit(_good(tmp_path, "unk.nir"), lambda f: _set_str(
        f, "node/nodes/fc/type", "Bogus")), "node .fc. has unknown type .Bogus.")
    cyc = _mlp()
    cyc.edges.append(("lif", "fc"))
    files["cycle"] = (_write(tmp_path, cyc, "cycle.nir"), "cycle through fc, lif")
    selfloop = _mlp()
    selfloop.edges.append(("lif", "lif"))
    files["self loop"] = (_write(tmp_path, selfloop, "self.nir"), "'lif' feeds itself")
    mis = _mlp()
    mis.nodes["out"] = nir.Affine(weight=np.ones((2, 5)), bias=np.zeros(2))
    files["Affine columns != previous size"] = (_write(tmp_path, mis, "mis.nir"),
                                                "'out' has weight shape \\(2, 5\\)")
    mis2 = _mlp(neuron=_lif(5))
    files["neuron size != its input"] = (_write(tmp_path, mis2, "mis2.nir"), "'lif'.*shape")
    mis3 = _mlp()
    mis3.nodes["output"] = nir.Output(output_type={"output": np.array([7])})
    files["Output size != its input"] = (_write(tmp_path, mis3, "mis3.nir"),
                                         "declares shape \\(7,\\)")
    files["missing Input"] = (_edit(_good(tmp_path, "noin.nir"), lambda f: f.__delitem__(
        "node/nodes/input")), "Input|input")
    files["missing Output"] = (_edit(_good(tmp_path, "noout.nir"), lambda f: f.__delitem__(
        "node/nodes/output")), "Output|output")
    ghost = _mlp()
    ghost.edges.append(("ghost", "lif"))
    files["edge to a missing node"] = (_write(tmp_path, ghost, "ghost.nir"),
                                       "names node 'ghost', which does not exist")
    huge_in = _mlp()
    huge_in.nodes["input"] = nir.Input(input_type={"input": np.array([10 ** 6, 10 ** 6])})
    files["input type of 1e12 elements"] = (_write(tmp_path, huge_in, "hugein.nir"),
                                            "absurdly large")

    def huge_weight(f):
        del f["node/nodes/fc/weight"]
        f["node/nodes/fc"].create_dataset("weight", shape=(10 ** 6, 10 ** 6), dtype="f8")
    files["weight declared 8 TB"] = (_edit(_good(tmp_path, "hugew.nir"), huge_weight),
                                     "absurdly large")
    return files


BAD = ["truncated HDF5", "not HDF5", "empty", "HDF5, not NIR", "unknown node type", "cycle",
       "self loop", "Affine columns != previous size", "neuron size != its input",
       "Output size != its input", "missing Input", "missing Output",
       "edge to a missing node", "input type of 1e12 elements", "weight declared 8 TB"]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    return _bad_files(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("case", BAD)
def test_bad_nir_is_a_kdsnn_error(bad_files, case):
    path, match = bad_files[case]
    t0 = time.perf_counter()
    with pytest.raises(KdsnnError, match=match):
        nir_to_graph(path)
    assert time.perf_counter() - t0 < 5.0
    assert path.stat().st_size < 1 << 20  # every bad file is small: sizes are declared


def test_bad_cases_all_built(bad_files):
    assert sorted(bad_files) == sorted(BAD)


def test_read_nir_checks_before_reading(bad_files):
    with pytest.raises(KdsnnError, match="absurdly large"):
        read_nir(bad_files["weight declared 8 TB"][0])
