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
  For CubaLIF a synaptic bias would be low-pass filtered by alpha, so the bias always goes
  into ``v_leak = bias/(1-beta)`` (Euler: ``v += (1-beta)*v_leak``): exact NIR; snntorch
  refuses it (assert) and norse misapplies it.  Zero biases give ``v_leak = 0``.
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

from export.graph import INPUT, Connection, DeployGraph, NeuronLayer
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
        if conn.kind == "dense":
            return j
        if conn.kind == "conv" and _channel_bias(layer.bias) is not None:
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
        if not layer.spiking and not is_last:
            raise KdsnnError(f"NIR export: non-spiking layer '{layer.name}' is not the "
                             "readout (only the last layer may be non-spiking)")
        needs_bias = bool(np.any(layer.bias != 0))
        if layer.spiking and not np.all(layer.alpha == 0):
            slot = None  # CubaLIF: bias goes to v_leak
        else:
            slot = _bias_slot(layer) if needs_bias else None
        if not layer.spiking and needs_bias and slot is None:
            raise KdsnnError(f"NIR export: readout '{layer.name}' has a bias that no "
                             "incoming connection can carry")
        ends = []
        for j, conn in enumerate(layer.connections):
            cbias = layer.bias if (slot == j) else None
            ends.append(_add_connection(conn, produced[conn.source], shapes[conn.source],
                                        layer.shape, f"{base}_syn{j}", cbias, nodes, edges,
                                        names))
        if layer.spiking:
            node = _neuron_node(layer, dt, bias_in_synapse=slot is not None or not needs_bias)
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
    except Exception as exc:  # noqa: BLE001 - any parse error is a bad file
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise KdsnnError(f"cannot read NIR file {path}: {msg}") from None


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
            known = {n for n in dir(nir) if isinstance(getattr(nir, n), type)
                     and issubclass(getattr(nir, n), nir.NIRNode)}
            for key, node in nodes.items():
                typ = node.get("type") if isinstance(node, h5py.Group) else None
                if not isinstance(typ, h5py.Dataset) or typ.size > 64:
                    raise KdsnnError(f"cannot read NIR file {path}: node '{key}' has no type")
                typ = typ[()]
                typ = typ.decode(errors="replace") if isinstance(typ, bytes) else str(typ)
                if typ not in known:
                    raise KdsnnError(f"cannot read NIR file {path}: node '{key}' has unknown "
                                     f"type {typ!r:.40} (not a NIR node type)")
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
    except KdsnnError:
        raise
    except Exception as exc:  # noqa: BLE001 - truncated / corrupt HDF5
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise KdsnnError(f"cannot read NIR file {path} (truncated or corrupt HDF5: "
                         f"{msg})") from None


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
            if not np.allclose(stored, out[key], rtol=1e-6,
                                                        atol=1e-9):
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
    size; pooling (+ ``Scale``) then ``Flatten`` then a dense layer, composed into one
    dense connection; scalar-shaped parameters (broadcast to the neuron's shape, which
    comes from its input connection); ``Input``/``Output`` types with a leading batch axis
    of 1, or a missing input type (taken from the first consumer); node names that are not
    python identifiers (layer names are sanitised).  Refused with one sentence naming the
    node: ``v_reset != 0``, ``LI``/``CubaLI``/``I`` (leaky readouts), ``Delay``,
    ``Threshold``, ``Conv1d``, subgraphs, cycles, fan-in into anything but a neuron or the
    readout, synaptic biases into a CubaLIF, time constants giving decays outside [0, 1].
    """
    try:
        return _nir_to_graph(source, dt)
    except RecursionError:
        raise KdsnnError("NIR import: the graph is nested too deeply") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise KdsnnError(f"NIR import: {msg}") from None


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
            raise KdsnnError(f"NIR import: node '{a}' feeds itself (recurrent edges are not "
                             "supported: kdsnn runs feed-forward networks)")
        preds[b].append(a)
        succs[a].append(b)
    if preds[inputs[0]]:
        raise KdsnnError(f"NIR import: the Input node '{inputs[0]}' has incoming edges")
    if succs[outputs[0]]:
        raise KdsnnError(f"NIR import: the Output node '{outputs[0]}' has outgoing edges")
    indeg = {k: len(v) for k, v in preds.items()}
    ready = [k for k in g.nodes if indeg[k] == 0]
    order = []
    while ready:
        k = ready.pop()
        order.append(k)
        for s in succs[k]:
            indeg[s] -= 1
            if indeg[s] == 0:
                ready.append(s)
    if len(order) != len(g.nodes):
        cyc = sorted(k for k in g.nodes if indeg[k] > 0)
        raise KdsnnError(f"NIR import: the graph has a cycle through {', '.join(cyc[:4])} "
                         "(recurrent edges are not supported: kdsnn runs feed-forward "
                         "networks)")
    return inputs[0], outputs[0], preds, succs, order


def _check_neuron(key: str, node) -> None:
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


def _dense_after_pool(w: np.ndarray, src_shape: tuple, kind: str, k: tuple) -> np.ndarray:
    """The dense weight over a (C,H,W) source equal to ``kind`` pooling then ``w``."""
    c, h, wd = src_shape
    kh, kw = k
    ph, pw = h // kh, wd // kw
    n = w.shape[0]
    if float(n) * c * h * wd > MAX_ELEMENTS:
        raise KdsnnError("NIR import: pooling + dense composed weight is absurdly large")
    full = np.zeros((n, c, h, wd))
    full[:, :, :ph * kh, :pw * kw] = np.repeat(np.repeat(w.reshape(n, c, ph, pw), kh, 2),
                                               kw, 3)
    if kind == "avgpool":
        full /= kh * kw
    return full.reshape(n, -1)


def _nir_to_graph(source: Union[nir.NIRGraph, str, os.PathLike],
                  dt: Optional[float] = None) -> DeployGraph:
    """Load a NIR graph (object or file) back into a DeployGraph."""
    # type_check=False: nir's own type inference rejects legal foreign files (scalar
    # parameters, a batch axis in the Input type); kdsnn checks every shape itself below
    g = source if isinstance(source, nir.NIRGraph) else read_nir(source, type_check=False)
    in_node, out_node, preds, succs, topo = _validate(g)
    meta = dict(g.metadata or {})
    if "dt" in meta:
        file_dt = float(_scalar(meta["dt"]))
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
        nodes between into one Connection: (Connection, bias or None)."""
        ops = []
        while key != in_node and not is_neuron(key):
            ops.append(key)
            key = one_pred(key)
        src, src_shape = key, shapes[key]
        ops.reverse()
        if not ops:
            raise KdsnnError(f"NIR import: '{src}' feeds a neuron or the Output with no "
                             "synapse (Conv2d/Linear/Affine/pooling) between")
        src_n = INPUT if src == in_node else layer_name(src)
        first = nodes[ops[0]]
        if isinstance(first, nir.Conv2d):
            if len(ops) != 1:
                raise _why_not(ops[1], nodes[ops[1]])
            w = _f64(first.weight)
            if w.ndim != 4:
                raise KdsnnError(f"NIR import: conv '{ops[0]}' weight has rank {w.ndim}")
            if _pair(first.dilation) != (1, 1) or int(_scalar(first.groups)) != 1 or \
                    isinstance(first.padding, str):
                raise KdsnnError(f"NIR import: conv '{ops[0]}' uses dilation, groups or a "
                                 "string padding (not supported)")
            if first.input_shape is not None and len(src_shape) == 3 and \
                    tuple(_pair(first.input_shape)) != tuple(src_shape[1:]):
                raise KdsnnError(f"NIR import: conv '{ops[0]}' declares input_shape "
                                 f"{_pair(first.input_shape)}, its source gives "
                                 f"{tuple(src_shape[1:])}")
            bias = _f64(first.bias).reshape(-1) if first.bias is not None else np.zeros(
                w.shape[0])
            if bias.size not in (1, w.shape[0]):
                raise KdsnnError(f"NIR import: conv '{ops[0]}' has {bias.size} biases for "
                                 f"{w.shape[0]} channels")
            bias = np.broadcast_to(bias, (w.shape[0],))
            return (Connection(src_n, "conv", w, _pair(first.stride), _pair(first.padding)),
                    bias[:, None, None])
        i, pool = 0, None
        if isinstance(first, (nir.SumPool2d, nir.AvgPool2d)):
            k, s = _pair(first.kernel_size), _pair(first.stride)
            if k != s or any(_pair(first.padding)):
                raise KdsnnError(f"NIR import: pool '{ops[0]}' needs stride == kernel and "
                                 "no padding")
            if len(src_shape) != 3:
                raise KdsnnError(f"NIR import: pool '{ops[0]}' reads a source of shape "
                                 f"{src_shape}, not (C,H,W)")
            kind = "sumpool" if isinstance(first, nir.SumPool2d) else "avgpool"
            i = 1
            if i < len(ops) and isinstance(nodes[ops[i]], nir.Scale):
                scale = _f64(nodes[ops[i]].scale)
                if kind != "sumpool" or not np.allclose(scale, 1.0 / (k[0] * k[1])):
                    raise KdsnnError(f"NIR import: Scale node '{ops[i]}' is not the "
                                     "1/(kh*kw) of an average pool")
                kind, i = "avgpool", i + 1
            pool = (kind, k)
            if i == len(ops):
                return Connection(src_n, kind, kernel=k), None
        rest = ops[i:]
        flat = rest and isinstance(nodes[rest[0]], nir.Flatten)
        if flat:
            rest = rest[1:]
        if len(rest) != 1 or not isinstance(nodes[rest[0]], (nir.Affine, nir.Linear)):
            bad = next((o for o in rest if not isinstance(nodes[o], (nir.Affine, nir.Linear))),
                       rest[-1] if rest else ops[-1])
            if type(nodes[bad]).__name__ in _WHY_NOT:
                raise _why_not(bad, nodes[bad])
            path = " -> ".join(f"{o} ({type(nodes[o]).__name__})" for o in ops)
            raise KdsnnError(f"NIR import: the path {path} from '{src}' is not a connection "
                             "kdsnn can express (Conv2d; pooling; [pooling ->] [Flatten ->] "
                             "Linear/Affine)")
        dense = nodes[rest[0]]
        w = _f64(dense.weight)
        in_shape = src_shape if pool is None else (
            src_shape[0], src_shape[1] // pool[1][0], src_shape[2] // pool[1][1])
        size = int(np.prod(in_shape))
        if w.ndim != 2 or w.shape[1] != size:
            raise KdsnnError(f"NIR import: {type(dense).__name__} '{rest[0]}' has weight "
                             f"shape {w.shape}, its source gives {size} values "
                             f"(shape {in_shape})")
        if len(in_shape) > 1 and not flat:
            raise KdsnnError(f"NIR import: {type(dense).__name__} '{rest[0]}' reads a "
                             f"source of shape {in_shape} without a Flatten")
        bias = None
        if isinstance(dense, nir.Affine) and dense.bias is not None:
            bias = np.broadcast_to(_f64(dense.bias).reshape(-1), (w.shape[0],))
        if pool is not None:
            w = _dense_after_pool(w, src_shape, *pool)
        return Connection(src_n, "dense", w), bias

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
            conn, b = chain(p)
            conns.append((conn, b))
        if not conns:
            raise KdsnnError(f"NIR import: neuron node '{key}' has no input")
        src_shape = shapes[in_node] if conns[0][0].source == INPUT else next(
            layer.shape for layer in layers if layer.name == conns[0][0].source)
        shape = conns[0][0].out_shape(src_shape)
        if float(np.prod(shape)) > MAX_ELEMENTS:
            raise KdsnnError(f"NIR import: neuron node '{key}' has shape {shape} "
                             "(absurdly large)")
        syn_bias = np.zeros(shape)
        for conn, b in conns:
            if b is not None:
                syn_bias = syn_bias + _expand(b, shape)
        try:
            derived = derive_checked(key, node, shape)
        except ValueError:
            raise KdsnnError(f"NIR import: the parameters of neuron node '{key}' do not fit "
                             f"its input's shape {shape}") from None
        if np.any((syn_bias != 0) & (derived[0] != 0)):
            raise KdsnnError(f"NIR import: synaptic bias into CubaLIF '{key}' with current "
                             "decay cannot be expressed in kdsnn")
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
    stated = int(_scalar(meta["time_steps"])) if "time_steps" in meta else None
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
