"""The same LIF neuron (beta 0.5, threshold 1, reset to zero, atan surrogate where the
library offers it) built with kdsnn and with each peer library.

Each entry gives
- ``native(x)``: the library's own multi-step call on its native layout (used by
  benchmarks/neuron.py, so layout changes are not charged to the library);
- ``to_native(x)`` / ``from_native(s)``: conversions from/to kdsnn's ``(T, B, ...)``;
- ``module()``: an ``nn.Module`` mapping ``(T, B, ...) -> (T, B, ...)`` spikes for use
  inside a network (benchmarks/distill_step.py); layout changes there are included.

Peers are optional: ``available(lib)`` says why one cannot be imported.  Install them with
``.venv/bin/pip install --no-deps -c scripts/constraints.txt spikingjelly loguru``
(snntorch, norse and lava-dl are installed by scripts/setup.sh).
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

BETA, THRESHOLD = 0.5, 1.0
LIBS = ["kdsnn-fused", "kdsnn-reference", "torch-loop", "snntorch", "norse", "spikingjelly",
        "lava-dl-slayer"]
NEEDS = {"snntorch": "snntorch", "norse": "norse", "spikingjelly": "spikingjelly",
         "lava-dl-slayer": "lava.lib.dl.slayer"}
NOTES = {
    "kdsnn-fused": "CubaLIF(backend='fused'), C++ kernel",
    "kdsnn-reference": "CubaLIF(backend='reference'): step loop of functional.cuba_multistep",
    "torch-loop": "hand-written loop: v=0.5v+x, atan spike Function, detached reset",
    "snntorch": "snn.Leaky(beta=0.5, reset_mechanism='zero', reset_delay=False, atan), loop over T",
    "norse": "LIFBoxCell(tau_mem_inv=0.5, dt=1) loop over T (input x2 so v=0.5v+x), SuperSpike",
    "spikingjelly": "LIFNode(tau=2, decay_input=False, v_reset=0, detach_reset=True, ATan, "
                    "step_mode='m'; torch on CPU)",
    "lava-dl-slayer": "slayer.neuron.cuba.Neuron(current_decay=1, voltage_decay=0.5), "
                      "time-last layout, fixed-point state (scale 64)",
}


def available(lib: str) -> Optional[str]:
    """None if usable, else the reason."""
    mod = NEEDS.get(lib)
    if mod is None:
        return None
    try:
        importlib.import_module(mod)
    except Exception as exc:  # noqa: BLE001
        return f"{mod} not importable ({type(exc).__name__}: {str(exc)[:80]}); " \
               f"install: .venv/bin/pip install --no-deps -c scripts/constraints.txt " \
               f"{'spikingjelly loguru' if lib == 'spikingjelly' else lib}"
    return None


@dataclass
class Peer:
    native: Callable[[torch.Tensor], torch.Tensor]
    to_native: Callable[[torch.Tensor], torch.Tensor]
    from_native: Callable[[torch.Tensor], torch.Tensor]
    module: Callable[[], nn.Module]


def _ident(x):
    return x


class _TimeMajor(nn.Module):
    """Wrap a native callable into a (T, B, ...) -> (T, B, ...) module."""

    def __init__(self, make_native, to_native, from_native):
        super().__init__()
        self.inner, self.to_native, self.from_native = make_native(), to_native, from_native

    def forward(self, x):
        return self.from_native(self.inner(self.to_native(x)))


class _ATanSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u):
        ctx.save_for_backward(u)
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx, g):
        (u,) = ctx.saved_tensors
        return g / (1 + (math.pi * u) ** 2)


class TorchLoop(nn.Module):
    def forward(self, x):
        v = torch.zeros_like(x[0])
        out = []
        for xt in x:
            v = BETA * v + xt
            s = _ATanSpike.apply(v - THRESHOLD)
            v = v * (1 - s.detach())
            out.append(s)
        return torch.stack(out)


def make(lib: str) -> Peer:
    if lib in ("kdsnn-fused", "kdsnn-reference"):
        from kd_snn.neurons import CubaLIF
        backend = lib.split("-")[1]

        def mk():
            return CubaLIF(alpha=0.0, beta=BETA, threshold=THRESHOLD, surrogate="atan",
                           backend=backend)
        m = mk()
        return Peer(m, _ident, _ident, mk)

    if lib == "torch-loop":
        m = TorchLoop()
        return Peer(m, _ident, _ident, TorchLoop)

    if lib == "snntorch":
        import snntorch as snn
        from snntorch import surrogate

        class SnnTorchSeq(nn.Module):
            def __init__(self):
                super().__init__()
                self.lif = snn.Leaky(beta=BETA, threshold=THRESHOLD, spike_grad=surrogate.atan(),
                                     reset_mechanism="zero", reset_delay=False)

            def forward(self, x):
                mem = self.lif.reset_mem()
                out = []
                for xt in x:
                    spk, mem = self.lif(xt, mem)
                    out.append(spk)
                return torch.stack(out)
        m = SnnTorchSeq()
        return Peer(m, _ident, _ident, SnnTorchSeq)

    if lib == "norse":
        from norse.torch import LIFBoxCell
        from norse.torch.functional.lif_box import LIFBoxParameters

        class NorseSeq(nn.Module):
            def __init__(self):
                super().__init__()
                self.cell = LIFBoxCell(LIFBoxParameters(
                    tau_mem_inv=torch.as_tensor(0.5), v_th=torch.as_tensor(THRESHOLD),
                    v_reset=torch.as_tensor(0.0), v_leak=torch.as_tensor(0.0)), dt=1.0)

            def forward(self, x):
                state, out = None, []
                for xt in x:
                    z, state = self.cell(xt, state)
                    out.append(z)
                return torch.stack(out)
        m = NorseSeq()
        # v + 0.5 * (x' - v) = 0.5 v + x  for x' = 2x (a gain a conv layer absorbs)
        return Peer(m, lambda x: 2 * x, _ident, NorseSeq)

    if lib == "spikingjelly":
        from spikingjelly.activation_based import neuron, surrogate

        class SJ(nn.Module):
            def __init__(self):
                super().__init__()
                self.node = neuron.LIFNode(tau=2.0, decay_input=False, v_threshold=THRESHOLD,
                                           v_reset=0.0, surrogate_function=surrogate.ATan(),
                                           detach_reset=True, step_mode="m")

            def forward(self, x):
                self.node.reset()
                return self.node(x)
        m = SJ()
        return Peer(m, _ident, _ident, SJ)

    if lib == "lava-dl-slayer":
        from lava.lib.dl import slayer

        def mk_native():
            return slayer.neuron.cuba.Neuron(threshold=THRESHOLD, current_decay=1.0,
                                             voltage_decay=BETA)
        def to_native(x):  # (T, B, ...) -> (B, ..., T)
            return x.movedim(0, -1).contiguous()

        def from_native(s):
            return s.movedim(-1, 0)
        m = mk_native()
        return Peer(m, to_native, from_native,
                    lambda: _TimeMajor(mk_native, to_native, lambda s: from_native(s).contiguous()))
    raise KeyError(lib)
