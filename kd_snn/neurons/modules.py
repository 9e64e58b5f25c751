"""Thin nn.Module wrappers over ``kd_snn.neurons.functional``."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import nn

from . import functional as F
from .fused import cuba_multistep_fused
from .surrogate import get_surrogate

Param = Union[float, Sequence[float], torch.Tensor]


def _as_buffer(value: Param, shape: Optional[Sequence[int]]) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float32)
    if shape is not None and t.dim() == 0:
        t = t.expand(tuple(shape)).clone()
    return t


class CubaLIF(nn.Module):
    """Multi-step Loihi CUBA neuron on ``(T, B, *shape)`` tensors.

    ``alpha``/``beta``/``threshold`` are shared scalars unless ``shape`` is given,
    in which case they become per-neuron arrays of that shape (what export uses).
    ``backend="fused"`` (default) runs ``kd_snn.neurons.fused`` (one fused loop over T,
    bit-identical spikes, gradients equal to the reference); ``"reference"`` runs the
    step-by-step ``functional.cuba_multistep``.  ``detach_reset=False`` lets the gradient
    flow through the reset (the reference code's neuron); the Triton kernel (CUDA) runs it,
    the CPU kernels hand over to the step-by-step implementation.
    """

    def __init__(self, alpha: Param = 0.0, beta: Param = 0.5, threshold: Param = 1.0,
                 shape: Optional[Sequence[int]] = None, surrogate: str = "atan",
                 width: float = 1.0, bias: Optional[torch.Tensor] = None,
                 backend: str = "fused", detach_reset: bool = True):
        super().__init__()
        if backend not in ("fused", "reference"):
            raise ValueError(f"backend must be 'fused' or 'reference', got '{backend}'")
        self.backend = backend
        self.detach_reset = bool(detach_reset)
        self.register_buffer("alpha", _as_buffer(alpha, shape))
        self.register_buffer("beta", _as_buffer(beta, shape))
        self.register_buffer("threshold", _as_buffer(threshold, shape))
        if bias is None:
            self.bias = None
        else:
            self.register_buffer("bias", torch.as_tensor(bias, dtype=torch.float32))
        for name in ("alpha", "beta"):
            t = getattr(self, name)
            if ((t < 0) | (t > 1)).any():
                raise ValueError(f"{name} must lie in [0, 1]")
        self.surrogate, self.width = surrogate, width
        self.spike_fn = get_surrogate(surrogate, width)

    @property
    def is_plain_lif(self) -> bool:
        return bool((self.alpha == 0).all())

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        alpha = 0.0 if self.is_plain_lif else self.alpha
        if self.backend == "fused":
            return cuba_multistep_fused(x_seq, alpha, self.beta, self.threshold, self.bias,
                                        self.surrogate, self.width,
                                        detach_reset=self.detach_reset)
        spikes, _ = F.cuba_multistep(x_seq, alpha, self.beta, self.threshold, self.bias,
                                     self.spike_fn, detach_reset=self.detach_reset)
        return spikes

    def extra_repr(self) -> str:
        def show(t):
            return f"{t.item():g}" if t.dim() == 0 else f"tensor{tuple(t.shape)}"
        return (f"alpha={show(self.alpha)}, beta={show(self.beta)}, "
                f"threshold={show(self.threshold)}, surrogate={self.surrogate}({self.width:g})"
                + ("" if self.detach_reset else ", detach_reset=False"))


class Readout(nn.Module):
    """Non-spiking output integrator: logits = mean over T of the input current."""

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return F.integrate_readout(x_seq)
