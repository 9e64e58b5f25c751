"""Fold a trained student into a ``DeployGraph`` (what Loihi runs).

Eval-mode semantics (BN running statistics) regardless of ``model.training``;
the model is not modified.  Folding rules, all exact up to float rounding:

- conv + (td)BN -> conv weight ``W * s`` and per-neuron bias ``beta - mean * s``
  (``s = gamma / sqrt(var + eps)``); the bias goes to Loihi's neuron bias, which
  is added to ``v``: equal to a bias on the input current only for ``alpha = 0``.
- shortcut AvgPool2d(p) + conv1x1 + BN -> ONE conv, kernel p x p, stride p, ``W / p^2``.
- identity shortcut -> conv 1x1 with the identity weight.
- residual sum -> two connections into one NeuronLayer (fan-in), biases summed.
- GAP + fc -> one dense connection over the flattened (C, H, W) spikes with
  ``W / (H*W)`` repeated, into a non-spiking readout layer whose bias is the fc bias.

Graph layer names: ``stem``, ``conv1``.. (a conv-BN-LIF stage keeps its module
name), ``layer<s>.<b>.lif1`` / ``layer<s>.<b>.lif2`` (residual blocks), ``fc``
(readout).  ``graph.metadata["modules"]`` maps each layer to the module it came from.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from kd_snn.errors import KdsnnError
from kd_snn.models.layers import BasicBlock, ConvBN, ConvBNAct, LinearHead
from kd_snn.neurons import CubaLIF

from .graph import INPUT, Connection, DeployGraph, NeuronLayer


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def fold_conv_bn(unit: ConvBN, source: str, path: str) -> tuple[Connection, np.ndarray]:
    """``(conv connection from source, per-channel bias)`` of an eval-mode conv + BN."""
    conv, bn = unit.conv, unit.bn
    if bn.running_mean is None or bn.running_var is None:
        raise KdsnnError(f"module '{path}.bn' keeps no running statistics; it cannot be folded")
    if conv.groups != 1 or conv.dilation != (1, 1) or conv.padding_mode != "zeros":
        raise KdsnnError(f"module '{path}.conv' (grouped/dilated/non-zero padding) "
                         "cannot be expressed on Loihi")
    mean, var = _np(bn.running_mean), _np(bn.running_var)
    gamma = _np(bn.weight) if bn.weight is not None else np.ones_like(mean)
    beta = _np(bn.bias) if bn.bias is not None else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + bn.eps)
    weight = _np(conv.weight) * scale[:, None, None, None]
    bias = beta - mean * scale
    if conv.bias is not None:
        bias = bias + _np(conv.bias) * scale
    stride, padding = conv.stride, conv.padding
    if unit.pool > 1:  # avgpool(p) then 1x1 conv == p x p conv, stride p, weight / p^2
        p = unit.pool
        weight = np.tile(weight, (1, 1, p, p)) / (p * p)
        stride, padding = (p, p), (0, 0)
    return Connection(source, "conv", weight, stride, padding), bias


def identity_connection(source: str, channels: int) -> Connection:
    """Identity shortcut as a 1x1 conv (Loihi has no pass-through synapse)."""
    return Connection(source, "conv", np.eye(channels)[:, :, None, None])


class _Builder:
    """Accumulates layers in topological order and tracks their shapes."""

    def __init__(self, input_shape: tuple):
        self.shapes = {INPUT: input_shape}
        self.layers: list[NeuronLayer] = []
        self.modules: dict[str, str] = {}

    def add(self, name: str, conns: Sequence[Connection], bias: np.ndarray, act: nn.Module,
            act_path: str) -> str:
        shape = conns[0].out_shape(self.shapes[conns[0].source])
        alpha, beta, thr, vbias = neuron_params(act, act_path, shape)
        bias = np.broadcast_to(np.reshape(bias, (-1,) + (1,) * (len(shape) - 1)), shape)
        if ((alpha != 0) & (bias != 0)).any():
            raise KdsnnError(f"layer '{name}' ({act_path}): CubaLIF alpha != 0 with a folded "
                             "bias; Loihi adds bias to v, not to the current, so it is not "
                             "equivalent (use alpha = 0, the plain LIF)")
        self.layers.append(NeuronLayer(name, shape, tuple(conns), bias + vbias, alpha, beta,
                                       thr, spiking=True))
        self.shapes[name] = shape
        self.modules[name] = act_path
        return name


def neuron_params(act: nn.Module, path: str, shape: tuple) -> tuple[np.ndarray, ...]:
    """``(alpha, beta, threshold, bias on v)`` per neuron, broadcast from a CubaLIF."""
    if not isinstance(act, CubaLIF):
        raise KdsnnError(f"module '{path}' ({type(act).__name__}) is not a spiking neuron; "
                         "it cannot be expressed on Loihi")
    vbias = act.bias if act.bias is not None else torch.zeros(())
    return tuple(np.broadcast_to(_np(t), shape).copy()
                 for t in (act.alpha, act.beta, act.threshold, vbias))


def _fold_stage(b: _Builder, module: nn.Module, path: str, source: str) -> str:
    """Fold one stage; returns the name of the layer that carries its output."""
    if isinstance(module, nn.Sequential):
        for i, child in enumerate(module):
            source = _fold_stage(b, child, f"{path}.{i}", source)
        return source
    if isinstance(module, ConvBNAct):
        conn, bias = fold_conv_bn(module, source, path)
        return b.add(path, [conn], bias, module.act, f"{path}.act")
    if isinstance(module, BasicBlock):
        conn1, bias1 = fold_conv_bn(module.conv1, source, f"{path}.conv1")
        lif1 = b.add(f"{path}.lif1", [conn1], bias1, module.conv1.act, f"{path}.conv1.act")
        conn2, bias2 = fold_conv_bn(module.conv2, lif1, f"{path}.conv2")
        if isinstance(module.shortcut, nn.Identity):
            short, bias_s = identity_connection(source, b.shapes[source][0]), 0.0
        else:
            short, bias_s = fold_conv_bn(module.shortcut, source, f"{path}.shortcut")
        return b.add(f"{path}.lif2", [conn2, short], bias2 + bias_s, module.act2,
                     f"{path}.act2")
    raise KdsnnError(f"module '{path}' ({type(module).__name__}) cannot be expressed on Loihi")


def _fold_head(b: _Builder, head: nn.Module, source: str) -> NeuronLayer:
    if not isinstance(head, LinearHead) or head.readout is None:
        raise KdsnnError(f"module 'head' ({type(head).__name__}) cannot be expressed on Loihi")
    c, h, w = b.shapes[source]
    fc = head.fc
    weight = np.repeat(_np(fc.weight) / (h * w), h * w, axis=1)  # GAP folded in
    bias = _np(fc.bias) if fc.bias is not None else np.zeros(fc.out_features)
    b.modules["fc"] = "head.fc"
    return NeuronLayer("fc", (fc.out_features,), (Connection(source, "dense", weight),), bias,
                       alpha=0.0, beta=1.0, threshold=1.0, spiking=False)


def fold_student(model: nn.Module, input_shape: Sequence[int], time_steps: int,
                 encoding: str = "direct") -> DeployGraph:
    """Fold a spiking student into a ``DeployGraph``; refuse what Loihi cannot run.

    ``input_shape`` is one sample's ``(C, H, W)``.  Raises ``KdsnnError`` naming the
    first module that cannot be expressed (ReLU of the reference head, Spikformer...).
    """
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) != 3:
        raise KdsnnError(f"input shape must be (C, H, W), got {input_shape}")
    name = getattr(model, "config", {}).get("name", type(model).__name__)
    if not getattr(model, "spiking", False):
        raise KdsnnError(f"model '{name}' is not a spiking student; only students fold")
    stages = getattr(model, "stage_names", None)
    if stages is None:
        raise KdsnnError(f"model '{name}' ({type(model).__name__}) cannot be expressed on Loihi")
    b = _Builder(input_shape)
    source = INPUT
    try:
        for stage in stages:
            source = _fold_stage(b, getattr(model, stage), stage, source)
        readout = _fold_head(b, model.head, source)
    except ValueError as err:  # shape mismatch between input_shape and the model
        raise KdsnnError(f"input shape {input_shape} does not fit model '{name}': {err}") \
            from None
    if not getattr(model, "deployable", True):
        raise KdsnnError(f"model '{name}' is marked non-deployable")
    config = getattr(model, "config", {})
    metadata = {"model": name, "width": config.get("width"),
                "num_classes": readout.shape[0], "in_channels": input_shape[0],
                "reset": "zero", "spike_condition": "v > threshold", "dt": 1.0,
                "modules": dict(b.modules)}
    return DeployGraph(input_shape, tuple(b.layers) + (readout,), int(time_steps), encoding,
                       metadata)
