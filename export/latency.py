"""Latency balancing: every path from the input to a layer gets the same number of synapses.

On Loihi (and in Lava) each synapse (Dense/Conv process) delays its output by one step,
so a residual sum whose branches have different lengths would add spikes of different
time steps.  ``balance_latency`` inserts relay neuron layers on the shorter fan-in paths.

A relay is one neuron per source neuron with an identity synapse (``sumpool`` 1x1 for a
(C, H, W) source, i.e. a depthwise weight 1; an identity ``dense`` for a 1-D source)
and alpha = 0, beta = 0, threshold = 0.5, bias = 0.  In float/integer synchronous
execution it is an exact identity on binary spikes; on Loihi the quantizer maps it to
weight 1, du = dv = 4095, vth = 0 (a spike gives v = 64 > 0 and is relayed, no spike
leaves v = 0), which is also exact.  Relays are shared: a source that must be delayed
by k steps for one consumer and k' for another gets a single chain.  Graded input
cannot be relayed by a spiking neuron, so a skip path from ``"input"`` is refused.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from export.graph import INPUT, Connection, DeployGraph, NeuronLayer, is_feedforward


def layer_depths(graph) -> dict:
    """Longest synapse count from the input to each layer (works on Deploy/QuantGraph)."""
    depth = {INPUT: 0}
    for layer in graph.layers:  # a recurrent (self) or clock connection adds no depth
        depth[layer.name] = max(depth[c.source] + 1 for c in layer.connections
                                if is_feedforward(c, layer))
    del depth[INPUT]
    return depth


def is_balanced(graph) -> bool:
    depth = {INPUT: 0}
    for layer in graph.layers:
        ds = {depth[c.source] + 1 for c in layer.connections if is_feedforward(c, layer)}
        if len(ds) != 1:
            return False
        depth[layer.name] = ds.pop()
    return True


def relay_layer(name: str, source: str, shape: tuple) -> NeuronLayer:
    if len(shape) == 3:
        conn = Connection(source, "sumpool", kernel=(1, 1))
    else:
        conn = Connection(source, "dense", np.eye(int(np.prod(shape))))
    return NeuronLayer(name, shape, (conn,), bias=0.0, alpha=0.0, beta=0.0, threshold=0.5)


def balance_latency(graph: DeployGraph) -> DeployGraph:
    """Return ``graph`` with relay layers inserted so all fan-in paths are equally long.

    The result lists relay names in ``metadata["relays"]`` and each layer's depth in
    ``metadata["depth"]``; an already balanced graph is returned unchanged (apart from
    that metadata).
    """
    names = {layer.name for layer in graph.layers}
    depth = {INPUT: 0}
    shapes = {INPUT: graph.input_shape}
    chains: dict = {}
    relays = list(graph.metadata.get("relays", ()))
    out = []
    for layer in graph.layers:
        d = max(depth[c.source] + 1 for c in layer.connections if is_feedforward(c, layer))
        conns = []
        for conn in layer.connections:
            if not is_feedforward(conn, layer):  # recurrent (own previous step) or clock
                conns.append(conn)
                continue
            k = d - 1 - depth[conn.source]
            src = conn.source
            if k > 0:
                if src == INPUT:
                    raise ValueError(f"layer '{layer.name}' reads the graded input through a "
                                     f"path {k} synapse(s) shorter than its others; graded "
                                     "input cannot be relayed by spiking neurons")
                chain = chains.setdefault(src, [])
                while len(chain) < k:
                    prev = chain[-1] if chain else src
                    base = f"{src}.relay{len(chain) + 1}"
                    name, n = base, 1
                    while name in names:
                        n += 1
                        name = f"{base}_{n}"
                    names.add(name)
                    out.append(relay_layer(name, prev, shapes[src]))
                    relays.append(name)
                    depth[name] = depth[prev] + 1
                    shapes[name] = shapes[src]
                    chain.append(name)
                src = chain[k - 1]
            conns.append(dataclasses.replace(conn, source=src) if src != conn.source else conn)
        out.append(dataclasses.replace(layer, connections=tuple(conns)))
        depth[layer.name] = d
        shapes[layer.name] = layer.shape
    del depth[INPUT]
    meta = dict(graph.metadata)
    meta["relays"] = relays
    meta["depth"] = depth
    return graph.replace(layers=tuple(out), metadata=meta)
