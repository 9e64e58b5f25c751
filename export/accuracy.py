"""Accuracy of a deployed network: the folded float graph and its integer emulation, side
by side on the same samples, a batch at a time."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from kd_snn.config import Config
from kd_snn.progress import progress as make_progress
from kd_snn.run import input_batches, sample_inputs

from .devices import as_device, exact_kernels
from .emulate import emulate
from .graph import DeployGraph, float_logits
from .fixed_point import encode_input

__all__ = ["accuracy_batch", "quantized_accuracy", "split_accuracy", "accuracy_over",
           "float_accuracy"]


def accuracy_batch(qgraph, budget_bytes: int = 1 << 28) -> int:
    """Samples per accuracy batch: large batches keep oneDNN's convolutions of narrow layers
    efficient, bounded so that the widest layer's
    (T, B, neurons) float64 tensor stays within ``budget_bytes``."""
    widest = max(int(np.prod(layer.shape)) for layer in qgraph.layers)
    b = budget_bytes // max(1, 8 * qgraph.time_steps * widest)
    return int(min(256, max(16, b)))


def quantized_accuracy(graph: DeployGraph, qgraph, x_seq: torch.Tensor, labels: np.ndarray,
                       batch: Optional[int] = None, progress: bool = False,
                       device=None) -> dict:
    """Test accuracy of the float graph (in float32, as the student runs in PyTorch) and of
    its integer emulation, both computed on ``device`` (the CPU: None)."""
    batch = batch or accuracy_batch(qgraph)
    starts = range(0, x_seq.shape[1], batch)
    return accuracy_over(graph, qgraph, len(labels),
                         ((x_seq[:, a:a + batch], labels[a:a + batch]) for a in starts),
                         progress, device)


def split_accuracy(graph: DeployGraph, qgraph, cfg: Config, split: str = "test",
                   n: Optional[int] = None, progress: bool = False, device=None) -> dict:
    """:func:`quantized_accuracy` over the first ``n`` samples of a split (all: None), read
    a batch at a time (the whole CIFAR test split at T = 4 would be ~1 GB of float64)."""
    batch = accuracy_batch(qgraph)
    if n is not None:
        x, y = sample_inputs(cfg, split, n)
        return quantized_accuracy(graph, qgraph, x, y, batch, progress, device)
    total, batches = input_batches(cfg, split, batch)
    return accuracy_over(graph, qgraph, total, batches, progress, device)


def accuracy_over(graph: DeployGraph, qgraph, n: int, batches, progress: bool,
                  device=None) -> dict:
    """Accuracy, float and emulation, over ``n`` samples given as ``(x_seq, labels)``
    batches, computed on ``device`` (the CPU: None; TF32 off on CUDA, so the float pass
    is float32 as on the CPU and the emulation bit-identical, ``export.devices``)."""
    correct_f = correct_q = agree = 0
    bar = make_progress(desc="accuracy (float + emulation)", unit="sample", total=n,
                        enabled=progress, every=10)
    device = as_device(device)
    try:
        for xb, yb in batches:
            with exact_kernels(device):
                pf = float_logits(graph, xb.float().to(device)).argmax(1).cpu().numpy()
            v, _ = emulate(qgraph, encode_input(xb).to(device), record=False, device=device)
            pq = np.asarray(v).reshape(len(yb), -1).argmax(1)
            correct_f += int((pf == yb).sum())
            correct_q += int((pq == yb).sum())
            agree += int((pf == pq).sum())
            bar.update(len(yb))
    finally:
        bar.close()
    n = max(1, n)
    return {"float": correct_f / n, "quantized": correct_q / n, "agreement": agree / n,
            "samples": int(n)}


def float_accuracy(graph: DeployGraph, cfg: Config, progress: bool = False,
                   split: str = "test", device=None) -> dict:
    """The float graph's accuracy over a whole split (the forward kdsnn runs, e.g. of an
    imported network), a batch at a time on ``device`` (the CPU: None); a graph that
    cannot run on the data is refused in one line."""
    from kd_snn.errors import KdsnnError

    n, batches = input_batches(cfg, split, 256)
    correct = 0
    bar = make_progress(total=n, unit="sample", desc=f"float forward on the {split} split",
                        enabled=progress, every=10)
    try:
        for x, y in batches:
            try:
                with exact_kernels(device):  # TF32 off: float64 as on the CPU
                    logits = float_logits(graph, x.to(as_device(device))).cpu()
            except (RuntimeError, ValueError) as exc:
                raise KdsnnError(f"the imported graph does not run on the data: "
                                 f"{str(exc).splitlines()[0]}") from None
            correct += int((logits.argmax(1) == torch.as_tensor(y)).sum())
            bar.update(len(y))
    finally:
        bar.close()
    return {"accuracy": correct / max(1, n), "samples": int(n)}
