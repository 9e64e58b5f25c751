"""A spiking network trained elsewhere, entering kdsnn as a NIR graph.

``kdsnn import`` stores it in the run as ``student/model.nir``, rewritten in kdsnn's own
NIR conventions (so it reads back exactly, with no import options) after it was fitted to
the run's data set here; ``student/imported.json`` records the original file and options.
From then on ``export.pipeline.load_student`` hands the graph to quantize, export, parity
and report exactly as it hands them a distilled student's folded graph.
"""
from __future__ import annotations

import numpy as np

from kd_snn.errors import KdsnnError

from .graph import INPUT, Connection, DeployGraph, NeuronLayer

MODEL = "model.nir"
RECORD = "imported.json"
SPIKE_COUNT = "spike_count"


def fit_to_data(graph: DeployGraph, input_shape: tuple, classes: int, time_steps: int,
                encoding: str, what: str = "the NIR graph") -> DeployGraph:
    """``graph`` with the data set's input shape, time steps and encoding, or an error.

    A flat input (a dense first layer, as dense-only exporters write it) takes the data
    set's ``(C, H, W)`` when the element counts agree: a dense connection reads its source
    flattened in C, H, W order, which is the order such networks were trained on.

    A network whose last layer spikes (snntorch classifiers often end in a ``Leaky`` and
    are read by spike counts) gets a readout layer ``spike_count``: identity synapses, no
    bias, whose logits are the output layer's spike count per step -- the same argmax as
    counting the spikes, and a readout that Loihi holds like any other.
    """
    shape = tuple(int(s) for s in input_shape)
    if graph.input_shape != shape:
        readers = [c for l in graph.layers for c in l.connections if c.source == INPUT]
        if int(np.prod(graph.input_shape)) != int(np.prod(shape)) or \
                any(c.kind != "dense" for c in readers):
            raise KdsnnError(f"{what} takes input {graph.input_shape}; the data set gives "
                             f"{shape}")
    out = graph.output
    n = int(np.prod(out.shape))
    if n != classes:
        raise KdsnnError(f"{what} has {n} outputs; the data set has {classes} classes")
    meta = dict(graph.metadata)
    meta["imported"] = True
    layers = tuple(graph.layers)
    if out.spiking:
        if any(l.name == SPIKE_COUNT for l in layers):
            raise KdsnnError(f"{what} ends in spikes and already has a layer named "
                             f"'{SPIKE_COUNT}'")
        layers += (NeuronLayer(SPIKE_COUNT, (n,), (Connection(out.name, "dense", np.eye(n)),),
                               bias=0.0, alpha=0.0, beta=1.0, threshold=1.0, spiking=False),)
        meta["added_readout"] = "spike counts of the last spiking layer (added at import)"
    try:
        return DeployGraph(shape, layers, int(time_steps), encoding, meta)
    except ValueError as exc:
        raise KdsnnError(f"{what}: {exc}") from None


def load_imported(path) -> DeployGraph:
    """The run's imported student graph (written by ``kdsnn import``)."""
    from .nir_io import nir_to_graph

    return nir_to_graph(path)


def loihi_problems(graph: DeployGraph) -> list:
    """Why Loihi cannot run ``graph`` as it is (empty when it can): its neurons share one
    current decay, voltage decay and threshold per population (layer)."""
    problems = []
    for layer in graph.layers:
        if not layer.spiking:
            continue
        for key in ("alpha", "beta", "threshold"):
            v = np.asarray(getattr(layer, key))
            if v.size and np.any(v != v.flat[0]):
                problems.append(f"layer '{layer.name}' has per-neuron {key} values (Loihi "
                                f"has one per layer)")
    return problems
