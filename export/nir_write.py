"""DeployGraph -> NIR: ``graph_to_nir`` and ``write_nir`` (atomic, byte-deterministic).

Each kdsnn layer becomes its connection nodes and one neuron node in the convention of
``export.nir_io``'s docstring (dt, r, w_in, tau; where a bias goes so snntorch and norse
read it), with the exact float64 parameters in ``kdsnn_*`` metadata for the way back
(``export.nir_read``).
"""
from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Union

import numpy as np

import nir

from export.graph import INPUT, Connection, DeployGraph, NeuronLayer, is_clock
from export.nir_checks import f64
from kd_snn.errors import KdsnnError
from kd_snn.io import write_bytes

__all__ = ["DT", "FORMAT", "KDSNN_PARAMS", "NodeNames", "graph_to_nir", "write_nir"]


DT = 1e-4  # snntorch's importer hard-codes it (see export.nir_io's docstring)
FORMAT = "kdsnn-nir/1"  # metadata["format"] of the files kdsnn writes
#: the exact float64 parameters each neuron node carries as ``kdsnn_<name>`` metadata
KDSNN_PARAMS = ("alpha", "beta", "threshold", "bias")


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("kdsnn")
    except Exception:  # pragma: no cover - not installed
        return "unknown"


class NodeNames:
    """Unique python-identifier node names (nirtorch turns '.' into '_'); the reader names
    foreign nodes' layers with it too."""

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
                    base: str, bias, nodes: dict, edges: list, names: NodeNames) -> str:
    """Add the node(s) of one connection; return the name of its last node."""
    if conn.kind == "conv":
        co = conn.weight.shape[0]
        b = np.zeros(co) if bias is None else _channel_bias(bias)
        name = names(f"{base}_conv")
        nodes[name] = nir.Conv2d(
            input_shape=tuple(int(s) for s in src_shape[1:]), weight=f64(conn.weight),
            stride=tuple(conn.stride), padding=tuple(conn.padding), dilation=(1, 1),
            groups=1, bias=f64(b))
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
            nodes[name] = nir.Linear(weight=f64(conn.weight))
        else:
            nodes[name] = nir.Affine(weight=f64(conn.weight), bias=f64(bias).reshape(-1))
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
    for key in KDSNN_PARAMS:
        meta[f"kdsnn_{key}"] = f64(getattr(layer, key))
    return meta


def _neuron_node(layer: NeuronLayer, dt: float, bias_in_synapse: bool):
    """The NIR neuron node of a spiking layer (the convention: ``export.nir_io``)."""
    a, b, thr, bias = layer.alpha, layer.beta, layer.threshold, layer.bias
    zeros = np.zeros(layer.shape)
    if np.all(a == 0):
        if np.all(b == 1):
            if not bias_in_synapse and np.any(bias != 0):
                raise KdsnnError(f"NIR export: layer '{layer.name}' is IF (beta=1) with a "
                                 "bias no incoming connection can carry")
            return nir.IF(r=np.full(layer.shape, 1.0 / dt), v_threshold=f64(thr),
                          v_reset=zeros.copy())
        if np.any(b == 1):
            raise KdsnnError(f"NIR export: layer '{layer.name}' mixes beta=1 and beta<1 "
                             "neurons (tau would be infinite)")
        leak = zeros.copy() if bias_in_synapse else f64(bias)
        return nir.LIF(tau=dt / (1.0 - b), r=np.ones(layer.shape), v_leak=leak,
                       v_threshold=(1.0 - b) * thr, v_reset=zeros.copy())
    if np.any(a == 1) or np.any(b == 1):
        raise KdsnnError(f"NIR export: layer '{layer.name}' has alpha=1 or beta=1 with "
                         "current decay (tau would be infinite)")
    tau_syn, tau_mem = dt / (1.0 - a), dt / (1.0 - b)
    return nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt,
                       v_leak=bias / (1.0 - b), v_threshold=f64(thr),
                       v_reset=zeros.copy(), w_in=tau_syn / dt)


def graph_to_nir(graph: DeployGraph, dt: float = DT) -> nir.NIRGraph:
    """Convert a DeployGraph to a type-checked ``nir.NIRGraph`` (the convention:
    ``export.nir_io``'s docstring)."""
    if not isinstance(graph, DeployGraph):
        raise KdsnnError(f"NIR export needs a DeployGraph, got {type(graph).__name__}")
    dt = float(dt)
    names = NodeNames()
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
