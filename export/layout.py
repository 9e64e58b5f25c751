"""Channels-last activations for the accuracy passes (float graph and integer emulation).

oneDNN's convolutions of the narrow layers of small students run 1.3-2x faster on NHWC
data than on NCHW (ResNet-20's 16- and 32-channel layers, 2 cores).  The gain is lost if
every layer converts back, so the whole pass keeps NHWC: a layer's activity ``(T, B, C, H,
W)`` is stored as ``(T, B, H, W, C)``, and the neurons, which are elementwise, run on that
permuted (contiguous) view with their per-neuron parameters permuted alike.  Layout changes
no value: the emulation's sums are exact in any order; the float pass may differ in the
last bits, as any change of kernel does.
"""
from __future__ import annotations

import torch

CHANNELS_LAST = torch.channels_last


def conv_input(x: torch.Tensor) -> torch.Tensor:
    """``x`` (N, C, H, W) in NHWC memory (a no-op when it already is)."""
    return x.contiguous(memory_format=CHANNELS_LAST)


def is_channels_last(x: torch.Tensor) -> bool:
    """A ``(T, B, C, H, W)`` activity stored as ``(T, B, H, W, C)`` (C > 1: otherwise both)."""
    return (x.dim() == 5 and x.shape[2] > 1 and not x.is_contiguous()
            and x.permute(0, 1, 3, 4, 2).is_contiguous())


def to_hwc(x: torch.Tensor) -> torch.Tensor:
    """The contiguous ``(T, B, H, W, C)`` view of a channels-last activity."""
    return x.permute(0, 1, 3, 4, 2)


def from_hwc(x: torch.Tensor) -> torch.Tensor:
    """``(T, B, H, W, C)`` -> the ``(T, B, C, H, W)`` view (inverse of :func:`to_hwc`)."""
    return x.permute(0, 1, 4, 2, 3)


def param_hwc(p, shape: tuple, dtype=None) -> torch.Tensor:
    """A per-neuron parameter (scalar, or broadcasting to the layer's ``(C, H, W)``) as
    ``(H, W, C)``."""
    t = torch.as_tensor(p) if dtype is None else torch.as_tensor(p, dtype=dtype)
    return torch.broadcast_to(t, tuple(shape)).permute(1, 2, 0)
