"""Membrane updates counted where the value changes (NeuroBench's MembraneUpdates).

NeuroBench counts, per neuron and step, whether the membrane after the step differs from
the membrane after the previous one (every neuron counts at the first step).  kdsnn's
records hold spikes, not membranes, so the float membrane is recomputed here from the
recorded inputs and the layer's own recorded spikes (for the reset): the same operations
per step as ``export.graph.run_float``, hence the same values on the torch source.
"""
from __future__ import annotations

from typing import Mapping

import torch


def membrane_changes(layer, chunk: Mapping[str, torch.Tensor]) -> int:
    """Membrane updates of the spiking float ``layer`` over a chunk ``(T, B, ...)`` of
    records (its sources' values and its own spikes): all neurons at step 0, then the
    neurons whose membrane changed from the previous step."""
    spikes = chunk[layer.name].to(torch.float64)
    T, B = spikes.shape[:2]
    f64 = dict(dtype=torch.float64, device=spikes.device)
    alpha, beta, thr, bias = (torch.as_tensor(getattr(layer, k), **f64)
                              for k in ("alpha", "beta", "threshold", "bias"))
    i = torch.zeros((B,) + tuple(layer.shape), **f64)
    v, prev, total = torch.zeros_like(i), None, 0
    for t in range(T):
        x = sum(conn.apply(_source_step(chunk, conn, layer, t)).reshape(i.shape)
                for conn in layer.connections)
        i = alpha * i + x
        v = beta * v + i + bias
        v = v * (1 - spikes[t])
        total += v.numel() if prev is None else int(torch.count_nonzero(v != prev))
        prev = v
    return total


def _source_step(chunk, conn, layer, t: int) -> torch.Tensor:
    """What ``conn`` reads at step t: its source's activity of step t, or for a recurrent
    connection the layer's own spikes of step t - 1 (none at t = 0)."""
    src = chunk[conn.source].to(torch.float64)
    if conn.source != layer.name:
        return src[t]
    return src[t - 1] if t > 0 else torch.zeros_like(src[0])
