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

from .graph import INPUT, DeployGraph

MODEL = "model.nir"
RECORD = "imported.json"


def fit_to_data(graph: DeployGraph, input_shape: tuple, classes: int, time_steps: int,
                encoding: str, what: str = "the NIR graph") -> DeployGraph:
    """``graph`` with the data set's input shape, time steps and encoding, or an error.

    A flat input (a dense first layer, as dense-only exporters write it) takes the data
    set's ``(C, H, W)`` when the element counts agree: a dense connection reads its source
    flattened in C, H, W order, which is the order such networks were trained on.
    """
    shape = tuple(int(s) for s in input_shape)
    if graph.input_shape != shape:
        readers = [c for l in graph.layers for c in l.connections if c.source == INPUT]
        if int(np.prod(graph.input_shape)) != int(np.prod(shape)) or \
                any(c.kind != "dense" for c in readers):
            raise KdsnnError(f"{what} takes input {graph.input_shape}; the data set gives "
                             f"{shape}")
    out = graph.output
    if int(np.prod(out.shape)) != classes:
        raise KdsnnError(f"{what} has {int(np.prod(out.shape))} outputs; the data set has "
                         f"{classes} classes")
    meta = dict(graph.metadata)
    meta["imported"] = True
    try:
        return DeployGraph(shape, graph.layers, int(time_steps), encoding, meta)
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
