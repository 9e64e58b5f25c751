"""Batch augmentation of the reference recipe (AutoAugment, RandomErasing) with kornia.

Runs on ``(B, C, H, W)`` batches in [0, 1] on any device, after the per-image crop and
flip of the data set.  kornia draws its parameters from torch's global generator on the
CPU, so :meth:`BatchAugment.__call__` runs under ``fork_rng`` seeded with the step seed
the trainer derives from ``(seed, stage, epoch, step)``: a resumed run draws the same.

- AutoAugment: one sub-policy **per image** (as torchvision picks them), drawn here; the
  images of each sub-policy go through kornia together.  kornia's magnitudes act on
  float images and its ops are kornia's, not torchvision's PIL ones.
- RandomErasing: the reference erases after Normalize with the value 0, i.e. with the
  channel mean in pixel space.  Normalisation is the models' first stage here, so the
  box is filled with ``mean`` (erasing ``x - mean`` with 0): the same after the model's
  ``InputNorm``.  kornia picks the box's aspect ratio by a coin flip between [0.3, 1] and
  [1, 3.3] (torchvision: log-uniform) and never fails to place a box.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from kd_snn.errors import KdsnnError

POLICIES = ("cifar10",)


def _kornia():
    try:
        import kornia.augmentation as K
    except ImportError:  # pragma: no cover - set-up installs it
        raise KdsnnError("batch augmentation needs kornia (pip install kornia, see "
                         "scripts/requirements.txt)") from None
    return K


class BatchAugment:
    """AutoAugment (``policy``) then RandomErasing (probability ``erasing``) on batches."""

    def __init__(self, policy: str = "none", erasing: float = 0.0,
                 erasing_scale: Sequence[float] = (0.02, 0.33),
                 fill: Optional[Sequence[float]] = None):
        K = _kornia()
        if policy != "none" and policy not in POLICIES:
            raise KdsnnError(f"unknown AutoAugment policy '{policy}' (choose from none, "
                             f"{', '.join(POLICIES)})")
        self.policy = K.auto.AutoAugment(policy) if policy != "none" else None
        self.erase = (K.RandomErasing(scale=tuple(erasing_scale), p=float(erasing))
                      if erasing > 0 else None)
        self.fill = None if fill is None else torch.tensor(fill, dtype=torch.float32)

    @property
    def active(self) -> bool:
        return self.policy is not None or self.erase is not None

    def __call__(self, x: torch.Tensor, seed: int) -> torch.Tensor:
        """The augmented batch; every draw comes from ``seed``."""
        if x.dim() != 4:
            raise KdsnnError(f"batch augmentation needs (B, C, H, W) images, got shape "
                             f"{tuple(x.shape)}")
        devices = [x.device.index or 0] if x.device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            if self.policy is not None:
                x = self._autoaugment(x)
            if self.erase is not None:
                fill = (torch.zeros(()) if self.fill is None else self.fill.view(-1, 1, 1))
                fill = fill.to(x.device, x.dtype)
                x = self.erase(x - fill) + fill
        return x.contiguous()

    def _autoaugment(self, x: torch.Tensor) -> torch.Tensor:
        subs = list(self.policy.children())
        pick = torch.randint(len(subs), (x.shape[0],))
        out = x.clone()
        for k in pick.unique().tolist():
            idx = (pick == k).nonzero().flatten().to(x.device)
            out[idx] = subs[k](x[idx]).to(x.dtype)
        return out
