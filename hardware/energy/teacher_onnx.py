"""MACs of an ANN teacher given as ONNX (a teacher trained outside kdsnn).

Each ``Conv`` / ``Gemm`` / ``MatMul``-with-a-constant node becomes the torch module it
computes (weights from the file's initializers, shapes from ONNX shape inference), counted by
the same per-module code as a kdsnn teacher (:func:`hardware.energy.teacher._teacher_layer`),
so both follow one convention. The file is parsed by ``onnx`` (protobuf: nothing executes).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from kd_snn.errors import KdsnnError

from .teacher import TeacherLayer, TeacherStats, teacher_layer

MAX_BYTES = 2 << 30


def load_onnx_teacher(path):
    """The checked, shape-inferred ONNX model at ``path``."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise KdsnnError(f"ONNX teacher not found: {path}")
    if path.stat().st_size > MAX_BYTES:
        raise KdsnnError(f"ONNX teacher '{path}' is larger than 2 GiB")
    try:
        model = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(model)
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as exc:  # noqa: BLE001 - any parse/check error is a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KdsnnError(f"'{path}' is not a usable ONNX model ({first})") from None
    if len(_network_inputs(model.graph)) != 1:
        raise KdsnnError(f"ONNX teacher '{path}' must have exactly one input")
    return model


def _network_inputs(graph) -> list:
    """The graph inputs that are data, not initializers (weights listed as inputs)."""
    inits = {t.name for t in graph.initializer}
    return [i for i in graph.input if i.name not in inits]


def check_onnx_teacher(path, input_shape: Sequence[int], classes: int) -> TeacherStats:
    """Refuse an ONNX teacher that does not fit the data set: its input must take
    ``(N, *input_shape)`` and its one output must give ``classes`` scores; its MACs must be
    countable (what the report needs). Returns the counts."""
    model = load_onnx_teacher(path)
    g = model.graph
    inp = _network_inputs(g)[0]
    want = tuple(int(s) for s in input_shape)
    got = _shape(inp)
    if len(got) != len(want) + 1 or any(a is not None and a != b
                                        for a, b in zip(got[1:], want)):
        shown = "x".join("?" if s is None else str(s) for s in got[1:])
        raise KdsnnError(f"ONNX teacher '{path}' takes input {shown or '()'} per sample; the "
                         f"data set gives {'x'.join(map(str, want))}")
    if len(g.output) != 1:
        raise KdsnnError(f"ONNX teacher '{path}' must have exactly one output")
    out = _shape(g.output[0])
    if not out or out[-1] != classes:
        raise KdsnnError(f"ONNX teacher '{path}' gives {out[-1] if out else 'no'} scores per "
                         f"sample; the data set has {classes} classes")
    return count_onnx_teacher(model, want)


def _shape(info) -> tuple:
    dims = info.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)


def _attrs(node) -> dict:
    import onnx
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _module(node, consts: dict, in_shape: tuple):
    """The torch module of one counted node, or None for a node that has no MACs."""
    a = _attrs(node)
    if node.op_type == "Conv":
        w = consts.get(node.input[1])
        if w is None or w.ndim != 4:
            raise KdsnnError(f"ONNX teacher: Conv '{node.name}' needs a constant 2-D kernel")
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if pads[:2] != pads[2:]:
            raise KdsnnError(f"ONNX teacher: Conv '{node.name}' has asymmetric padding")
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise KdsnnError(f"ONNX teacher: Conv '{node.name}' uses auto_pad")
        groups = int(a.get("group", 1))
        mod = torch.nn.Conv2d(int(in_shape[1]), w.shape[0], w.shape[2:],
                              stride=tuple(a.get("strides", [1, 1])), padding=tuple(pads[:2]),
                              dilation=tuple(a.get("dilations", [1, 1])), groups=groups,
                              bias=False)
        mod.weight.data = torch.tensor(w, dtype=torch.float32)
        return mod
    if node.op_type in ("Gemm", "MatMul"):
        b = consts.get(node.input[1])
        if b is None or b.ndim != 2:
            return None  # activations times activations (attention): no weights to count
        if node.op_type == "Gemm" and int(a.get("transA", 0)):
            raise KdsnnError(f"ONNX teacher: Gemm '{node.name}' with transA is not counted")
        weight = b if (node.op_type == "Gemm" and int(a.get("transB", 0))) else b.T
        mod = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        mod.weight.data = torch.tensor(np.array(weight), dtype=torch.float32)
        return mod
    return None


def count_onnx_teacher(model, input_shape: Sequence[int],
                       x: Optional[torch.Tensor] = None) -> TeacherStats:
    """Exact MACs per inference of every Conv / Gemm / MatMul of an ONNX teacher
    (``load_onnx_teacher``), in graph order; like ``count_teacher`` (``x`` (N, C, H, W)
    counts the non-zero input values of the nodes fed by the network input)."""
    from onnx import numpy_helper

    if isinstance(model, (str, Path)):
        model = load_onnx_teacher(model)
    g = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    consts.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in g.node
                   if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
    shapes = {i.name: _shape(i) for i in list(g.input) + list(g.value_info) + list(g.output)}
    input_name = _network_inputs(g)[0].name
    shape = tuple(int(s) for s in input_shape)
    samples = 0 if x is None else int(x.shape[0])
    layers = []
    for k, node in enumerate(g.node):
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        in_shape = shapes.get(node.input[0])
        is_input = node.input[0] == input_name
        if is_input:
            in_shape = (1,) + shape
        if in_shape is None or any(s is None for s in in_shape[1:]):
            raise KdsnnError(f"ONNX teacher: the input shape of '{node.name or node.op_type}' "
                             "is not known (export with static shapes)")
        mod = _module(node, consts, in_shape)
        if mod is None:
            continue
        name = node.name or f"{node.op_type.lower()}{k}"
        inp = torch.zeros((1,) + tuple(int(s) for s in in_shape[1:]))
        with torch.no_grad():
            try:
                y = mod(inp)
            except RuntimeError as exc:
                raise KdsnnError(f"ONNX teacher: '{name}' does not run on its input "
                                 f"{tuple(inp.shape[1:])} ({str(exc).splitlines()[0]})") \
                    from None
            static = teacher_layer(name, mod, inp, y, False)
            nz = nz_nzw = None
            if is_input and x is not None:
                xs = torch.as_tensor(x, dtype=torch.float32)
                counted = teacher_layer(name, mod, xs, mod(xs), True)
                nz, nz_nzw = counted[0][2] / samples, counted[1][2] / samples
        (ib, pd, _), (ib_nzw, pd_nzw, _) = static
        layers.append(TeacherLayer(name, int(ib), int(pd), is_input, nz, int(ib_nzw),
                                   int(pd_nzw), nz_nzw))
    if not layers:
        raise KdsnnError("ONNX teacher: no Conv / Gemm / MatMul node with weights to count")
    return TeacherStats(tuple(layers), samples)
