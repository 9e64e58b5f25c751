"""A spiking network trained elsewhere, entering kdsnn as a NIR graph.

``kdsnn import`` stores it in the run as ``student/model.nir``, rewritten in kdsnn's own
NIR conventions (so it reads back exactly, with no import options) after it was fitted to
the run's data set here; ``student/imported.json`` records the original file and options.
From then on ``kdsnn.runs.load_student`` hands the graph to quantize, export, parity
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
    graph = fold_thresholds(graph)
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


def fold_thresholds(graph: DeployGraph) -> DeployGraph:
    """``graph`` with each spiking layer's per-neuron thresholds folded into its incoming
    weights and bias where that is exact, so that Loihi's one threshold per population
    holds it.

    A neuron of threshold ``thr_j`` (reset to zero, strict ``v > thr``) spikes exactly
    when the same neuron with its input weights and bias multiplied by ``k_j = thr / thr_j``
    spikes at threshold ``thr`` (``u`` and ``v`` are linear in them and scale by ``k_j``;
    the reset to zero is scale-free; ``k_j > 0`` keeps the comparison), whatever its decays.
    ``thr`` is the layer's largest threshold.  Where it is done: all thresholds positive;
    every incoming connection dense (a row per neuron) or a convolution whose thresholds
    are one per output channel (a kernel per channel).  Elsewhere the layer is left as it
    is (``loihi_problems`` names it).  The folded layers are listed in
    ``metadata["folded_thresholds"]``.
    """
    layers, folded = [], []
    for layer in graph.layers:
        thr = np.asarray(layer.threshold, dtype=np.float64)
        if not layer.spiking or np.all(thr == thr.flat[0]) or np.any(thr <= 0):
            layers.append(layer)
            continue
        k = thr.max() / thr  # per neuron, of the layer's shape
        per_channel = len(layer.shape) == 3 and np.all(
            k.reshape(k.shape[0], -1) == k.reshape(k.shape[0], -1)[:, :1])
        kinds = {c.kind for c in layer.connections}
        if not kinds <= {"dense", "conv"} or ("conv" in kinds and not per_channel):
            layers.append(layer)
            continue
        conns = []
        for c in layer.connections:
            if c.kind == "dense":
                w = c.weight * k.reshape(-1, 1)
            else:
                w = c.weight * k.reshape(k.shape[0], -1)[:, 0].reshape(-1, 1, 1, 1)
            conns.append(Connection(c.source, c.kind, w, c.stride, c.padding, c.kernel))
        layers.append(NeuronLayer(layer.name, layer.shape, tuple(conns), layer.bias * k,
                                  layer.alpha, layer.beta, np.full(layer.shape, thr.max()),
                                  layer.spiking))
        folded.append(layer.name)
    if not folded:
        return graph
    meta = dict(graph.metadata, folded_thresholds=folded)
    return graph.replace(layers=tuple(layers), metadata=meta)


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
                problems.append(heterogeneous(layer.name, key, v))
    return problems


#: the Loihi LIF field each kdsnn neuron parameter becomes, and why one value per layer
_LOIHI_FIELD = {"alpha": "du (current decay)", "beta": "dv (voltage decay)",
                "threshold": "vth (threshold)"}


def heterogeneous(name: str, key: str, values) -> str:
    """The one sentence why Loihi cannot hold layer ``name``'s varying ``key`` values."""
    v = np.asarray(values, dtype=np.float64)
    why = ("; per-channel thresholds fold into the weights only where every input is a "
           "dense or convolution connection with positive thresholds, one per output "
           "channel") if key == "threshold" else ""
    return (f"layer '{name}' has {key} from {v.min():.6g} to {v.max():.6g} across its "
            f"neurons; Loihi's LIF has one {_LOIHI_FIELD.get(key, key)} per population"
            f"{why}")
