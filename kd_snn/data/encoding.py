"""Input encodings: batches -> time-major spike/analog tensors ``(T, B, ...)``."""
from __future__ import annotations

from typing import Optional

import torch

from kd_snn.errors import KdsnnError

METHODS = ("direct", "poisson", "frames")


def encode(x: torch.Tensor, time_steps: Optional[int], method: str = "direct",
           generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Encode a batch for a spiking student.

    - ``direct``: static ``(B, C, H, W)`` repeated to ``(T, B, C, H, W)`` (analog input;
      an expanded view, call ``.contiguous()`` if you write into it).
    - ``poisson``: Bernoulli rate coding, spike with probability ``clamp(x, 0, 1)`` at each
      step, drawn from ``generator`` (pass a seeded ``torch.Generator`` on ``x``'s device for
      determinism); returns ``x.dtype`` 0/1 values.
    - ``frames``: event batch ``(B, T, 2, H, W)`` permuted to ``(T, B, 2, H, W)``;
      ``time_steps`` must be None or equal T.
    """
    if method not in METHODS:
        raise KdsnnError(f"unknown encoding {method!r}; choices: {', '.join(METHODS)}")
    if method == "frames":
        if x.dim() != 5:
            raise KdsnnError(f"encoding 'frames' needs an event batch (B, T, 2, H, W), "
                             f"got shape {tuple(x.shape)}")
        if time_steps is not None and int(time_steps) != x.shape[1]:
            raise KdsnnError(f"encoding 'frames': batch has T={x.shape[1]} time bins but "
                             f"time_steps={time_steps}")
        return x.transpose(0, 1).contiguous()
    if x.dim() != 4:
        raise KdsnnError(f"encoding {method!r} needs a static batch (B, C, H, W), got shape "
                         f"{tuple(x.shape)}; use 'frames' for event data")
    if time_steps is None or int(time_steps) < 1:
        raise KdsnnError(f"encoding {method!r} needs time_steps >= 1, got {time_steps}")
    T = int(time_steps)
    if method == "direct":
        return x.unsqueeze(0).expand(T, *x.shape)
    p = x.clamp(0, 1).unsqueeze(0).expand(T, *x.shape)
    u = torch.rand(p.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (u < p).to(x.dtype)
