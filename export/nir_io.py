"""DeployGraph <-> NIR (Neuromorphic Intermediate Representation, nir 1.0.8).

Public API
----------
``graph_to_nir(graph, dt=1e-4) -> nir.NIRGraph``
``write_nir(graph, path, dt=1e-4) -> pathlib.Path``   (atomic, byte-deterministic)
``read_nir(path) -> nir.NIRGraph``                    (``nir.read`` with type checks)
``nir_to_graph(nir_graph_or_path) -> DeployGraph``    (inverse; runnable via ``run_float``)

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
from typing import Union

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


def read_nir(path) -> nir.NIRGraph:
    """``nir.read`` with NIR's type inference and checks; errors become KdsnnError."""
    path = Path(path)
    if not path.is_file():
        raise KdsnnError(f"NIR file not found: {path}")
    try:
        return nir.read(str(path))
    except Exception as exc:  # noqa: BLE001 - any parse error is a bad file
        raise KdsnnError(f"cannot read NIR file {path}: {exc}") from exc


# --------------------------------------------------------------------------- import
_NEURONS = (nir.LIF, nir.CubaLIF, nir.IF)


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


def nir_to_graph(source: Union[nir.NIRGraph, str, os.PathLike]) -> DeployGraph:
    """A DeployGraph from a NIR graph or file; what kdsnn cannot express is a KdsnnError."""
    try:
        return _nir_to_graph(source)
    except (ValueError, TypeError, KeyError) as exc:
        raise KdsnnError(f"NIR import: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                         ) from None


def _nir_to_graph(source: Union[nir.NIRGraph, str, os.PathLike]) -> DeployGraph:
    """Load a NIR graph (object or file) back into a DeployGraph."""
    g = source if isinstance(source, nir.NIRGraph) else read_nir(source)
    meta = dict(g.metadata or {})
    dt = float(_scalar(meta.get("dt", DT)))
    inputs = [k for k, n in g.nodes.items() if isinstance(n, nir.Input)]
    outputs = [k for k, n in g.nodes.items() if isinstance(n, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise KdsnnError("NIR import: need exactly one Input and one Output node")
    preds: dict = {k: [] for k in g.nodes}
    for a, b in g.edges:
        preds[b].append(a)
    in_node, out_node = inputs[0], outputs[0]
    input_shape = tuple(int(s) for s in np.asarray(g.nodes[in_node].input_type["input"]))

    def layer_name(key):
        m = getattr(g.nodes[key], "metadata", None) or {}
        return str(_scalar(m.get("kdsnn_layer", key)))

    def chain(key):
        """Walk back from a connection's last node: (Connection, source node key, bias)."""
        node = g.nodes[key]
        bias = None
        if isinstance(node, nir.Scale):
            (p,) = preds[key]
            pool = g.nodes[p]
            if not isinstance(pool, nir.SumPool2d):
                raise KdsnnError(f"NIR import: Scale node '{key}' is not an average pool")
            k = _pair(pool.kernel_size)
            if not np.allclose(node.scale, 1.0 / (k[0] * k[1])):
                raise KdsnnError(f"NIR import: Scale node '{key}' is not 1/(kh*kw)")
            conn, src, _ = chain(p)
            return Connection(src_name(src), "avgpool", kernel=k), src, None
        if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            k, s = _pair(node.kernel_size), _pair(node.stride)
            if k != s or any(_pair(node.padding)):
                raise KdsnnError(f"NIR import: pool '{key}' needs stride == kernel, no padding")
            kind = "sumpool" if isinstance(node, nir.SumPool2d) else "avgpool"
            (p,) = preds[key]
            return Connection(src_name(p), kind, kernel=k), p, None
        if isinstance(node, nir.Conv2d):
            if _pair(node.dilation) != (1, 1) or int(_scalar(node.groups)) != 1 or \
                    isinstance(node.padding, str):
                raise KdsnnError(f"NIR import: conv '{key}' uses dilation/groups/str padding")
            (p,) = preds[key]
            bias = _f64(node.bias)
            return (Connection(src_name(p), "conv", _f64(node.weight), _pair(node.stride),
                               _pair(node.padding)), p, bias[:, None, None])
        if isinstance(node, (nir.Affine, nir.Linear)):
            (p,) = preds[key]
            if isinstance(node, nir.Affine):
                bias = _f64(node.bias)
            if isinstance(g.nodes[p], nir.Flatten):
                (p,) = preds[p]
            return Connection(src_name(p), "dense", _f64(node.weight)), p, bias
        raise KdsnnError(f"NIR import: unsupported node '{key}' "
                         f"({type(node).__name__}) on a connection path")

    def src_name(key):
        if key == in_node:
            return INPUT
        if isinstance(g.nodes[key], _NEURONS):
            return layer_name(key)
        raise KdsnnError(f"NIR import: connection source '{key}' is not a neuron or Input")

    # topological order of neuron nodes
    neuron_keys = [k for k, n in g.nodes.items() if isinstance(n, _NEURONS)]

    def upstream_neurons(key):
        res = []
        for p in preds[key]:
            if p == in_node:
                continue
            if isinstance(g.nodes[p], _NEURONS):
                res.append(p)
            else:
                res.extend(upstream_neurons(p))
        return res

    deps = {k: set(upstream_neurons(k)) for k in neuron_keys}
    order, done = [], set()
    while len(order) < len(neuron_keys):
        ready = [k for k in neuron_keys if k not in done and deps[k] <= done]
        if not ready:
            raise KdsnnError("NIR import: recurrent graphs are not supported")
        order.append(ready[0])
        done.add(ready[0])

    layers = []
    for key in order:
        node = g.nodes[key]
        shape = tuple(int(s) for s in node.v_threshold.shape)
        conns, syn_bias = [], np.zeros(shape)
        for p in preds[key]:
            conn, _, b = chain(p)
            conns.append(conn)
            if b is not None:
                syn_bias = syn_bias + _expand(b, shape)
        derived = list(_derive(node, dt))
        if np.any((syn_bias != 0) & (derived[0] != 0)):
            raise KdsnnError(f"NIR import: synaptic bias into CubaLIF '{key}' with current "
                             "decay cannot be expressed in kdsnn")
        derived[3] = derived[3] + syn_bias * derived[4]
        params = _restore(node, tuple(derived), key)
        layers.append(NeuronLayer(layer_name(key), shape, tuple(conns), spiking=True,
                                  **params))
    last = preds[out_node]
    if len(last) != 1:
        raise KdsnnError("NIR import: the Output node needs exactly one input")
    (last,) = last
    if not isinstance(g.nodes[last], _NEURONS):  # non-spiking readout
        ends = preds[last] if (isinstance(g.nodes[last], nir.Scale) and len(preds[last]) > 1
                               and np.all(g.nodes[last].scale == 1)) else [last]
        shape = tuple(int(s) for s in np.asarray(g.nodes[out_node].output_type["output"]))
        conns, bias = [], np.zeros(shape)
        for e in ends:
            conn, _, b = chain(e)
            conns.append(conn)
            if b is not None:
                bias = bias + _expand(b, shape)
        om = g.nodes[out_node].metadata or {}
        name = str(_scalar(om.get("kdsnn_layer", meta.get("readout_layer") or "readout")))
        params = {"alpha": np.zeros(shape), "beta": np.zeros(shape),
                  "threshold": np.zeros(shape), "bias": bias}
        for key in _PARAMS:
            if f"kdsnn_{key}" in om:
                params[key] = _f64(om[f"kdsnn_{key}"])
        if not np.allclose(params["bias"], bias, rtol=1e-6, atol=1e-9):
            raise KdsnnError("NIR import: readout bias in metadata disagrees with the graph")
        layers.append(NeuronLayer(name, shape, tuple(conns), spiking=False, **params))
    deploy_meta = meta.get("deploy_metadata")
    try:
        deploy_meta = json.loads(deploy_meta) if deploy_meta else {}
    except (TypeError, ValueError):
        deploy_meta = {}
    try:
        return DeployGraph(input_shape, tuple(layers),
                           time_steps=int(_scalar(meta.get("time_steps", 4))),
                           encoding=str(_scalar(meta.get("input_encoding", "direct"))),
                           metadata=deploy_meta)
    except ValueError as exc:
        raise KdsnnError(f"NIR import: {exc}") from exc
