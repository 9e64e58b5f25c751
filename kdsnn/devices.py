"""Which device a step runs on. Training and evaluation follow ``--device`` (``auto``: CUDA
when present); the steps after training (quantize, export, parity, report) run on the CPU in
this version: their integer emulation and Lava are CPU code. A device they cannot use is
refused before any work rather than accepted and ignored."""
from __future__ import annotations

from typing import Optional

from kd_snn.errors import KdsnnError
from kd_snn.run import pick_device

__all__ = ["cpu_step"]


def cpu_step(device: Optional[str], step: str) -> None:
    """Accept ``device`` for a CPU-only ``step`` (None, ``auto`` or ``cpu``), else refuse it
    in one line (an unknown or absent device is refused as such first)."""
    if device is None or device == "auto":
        return
    if pick_device(device).type != "cpu":
        raise KdsnnError(f"kdsnn {step} runs on the CPU in this version (the integer "
                         f"emulation and Lava are CPU code): --device {device} is refused "
                         "rather than ignored; use --device cpu or leave it out")
