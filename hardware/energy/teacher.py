"""The ANN teacher's exact MACs, counted by the student's counter (:func:`count_teacher`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from kd_snn.errors import KdsnnError

from .conventions import DEFAULT_CONVENTIONS, Conventions
from .counting import ArrayLike, as_tensor, weighted_counts, fanout_map, padded_taps

@dataclass(frozen=True)
class TeacherLayer:
    """MACs per inference of one conv / linear module of the ANN teacher.

    ``in_bounds``: taps that read real data; ``padded``: every tap, zero padding included
    (``torch.utils.flop_counter``'s MACs = flops / 2); ``input``: fed by the network input;
    ``nonzero``: in-bounds taps that meet a non-zero input value (mean per sample; input
    layers counted on data only, else ``None``).
    """

    name: str
    in_bounds: int
    padded: int
    input: bool = False
    nonzero: Optional[float] = None
    in_bounds_nzw: Optional[int] = None  # the same three, zero weights skipped
    padded_nzw: Optional[int] = None
    nonzero_nzw: Optional[float] = None

    def macs(self, conventions: Conventions = DEFAULT_CONVENTIONS) -> float:
        nzw = "_nzw" if conventions.mac_weights == "nonzero" else ""
        if self.input and conventions.zero_input == "skipped":
            if self.nonzero is None:
                raise KdsnnError("zero-input skipping needs the teacher counted on data: "
                                 "pass x to count_teacher")
            return getattr(self, "nonzero" + nzw)
        value = getattr(self, ("padded" if conventions.padding == "counted" else "in_bounds")
                        + nzw)
        if value is None:
            raise KdsnnError("mac_weights=nonzero needs the teacher counted by count_teacher")
        return value


@dataclass(frozen=True)
class TeacherStats:
    """The teacher's exact MAC counts per layer (call order); ``samples`` it was run on."""

    layers: Tuple[TeacherLayer, ...]
    samples: int = 0

    def macs(self, conventions: Conventions = DEFAULT_CONVENTIONS) -> Dict[str, float]:
        return {l.name: l.macs(conventions) for l in self.layers}

    def to_dict(self) -> dict:
        return {"samples": self.samples, "layers": [asdict(l) for l in self.layers]}


class _TeacherConv:
    """A torch Conv2d seen as a kdsnn conv connection, so :func:`fanout_map` counts it."""

    kind = "conv"

    def __init__(self, mod: torch.nn.Conv2d, out_shape: tuple):
        if isinstance(mod.padding, str):
            if mod.padding != "valid":
                raise KdsnnError(f"teacher conv padding '{mod.padding}' is not counted: "
                                 "use explicit integer padding")
            self.padding = (0, 0)
        else:
            self.padding = tuple(int(p) for p in mod.padding)
        self.weight = mod.weight.detach().cpu().to(torch.float64).numpy()
        self.stride = tuple(int(s) for s in mod.stride)
        self.dilation = tuple(int(d) for d in mod.dilation)
        self.groups = int(mod.groups)
        self._out = tuple(out_shape)

    def out_shape(self, _source_shape) -> tuple:
        return self._out


def teacher_layer(name: str, mod, inp: torch.Tensor, out: torch.Tensor, is_input: bool):
    """(in_bounds, padded, nonzero-input taps summed over the batch), each for every weight
    and for the non-zero weights only, of one module call."""
    batch = inp.shape[0]
    if isinstance(mod, torch.nn.Linear):
        nzw_col = (mod.weight.detach() != 0).sum(0).to(torch.float64)  # per input feature
        rows = inp.numel() // (batch * mod.in_features)  # tokens, when there are any
        n = rows * mod.weight.numel()
        n_nzw = rows * int(nzw_col.sum())
        nonzero = nonzero_nzw = None
        if is_input:
            ev = (inp.detach().cpu() != 0).to(torch.float64).reshape(-1, mod.in_features)
            nonzero = float(ev.sum()) * mod.out_features
            nonzero_nzw = float((ev @ nzw_col.cpu()).sum())
        return (n, n, nonzero), (n_nzw, n_nzw, nonzero_nzw)
    if type(mod) is not torch.nn.Conv2d:
        raise KdsnnError(f"teacher module '{name}' ({type(mod).__name__}) is not counted: "
                         "only Conv2d and Linear are")
    conn = _TeacherConv(mod, out.shape[1:])
    counts = []
    for weights in ("all", "nonzero"):
        fmap = fanout_map(conn, tuple(inp.shape[1:]), weights)
        padded = padded_taps(conn, tuple(inp.shape[1:]), weights)
        in_bounds = int(fmap.sum()) if mod.padding_mode == "zeros" else padded
        nonzero = None
        if is_input:
            ev = (inp.detach().cpu() != 0).to(torch.float64).unsqueeze(0)  # (1, B, C, H, W)
            nonzero = float(weighted_counts(ev, fmap).sum())
        counts.append((in_bounds, padded, nonzero))
    return tuple(counts)


def count_teacher(model: torch.nn.Module, input_shape: Sequence[int],
                  x: Optional[ArrayLike] = None, batch_size: int = 64) -> TeacherStats:
    """Exact MACs per inference of every Conv2d / Linear module of an ANN, in call order,
    counted by the student's counter (:func:`fanout_map`), so both follow one convention.

    ``input_shape`` is ``(C, H, W)`` (a leading batch size is ignored).  The model runs on
    zeros, or on the images ``x`` ``(N, C, H, W)`` to count the non-zero input values of
    the modules fed by the network input (zero-input convention).  Bias additions, BN,
    activations, pooling and functional calls outside modules are not MACs.  A module
    called twice is summed.
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) < 2:
        raise ValueError(f"input_shape must be (C, H, W) or (B, C, H, W), got {shape}")
    shape = shape[1:] if len(shape) >= 4 else shape
    p = next(model.parameters(), None)
    dtype = p.dtype if p is not None else torch.float32
    device = p.device if p is not None else "cpu"
    if x is None:
        batches, samples = [torch.zeros((1,) + shape, dtype=dtype)], 0
    else:
        xs = as_tensor(x)
        if tuple(xs.shape[1:]) != shape:
            raise KdsnnError(f"teacher images have shape {tuple(xs.shape[1:])}, "
                             f"expected {shape}")
        batches, samples = list(torch.split(xs, batch_size)), int(xs.shape[0])
    order: List[str] = []
    counts: Dict[str, list] = {}
    current = {}

    def hook(name):
        def fn(mod, inputs, output):
            inp = inputs[0]
            is_input = inp.shape == current["x"].shape and \
                inp.data_ptr() == current["x"].data_ptr()
            both = teacher_layer(name, mod, inp, output, is_input)
            if name not in counts:
                order.append(name)
                zero = 0.0 if is_input and samples else None
                counts[name] = {"input": is_input, "c": [[0, 0, zero], [0, 0, zero]]}
            for c, (ib, pd, nz) in zip(counts[name]["c"], both):
                if current["first"]:  # static per-sample counts: the first batch suffices
                    c[0] += ib
                    c[1] += pd
                if c[2] is not None and nz is not None:
                    c[2] += nz
        return fn

    hooks = [mod.register_forward_hook(hook(name or type(mod).__name__))
             for name, mod in model.named_modules()
             if isinstance(mod, (torch.nn.modules.conv._ConvNd, torch.nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            for i, b in enumerate(batches):
                current["x"] = b.to(device=device, dtype=dtype)
                current["first"] = i == 0
                model(current["x"])
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    layers = []
    for name in order:
        (ib, pd, nz), (ib_nzw, pd_nzw, nz_nzw) = counts[name]["c"]
        per = lambda n: None if n is None else n / samples  # noqa: E731
        layers.append(TeacherLayer(name, int(ib), int(pd), bool(counts[name]["input"]),
                                   per(nz), int(ib_nzw), int(pd_nzw), per(nz_nzw)))
    return TeacherStats(tuple(layers), samples)


def teacher_macs(model: torch.nn.Module, input_shape: Sequence[int],
                 conventions: Conventions = DEFAULT_CONVENTIONS) -> Dict[str, int]:
    """MACs per inference of every conv / linear module under ``conventions`` (default:
    in-bounds taps; ``Conventions(padding="counted")`` gives ``flop_counter``'s figure)."""
    return {k: int(v) for k, v in count_teacher(model, input_shape).macs(conventions).items()}
