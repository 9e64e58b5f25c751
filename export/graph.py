"""DeployGraph: the folded student as neuron layers fed by synaptic connections.

This is the one intermediate representation every backend reads (NIR, netx,
Lava, the integer emulation, the energy analyzer).  It mirrors what Loihi runs:
groups of neurons, each with per-neuron parameters, receiving the sum of one or
more synaptic connections (fan-in expresses residual sums).  Validation happens
at construction, so a graph that exists is well formed.

Recurrence.  A dense connection whose source is its own layer is *recurrent*: at step t
it carries the layer's spikes of step t - 1 (none at t = 0), as snntorch's RLeaky /
RSynaptic and norse's recurrent cells run and as NIR graphs write it (a cycle
neuron -> Linear/Affine -> the same neuron).  On Loihi (Lava) a Dense on such a cycle
delivers one step later, which is exactly this delay (``hardware.lava_sim``).

Synaptic bias (the clock).  A dense connection whose source is ``CLOCK`` reads a built-in
source of one neuron that spikes (1) at every step of a sample: its weights ``(N, 1)`` are
a constant current added to the layer's synaptic input each step, ``i = alpha*i + W x + b``
(the bias of an NIR ``Affine`` feeding a ``CubaLIF``: filtered by the current decay, so
unlike the membrane ``bias`` it rises over the first steps).  On Loihi it is a bias axon:
a synapse of weight b from a source the runner fires at each step of the layer's sample
(``hardware.lava_sim``); quantization, the integer emulation, energy counting, NIR and ONNX
treat it as the dense connection it is.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as tF

from . import layout

CONNECTION_KINDS = ("conv", "dense", "avgpool", "sumpool")
INPUT = "input"
#: the always-on source of synaptic biases: one neuron spiking at every step of a sample
CLOCK = "clock"
CLOCK_SHAPE = (1,)

__all__ = ["CONNECTION_KINDS", "INPUT", "CLOCK", "CLOCK_SHAPE", "Connection", "NeuronLayer",
           "DeployGraph", "LayerLookup", "is_recurrent", "is_clock", "is_feedforward",
           "clock_activity", "run_float", "float_logits"]


@dataclass(frozen=True, eq=False)
class Connection:
    """Synapses from ``source`` (a layer name or ``"input"``) into a layer."""

    source: str
    kind: str
    weight: Optional[np.ndarray] = None  # conv (Co,Ci,kh,kw); dense (N_out, N_in)
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    kernel: tuple = (1, 1)  # pooling window (pool stride = kernel)

    def __post_init__(self):
        if self.kind not in CONNECTION_KINDS:
            raise ValueError(f"unknown connection kind '{self.kind}'")
        if self.kind in ("conv", "dense"):
            if self.weight is None:
                raise ValueError(f"{self.kind} connection needs a weight")
            w = np.asarray(self.weight, dtype=np.float64)
            if w.ndim != (4 if self.kind == "conv" else 2):
                raise ValueError(f"{self.kind} weight has wrong rank {w.ndim}")
            object.__setattr__(self, "weight", w)
        if self.source == CLOCK and (self.kind != "dense" or self.weight.shape[1] != 1):
            raise ValueError("a clock connection (synaptic bias) is dense with one column")
        object.__setattr__(self, "stride", tuple(int(s) for s in self.stride))
        object.__setattr__(self, "padding", tuple(int(p) for p in self.padding))
        object.__setattr__(self, "kernel", tuple(int(k) for k in self.kernel))

    def out_shape(self, in_shape: tuple) -> tuple:
        """Shape this connection produces from a source of ``in_shape``."""
        if self.kind == "dense":
            if int(np.prod(in_shape)) != self.weight.shape[1]:
                raise ValueError(f"dense expects {self.weight.shape[1]} inputs, "
                                 f"source has shape {in_shape}")
            return (self.weight.shape[0],)
        if len(in_shape) != 3:
            raise ValueError(f"{self.kind} needs a (C,H,W) source, got {in_shape}")
        c, h, w = in_shape
        if self.kind == "conv":
            co, ci, kh, kw = self.weight.shape
            if ci != c:
                raise ValueError(f"conv expects {ci} input channels, source has {c}")
            oh = (h + 2 * self.padding[0] - kh) // self.stride[0] + 1
            ow = (w + 2 * self.padding[1] - kw) // self.stride[1] + 1
            return (co, oh, ow)
        kh, kw = self.kernel
        return (c, h // kh, w // kw)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the synapses to a batch ``(N, *source_shape)`` (float64 or float32)."""
        if self.kind == "dense":
            w = torch.as_tensor(self.weight, dtype=x.dtype, device=x.device)
            return x.reshape(x.shape[0], -1) @ w.T
        if self.kind == "conv":
            w = torch.as_tensor(self.weight, dtype=x.dtype, device=x.device)
            return tF.conv2d(x, w, stride=self.stride, padding=self.padding)
        if self.kernel == (1, 1):  # a relay (latency balancing): the identity, exactly
            return x
        out = tF.avg_pool2d(x, self.kernel, self.kernel)
        return out if self.kind == "avgpool" else out * (self.kernel[0] * self.kernel[1])


@dataclass(frozen=True, eq=False)
class NeuronLayer:
    """A group of CUBA neurons of ``shape`` with per-neuron parameters."""

    name: str
    shape: tuple
    connections: tuple
    bias: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    threshold: np.ndarray
    spiking: bool = True

    def __post_init__(self):
        if not self.name or self.name in (INPUT, CLOCK):
            raise ValueError(f"invalid layer name '{self.name}'")
        if not self.connections:
            raise ValueError(f"layer '{self.name}' has no input connection")
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "connections", tuple(self.connections))
        for key in ("bias", "alpha", "beta", "threshold"):
            arr = np.broadcast_to(np.asarray(getattr(self, key), dtype=np.float64),
                                  self.shape).copy()
            object.__setattr__(self, key, arr)
        if ((self.alpha < 0) | (self.alpha > 1) | (self.beta < 0) | (self.beta > 1)).any():
            raise ValueError(f"layer '{self.name}': decays must lie in [0, 1]")


def is_recurrent(conn, layer) -> bool:
    """Whether ``conn`` (a connection of ``layer``) is recurrent: it reads the layer's own
    spikes of the previous step."""
    return conn.source == layer.name


def is_clock(conn) -> bool:
    """Whether ``conn`` is a synaptic bias: dense synapses from the always-on ``CLOCK``."""
    return conn.source == CLOCK


def is_feedforward(conn, layer) -> bool:
    """Whether ``conn`` reads an earlier layer or the input (neither the layer's own
    previous step nor the clock): the connections that set a layer's depth."""
    return not is_recurrent(conn, layer) and not is_clock(conn)


def clock_activity(*lead, dtype=torch.float64, device=None) -> torch.Tensor:
    """The clock's activity ``(*lead, 1)``: a spike at every step of every sample."""
    return torch.ones(*lead, *CLOCK_SHAPE, dtype=dtype, device=device)


class LayerLookup:
    """Navigation shared by the float ``DeployGraph`` and the integer ``QuantGraph``."""

    @property
    def output(self):
        return self.layers[-1]

    def layer(self, name: str):
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def source_shape(self, source: str) -> tuple:
        if source == CLOCK:
            return CLOCK_SHAPE
        return self.input_shape if source == INPUT else self.layer(source).shape

    def has_recurrence(self) -> bool:
        """Whether some layer has a recurrent (self-source) connection."""
        return any(is_recurrent(c, l) for l in self.layers for c in l.connections)

    def last_readers(self) -> dict:
        """Source name -> index of the last layer that reads it (when it can be freed, in
        executors that run layer by layer)."""
        last = {}
        for k, layer in enumerate(self.layers):
            for conn in layer.connections:
                last[conn.source] = k
        return last

    def check_topology(self, check_connection=None) -> None:
        """Unique names, sources defined before use, connection shapes that fit."""
        shapes = {INPUT: self.input_shape, CLOCK: CLOCK_SHAPE}
        for layer in self.layers:
            if layer.name in shapes:
                raise ValueError(f"duplicate layer name '{layer.name}'")
            clocks = [c for c in layer.connections if is_clock(c)]
            if clocks and (len(clocks) > 1 or not layer.spiking or clocks[0].kind != "dense"):
                raise ValueError(f"layer '{layer.name}': a synaptic bias (clock connection) "
                                 "is one dense connection into a spiking layer (the "
                                 "readout's bias is its membrane bias, the same thing)")
            for conn in layer.connections:
                if is_clock(conn):  # one weight per neuron of the layer (C, H, W flattened)
                    if conn.weight.shape[0] != int(np.prod(layer.shape)):
                        raise ValueError(f"clock connection of '{layer.name}' has "
                                         f"{conn.weight.shape[0]} rows, layer has shape "
                                         f"{layer.shape}")
                    if check_connection is not None:
                        check_connection(conn)
                    continue
                if is_recurrent(conn, layer):  # its own spikes of the previous step
                    if conn.kind != "dense" or not layer.spiking:
                        raise ValueError(f"layer '{layer.name}' has a recurrent {conn.kind} "
                                         "connection; recurrence is a dense connection of a "
                                         "spiking layer to itself")
                    got = conn.out_shape(layer.shape)
                    if got != layer.shape:
                        raise ValueError(f"recurrent connection of '{layer.name}' gives "
                                         f"shape {got}, layer has {layer.shape}")
                    if check_connection is not None:
                        check_connection(conn)
                    continue
                if conn.source not in shapes:
                    raise ValueError(f"layer '{layer.name}' reads '{conn.source}', "
                                     "which is not an earlier layer")
                got = conn.out_shape(shapes[conn.source])
                if got != layer.shape:
                    raise ValueError(f"connection {conn.source}->{layer.name} gives shape "
                                     f"{got}, layer has {layer.shape}")
                if check_connection is not None:
                    check_connection(conn)
            if not any(is_feedforward(c, layer) for c in layer.connections):
                raise ValueError(f"layer '{layer.name}' has only a recurrent or clock input")
            shapes[layer.name] = layer.shape
        if not self.layers:
            raise ValueError("graph has no layers")

    def is_sequential(self) -> bool:
        """True when every layer reads exactly the previous one (netx can express it)."""
        prev = INPUT
        for layer in self.layers:
            if len(layer.connections) != 1 or layer.connections[0].source != prev:
                return False
            prev = layer.name
        return True


@dataclass(frozen=True, eq=False)
class DeployGraph(LayerLookup):
    """Neuron layers in topological order; the last one is the network output."""

    input_shape: tuple
    layers: tuple
    time_steps: int = 4
    encoding: str = "direct"
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        object.__setattr__(self, "layers", tuple(self.layers))
        self.check_topology()

    def replace(self, **changes) -> "DeployGraph":
        return dataclasses.replace(self, **changes)


def run_float(graph: DeployGraph, x_seq: torch.Tensor, record: bool = False):
    """Synchronous float execution of ``graph`` on ``x_seq`` ``(T, B, *input_shape)``.

    Returns ``(logits, spikes)`` where ``spikes`` maps layer name -> ``(T, B, *shape)``
    (only when ``record``; otherwise the dict is empty). Reproduces the PyTorch
    student exactly: there is no hardware latency here.
    """
    dtype, dev = x_seq.dtype, x_seq.device
    T, B = x_seq.shape[:2]
    state = {layer.name: (torch.zeros(B, *layer.shape, dtype=dtype, device=dev),
                          torch.zeros(B, *layer.shape, dtype=dtype, device=dev))
             for layer in graph.layers}
    params = {layer.name: tuple(torch.as_tensor(getattr(layer, k), dtype=dtype, device=dev)
                                for k in ("alpha", "beta", "threshold", "bias"))
              for layer in graph.layers}
    spikes = {layer.name: [] for layer in graph.layers}
    readout = torch.zeros(B, *graph.output.shape, dtype=dtype, device=dev)
    prev = {layer.name: torch.zeros(B, *layer.shape, dtype=dtype, device=dev)
            for layer in graph.layers
            if any(is_recurrent(c, layer) for c in layer.connections)}
    for t in range(T):
        out = {INPUT: x_seq[t], CLOCK: clock_activity(B, dtype=dtype, device=dev)}
        for layer in graph.layers:
            x = sum(conn.apply(prev[layer.name] if is_recurrent(conn, layer)
                               else out[conn.source]).reshape(B, *layer.shape)
                    for conn in layer.connections)
            alpha, beta, thr, bias = params[layer.name]
            i, v = state[layer.name]
            if not layer.spiking:
                readout = readout + x + bias
                out[layer.name] = x
                continue
            i = alpha * i + x
            v = beta * v + i + bias
            s = (v > thr).to(dtype)
            v = v * (1 - s)
            state[layer.name] = (i, v)
            out[layer.name] = s
            if layer.name in prev:
                prev[layer.name] = s
            if record:
                spikes[layer.name].append(s)
    logits = readout / T
    rec = {k: torch.stack(v) for k, v in spikes.items() if v} if record else {}
    return logits, rec


def float_logits(graph: DeployGraph, x_seq: torch.Tensor) -> torch.Tensor:
    """``run_float(graph, x_seq)[0]``, computed layer by layer: one convolution per
    connection over all T x B inputs, then the neuron recurrence over T.

    The same operations per element as :func:`run_float` (no recurrence runs between
    layers; the neuron is ``kd_snn.neurons.fused``, bit-identical to the step loop in
    its forward pass), several times faster: no per-step convolutions of small batches,
    one pass over memory for the neurons.  For accuracy passes; the kernels' summation
    order may differ from :func:`run_float`'s in the last bits.
    """
    dtype = x_seq.dtype
    T, B = x_seq.shape[:2]
    if graph.has_recurrence():  # a recurrent layer's input needs its own previous step
        return run_float(graph, x_seq)[0].reshape(B, -1)
    last_use = graph.last_readers()
    acts = {INPUT: x_seq, CLOCK: clock_activity(T, B, dtype=dtype, device=x_seq.device)}
    logits = None
    for k, layer in enumerate(graph.layers):
        x = None
        for conn in layer.connections:
            src = acts[conn.source]
            src = src.reshape((T * B,) + tuple(src.shape[2:]))
            if conn.kind == "conv":  # NHWC convolutions, NHWC activity (export.layout)
                src = layout.conv_input(src)
            y = conn.apply(src)
            if is_clock(conn):  # (T B, N) -> the layer's shape
                y = y.reshape((T * B,) + tuple(layer.shape))
            x = y if x is None else x + y
        x = x.reshape((T, B) + tuple(layer.shape))
        alpha, beta, thr, bias = (torch.as_tensor(getattr(layer, name), dtype=dtype,
                                                  device=x.device)
                                  for name in ("alpha", "beta", "threshold", "bias"))
        if not layer.spiking:
            readout = torch.zeros((B,) + tuple(layer.shape), dtype=dtype, device=x.device)
            for t in range(T):
                readout = readout + x[t] + bias
            logits = readout / T
            acts[layer.name] = x
        else:  # the fused neuron kernel: same recurrence and roundings, one pass
            from kd_snn.neurons.fused import cuba_multistep_fused
            with torch.no_grad():
                if layout.is_channels_last(x):  # elementwise: run on (T, B, H, W, C)
                    hwc = [layout.param_hwc(p, layer.shape) for p in (alpha, beta, thr, bias)]
                    acts[layer.name] = layout.from_hwc(
                        cuba_multistep_fused(layout.to_hwc(x), *hwc))
                else:
                    acts[layer.name] = cuba_multistep_fused(x, alpha, beta, thr, bias)
        for name in [n for n, j in last_use.items() if j == k and n in acts]:
            del acts[name]
    return logits.reshape(B, -1)
