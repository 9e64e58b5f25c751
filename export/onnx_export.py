"""ONNX export of teachers (plain ANNs) and folded students (DeployGraph, time loop unrolled).

Public API
----------
``export_onnx_teacher(model, input_shape, path, opset=17) -> Path``
    ``input_shape`` is one sample's ``(C, H, W)``; ONNX input ``image`` ``(B, C, H, W)``
    (batch axis dynamic), output ``logits`` ``(B, K)``.
``export_onnx_student(graph, path, static_input=None, opset=17) -> Path``
    The folded student as a plain torch module over the DeployGraph (exact Heaviside
    ``(v > thr)``, reset to zero, no autograd.Function), the T steps unrolled.  Input
    ``x``: the static image ``(B, C, H, W)`` when ``static_input`` (default: the graph's
    encoding is ``"direct"``; it is repeated over T inside the model), else the encoded
    sequence ``(T, B, C, H, W)``.  Outputs ``logits`` ``(B, K)`` (mean over T of the
    readout current + bias, as ``run_float``) and ``spikes`` ``(T, B, *shape)`` of the last
    spiking layer.  Batch axis dynamic.
``StudentModule(graph)``: the torch module that is exported (usable on its own).
``check_onnx(path, inputs, expected) -> float``: runs onnxruntime (CPU) and returns the
    max abs difference over all outputs.

Exports use the legacy TorchScript exporter (``dynamo=False``, opset 17): it needs no
extra packages at export time and its output is deterministic; files are written to a
temporary file in the target folder and moved into place with ``os.replace`` (atomic),
and two exports of the same model give identical bytes (tested).
"""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as tF

from export.graph import INPUT, DeployGraph, is_clock
from kd_snn.errors import KdsnnError
from kd_snn.io import write_bytes

OPSET = 17


class StudentModule(nn.Module):
    """Synchronous float execution of a DeployGraph as a traceable torch module.

    Same operations and order as ``export.graph.run_float`` (so spikes agree exactly in
    float32): ``i = alpha*i + x; v = beta*v + i + bias; s = (v > thr); v = v*(1-s)``.
    """

    def __init__(self, graph: DeployGraph, static_input: Optional[bool] = None):
        super().__init__()
        if not isinstance(graph, DeployGraph):
            raise KdsnnError(f"ONNX student export needs a DeployGraph, "
                             f"got {type(graph).__name__}")
        self.graph = graph
        self.time_steps = int(graph.time_steps)
        self.static_input = (graph.encoding == "direct") if static_input is None \
            else bool(static_input)
        spiking = [layer for layer in graph.layers if layer.spiking]
        if not spiking:
            raise KdsnnError("ONNX student export: the graph has no spiking layer")
        self.last_spiking = spiking[-1].name
        self._keys = {}
        for li, layer in enumerate(graph.layers):
            if not layer.spiking and li != len(graph.layers) - 1:
                raise KdsnnError(f"ONNX student export: non-spiking layer '{layer.name}' "
                                 "is not the readout")
            for key in ("alpha", "beta", "threshold", "bias"):
                self.register_buffer(f"l{li}_{key}", _t(getattr(layer, key)))
            for ci, conn in enumerate(layer.connections):
                if conn.kind not in ("conv", "dense", "avgpool", "sumpool"):
                    raise KdsnnError(f"ONNX student export: unknown connection kind "
                                     f"'{conn.kind}'")
                if conn.weight is not None:
                    self.register_buffer(f"l{li}_c{ci}_w", _t(conn.weight))

    def _apply(self, li, ci, conn, x):  # noqa: D401 - mirrors Connection.apply
        if conn.kind == "dense":
            w = getattr(self, f"l{li}_c{ci}_w")
            return torch.flatten(x, 1) @ w.T
        if conn.kind == "conv":
            w = getattr(self, f"l{li}_c{ci}_w")
            return tF.conv2d(x, w, stride=conn.stride, padding=conn.padding)
        out = tF.avg_pool2d(x, conn.kernel, conn.kernel)
        return out if conn.kind == "avgpool" else out * float(conn.kernel[0] * conn.kernel[1])

    def forward(self, x: torch.Tensor):
        graph, T = self.graph, self.time_steps
        if self.static_input:
            batch = x.shape[0]
            frames = [x] * T
        else:
            batch = x.shape[1]
            frames = [x[t] for t in range(T)]
        state = {}
        prev = {}  # recurrent layers: their spikes of the previous step (none at t = 0)
        readout = None
        last = []
        for t in range(T):
            out = {INPUT: frames[t]}
            for li, layer in enumerate(graph.layers):
                cur = None
                for ci, conn in enumerate(layer.connections):
                    if is_clock(conn):  # a synaptic bias: the same current every step
                        y = getattr(self, f"l{li}_c{ci}_w").reshape(1, *layer.shape)
                    elif conn.source == layer.name:  # recurrent (export.graph.is_recurrent)
                        if layer.name not in prev:
                            continue
                        y = self._apply(li, ci, conn, prev[layer.name])
                    else:
                        y = self._apply(li, ci, conn, out[conn.source])
                    cur = y if cur is None else cur + y
                cur = cur.reshape(batch, *layer.shape)
                bias = getattr(self, f"l{li}_bias")
                if not layer.spiking:
                    # same association as run_float: (readout + x) + bias
                    readout = cur + bias if readout is None else readout + cur + bias
                    out[layer.name] = cur
                    continue
                alpha = getattr(self, f"l{li}_alpha")
                beta = getattr(self, f"l{li}_beta")
                thr = getattr(self, f"l{li}_threshold")
                if layer.name in state:
                    i, v = state[layer.name]
                    i = alpha * i + cur
                    v = beta * v + i + bias
                else:  # zero initial state: alpha*0 + x == x, beta*0 + i == i exactly
                    i = cur
                    v = i + bias
                s = (v > thr).to(v.dtype)
                v = v * (1 - s)
                state[layer.name] = (i, v)
                out[layer.name] = s
                if any(c.source == layer.name for c in layer.connections):
                    prev[layer.name] = s
                if layer.name == self.last_spiking:
                    last.append(s)
        spikes = torch.stack(last)
        if graph.output.spiking:  # no readout: spike rate of the last layer
            logits = spikes.mean(0).reshape(batch, -1)
        else:
            logits = readout / T
        return logits, spikes


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float32))


class _LogitsOnly(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x)
        return out[0] if isinstance(out, (tuple, list)) else out


def _atomic_export(module: nn.Module, args: tuple, path, input_names, output_names,
                   dynamic_axes, opset: int) -> Path:
    path = Path(path)
    buf = io.BytesIO()  # in memory: the file itself is one atomic write
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buf, input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic_axes,
                          opset_version=opset, do_constant_folding=True, dynamo=False)
    write_bytes(path, buf.getvalue())
    return path


def export_onnx_teacher(model: nn.Module, input_shape: Sequence[int], path,
                        opset: int = OPSET) -> Path:
    """Export an ANN teacher's ``forward(x) -> logits`` (eval mode) to ONNX."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 4:
        shape = shape[1:]
    if len(shape) != 3:
        raise KdsnnError(f"teacher input shape must be (C, H, W), got {tuple(input_shape)}")
    was_training = model.training
    model.eval()
    try:
        dummy = torch.zeros(2, *shape)
        with torch.no_grad():
            return _atomic_export(_LogitsOnly(model), (dummy,), path, ["image"], ["logits"],
                                  {"image": {0: "batch"}, "logits": {0: "batch"}}, opset)
    finally:
        model.train(was_training)


def export_onnx_student(graph: DeployGraph, path, static_input: Optional[bool] = None,
                        opset: int = OPSET) -> Path:
    """Export the folded student (T unrolled) to ONNX; see the module docstring."""
    module = StudentModule(graph, static_input).eval()
    if module.static_input:
        dummy = torch.zeros(2, *graph.input_shape)
        axes = {"x": {0: "batch"}}
    else:
        dummy = torch.zeros(graph.time_steps, 2, *graph.input_shape)
        axes = {"x": {1: "batch"}}
    axes.update({"logits": {0: "batch"}, "spikes": {1: "batch"}})
    with torch.no_grad():
        return _atomic_export(module, (dummy,), path, ["x"], ["logits", "spikes"], axes,
                              opset)


def _np(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def check_onnx(path, inputs, expected) -> float:
    """Run ``path`` with onnxruntime on ``inputs`` (array / tensor, a sequence of them in
    input order, or a dict by input name) and return the max abs difference between its
    outputs and ``expected`` (one array or a sequence in output order)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    if isinstance(inputs, dict):
        feed = {k: _np(v).astype(np.float32) for k, v in inputs.items()}
    else:
        seq = [inputs] if isinstance(inputs, (np.ndarray, torch.Tensor)) else list(inputs)
        if len(seq) != len(names):
            raise KdsnnError(f"ONNX model takes {len(names)} inputs, got {len(seq)}")
        feed = {n: _np(v).astype(np.float32) for n, v in zip(names, seq)}
    outs = sess.run(None, feed)
    exp = [expected] if isinstance(expected, (np.ndarray, torch.Tensor)) else list(expected)
    if len(exp) > len(outs):
        raise KdsnnError(f"ONNX model gives {len(outs)} outputs, {len(exp)} expected")
    diff = 0.0
    for o, e in zip(outs, exp):
        e = _np(e)
        if o.shape != e.shape:
            raise KdsnnError(f"ONNX output shape {o.shape} != expected {e.shape}")
        diff = max(diff, float(np.max(np.abs(o.astype(np.float64) - e.astype(np.float64))))
                   if o.size else 0.0)
    return diff


__all__ = ["StudentModule", "export_onnx_teacher", "export_onnx_student", "check_onnx"]
