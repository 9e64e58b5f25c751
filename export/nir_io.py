"""DeployGraph <-> NIR (Neuromorphic Intermediate Representation, nir 1.0.8).

Public API
----------
``graph_to_nir(graph, dt=1e-4) -> nir.NIRGraph``
``write_nir(graph, path, dt=1e-4) -> pathlib.Path``   (atomic, byte-deterministic)
``read_nir(path) -> nir.NIRGraph``                    (``nir.read`` with type checks)
``nir_to_graph(nir_graph_or_path, dt=None) -> DeployGraph`` (inverse, foreign files too)

Time step and neuron convention (why these r, w_in, tau, dt)
-------------------------------------------------------------
NIR is continuous time.  Both real importers integrate with forward Euler,
``x <- x + dt/tau * (rhs - x)``, and kdsnn's discrete CUBA neuron

    i = alpha*i + x ;  v = beta*v + i + bias ;  s = v > thr (strict) ; v <- 0 on s

is such an Euler step with ``alpha = 1 - dt/tau_syn`` and ``beta = 1 - dt/tau_mem``.

* ``dt = 1e-4``.  snntorch's importer hard-codes ``dt = 1e-4`` (``beta = 1 - dt/tau``),
  so any other dt is misread by snntorch.  norse takes dt as an argument: call
  ``norse.torch.from_nir(g, dt=g.metadata["dt"])`` (its default, 1e-3, is wrong here).
* ``CubaLIF`` (layers with some ``alpha > 0``):
  ``tau_syn = dt/(1-alpha)``, ``tau_mem = dt/(1-beta)``, ``w_in = tau_syn/dt = 1/(1-alpha)``,
  ``r = tau_mem/dt = 1/(1-beta)``, ``v_threshold = thr``.  Euler then gives
  ``i = alpha*i + (1-alpha)*w_in*x = alpha*i + x`` and ``v = beta*v + (1-beta)*r*i = beta*v + i``.
  snntorch *asserts* ``r == tau_mem/dt`` and needs ``w_in*dt/tau_syn == 1`` (else it
  rescales thresholds); norse multiplies by ``w_in`` and ``r`` explicitly.  Both reproduce
  the kdsnn dynamics.
* ``LIF`` (layers with ``alpha == 0`` everywhere, ``beta < 1``):
  ``tau = dt/(1-beta)``, ``r = 1``, ``v_threshold = (1-beta)*thr``.  Euler:
  ``u = beta*u + (1-beta)*x``, i.e. ``u = (1-beta)*v`` is kdsnn's membrane scaled by
  ``(1-beta)``, with the threshold scaled alike (reset to zero is scale-free).  The
  reason for ``r = 1`` (rather than snntorch's own export convention ``r = tau/dt``):
  norse's LIF importer ignores ``r`` (it only warns), so ``r = 1`` is the only value norse
  runs correctly; snntorch sees ``r*dt/tau = 1-beta != 1`` and, by design, divides the
  threshold by that factor, recovering ``Leaky(beta, thr)`` exactly.
* ``IF`` (``alpha == 0``, ``beta == 1``): ``r = 1/dt`` (``v += dt*r*x = x``).  Exact NIR,
  but neither importer runs IF correctly (snntorch builds ``Leaky(beta=0.9)`` and asserts
  ``r == 1``; norse uses its own tau).  Layers mixing ``beta == 1`` and ``beta < 1``,
  ``alpha == 1`` or CubaLIF with ``beta == 1`` are refused (``KdsnnError``): tau would be inf.
* Bias.  Both importers refuse or misread ``v_leak``: snntorch asserts ``v_leak == 0``;
  norse starts the membrane *at* ``v_leak`` and, for CubaLIF, also leaks the synaptic
  current toward it.  So for LIF/IF layers the bias goes into the bias of the first
  incoming ``Affine`` (dense) or ``Conv2d`` (when the bias is constant per channel):
  with ``alpha = 0`` a synaptic bias is the same as a membrane bias, exactly.  Otherwise
  (LIF fed only by pooling, or a per-position conv bias) it goes into ``v_leak = bias``
  (LIF convention above), which is exact NIR but not imported correctly by either tool.
  A CubaLIF's membrane bias goes into ``v_leak = bias/(1-beta)`` (Euler:
  ``v += (1-beta)*v_leak``): exact NIR; snntorch refuses it (assert) and norse misapplies
  it.  A CubaLIF's *synaptic* bias (a ``CLOCK`` connection, ``export.graph``: a constant
  current filtered by alpha) is the bias of its first feed-forward Affine/Conv2d (else of
  its recurrent Affine), which is how NIR, snntorch and norse write and read it; reading,
  an Affine/Conv2d bias into a CubaLIF becomes that clock connection (into LIF/IF,
  alpha = 0, the membrane bias, the same exactly).  Zero biases give ``v_leak = 0``.
* Thresholds are per-neuron arrays in the file (no scalar shapes).  snntorch can only
  build one threshold per layer (it asserts a unique value); norse takes per-neuron
  thresholds.
* Readout (``spiking=False``): its connections go straight into the graph ``Output`` (an
  ``Affine`` with the readout bias for the usual dense readout; several connections are
  summed by a ``Scale(1)`` node).  The ``Output`` stream is the readout current per step;
  the logits are its **mean over the T steps** (``metadata["readout"]``).  An ``LI`` node
  would not give the mean exactly and neither importer maps ``LI``.
* Dense connections from a ``(C,H,W)`` source get ``Flatten(start_dim=-3, end_dim=-1)``
  (negative dims: the NIR type is ``(C*H*W,)`` and ``nir``'s type checks pass, while the
  importers build ``torch.nn.Flatten(-3, -1)`` which keeps the batch axis).  With the usual
  ``start_dim=0`` the importers flatten the batch too and fail at batch > 1; with this
  graph both importers run at batch 1 and batch > 1.
* Average pooling is ``SumPool2d`` + ``Scale(1/(kh*kw))``.  Neither importer maps
  ``Scale`` (snntorch/nirtorch raise "Unknown node type", norse returns no module), so
  graphs with average pooling or a fan-in readout are not importable by them (exact NIR).
* Residual fan-in is several edges into the same neuron node (NIR sums them).  snntorch
  (``nirtorch.nir_to_torch``) sums them in topological order: exact.  norse's ``from_nir``
  runs nirtorch's deprecated ``GraphExecutor`` in DFS pre-order, so in a diamond one branch
  is read one step late: norse is exact on sequential graphs only.

Every neuron node (and the ``Output`` node of a readout) carries ``kdsnn_*`` metadata with
the exact float64 kdsnn parameters, so ``nir_to_graph`` restores them bit-exactly; it
checks them against the values derived from the NIR parameters (a mismatch, i.e. an edited
file, is an error) and derives them when absent (foreign files).
"""
from __future__ import annotations

import io

import json
import os
import re
from pathlib import Path
from typing import Optional, Union

import numpy as np

import nir

from export.graph import CLOCK, INPUT, Connection, DeployGraph, NeuronLayer, is_clock
from kd_snn.errors import KdsnnError
from kd_snn.io import write_bytes

DT = 1e-4
FORMAT = "kdsnn-nir/1"
_PARAMS = ("alpha", "beta", "threshold", "bias")


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("kdsnn")
    except Exception:  # pragma: no cover - not installed
        return "unknown"


class _Names:
    """Unique python-identifier node names (nirtorch turns '.' into '_')."""

    def __init__(self):
        self.used = {"input", "output"}

    def __call__(self, base: str) -> str:
        name = re.sub(r"[^0-9A-Za-z_]", "_", base) or "n"
        if name[0].isdigit():
            name = "n" + name
        cand, k = name, 1
        while cand in self.used:
            cand, k = f"{name}_{k}", k + 1
        self.used.add(cand)
        return cand


def _f64(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64))


def _channel_bias(bias: np.ndarray):
    """Per-channel vector when ``bias`` (C,H,W) is constant over H,W, else None."""
    per_c = bias.reshape(bias.shape[0], -1)
    if np.all(per_c == per_c[:, :1]):
        return per_c[:, 0].copy()
    return None


def _bias_slot(layer: NeuronLayer):
    """Index of the first connection that can carry ``layer.bias`` exactly, or None."""
    for j, conn in enumerate(layer.connections):
        if conn.source == layer.name:  # recurrent: its first step reads no spikes
            continue
        if conn.kind == "dense":
            return j
        if conn.kind == "conv" and _channel_bias(layer.bias) is not None:
            return j
    return None


def _clock_bias(layer: NeuronLayer):
    """The layer's synaptic bias (its clock connection's weights) in its shape, or None."""
    for conn in layer.connections:
        if is_clock(conn):
            return conn.weight[:, 0].reshape(layer.shape)
    return None


def _without_clock(layer: NeuronLayer, clock: np.ndarray) -> NeuronLayer:
    """A layer with no current decay, its synaptic bias moved into the membrane bias: the
    same neuron exactly (``i = x + b`` is added to ``v`` whole each step)."""
    import dataclasses
    return dataclasses.replace(layer, bias=layer.bias + clock, connections=tuple(
        c for c in layer.connections if not is_clock(c)))


def _clock_slot(layer: NeuronLayer, clock: np.ndarray):
    """Index of the connection whose NIR Affine/Conv2d bias carries the synaptic bias
    ``clock`` of a CubaLIF layer: a feed-forward dense connection (or a convolution when
    the bias is constant per channel) first, else the recurrent dense one (norse's
    executor feeds a cycle nothing at its first step, bias included); None if none can."""
    order = sorted(range(len(layer.connections)),
                   key=lambda j: layer.connections[j].source == layer.name)
    for j in order:
        conn = layer.connections[j]
        if is_clock(conn):
            continue
        if conn.kind == "dense" or (conn.kind == "conv" and _channel_bias(clock) is not None):
            return j
    return None


def _add_connection(conn: Connection, src_node: str, src_shape: tuple, out_shape: tuple,
                    base: str, bias, nodes: dict, edges: list, names: _Names) -> str:
    """Add the node(s) of one connection; return the name of its last node."""
    if conn.kind == "conv":
        co = conn.weight.shape[0]
        b = np.zeros(co) if bias is None else _channel_bias(bias)
        name = names(f"{base}_conv")
        nodes[name] = nir.Conv2d(
            input_shape=tuple(int(s) for s in src_shape[1:]), weight=_f64(conn.weight),
            stride=tuple(conn.stride), padding=tuple(conn.padding), dilation=(1, 1),
            groups=1, bias=_f64(b))
        edges.append((src_node, name))
        return name
    if conn.kind == "dense":
        if len(src_shape) > 1:
            flat = names(f"{base}_flatten")
            nodes[flat] = nir.Flatten(input_type=np.array(src_shape),
                                      start_dim=-len(src_shape), end_dim=-1)
            edges.append((src_node, flat))
            src_node = flat
        name = names(f"{base}_dense")
        if bias is None:
            nodes[name] = nir.Linear(weight=_f64(conn.weight))
        else:
            nodes[name] = nir.Affine(weight=_f64(conn.weight), bias=_f64(bias).reshape(-1))
        edges.append((src_node, name))
        return name
    if conn.kind in ("sumpool", "avgpool"):
        k = np.array(conn.kernel, dtype=np.int64)
        name = names(f"{base}_sumpool")
        nodes[name] = nir.SumPool2d(kernel_size=k, stride=k.copy(),
                                    padding=np.zeros(2, dtype=np.int64))
        edges.append((src_node, name))
        if conn.kind == "sumpool":
            return name
        scale = names(f"{base}_avgscale")
        nodes[scale] = nir.Scale(scale=np.full(out_shape, 1.0 / float(k[0] * k[1])))
        edges.append((name, scale))
        return scale
    raise KdsnnError(f"NIR export: unknown connection kind '{conn.kind}'")


def _layer_meta(layer: NeuronLayer) -> dict:
    meta = {"kdsnn_layer": layer.name, "kdsnn_spiking": int(layer.spiking)}
    for key in _PARAMS:
        meta[f"kdsnn_{key}"] = _f64(getattr(layer, key))
    return meta


def _neuron_node(layer: NeuronLayer, dt: float, bias_in_synapse: bool):
    """The NIR neuron node of a spiking layer (see the module docstring)."""
    a, b, thr, bias = layer.alpha, layer.beta, layer.threshold, layer.bias
    zeros = np.zeros(layer.shape)
    if np.all(a == 0):
        if np.all(b == 1):
            if not bias_in_synapse and np.any(bias != 0):
                raise KdsnnError(f"NIR export: layer '{layer.name}' is IF (beta=1) with a "
                                 "bias no incoming connection can carry")
            return nir.IF(r=np.full(layer.shape, 1.0 / dt), v_threshold=_f64(thr),
                          v_reset=zeros.copy())
        if np.any(b == 1):
            raise KdsnnError(f"NIR export: layer '{layer.name}' mixes beta=1 and beta<1 "
                             "neurons (tau would be infinite)")
        leak = zeros.copy() if bias_in_synapse else _f64(bias)
        return nir.LIF(tau=dt / (1.0 - b), r=np.ones(layer.shape), v_leak=leak,
                       v_threshold=(1.0 - b) * thr, v_reset=zeros.copy())
    if np.any(a == 1) or np.any(b == 1):
        raise KdsnnError(f"NIR export: layer '{layer.name}' has alpha=1 or beta=1 with "
                         "current decay (tau would be infinite)")
    tau_syn, tau_mem = dt / (1.0 - a), dt / (1.0 - b)
    return nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt,
                       v_leak=bias / (1.0 - b), v_threshold=_f64(thr),
                       v_reset=zeros.copy(), w_in=tau_syn / dt)


def graph_to_nir(graph: DeployGraph, dt: float = DT) -> nir.NIRGraph:
    """Convert a DeployGraph to a type-checked ``nir.NIRGraph`` (see module docstring)."""
    if not isinstance(graph, DeployGraph):
        raise KdsnnError(f"NIR export needs a DeployGraph, got {type(graph).__name__}")
    dt = float(dt)
    names = _Names()
    nodes = {"input": nir.Input(input_type=np.array(graph.input_shape))}
    edges: list = []
    produced = {INPUT: "input"}
    shapes = {INPUT: graph.input_shape}
    readout_name = ""
    for li, layer in enumerate(graph.layers):
        base = names(layer.name)
        is_last = li == len(graph.layers) - 1
        clock = _clock_bias(layer)
        if clock is not None and np.all(layer.alpha == 0):  # LIF/IF: a membrane bias
            layer, clock = _without_clock(layer, clock), None
        if not layer.spiking and not is_last:
            raise KdsnnError(f"NIR export: non-spiking layer '{layer.name}' is not the "
                             "readout (only the last layer may be non-spiking)")
        needs_bias = bool(np.any(layer.bias != 0))
        if layer.spiking and not np.all(layer.alpha == 0):
            slot = None  # CubaLIF: bias goes to v_leak, the synaptic bias to an Affine's
            if clock is not None:
                slot = _clock_slot(layer, clock)
                if slot is None:
                    raise KdsnnError(f"NIR export: layer '{layer.name}' has a synaptic bias "
                                     "(clock connection) that no incoming dense connection "
                                     "or convolution (bias constant per channel) can carry "
                                     "as its Affine/Conv2d bias")
        else:
            slot = _bias_slot(layer) if needs_bias else None
        if not layer.spiking and needs_bias and slot is None:
            raise KdsnnError(f"NIR export: readout '{layer.name}' has a bias that no "
                             "incoming connection can carry")
        ends = []
        for j, conn in enumerate(layer.connections):
            if is_clock(conn):  # written as the bias of the connection in ``slot``
                continue
            cbias = (layer.bias if clock is None else clock) if slot == j else None
            own = conn.source == layer.name  # recurrent: a cycle back into this neuron
            ends.append(_add_connection(conn, base if own else produced[conn.source],
                                        layer.shape if own else shapes[conn.source],
                                        layer.shape, f"{base}_{'rec' if own else 'syn'}{j}",
                                        cbias, nodes, edges, names))
        if layer.spiking:
            node = _neuron_node(layer, dt, bias_in_synapse=(slot is not None and clock is None)
                                or not needs_bias)
            node.metadata = _layer_meta(layer)
            nodes[base] = node
            edges.extend((e, base) for e in ends)
            produced[layer.name] = base
        else:
            readout_name = layer.name
            if len(ends) > 1:
                nodes[base] = nir.Scale(scale=np.ones(layer.shape))
                edges.extend((e, base) for e in ends)
                ends = [base]
            produced[layer.name] = ends[0]
        shapes[layer.name] = layer.shape
    out = nir.Output(output_type=np.array(graph.output.shape))
    if not graph.output.spiking:
        out.metadata = _layer_meta(graph.output)
    nodes["output"] = out
    edges.append((produced[graph.output.name], "output"))
    metadata = {
        "format": FORMAT,
        "kdsnn_version": _version(),
        "dt": dt,
        "reset": "zero",
        "threshold_comparison": "strict >",
        "time_steps": int(graph.time_steps),
        "input_encoding": str(graph.encoding),
        "readout": ("mean over time of the Output stream (readout current + bias per step)"
                    if readout_name else "spikes of the last layer"),
        "readout_layer": readout_name,
        "neuron_convention": ("CubaLIF: w_in=tau_syn/dt, r=tau_mem/dt, v_leak=bias/(1-beta); "
                              "LIF: r=1, v_threshold=(1-beta)*threshold, bias in synapse or "
                              "v_leak=bias; IF: r=1/dt"),
        "deploy_metadata": json.dumps(graph.metadata, sort_keys=True, default=str),
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=True)


def write_nir(graph: Union[DeployGraph, nir.NIRGraph], path, dt: float = DT) -> Path:
    """Write ``graph`` (DeployGraph or NIRGraph) to ``path`` atomically.

    The bytes are deterministic: nir's writer creates no timestamped objects (h5py's
    ``track_times`` defaults off) and node/metadata order is fixed, so two exports of the
    same graph are byte-identical (tested).
    """
    g = graph_to_nir(graph, dt) if isinstance(graph, DeployGraph) else graph
    path = Path(path)
    buf = io.BytesIO()  # in memory: h5py must never meet a full disk (see kd_snn.io.hdf5_bytes)
    nir.write(buf, g)
    write_bytes(path, buf.getvalue())
    return path


def read_nir(path, type_check: bool = True) -> nir.NIRGraph:
    """``nir.read`` (with NIR's type inference and checks unless ``type_check=False``)
    after ``_check_file`` (HDF5, a NIR graph, declared sizes); errors become KdsnnError."""
    path = Path(path)
    if not path.is_file():
        raise KdsnnError(f"NIR file not found: {path}")
    _check_file(path)
    try:
        return nir.read(str(path), type_check=type_check)
    except Exception:  # noqa: BLE001 - any parse error is a bad file
        where = _unreadable_node(path)
        raise KdsnnError(f"cannot read NIR file {path}: nir's reader cannot build "
                         f"{where or 'a graph from it'} (its fields do not have NIR 1.0's "
                         "form)") from None


def _unreadable_node(path: Path) -> str:
    """"node 'k' (Type)" for the first node nir's reader fails on ('' if none alone)."""
    import h5py
    from nir.serialization import read_node
    try:
        with h5py.File(str(path), "r") as f:
            for key, group in f["node/nodes"].items():
                try:
                    read_node(group)
                except Exception:  # noqa: BLE001
                    typ = group["type"][()]
                    typ = typ.decode(errors="replace") if isinstance(typ, bytes) else typ
                    return f"node '{key}' ({typ})"
    except Exception:  # noqa: BLE001
        return ""
    return ""


# --------------------------------------------------------------------------- import
_NEURONS = (nir.LIF, nir.CubaLIF, nir.IF)
# Limits checked before anything is read or allocated (a file may declare any size)
MAX_NIR_BYTES = 1 << 30  # all arrays of one file together
MAX_ELEMENTS = 1 << 27  # one array, the input, or one layer of neurons
MAX_NODES = 100_000  # HDF5 objects in one file


def _check_file(path: Path) -> None:
    """Reject, before ``nir.read`` reads a byte of data, what is not an HDF5 file, not a
    NIR graph, truncated, or declares arrays larger than the limits above."""
    import h5py
    if path.stat().st_size == 0:
        raise KdsnnError(f"cannot read NIR file {path}: it is empty")
    try:
        is_h5 = h5py.is_hdf5(str(path))
    except Exception:  # noqa: BLE001
        is_h5 = False
    if not is_h5:
        raise KdsnnError(f"cannot read NIR file {path}: not an HDF5 file")
    objects: list = []

    def visit(_name, obj):
        objects.append(obj)
        if len(objects) > MAX_NODES:
            return True  # stops the walk
        return None

    try:
        with h5py.File(str(path), "r") as f:
            root = f.get("node")
            if not isinstance(root, h5py.Group) or "type" not in root or \
                    not isinstance(root["type"], h5py.Dataset) or \
                    root["type"].size > 64:
                raise KdsnnError(f"cannot read NIR file {path}: an HDF5 file but not "
                                 "a NIR graph (no 'node' group with a type)")
            kind = root["type"][()]
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            if kind != "NIRGraph":
                raise KdsnnError(f"cannot read NIR file {path}: an HDF5 file but not "
                                 f"a NIR graph (top node type {kind!r:.40})")
            nodes = root.get("nodes")
            if not isinstance(nodes, h5py.Group):
                raise KdsnnError(f"cannot read NIR file {path}: the graph has no 'nodes'")
            edges = root.get("edges")
            if not isinstance(edges, h5py.Dataset) or edges.ndim != 2 or \
                    edges.shape[-1] != 2 or edges.dtype.kind not in "SOU":
                raise KdsnnError(f"cannot read NIR file {path}: the graph's 'edges' are not a "
                                 "list of (source, target) node names")
            known = {n for n in dir(nir) if isinstance(getattr(nir, n), type)
                     and issubclass(getattr(nir, n), nir.NIRNode)}
            kinds: dict = {}
            for key, node in nodes.items():
                typ = node.get("type") if isinstance(node, h5py.Group) else None
                if not isinstance(typ, h5py.Dataset) or typ.size > 64:
                    raise KdsnnError(f"cannot read NIR file {path}: node '{key}' has no type")
                typ = typ[()]
                typ = typ.decode(errors="replace") if isinstance(typ, bytes) else str(typ)
                if typ not in known:
                    raise KdsnnError(f"cannot read NIR file {path}: node '{key}' has unknown "
                                     f"type {typ!r:.40} (not a NIR node type)")
                kinds[key] = typ
            root.visititems(visit)
            if len(objects) > MAX_NODES:
                raise KdsnnError(f"cannot read NIR file {path}: more than {MAX_NODES} objects")
            total = 0
            for obj in objects:
                if not isinstance(obj, h5py.Dataset) or obj.shape is None:
                    continue
                n = float(np.prod([float(d) for d in obj.shape])) if obj.shape else 1.0
                total += n * max(int(obj.dtype.itemsize), 1)
                if n > MAX_ELEMENTS or total > MAX_NIR_BYTES:
                    raise KdsnnError(f"cannot read NIR file {path}: dataset {obj.name} declares shape "
                                     f"{obj.shape} (absurdly large; limits "
                                     f"{MAX_ELEMENTS} elements, {MAX_NIR_BYTES} bytes)")
            for key, typ in kinds.items():
                if typ != "NIRGraph":
                    _check_fields(nodes[key], str(key), typ, f"NIR file {path}")
    except KdsnnError:
        raise
    except Exception:  # noqa: BLE001 - truncated / corrupt HDF5
        raise KdsnnError(f"cannot read NIR file {path}: truncated or corrupt HDF5 (h5py "
                         "cannot read its objects)") from None


#: the array fields of each NIR node type kdsnn reads: name -> (ranks allowed, kind);
#: kind 'num' (finite real numbers), 'int' (finite integers), 'pos' (integers >= 1), 'pad'
#: (integers or a string),
#: optional fields marked by a trailing '?' on the name
_FIELDS = {
    "Affine": {"weight": ((2,), "num"), "bias?": ((0, 1), "num")},
    "Linear": {"weight": ((2,), "num")},
    "Conv2d": {"weight": ((4,), "num"), "bias?": ((0, 1), "num"), "stride": ((0, 1), "pos"),
               "padding": ((0, 1), "pad"), "dilation": ((0, 1), "pos"),
               "groups": ((0, 1), "pos"), "input_shape?": ((0, 1), "pos")},
    "Conv1d": {"weight": ((3,), "num"), "bias?": ((0, 1), "num")},
    "SumPool2d": {"kernel_size": ((0, 1), "pos"), "stride": ((0, 1), "pos"),
                  "padding": ((0, 1), "int")},
    "AvgPool2d": {"kernel_size": ((0, 1), "pos"), "stride": ((0, 1), "pos"),
                  "padding": ((0, 1), "int")},
    "Flatten": {"start_dim": ((0, 1), "int"), "end_dim": ((0, 1), "int"),
                "input_type?": ((0, 1), "int")},
    "Scale": {"scale": ((0, 1, 2, 3, 4), "num")},
    "IF": {"r": ((0, 1, 2, 3), "num"), "v_threshold": ((0, 1, 2, 3), "num"),
           "v_reset?": ((0, 1, 2, 3), "num")},
    "LIF": {k: ((0, 1, 2, 3), "num") for k in ("tau", "r", "v_leak", "v_threshold",
                                               "v_reset?")},
    "CubaLIF": {k: ((0, 1, 2, 3), "num") for k in ("tau_syn", "tau_mem", "r", "v_leak",
                                                   "v_threshold", "v_reset?", "w_in?")},
    "Input": {"shape?": ((0, 1), "int")},
    "Output": {"shape?": ((0, 1), "int")},
}
_INT_LIMIT = 2 ** 31


def _field_problem(value, name: str, ranks: tuple, kind: str) -> Optional[str]:
    """Why the array ``value`` cannot be the field ``name`` (None when it can)."""
    arr = np.asarray(value) if not isinstance(value, np.ndarray) else value
    if isinstance(value, (str, bytes)) or arr.dtype.kind in "SUO":
        if kind == "pad" and isinstance(value, (str, bytes)) or (
                kind == "pad" and arr.ndim == 0 and arr.dtype.kind in "SUO"):
            return None
        return f"{name} is text ({str(value)[:20]!r}), not numbers"
    if arr.dtype.kind == "c":
        return f"{name} holds complex numbers (NIR parameters are real)"
    if arr.dtype.kind not in "biuf":
        return f"{name} has data type {arr.dtype}, not numbers"
    if arr.ndim not in ranks:
        return (f"{name} has rank {arr.ndim} (shape {arr.shape}); NIR's field has rank "
                f"{' or '.join(str(r) for r in ranks)}")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            what = "NaN" if np.isnan(arr).any() else "infinite values"
            return f"{name} holds {what} ({int(bad.sum())} of {arr.size})"
    if kind in ("int", "pad", "pos"):
        if np.any(arr != np.round(arr)) or np.any(np.abs(arr) >= _INT_LIMIT):
            return f"{name} holds {arr.reshape(-1)[:4].tolist()}, not integers"
    if kind == "pos" and np.any(arr < 1):
        return f"{name} holds {arr.reshape(-1)[:4].tolist()}; it must be at least 1"
    return None


def _check_fields(node, key: str, typ: str, where: str) -> None:
    """The node's stored fields against ``_FIELDS`` (HDF5 group before ``nir.read``, or a
    node object): present, numbers (not text or complex), finite, of NIR's rank."""
    schema = _FIELDS.get(typ, {})
    is_group = not isinstance(node, nir.NIRNode)
    names = set(node.keys()) if is_group else set(vars(node))
    for field, (ranks, kind) in schema.items():
        name = field.rstrip("?")
        if name not in names or (not is_group and getattr(node, name) is None):
            if field.endswith("?"):
                continue
            raise KdsnnError(f"NIR import: node '{key}' ({typ}) has no '{name}' (a {typ} "
                             f"needs it); the {where} does not follow NIR 1.0")
        value = node[name] if is_group else getattr(node, name)
        if isinstance(value, dict):  # a type dict of a node object (checked where read)
            continue
        if is_group:
            import h5py
            if not isinstance(value, h5py.Dataset):
                raise KdsnnError(f"NIR import: node '{key}' ({typ}) field '{name}' is a "
                                 "group, not an array")
            value = value[()]
        problem = _field_problem(value, f"'{name}'", ranks, kind)
        if problem:
            raise KdsnnError(f"NIR import: node '{key}' ({typ}) cannot be imported: its "
                             f"{problem}")
    if typ in ("IF", "LIF", "CubaLIF"):  # nir asserts one shape for all parameters
        shapes = {}
        for field in schema:
            name = field.rstrip("?")
            if name in names:
                value = node[name] if is_group else getattr(node, name)
                shapes[name] = tuple(np.shape(value))
        if len(set(shapes.values())) > 1:
            listed = ", ".join(f"{n} {s}" for n, s in shapes.items())
            raise KdsnnError(f"NIR import: node '{key}' ({typ}) cannot be imported: its "
                             f"parameters have different shapes ({listed})")
    # fields outside the table (other node types, extra arrays): numbers must be real, finite
    for name in sorted(names - {f.rstrip("?") for f in schema} - {"type", "metadata",
                                                                  "input_type",
                                                                  "output_type"}):
        value = node[name] if is_group else getattr(node, name)
        if is_group:
            import h5py
            if not isinstance(value, h5py.Dataset):
                continue
            value = value[()]
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "fc":
            continue
        problem = _field_problem(value, f"'{name}'", (value.ndim,), "num")
        if problem:
            raise KdsnnError(f"NIR import: node '{key}' ({typ}) cannot be imported: its "
                             f"{problem}")


def _scalar(x):
    return x.item() if isinstance(x, np.ndarray) else x


def _pair(x) -> tuple:
    a = np.atleast_1d(np.asarray(x)).astype(np.int64)
    return (int(a[0]), int(a[-1]))


def _derive(node, dt: float):
    """kdsnn (alpha, beta, threshold, bias-from-v_leak, synapse_scale) of a neuron node.

    ``synapse_scale`` multiplies synaptic biases to express them in kdsnn units.
    """
    if isinstance(node, nir.IF):
        shape = node.v_threshold.shape
        k = dt * _f64(node.r)
        return (np.zeros(shape), np.ones(shape), _f64(node.v_threshold) / k,
                np.zeros(shape), np.ones(shape))
    if isinstance(node, nir.LIF):
        beta = 1.0 - dt / _f64(node.tau)
        k = _f64(node.r) * (1.0 - beta)
        return (np.zeros_like(beta), beta, _f64(node.v_threshold) / k,
                _f64(node.v_leak) / _f64(node.r), np.ones_like(beta))
    alpha = 1.0 - dt / _f64(node.tau_syn)
    beta = 1.0 - dt / _f64(node.tau_mem)
    k = (1.0 - beta) * _f64(node.r) * (1.0 - alpha) * _f64(node.w_in)
    return (alpha, beta, _f64(node.v_threshold) / k, (1.0 - beta) * _f64(node.v_leak) / k,
            np.ones_like(beta))


def _expand(b: np.ndarray, shape: tuple) -> np.ndarray:
    """Broadcast a per-channel (C,1,1) or per-neuron bias to ``shape``."""
    b = np.asarray(b, dtype=np.float64)
    if b.ndim == 1 and len(shape) > 1:
        b = b.reshape(b.shape[0], *([1] * (len(shape) - 1)))
    return np.broadcast_to(b, shape)


def _restore(node, derived: tuple, name: str) -> dict:
    """Exact parameters from kdsnn_* metadata (checked against ``derived``)."""
    meta = getattr(node, "metadata", None) or {}
    out = dict(zip(_PARAMS, derived[:4]))
    if all(f"kdsnn_{k}" in meta for k in _PARAMS):
        for key in _PARAMS:
            stored = _f64(meta[f"kdsnn_{key}"])
            if stored.shape != np.shape(out[key]) or not np.allclose(
                    stored, out[key], rtol=1e-6, atol=1e-9):
                raise KdsnnError(f"NIR import: node '{name}' {key} in metadata disagrees "
                                 "with its NIR parameters (edited file?)")
            out[key] = stored
    return out


def nir_to_graph(source: Union[nir.NIRGraph, str, os.PathLike],
                 dt: Optional[float] = None) -> DeployGraph:
    """A DeployGraph from a NIR graph or file; what kdsnn cannot express is a KdsnnError.

    ``dt``: the time step the file's time constants are expressed in, for files that do
    not state it in ``metadata["dt"]`` (foreign files; default ``1e-4``, snntorch's and
    spikingjelly's).  norse's exporter writes ``tau = dt / tau_mem_inv`` (read it with
    ``dt = dt_norse ** 2``); sinabs writes ``IF(r = 1)`` in steps (``dt = 1``).

    Foreign conventions handled (see ``tests/foreign_nir.py``): ``Linear`` or ``Affine``;
    ``Flatten`` with any ``start_dim`` before a dense layer whose columns are the source's
    size; any chain of linear nodes between two neuron layers (``Conv2d``, ``SumPool2d``/
    ``AvgPool2d``, ``Flatten``, ``Linear``/``Affine``, ``Scale``) composed into one exact
    connection (``linear_chain``: e.g. the NIR paper's SumPool2d -> Conv2d as one strided
    Conv2d; a chain that is not one exact connection is refused by name); a neuron
    recurrent onto itself through ``Linear``/``Affine`` nodes (a cycle: its spikes of
    step t - 1 feed step t, as snntorch's RLeaky/RSynaptic write it; longer cycles are
    refused); scalar-shaped parameters (broadcast to the neuron's shape, which
    comes from its input connection); ``Input``/``Output`` types with a leading batch axis
    of 1, or a missing input type (taken from the first consumer); node names that are not
    python identifiers (layer names are sanitised).  Refused with one sentence naming the
    node: ``v_reset != 0``, ``LI``/``CubaLI``/``I`` (leaky readouts), ``Delay``,
    ``Threshold``, ``Conv1d``, subgraphs, other cycles, fan-in into anything but a neuron
    or the readout, time constants giving decays outside [0, 1].  The biases of the
    linear nodes into a CubaLIF are its synaptic bias (a ``CLOCK`` connection).
    """
    try:
        return _nir_to_graph(source, dt)
    except RecursionError:
        raise KdsnnError("NIR import: the graph is nested too deeply") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError):
        # never Python's own text: the checks above name what they find; this is the rest
        raise KdsnnError("NIR import: the graph's nodes or metadata have values of an "
                         "unexpected form (the file does not follow NIR 1.0's fields)") \
            from None


_WHY_NOT = {
    "LI": "a leaky-integrator readout has no kdsnn counterpart (kdsnn's readout is the "
          "mean over the T steps of a Linear/Affine into Output)",
    "CubaLI": "a leaky-integrator readout has no kdsnn counterpart (kdsnn's readout is the "
              "mean over the T steps of a Linear/Affine into Output)",
    "I": "an integrator readout has no kdsnn counterpart (kdsnn's readout is the mean over "
         "the T steps of a Linear/Affine into Output)",
    "Delay": "synaptic delays are not supported",
    "Threshold": "a stateless threshold is not a kdsnn neuron",
    "Conv1d": "1-d convolutions are not supported (kdsnn has Conv2d)",
    "Identity": "identity nodes are not supported",
    "NIRGraph": "nested graphs (e.g. snntorch's recurrent RLeaky) are not supported",
}


def _why_not(key: str, node) -> KdsnnError:
    kind = type(node).__name__
    why = _WHY_NOT.get(kind, "kdsnn has no such connection")
    return KdsnnError(f"NIR import: node '{key}' ({kind}) cannot be imported: {why}")


def _meta_number(meta: dict, key: str) -> float:
    """A finite real number from the graph's metadata, or a KdsnnError naming it."""
    raw = meta[key]
    if isinstance(raw, np.ndarray) and raw.size != 1:
        raise KdsnnError(f"NIR import: the file's metadata {key} holds {raw.size} values, "
                         "not one number")
    raw = raw.reshape(()).item() if isinstance(raw, np.ndarray) else raw
    try:
        val = float(raw.decode() if isinstance(raw, bytes) else raw)
    except (TypeError, ValueError):
        raise KdsnnError(f"NIR import: the file's metadata {key} = {str(raw)[:30]!r} is "
                         "not a number") from None
    if not np.isfinite(val):
        raise KdsnnError(f"NIR import: the file's metadata {key} = {val} is not finite")
    return val


_RESET_KEYS = ("reset", "reset_mechanism", "reset_method", "reset_mode")


def _check_reset_semantics(meta: dict, where: str, key: Optional[str] = None) -> None:
    """A reset the metadata states as subtractive (``reset_mechanism = "subtract"``, ...):
    Loihi's LIF (and kdsnn's neuron) resets the membrane to zero."""
    for k in _RESET_KEYS:
        if k in (meta or {}):
            val = _scalar(meta[k])
            val = val.decode(errors="replace") if isinstance(val, bytes) else str(val)
            if "subtract" in val.lower() or "soft" in val.lower():
                node = f"node '{key}' " if key else ""
                raise KdsnnError(f"NIR import: {node}{where} field '{k}' = {val[:20]!r}: a "
                                 "subtractive reset; Loihi's LIF (and kdsnn) reset the "
                                 "membrane to zero")


def _shape_of(value, what: str) -> tuple:
    """A validated shape: positive ints, at most MAX_ELEMENTS elements."""
    arr = np.asarray(value)
    if arr.dtype == object or arr.ndim > 1 or arr.size > 8:
        raise KdsnnError(f"NIR import: {what} is not a shape ({arr!r:.60})")
    if not np.issubdtype(arr.dtype, np.number):
        raise KdsnnError(f"NIR import: {what} is not a shape")
    shape = tuple(int(s) for s in arr.reshape(-1))
    if any(s <= 0 for s in shape) or np.any(arr.reshape(-1) != np.asarray(shape)):
        raise KdsnnError(f"NIR import: {what} {shape} has a non-positive or fractional size")
    if float(np.prod([float(s) for s in shape])) > MAX_ELEMENTS:
        raise KdsnnError(f"NIR import: {what} {shape} is absurdly large "
                         f"(more than {MAX_ELEMENTS} elements)")
    return shape


def _io_type(node, attr: str, key: str):
    """The one shape of an Input/Output node's type, or None when absent or empty."""
    typ = getattr(node, attr, None)
    if not typ:
        return None
    vals = list(typ.values()) if isinstance(typ, dict) else [typ]
    if len(vals) != 1 or vals[0] is None or np.asarray(vals[0]).size == 0:
        return None
    return _shape_of(vals[0], f"{attr} of '{key}'")


def _unbatch(shape: tuple) -> tuple:
    """Drop leading axes of size 1 that are a batch (or time) axis, not data: an input of
    rank 4+ (kdsnn inputs are (C,H,W) at most) or a ``(1, N)`` vector."""
    while shape and shape[0] == 1 and (len(shape) > 3 or len(shape) == 2):
        shape = shape[1:]
    return shape


def _validate(g) -> tuple:
    """Structure checks before anything is built: nodes, edges, one Input and one Output,
    no cycle, sizes.  Returns (input key, output key, preds, succs, topological order)."""
    if not isinstance(g, nir.NIRGraph) or not isinstance(g.nodes, dict) or not g.nodes:
        raise KdsnnError("NIR import: the file holds no NIR graph with nodes")
    if len(g.nodes) > MAX_NODES:
        raise KdsnnError(f"NIR import: {len(g.nodes)} nodes (more than {MAX_NODES})")
    for key, node in g.nodes.items():
        if isinstance(node, nir.NIRGraph) or not isinstance(node, nir.NIRNode):
            raise _why_not(key, node)
        for attr, val in vars(node).items():
            if isinstance(val, np.ndarray) and val.size > MAX_ELEMENTS:
                raise KdsnnError(f"NIR import: node '{key}' {attr} has {val.size} elements "
                                 f"(more than {MAX_ELEMENTS})")
        _check_fields(node, str(key), type(node).__name__, "graph")
    inputs = [k for k, n in g.nodes.items() if isinstance(n, nir.Input)]
    outputs = [k for k, n in g.nodes.items() if isinstance(n, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise KdsnnError(f"NIR import: need exactly one Input and one Output node, found "
                         f"{len(inputs)} Input and {len(outputs)} Output")
    preds: dict = {k: [] for k in g.nodes}
    succs: dict = {k: [] for k in g.nodes}
    for edge in g.edges:
        if len(edge) != 2:
            raise KdsnnError(f"NIR import: malformed edge {edge!r:.80}")
        a, b = (str(e) for e in edge)
        for end in (a, b):
            if end not in g.nodes:
                raise KdsnnError(f"NIR import: edge ({a!r}, {b!r}) names node {end!r}, "
                                 "which does not exist")
        if a == b:
            raise KdsnnError(f"NIR import: node '{a}' feeds itself directly (a recurrence "
                             "needs a Linear/Affine on the cycle: its weights)")
        preds[b].append(a)
        succs[a].append(b)
    if preds[inputs[0]]:
        raise KdsnnError(f"NIR import: the Input node '{inputs[0]}' has incoming edges")
    if succs[outputs[0]]:
        raise KdsnnError(f"NIR import: the Output node '{outputs[0]}' has outgoing edges")
    # recurrent edges: into a neuron from a path of one-input linear nodes that starts at
    # that same neuron (neuron -> Linear/Affine -> the neuron: snntorch's RLeaky/RSynaptic)
    recurrent = set()
    for k, n in g.nodes.items():
        if not isinstance(n, _NEURONS):
            continue
        for p in preds[k]:
            cur, seen = p, set()
            while cur not in seen and not isinstance(g.nodes[cur], _NEURONS + (nir.Input,)) \
                    and len(preds[cur]) == 1:
                seen.add(cur)
                cur = preds[cur][0]
            if cur == k and p != k:
                recurrent.add((p, k))
    indeg = {k: len([p for p in v if (p, k) not in recurrent]) for k, v in preds.items()}
    ready = [k for k in g.nodes if indeg[k] == 0]
    order = []
    while ready:
        k = ready.pop()
        order.append(k)
        for s in succs[k]:
            if (k, s) in recurrent:
                continue
            indeg[s] -= 1
            if indeg[s] == 0:
                ready.append(s)
    if len(order) != len(g.nodes):
        cyc = sorted(k for k in g.nodes if indeg[k] > 0)
        raise KdsnnError(f"NIR import: the graph has a cycle through {', '.join(cyc[:4])} "
                         "that is not one neuron layer recurrent onto itself through "
                         "Linear/Affine nodes: on Loihi a back edge from a layer k synapses "
                         "deeper would arrive late, with the spikes of step t - 1 - k instead "
                         "of t - 1, and relays can only add delay, never remove it")
    return inputs[0], outputs[0], preds, succs, order, recurrent


def _check_neuron(key: str, node) -> None:
    _check_reset_semantics(getattr(node, "metadata", None) or {}, "metadata", key)
    reset = getattr(node, "v_reset", None)
    if reset is not None and np.any(_f64(reset) != 0):
        raise KdsnnError(f"NIR import: node '{key}' ({type(node).__name__}) resets to "
                         f"v_reset = {float(np.max(np.abs(_f64(reset)))):g} != 0; kdsnn's "
                         "neurons reset to zero")
    for attr, val in vars(node).items():
        if isinstance(val, np.ndarray) and val.dtype != object and not np.all(
                np.isfinite(_f64(val))):
            raise KdsnnError(f"NIR import: node '{key}' has non-finite {attr}")
    for attr in ("r", "tau", "tau_mem", "tau_syn", "w_in"):
        if hasattr(node, attr) and np.any(_f64(getattr(node, attr)) <= 0):
            raise KdsnnError(f"NIR import: node '{key}' has {attr} <= 0")


# ------------------------------------------------- linear chains between neuron layers
# One small converter per linear NIR node type (the table ``_LINEAR``), as snntorch's
# ``import_nir`` has one per node: each folds its node into ``_Chain``, the one linear map
# the nodes between two neuron layers make.  A chain ends as one kdsnn Connection (pooling,
# a convolution, or a dense layer over the flattened source) plus a constant (the biases
# carried through), e.g. SumPool2d(2) -> Conv2d(3x3, padding 1) is one Conv2d(6x6, stride
# 2, padding 2) over the same integers (each tap of the conv repeated over its 2x2 window).
# Every composition is checked against the nodes applied one by one (float64, random
# inputs: two linear maps equal on random vectors are equal); a chain that is not one
# exact connection (a padded conv after a conv whose border reads data, ...) is refused
# by name.
class _Chain:
    """The linear map of the chain's nodes so far, from a source of ``src_shape``:
    ``kind`` 'id' (nothing yet), 'pool' (``pool`` = 'sumpool'/'avgpool', ``kernel``),
    'conv' (``weight``, ``stride``, ``padding``) or 'dense' (``weight`` over the flattened
    source); ``shape`` its output shape; ``keys`` the nodes folded in, in order."""

    def __init__(self, src_shape: tuple):
        self.src_shape = tuple(src_shape)
        self.shape = tuple(src_shape)
        self.kind, self.pool, self.kernel = "id", None, (1, 1)
        self.weight, self.stride, self.padding = None, (1, 1), (0, 0)
        self.grid = tuple(src_shape)  # the output shape before any Flatten
        self.keys: list = []

    def connection(self, source: str) -> Connection:
        if self.kind == "pool":
            return Connection(source, self.pool, kernel=self.kernel)
        if self.kind == "conv":
            return Connection(source, "conv", self.weight, self.stride, self.padding)
        return Connection(source, "dense", self.weight)

    def as_conv(self, key: str):
        """The map so far as a convolution (a pool is a diagonal one)."""
        if self.kind == "conv":
            return self.weight, self.stride, self.padding
        if len(self.src_shape) != 3 or len(self.grid) != 3:
            raise KdsnnError(f"NIR import: node '{key}' needs a (C,H,W) input, the chain "
                             f"before it gives shape {self.grid}")
        c = self.src_shape[0]
        kh, kw = self.kernel
        w = np.zeros((c, c, kh, kw))
        w[np.arange(c), np.arange(c)] = 1.0 / (kh * kw if self.pool == "avgpool" else 1)
        return w, self.kernel, (0, 0)

    def set_conv(self, w, stride, padding, shape):
        self.kind, self.weight = "conv", w
        self.stride, self.padding = tuple(stride), tuple(padding)
        self.shape = self.grid = tuple(shape)

    def dense_matrix(self, key: str) -> np.ndarray:
        """The map so far as a matrix over the flattened source (the identity for 'id')."""
        n_in = int(np.prod(self.src_shape))
        n_out = int(np.prod(self.shape))
        if float(n_in) * n_out > MAX_ELEMENTS:
            raise KdsnnError(f"NIR import: the chain through '{key}' composes into a "
                             f"{n_out} x {n_in} matrix (absurdly large)")
        if self.kind == "dense":
            return self.weight
        if self.kind == "id":
            return np.eye(n_in)
        return None  # conv/pool: composed by the transpose in _lin_dense


def _conv_out(size: tuple, k: tuple, s: tuple, p: tuple) -> tuple:
    return tuple((size[d] + 2 * p[d] - k[d]) // s[d] + 1 for d in range(2))


def _compose_conv(w1, s1, p1, w2, s2, p2) -> tuple:
    """conv2(conv1(x)) as one convolution (exact where conv2 reads no padding that conv1
    would have filled with data; checked by the caller)."""
    co, cm, k2h, k2w = w2.shape
    _, ci, k1h, k1w = w1.shape
    kh, kw = k1h + (k2h - 1) * s1[0], k1w + (k2w - 1) * s1[1]
    if float(co) * ci * kh * kw > MAX_ELEMENTS:
        raise KdsnnError("NIR import: a composed convolution kernel is absurdly large")
    w = np.zeros((co, ci, kh, kw))
    for a in range(k2h):
        for b in range(k2w):
            w[:, :, a * s1[0]:a * s1[0] + k1h, b * s1[1]:b * s1[1] + k1w] += np.einsum(
                "om,mihw->oihw", w2[:, :, a, b], w1)
    return w, (s1[0] * s2[0], s1[1] * s2[1]), (p1[0] + p2[0] * s1[0], p1[1] + p2[1] * s1[1])


def _lin_conv(c: _Chain, key: str, node) -> _Chain:
    w = _f64(node.weight)
    if w.ndim != 4:
        raise KdsnnError(f"NIR import: conv '{key}' weight has rank {w.ndim}")
    if _pair(node.dilation) != (1, 1) or int(_scalar(node.groups)) != 1 or \
            isinstance(node.padding, str):
        raise KdsnnError(f"NIR import: conv '{key}' uses dilation, groups or a string "
                         "padding (not supported)")
    if c.kind == "dense" or len(c.shape) != 3:
        raise KdsnnError(f"NIR import: conv '{key}' reads a flat input of shape {c.shape} "
                         "(no (C,H,W) to convolve)")
    if node.input_shape is not None and tuple(_pair(node.input_shape)) != tuple(c.shape[1:]):
        raise KdsnnError(f"NIR import: conv '{key}' declares input_shape "
                         f"{_pair(node.input_shape)}, its source gives {tuple(c.shape[1:])}")
    if w.shape[1] != c.shape[0]:
        raise KdsnnError(f"NIR import: conv '{key}' expects {w.shape[1]} input channels, "
                         f"its source has {c.shape[0]}")
    if node.bias is not None and np.size(node.bias) not in (1, w.shape[0]):
        raise KdsnnError(f"NIR import: conv '{key}' has {np.size(node.bias)} biases for "
                         f"{w.shape[0]} channels")
    s, p = _pair(node.stride), _pair(node.padding)
    if min(s) < 1 or min(p) < 0:
        raise KdsnnError(f"NIR import: conv '{key}' has stride {s} and padding {p}")
    out = (w.shape[0], *_conv_out(c.shape[1:], w.shape[2:], s, p))
    if min(out) < 1:
        raise KdsnnError(f"NIR import: conv '{key}' gives an empty output {out}")
    if c.kind == "id":
        c.set_conv(w, s, p, out)
    else:
        c.set_conv(*_compose_conv(*c.as_conv(key), w, s, p), out)
    return c


def _lin_pool(c: _Chain, key: str, node) -> _Chain:
    k, s = _pair(node.kernel_size), _pair(node.stride)
    if k != s or any(_pair(node.padding)):
        raise KdsnnError(f"NIR import: pool '{key}' needs stride == kernel and no padding")
    if len(c.shape) != 3:
        raise KdsnnError(f"NIR import: pool '{key}' reads a source of shape {c.shape}, "
                         "not (C,H,W)")
    kind = "sumpool" if isinstance(node, nir.SumPool2d) else "avgpool"
    out = (c.shape[0], c.shape[1] // k[0], c.shape[2] // k[1])
    if min(out) < 1:
        raise KdsnnError(f"NIR import: pool '{key}' is larger than its input {c.shape}")
    if c.kind == "id" or (c.kind == "pool" and c.pool == kind):
        c.kind, c.pool, c.shape = "pool", kind, out
        c.grid = out
        c.kernel = (c.kernel[0] * k[0], c.kernel[1] * k[1])
        return c
    if c.kind == "dense":
        raise KdsnnError(f"NIR import: pool '{key}' reads a flat input of shape {c.shape}")
    pw = np.zeros((c.shape[0], c.shape[0], *k))
    pw[np.arange(c.shape[0]), np.arange(c.shape[0])] = 1.0 / (
        k[0] * k[1] if kind == "avgpool" else 1)
    c.set_conv(*_compose_conv(*c.as_conv(key), pw, k, (0, 0)), out)
    return c


def _lin_flatten(c: _Chain, key: str, node) -> _Chain:
    c.shape = (int(np.prod(c.shape)),)  # any start_dim: the batch axis is not in kdsnn's
    return c


def _lin_dense(c: _Chain, key: str, node) -> _Chain:
    what = type(node).__name__
    w = _f64(node.weight)
    size = int(np.prod(c.shape))
    if w.ndim != 2 or w.shape[1] != size:
        raise KdsnnError(f"NIR import: {what} '{key}' has weight shape {w.shape}, its "
                         f"source gives {size} values (shape {c.shape})")
    if len(c.shape) > 1:
        raise KdsnnError(f"NIR import: {what} '{key}' reads a source of shape {c.shape} "
                         "without a Flatten")
    if float(w.shape[0]) * int(np.prod(c.src_shape)) > MAX_ELEMENTS:
        raise KdsnnError(f"NIR import: {what} '{key}' composes into a dense weight of "
                         f"{w.shape[0]} x {int(np.prod(c.src_shape))} (absurdly large)")
    m = c.dense_matrix(key)
    if m is not None:
        full = w if c.kind == "id" else w @ m
    else:  # dense after a convolution/pool: w through the convolution's transpose
        import torch
        import torch.nn.functional as tF
        cw, s, p = c.as_conv(key)
        rows = torch.as_tensor(w.reshape(w.shape[0], *c.grid))
        back = tF.conv_transpose2d(rows, torch.as_tensor(cw), stride=s, padding=p).numpy()
        full = np.zeros((w.shape[0], *c.src_shape))
        h, wd = min(back.shape[2], c.src_shape[1]), min(back.shape[3], c.src_shape[2])
        full[:, :, :h, :wd] = back[:, :, :h, :wd]
        full = full.reshape(w.shape[0], -1)
    c.kind, c.weight, c.shape = "dense", full, (w.shape[0],)
    c.grid = c.shape
    return c


def _lin_scale(c: _Chain, key: str, node) -> _Chain:
    s = _f64(node.scale)
    while s.ndim > len(c.shape) and s.shape[0] == 1:  # a leading batch axis
        s = s[0]
    try:
        s = np.broadcast_to(s, c.shape)
    except ValueError:
        raise KdsnnError(f"NIR import: Scale node '{key}' has shape {np.shape(node.scale)}, "
                         f"its input {c.shape}") from None
    if c.kind == "pool" and c.pool == "sumpool" and np.allclose(
            s, 1.0 / (c.kernel[0] * c.kernel[1]), rtol=1e-12, atol=0):
        c.pool = "avgpool"  # SumPool2d + Scale(1/(kh*kw)): how kdsnn writes average pooling
        return c
    if c.kind == "dense" or len(c.shape) == 1:
        m = c.dense_matrix(key)
        if m is None:  # conv/pool then Flatten then Scale: as a dense map
            raise KdsnnError(f"NIR import: Scale node '{key}' after a Flatten of a "
                             "convolution (put it before the Flatten)")
        c.kind, c.weight = "dense", s.reshape(-1, 1) * m
        return c
    per_c = s.reshape(s.shape[0], -1)
    if not np.all(per_c == per_c[:, :1]):
        raise KdsnnError(f"NIR import: Scale node '{key}' scales positions of a (C,H,W) "
                         "input differently (only a scale per channel is a convolution)")
    if c.kind == "id":
        ch = c.shape[0]
        w = np.zeros((ch, ch, 1, 1))
        w[np.arange(ch), np.arange(ch), 0, 0] = per_c[:, 0]
        c.set_conv(w, (1, 1), (0, 0), c.shape)
        return c
    w, st, p = c.as_conv(key)
    c.set_conv(w * per_c[:, 0].reshape(-1, 1, 1, 1), st, p, c.shape)
    return c


#: NIR node type -> its converter (the linear nodes a connection may be made of)
_LINEAR = {nir.Conv2d: _lin_conv, nir.SumPool2d: _lin_pool, nir.AvgPool2d: _lin_pool,
           nir.Flatten: _lin_flatten, nir.Affine: _lin_dense, nir.Linear: _lin_dense,
           nir.Scale: _lin_scale}


def _node_apply(node, x):
    """One linear NIR node applied to a batch ``x`` (float64 torch): the reference."""
    import torch
    import torch.nn.functional as tF
    if isinstance(node, nir.Conv2d):
        b = None if node.bias is None else torch.as_tensor(
            np.broadcast_to(_f64(node.bias).reshape(-1), (node.weight.shape[0],)).copy())
        return tF.conv2d(x, torch.as_tensor(_f64(node.weight)), b,
                         stride=_pair(node.stride), padding=_pair(node.padding))
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        k = _pair(node.kernel_size)
        y = tF.avg_pool2d(x, k, k)
        return y * (k[0] * k[1]) if isinstance(node, nir.SumPool2d) else y
    if isinstance(node, nir.Flatten):
        return x.reshape(x.shape[0], -1)
    if isinstance(node, (nir.Affine, nir.Linear)):
        y = x.reshape(x.shape[0], -1) @ torch.as_tensor(_f64(node.weight)).T
        if isinstance(node, nir.Affine) and node.bias is not None:
            y = y + torch.as_tensor(_f64(node.bias).reshape(-1))
        return y
    s = _f64(node.scale)
    while s.ndim > x.dim() - 1 and s.shape[0] == 1:
        s = s[0]
    return x * torch.as_tensor(s)


def linear_chain(keys: list, nodes: dict, src_shape: tuple, source: str) -> tuple:
    """The NIR nodes ``keys`` (a path of linear nodes from a neuron layer or the input
    ``source`` of ``src_shape``) as one exact kdsnn Connection: ``(connection, bias)``,
    ``bias`` the constant the chain adds (an array of the connection's output shape, or
    None when zero).  What is not one exact connection is a KdsnnError naming the path."""
    import torch
    c = _Chain(src_shape)
    for key in keys:
        node = nodes[key]
        conv = _LINEAR.get(type(node))
        if conv is None:
            if type(node).__name__ in _WHY_NOT:
                raise _why_not(key, node)
            path = " -> ".join(f"{k} ({type(nodes[k]).__name__})" for k in keys)
            raise KdsnnError(f"NIR import: the path {path} is not a connection kdsnn can "
                             "express (Conv2d, SumPool2d/AvgPool2d, Flatten, "
                             "Linear/Affine, Scale)")
        try:
            c = conv(c, key, node)
        except (ValueError, TypeError, IndexError, AttributeError, OverflowError):
            raise KdsnnError(f"NIR import: node '{key}' ({type(node).__name__}) has "
                             "parameters that do not fit its input of shape "
                             f"{c.shape}") from None
        c.keys.append(key)
    conn = c.connection(source)
    # the composition against the nodes one by one (float64, seeded random inputs)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((3, *src_shape), generator=gen, dtype=torch.float64)
    x[0] = 0
    ref = x
    for key in keys:
        ref = _node_apply(nodes[key], ref)
    ref = ref.reshape(3, -1)
    got = conn.apply(x).reshape(3, -1) if conn.out_shape(src_shape) == c.shape or \
        int(np.prod(conn.out_shape(src_shape))) == ref.shape[1] else None
    bias = ref[0]
    scale = float(ref.abs().max()) + 1.0
    if got is None or got.shape != ref.shape or not torch.allclose(
            got + bias, ref, rtol=0, atol=1e-9 * scale):
        path = " -> ".join(f"{k} ({type(nodes[k]).__name__})" for k in keys)
        raise KdsnnError(f"NIR import: the path {path} is not one exact connection (a "
                         "padded convolution after a convolution or pooling whose border "
                         "reads data, or pooling that drops rows before a padded "
                         "convolution), and no relay can split it: the values between the "
                         "nodes are graded sums, a relay neuron carries spikes")
    bias = bias.numpy().reshape(conn.out_shape(src_shape))
    return conn, (bias if np.any(bias != 0) else None)


def _nir_to_graph(source: Union[nir.NIRGraph, str, os.PathLike],
                  dt: Optional[float] = None) -> DeployGraph:
    """Load a NIR graph (object or file) back into a DeployGraph."""
    # type_check=False: nir's own type inference rejects legal foreign files (scalar
    # parameters, a batch axis in the Input type); kdsnn checks every shape itself below
    g = source if isinstance(source, nir.NIRGraph) else read_nir(source, type_check=False)
    in_node, out_node, preds, succs, topo, recurrent = _validate(g)
    meta = dict(g.metadata or {})
    _check_reset_semantics(meta, "the graph's metadata")
    if "dt" in meta:
        file_dt = _meta_number(meta, "dt")
        if dt is not None and not np.isclose(float(dt), file_dt, rtol=1e-12, atol=0):
            raise KdsnnError(f"NIR import: the file states dt = {file_dt:g}, "
                             f"but dt = {float(dt):g} was asked for")
        dt = file_dt
    dt = float(DT if dt is None else dt)
    if not (np.isfinite(dt) and dt > 0):
        raise KdsnnError(f"NIR import: dt = {dt} is not a positive time step")
    nodes = g.nodes
    names = _Names()
    layer_names: dict = {}

    def layer_name(key):
        if key not in layer_names:
            m = getattr(nodes[key], "metadata", None) or {}
            layer_names[key] = (str(_scalar(m["kdsnn_layer"])) if "kdsnn_layer" in m
                                else names(key))
            if not layer_names[key] or layer_names[key] == INPUT:
                raise KdsnnError(f"NIR import: node '{key}' names its kdsnn layer "
                                 f"{layer_names[key]!r:.30} in its metadata, which cannot be a "
                                 "layer name")
        return layer_names[key]

    # input shape: the Input type (batch axis dropped), else from its first consumer
    input_shape = _io_type(nodes[in_node], "input_type", in_node)
    if input_shape is None:
        for s in succs[in_node]:
            n = nodes[s]
            if isinstance(n, nir.Conv2d) and n.input_shape is not None:
                input_shape = (int(np.asarray(n.weight).shape[1]),
                               *_shape_of(n.input_shape, f"input_shape of '{s}'"))
            elif isinstance(n, nir.Flatten) and _io_type(n, "input_type", s):
                input_shape = _io_type(n, "input_type", s)
            elif isinstance(n, (nir.Affine, nir.Linear)):
                input_shape = (int(np.asarray(n.weight).shape[-1]),)
            if input_shape:
                break
        if input_shape is None:
            raise KdsnnError(f"NIR import: Input node '{in_node}' has no type and its "
                             "consumers do not tell the input shape")
    input_shape = _unbatch(input_shape)
    _shape_of(input_shape, "the input shape")

    def is_neuron(key):
        return isinstance(nodes[key], _NEURONS)

    # every neuron must lead to the Output (else the graph's output is not its last layer)
    reaches, stack = {out_node}, [out_node]
    while stack:
        for p in preds[stack.pop()]:
            if p not in reaches:
                reaches.add(p)
                stack.append(p)
    for key in topo:
        n = nodes[key]
        if isinstance(n, _NEURONS):
            if key not in reaches:
                raise KdsnnError(f"NIR import: neuron node '{key}' does not lead to the "
                                 "Output node")
            _check_neuron(key, n)
        elif key in reaches and type(n).__name__ in _WHY_NOT:
            raise _why_not(key, n)

    shapes = {in_node: input_shape}

    def one_pred(key):
        p = preds[key]
        if len(p) != 1:
            raise KdsnnError(f"NIR import: node '{key}' ({type(nodes[key]).__name__}) has "
                             f"{len(p)} inputs; only neurons and the readout may sum several "
                             "inputs (fan-in)")
        return p[0]

    def chain(key):
        """Walk back from a connection's last node to a neuron or the Input and fold the
        linear nodes between into one Connection: (Connection, bias or None)."""
        ops = []
        while key != in_node and not is_neuron(key):
            ops.append(key)
            key = one_pred(key)
        ops.reverse()
        if not ops:
            raise KdsnnError(f"NIR import: '{key}' feeds a neuron or the Output with no "
                             "synapse (Conv2d/Linear/Affine/pooling) between")
        return linear_chain(ops, nodes, shapes[key], INPUT if key == in_node
                            else layer_name(key))

    def derive_checked(key, node, shape):
        derived = [np.broadcast_to(np.asarray(d, dtype=np.float64), shape)
                   for d in _derive(node, dt)]
        for name, val in (("alpha", derived[0]), ("beta", derived[1])):
            if np.any((val < 0) | (val > 1)) or not np.all(np.isfinite(val)):
                raise KdsnnError(
                    f"NIR import: node '{key}' ({type(node).__name__}) gives {name} = "
                    f"1 - dt/tau in [{val.min():g}, {val.max():g}], outside [0, 1], at "
                    f"dt = {dt:g}: the file's time constants are in other units (pass "
                    "the exporter's time step: norse dt = dt_norse**2, sinabs dt = 1)")
        if not np.all(np.isfinite(derived[2])):
            raise KdsnnError(f"NIR import: node '{key}' has an infinite threshold")
        return derived

    # neuron order: the first ready neuron in the file's node order (a round trip keeps
    # kdsnn's layer order); the graph is acyclic (checked), so this terminates
    ups: dict = {}
    for key in topo:
        ups[key] = set()
        for p in preds[key]:
            if (p, key) not in recurrent:
                ups[key] |= {p} if is_neuron(p) else ups[p]
    neuron_keys = [k for k in nodes if is_neuron(k)]
    order, done = [], set()
    while len(order) < len(neuron_keys):
        nxt = next(k for k in neuron_keys if k not in done and ups[k] <= done)
        order.append(nxt)
        done.add(nxt)
    layers = []
    for key in order:
        node = nodes[key]
        conns, syn_bias = [], None
        for p in preds[key]:
            if (p, key) not in recurrent:
                conn, b = chain(p)
                conns.append((conn, b))
        if not conns:
            raise KdsnnError(f"NIR import: neuron node '{key}' has no input"
                             + (" but its own recurrence" if preds[key] else ""))
        src_shape = shapes[in_node] if conns[0][0].source == INPUT else next(
            layer.shape for layer in layers if layer.name == conns[0][0].source)
        shape = conns[0][0].out_shape(src_shape)
        if float(np.prod(shape)) > MAX_ELEMENTS:
            raise KdsnnError(f"NIR import: neuron node '{key}' has shape {shape} "
                             "(absurdly large)")
        shapes[key] = shape
        for p in preds[key]:  # recurrent: the neuron's own spikes of the previous step
            if (p, key) in recurrent:
                conn, b = chain(p)
                if conn.kind != "dense":
                    raise KdsnnError(f"NIR import: the recurrence of neuron node '{key}' "
                                     f"is a {conn.kind} connection (kdsnn runs recurrence "
                                     "through Linear/Affine)")
                conns.append((conn, b))
        syn_bias = np.zeros(shape)
        for conn, b in conns:
            if b is not None:
                syn_bias = syn_bias + _expand(b, shape)
        try:
            derived = derive_checked(key, node, shape)
        except ValueError:
            raise KdsnnError(f"NIR import: the parameters of neuron node '{key}' do not fit "
                             f"its input's shape {shape}") from None
        if isinstance(node, nir.CubaLIF) and np.any(syn_bias != 0) and np.any(derived[0] != 0):
            # a constant synaptic current, filtered by the current decay: the clock (a bias
            # axon on Loihi), not the membrane bias
            conns.append((Connection(CLOCK, "dense", syn_bias.reshape(-1, 1)), None))
            syn_bias = np.zeros(shape)
        derived[3] = derived[3] + syn_bias * derived[4]
        params = _restore(node, tuple(derived), key)
        layers.append(NeuronLayer(layer_name(key), shape, tuple(c for c, _ in conns),
                                  spiking=True, **params))
        shapes[key] = shape
    if not preds[out_node]:
        raise KdsnnError(f"NIR import: the Output node '{out_node}' has no input")
    last = one_pred(out_node)
    if not is_neuron(last):  # non-spiking readout
        ln = nodes[last]
        ends = preds[last] if (isinstance(ln, nir.Scale) and len(preds[last]) > 1
                               and np.all(_f64(ln.scale) == 1)) else [last]
        conns, bias = [], None
        for e in ends:
            conn, b = chain(e)
            src_shape = shapes[in_node] if conn.source == INPUT else next(
                layer.shape for layer in layers if layer.name == conn.source)
            shape = conn.out_shape(src_shape)
            conns.append(conn)
            if b is not None:
                bias = (0 if bias is None else bias) + _expand(b, shape)
        shape = conns[0].out_shape(shapes[in_node] if conns[0].source == INPUT else next(
            layer.shape for layer in layers if layer.name == conns[0].source))
        declared = _io_type(nodes[out_node], "output_type", out_node)
        if declared is not None and int(np.prod(declared)) != int(np.prod(shape)):
            raise KdsnnError(f"NIR import: the Output node '{out_node}' declares shape "
                             f"{declared}, its input gives {shape}")
        bias = np.zeros(shape) if bias is None else np.broadcast_to(bias, shape)
        om = nodes[out_node].metadata or {}
        name = (str(_scalar(om["kdsnn_layer"])) if "kdsnn_layer" in om
                else names(str(_scalar(meta.get("readout_layer") or "readout"))))
        params = {"alpha": np.zeros(shape), "beta": np.zeros(shape),
                  "threshold": np.zeros(shape), "bias": bias}
        for key in _PARAMS:
            if f"kdsnn_{key}" in om:
                params[key] = _f64(om[f"kdsnn_{key}"])
        if not np.allclose(params["bias"], bias, rtol=1e-6, atol=1e-9):
            raise KdsnnError("NIR import: readout bias in metadata disagrees with the graph")
        layers.append(NeuronLayer(name, shape, tuple(conns), spiking=False, **params))
    elif not layers or layers[-1].name != layer_name(last):
        raise KdsnnError(f"NIR import: the Output node's input '{last}' is not the last "
                         "neuron layer")
    deploy_meta = meta.get("deploy_metadata")
    try:
        deploy_meta = json.loads(deploy_meta) if deploy_meta else {}
    except (TypeError, ValueError):
        deploy_meta = {}
    stated = None
    if "time_steps" in meta:
        stated = _meta_number(meta, "time_steps")
        if stated != int(stated) or not 1 <= stated <= 1_000_000:
            raise KdsnnError(f"NIR import: the file's metadata time_steps = {stated:g} is "
                             "not a whole number of steps from 1 to 1000000")
        stated = int(stated)
    if not isinstance(deploy_meta, dict):
        deploy_meta = {}
    deploy_meta = dict(deploy_meta, nir_source={"dt": dt, "time_steps": stated})
    try:
        return DeployGraph(input_shape, tuple(layers),
                           time_steps=4 if stated is None else stated,
                           encoding=str(_scalar(meta.get("input_encoding", "direct"))),
                           metadata=deploy_meta)
    except ValueError as exc:
        raise KdsnnError(f"NIR import: {exc}") from exc
