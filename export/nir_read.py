"""NIR -> DeployGraph: ``nir_to_graph``, for kdsnn's own files and other tools' alike.

The graph walk: structure checks (one Input and Output, edges, recurrences), neuron
parameters derived from the NIR convention (``export.nir_io``'s docstring) or restored
exactly from ``kdsnn_*`` metadata, and each neuron's inputs as connections
(``export.nir_chains``); the file and field checks are ``export.nir_checks``'.
"""
from __future__ import annotations

import json
import os
from typing import Optional, Union

import numpy as np

import nir

from export.graph import CLOCK, INPUT, Connection, DeployGraph, NeuronLayer
from export.nir_chains import linear_chain
from export.nir_checks import (MAX_ELEMENTS, MAX_NODES, WHY_NOT, check_fields, check_neuron,
                               check_reset_semantics, f64, meta_number, read_nir, scalar,
                               shape_of, why_not)
from export.nir_write import DT, KDSNN_PARAMS, NodeNames
from kd_snn.errors import KdsnnError

__all__ = ["nir_to_graph"]


_NEURONS = (nir.LIF, nir.CubaLIF, nir.IF)


def _derive(node, dt: float):
    """kdsnn (alpha, beta, threshold, bias-from-v_leak, synapse_scale) of a neuron node.

    ``synapse_scale`` multiplies synaptic biases to express them in kdsnn units.
    """
    if isinstance(node, nir.IF):
        shape = node.v_threshold.shape
        k = dt * f64(node.r)
        return (np.zeros(shape), np.ones(shape), f64(node.v_threshold) / k,
                np.zeros(shape), np.ones(shape))
    if isinstance(node, nir.LIF):
        beta = 1.0 - dt / f64(node.tau)
        k = f64(node.r) * (1.0 - beta)
        return (np.zeros_like(beta), beta, f64(node.v_threshold) / k,
                f64(node.v_leak) / f64(node.r), np.ones_like(beta))
    alpha = 1.0 - dt / f64(node.tau_syn)
    beta = 1.0 - dt / f64(node.tau_mem)
    k = (1.0 - beta) * f64(node.r) * (1.0 - alpha) * f64(node.w_in)
    return (alpha, beta, f64(node.v_threshold) / k, (1.0 - beta) * f64(node.v_leak) / k,
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
    out = dict(zip(KDSNN_PARAMS, derived[:4]))
    if all(f"kdsnn_{k}" in meta for k in KDSNN_PARAMS):
        for key in KDSNN_PARAMS:
            stored = f64(meta[f"kdsnn_{key}"])
            if stored.shape != np.shape(out[key]) or not np.allclose(
                    stored, out[key], rtol=1e-6, atol=1e-9):
                raise KdsnnError(f"NIR import: node '{name}' {key} in metadata disagrees "
                                 "with its NIR parameters (edited file?)")
            out[key] = stored
    return out


def _io_type(node, attr: str, key: str):
    """The one shape of an Input/Output node's type, or None when absent or empty."""
    typ = getattr(node, attr, None)
    if not typ:
        return None
    vals = list(typ.values()) if isinstance(typ, dict) else [typ]
    if len(vals) != 1 or vals[0] is None or np.asarray(vals[0]).size == 0:
        return None
    return shape_of(vals[0], f"{attr} of '{key}'")


def _unbatch(shape: tuple) -> tuple:
    """Drop leading axes of size 1 that are a batch (or time) axis, not data: an input of
    rank 4+ (kdsnn inputs are (C,H,W) at most) or a ``(1, N)`` vector."""
    while shape and shape[0] == 1 and (len(shape) > 3 or len(shape) == 2):
        shape = shape[1:]
    return shape


def _validate(g) -> tuple:
    """Structure checks before anything is built: nodes, edges, one Input and one Output,
    no cycle, sizes.  Returns (input key, output key, preds, succs, topological order,
    recurrent edges)."""
    if not isinstance(g, nir.NIRGraph) or not isinstance(g.nodes, dict) or not g.nodes:
        raise KdsnnError("NIR import: the file holds no NIR graph with nodes")
    if len(g.nodes) > MAX_NODES:
        raise KdsnnError(f"NIR import: {len(g.nodes)} nodes (more than {MAX_NODES})")
    for key, node in g.nodes.items():
        if isinstance(node, nir.NIRGraph) or not isinstance(node, nir.NIRNode):
            raise why_not(key, node)
        for attr, val in vars(node).items():
            if isinstance(val, np.ndarray) and val.size > MAX_ELEMENTS:
                raise KdsnnError(f"NIR import: node '{key}' {attr} has {val.size} elements "
                                 f"(more than {MAX_ELEMENTS})")
        check_fields(node, str(key), type(node).__name__, "graph")
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


def _nir_to_graph(source: Union[nir.NIRGraph, str, os.PathLike],
                  dt: Optional[float] = None) -> DeployGraph:
    """Load a NIR graph (object or file) back into a DeployGraph."""
    # type_check=False: nir's own type inference rejects legal foreign files (scalar
    # parameters, a batch axis in the Input type); kdsnn checks every shape itself below
    g = source if isinstance(source, nir.NIRGraph) else read_nir(source, type_check=False)
    in_node, out_node, preds, succs, topo, recurrent = _validate(g)
    meta = dict(g.metadata or {})
    check_reset_semantics(meta, "the graph's metadata")
    if "dt" in meta:
        file_dt = meta_number(meta, "dt")
        if dt is not None and not np.isclose(float(dt), file_dt, rtol=1e-12, atol=0):
            raise KdsnnError(f"NIR import: the file states dt = {file_dt:g}, "
                             f"but dt = {float(dt):g} was asked for")
        dt = file_dt
    dt = float(DT if dt is None else dt)
    if not (np.isfinite(dt) and dt > 0):
        raise KdsnnError(f"NIR import: dt = {dt} is not a positive time step")
    nodes = g.nodes
    names = NodeNames()
    layer_names: dict = {}

    def layer_name(key):
        if key not in layer_names:
            m = getattr(nodes[key], "metadata", None) or {}
            layer_names[key] = (str(scalar(m["kdsnn_layer"])) if "kdsnn_layer" in m
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
                               *shape_of(n.input_shape, f"input_shape of '{s}'"))
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
    shape_of(input_shape, "the input shape")

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
            check_neuron(key, n)
        elif key in reaches and type(n).__name__ in WHY_NOT:
            raise why_not(key, n)

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
                               and np.all(f64(ln.scale) == 1)) else [last]
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
        name = (str(scalar(om["kdsnn_layer"])) if "kdsnn_layer" in om
                else names(str(scalar(meta.get("readout_layer") or "readout"))))
        params = {"alpha": np.zeros(shape), "beta": np.zeros(shape),
                  "threshold": np.zeros(shape), "bias": bias}
        for key in KDSNN_PARAMS:
            if f"kdsnn_{key}" in om:
                params[key] = f64(om[f"kdsnn_{key}"])
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
        stated = meta_number(meta, "time_steps")
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
                           encoding=str(scalar(meta.get("input_encoding", "direct"))),
                           metadata=deploy_meta)
    except ValueError as exc:
        raise KdsnnError(f"NIR import: {exc}") from exc
