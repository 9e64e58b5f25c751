"""The report's NeuroBench block against NeuroBench 2.3.0 itself, layer by layer.

The kdsnn graph is wrapped as an snntorch network (one snntorch ``SpikingNeuron`` per
spiking layer, with kdsnn's CUBA dynamics; one torch Conv2d / Linear per synaptic
connection, pooling as a function NeuroBench does not count) and run through
``neurobench.models.SNNTorchModel``; NeuroBench's own metric classes read its hooks.
Per layer, each metric is NeuroBench's, evaluated on that layer's hook alone.
"""
import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

from export.graph import INPUT, Connection, DeployGraph, NeuronLayer
from hardware.energy import analyze_graph, neurobench_metrics

nb = pytest.importorskip("neurobench", reason="neurobench 2.3.0 (scripts/setup.sh installs "
                                              "it with --no-deps) is not installed")
snn = pytest.importorskip("snntorch", reason="NeuroBench's SNNTorchModel needs snntorch")
from neurobench.metrics.workload import (ActivationSparsity, MembraneUpdates,  # noqa: E402
                                         SynapticOperations)
from neurobench.models import SNNTorchModel  # noqa: E402


class KdsnnNeuron(snn.SpikingNeuron):
    """kdsnn's neuron (i = alpha i + x; v = beta v + i + bias; spike v > thr; v reset to 0)
    as an snntorch neuron, so NeuroBench hooks it and reads its ``mem``."""

    def __init__(self, layer: NeuronLayer):
        super().__init__(threshold=1.0, reset_mechanism="zero")
        shape = tuple(layer.shape)
        for k in ("alpha", "beta", "threshold", "bias"):
            setattr(self, f"k_{k}", torch.as_tensor(np.array(np.broadcast_to(getattr(layer, k), shape)),
                                                    dtype=torch.float64))
        self.reset_state()

    def reset_state(self):
        self.syn = self.mem = 0.0

    def forward(self, x):
        self.syn = self.k_alpha * self.syn + x
        v = self.k_beta * self.mem + self.syn + self.k_bias
        spk = (v > self.k_threshold).to(v.dtype)
        self.mem = v * (1 - spk)
        return spk, self.mem


class GraphAsSnntorch(nn.Module):
    """One step of a DeployGraph per call: ``(readout, None)`` like an snntorch net."""

    def __init__(self, graph: DeployGraph):
        super().__init__()
        self.graph = graph
        self.synapses, self.neurons = nn.ModuleDict(), nn.ModuleDict()
        for layer in graph.layers:
            for k, c in enumerate(layer.connections):
                w = torch.as_tensor(c.weight, dtype=torch.float64) if c.weight is not None \
                    else None
                if c.kind == "conv":
                    mod = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2:], stride=c.stride,
                                    padding=c.padding, bias=False).double()
                elif c.kind == "dense":
                    mod = nn.Linear(w.shape[1], w.shape[0], bias=False).double()
                else:
                    continue  # pooling: a function here, as NeuroBench counts no pooling
                mod.weight.data.copy_(w)
                self.synapses[f"{layer.name}_{k}"] = mod
            if layer.spiking:
                self.neurons[layer.name] = KdsnnNeuron(layer)

    def reset(self):
        for n in self.neurons.values():
            n.reset_state()

    def forward(self, x):
        out = {INPUT: x}
        for layer in self.graph.layers:
            total = 0
            for k, c in enumerate(layer.connections):
                src = out[c.source]
                mod = self.synapses[f"{layer.name}_{k}"] if f"{layer.name}_{k}" in \
                    self.synapses else None
                if mod is None:
                    y = c.apply(src)
                elif c.kind == "dense":
                    y = mod(src.reshape(src.shape[0], -1))
                else:
                    y = mod(src)
                total = total + y
            total = total.reshape((x.shape[0],) + tuple(layer.shape))
            if layer.spiking:
                out[layer.name], _ = self.neurons[layer.name](total)
            else:
                out[layer.name] = total + torch.as_tensor(layer.bias, dtype=total.dtype)
        return out[self.graph.layers[-1].name], None


def run_neurobench(graph: DeployGraph, x_seq: torch.Tensor):
    """NeuroBench's metrics per layer and in total on ``x_seq`` (T, B, ...)."""
    net = GraphAsSnntorch(graph)
    model = SNNTorchModel(net)
    model.register_hooks()
    data = (x_seq.transpose(0, 1).contiguous(), torch.zeros(x_seq.shape[1]))
    preds = model(data[0])

    def metric(cls, **hooks):
        view = SimpleNamespace(connection_hooks=hooks.get("conn", model.connection_hooks),
                               activation_hooks=hooks.get("act", model.activation_hooks))
        return cls()(view, preds, data)

    conn_hooks = dict(zip(net.synapses.keys(), model.connection_hooks))
    act_hooks = dict(zip(net.neurons.keys(), model.activation_hooks))
    layers = {}
    for layer in graph.layers:
        mine = [h for key, h in conn_hooks.items() if key.rsplit("_", 1)[0] == layer.name]
        ops = metric(SynapticOperations, conn=mine)
        row = dict(ops)
        if layer.name in act_hooks:
            hook = act_hooks[layer.name]
            row["MembraneUpdates"] = metric(MembraneUpdates, act=[hook])
            row["ActivationSparsity"] = metric(ActivationSparsity, act=[hook])
        layers[layer.name] = row
    total = dict(metric(SynapticOperations))
    total["MembraneUpdates"] = metric(MembraneUpdates)
    total["ActivationSparsity"] = metric(ActivationSparsity)
    model.cleanup_hooks()
    return layers, total


def compare(graph, x_seq):
    ours = neurobench_metrics(analyze_graph(graph, x_seq))
    theirs, total = run_neurobench(graph, x_seq)
    assert [l["name"] for l in ours["layers"]] == list(theirs)
    for mine in ours["layers"]:
        ref = theirs[mine["name"]]
        for key in ("Effective_MACs", "Effective_ACs", "Dense"):
            assert mine[key] == pytest.approx(float(ref[key]), rel=1e-12, abs=1e-9), \
                (mine["name"], key)
        if mine["spiking"]:
            assert mine["MembraneUpdates"] == pytest.approx(ref["MembraneUpdates"], rel=1e-12)
            sparsity = 1 - mine["spikes"] / mine["activations"]  # both per sample
            assert sparsity == pytest.approx(ref["ActivationSparsity"], rel=1e-12)
    for key in ("Effective_MACs", "Effective_ACs", "Dense", "MembraneUpdates",
                "ActivationSparsity"):
        assert ours["total"][key] == pytest.approx(float(total[key]), rel=1e-12), key
    return ours


def digits_student():
    """The demo-sized digits CNN student (random init, thresholds lowered so it fires)."""
    from export.fold import fold_student
    from kd_snn.data import build_dataset
    from kd_snn.models import create_model
    from kd_snn.models.synthetic import randomise_batchnorm
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = create_model("cnn", num_classes=10, in_channels=1, spiking=True, width=1)
    randomise_batchnorm(model, gen)
    graph = fold_student(model.double().eval(), (1, 8, 8), time_steps=4)
    graph = dataclasses.replace(graph, layers=tuple(
        dataclasses.replace(l, threshold=np.asarray(l.threshold) * 0.3) for l in graph.layers))
    ds = build_dataset("digits", "test")
    x = torch.stack([ds[i][0] for i in range(8)]).double()
    return graph, x.unsqueeze(0).repeat(4, 1, 1, 1, 1)


def test_digits_student_matches_neurobench_per_layer():
    graph, x_seq = digits_student()
    ours = compare(graph, x_seq)
    assert ours["total"]["Effective_ACs"] > 0 and ours["total"]["Effective_MACs"] > 0
    assert 0 < ours["total"]["ActivationSparsity"] < 1


def test_pool_and_residual_graph_matches_neurobench():
    """Pooling connections (uncounted by NeuroBench) and a residual second edge."""
    rng = np.random.default_rng(0)
    mk = lambda name, shape, conns, spiking=True: NeuronLayer(  # noqa: E731
        name, shape, tuple(conns), 0.2, 0.5, 0.4, 0.05, spiking)
    w1 = rng.normal(size=(4, 1, 3, 3))
    w1[0, 0, 1, 1] = 0.0  # a zero weight: NeuroBench's Effective_MACs skip it
    a = mk("conv1", (4, 6, 6), [Connection("input", "conv", w1, (1, 1), (1, 1))])
    b = mk("conv2", (4, 6, 6), [Connection("conv1", "conv", rng.normal(size=(4, 4, 3, 3)),
                                           (1, 1), (1, 1)),
                                Connection("conv1", "conv", np.eye(4)[:, :, None, None])])
    p = mk("pool", (4, 3, 3), [Connection("conv2", "avgpool", kernel=(2, 2))])
    out = mk("fc", (3,), [Connection("pool", "dense", rng.normal(size=(3, 36)))], False)
    graph = DeployGraph((1, 6, 6), (a, b, p, out), time_steps=4)
    img = torch.rand(1, 5, 1, 6, 6, generator=torch.Generator().manual_seed(3),
                     dtype=torch.float64)
    img[..., 0, :] = 0.0  # zero inputs: skipped by NeuroBench
    compare(graph, img.repeat(4, 1, 1, 1, 1))
