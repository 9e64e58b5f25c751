"""Which device a step computes on. Every command takes ``--device`` (``auto``, the default:
CUDA when present, else the CPU): training and evaluation, and after training the
calibration, float pass and integer emulation of quantize/export/parity and the report's
counting. Lava is CPU code and runs on the CPU whatever the device; the steps that run it
say so. A device the machine lacks is refused in one line before any work."""
from __future__ import annotations

from typing import Optional

import torch

from kd_snn.run import pick_device

__all__ = ["step_device", "lava_note"]


def step_device(device: Optional[str]) -> torch.device:
    """The device a step after training computes on: ``device`` (None or ``auto``: CUDA
    when present, else the CPU); an unknown or absent device is refused."""
    return pick_device(device or "auto")


def lava_note(device: torch.device,
              what: str = "the float pass and the integer emulation") -> Optional[str]:
    """The line a step running Lava prints when ``what`` computed elsewhere."""
    if device.type == "cpu":
        return None
    return f"note: {what} ran on {device}; Lava's simulator is CPU code and ran on the CPU"
