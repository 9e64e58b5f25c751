"""Where the steps after training compute, and how the integer emulation stays exact there.

The emulation sums integer products in float kernels where a bound proves every partial
sum exact (``export.emulate.accumulation_dtype``: float32 up to 2**24, float64 up to
2**53).  That argument needs kernels that add the exact products directly, in any order.
On the CPU PyTorch's convolutions and matmuls do.  On CUDA two things would break it:

- TF32 (Ampere and later) rounds each float32 operand to an 11-bit mantissa before the
  product.  Turned off here for matmuls and cuDNN.
- cuDNN may pick Winograd or FFT convolutions, which transform the operands and round.
  cuDNN is turned off inside :func:`exact_kernels`, so a CUDA convolution runs as
  im2col + cuBLAS GEMM (or the depthwise kernel): direct sums of exact products.

Everything else the emulation does is int64 arithmetic, exact on every device.  Lava is
CPU code and stays there whatever the device.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
from typing import Iterator, Union

import torch

__all__ = ["as_device", "exact_kernels", "exact_on_device", "DeviceLike"]

DeviceLike = Union[str, torch.device, None]


def as_device(device: DeviceLike) -> torch.device:
    """``None`` -> the CPU; a name or ``torch.device`` as given."""
    return torch.device("cpu") if device is None else torch.device(device)


@contextlib.contextmanager
def exact_kernels(device: DeviceLike) -> Iterator[None]:
    """Run the body with float kernels whose integer sums are exact on ``device``
    (see the module docstring); the CPU's settings are left untouched."""
    if as_device(device).type != "cuda":
        yield
        return
    matmul = torch.backends.cuda.matmul
    saved = matmul.allow_tf32
    matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=False, allow_tf32=False):
            yield
    finally:
        matmul.allow_tf32 = saved


def exact_on_device(fn):
    """Decorate a function with a ``device`` parameter so that its body runs under
    :func:`exact_kernels` for the device it is called with (by keyword or position)."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def run(*args, **kwargs):
        device = signature.bind(*args, **kwargs).arguments.get("device")
        with exact_kernels(device):
            return fn(*args, **kwargs)
    return run
