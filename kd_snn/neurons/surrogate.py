"""Surrogate gradients for the Heaviside spike function.

Forward is always the exact step ``x > 0`` (strict, as on Loihi); only the
backward pass differs.  ``width`` sets how far from threshold gradient flows.
"""
from __future__ import annotations

import math
from typing import Callable

import torch


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, kind: int, width: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.kind, ctx.width = kind, width
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad * surrogate_grad(x, ctx.kind, ctx.width), None, None


ATAN, SIGMOID, TRIANGLE = 0, 1, 2
SURROGATES = {"atan": ATAN, "sigmoid": SIGMOID, "triangle": TRIANGLE}


def surrogate_grad(x: torch.Tensor, kind: int, width: float) -> torch.Tensor:
    """d spike / d x of the chosen surrogate (all integrate to 1 over x)."""
    if kind == ATAN:  # derivative of (1/pi) * atan(pi/2 * a * x), a = 2/width
        a = 2.0 / width
        return (a / 2) / (1 + (math.pi / 2 * a * x) ** 2)
    if kind == SIGMOID:  # derivative of sigmoid(k x), k = 4/width
        k = 4.0 / width
        sg = torch.sigmoid(k * x)
        return k * sg * (1 - sg)
    if kind == TRIANGLE:  # max(0, 1 - |x|/w) / w
        return torch.clamp(1 - x.abs() / width, min=0) / width
    raise ValueError(f"unknown surrogate kind {kind}")


def get_surrogate(name: str, width: float = 1.0) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return ``spike(x)``: Heaviside forward with the named surrogate backward."""
    if name not in SURROGATES:
        raise ValueError(f"unknown surrogate '{name}' (choose from {', '.join(SURROGATES)})")
    if not width > 0:
        raise ValueError(f"surrogate width must be > 0, got {width}")
    kind = SURROGATES[name]
    return lambda x: _Spike.apply(x, kind, float(width))
