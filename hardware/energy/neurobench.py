"""kdsnn's counts under NeuroBench 2.3.0's definitions (its workload metrics, by name).

NeuroBench (``neurobench.metrics.workload``) counts, per sample:

* ``Effective_MACs``: conv/linear layers fed by non-binary values, zero inputs and zero
  weights skipped, at every step -> kdsnn's MACs under the ``neurobench`` preset;
* ``Effective_ACs``: conv/linear layers fed by spikes, each spike times its non-zero fan-out
  -> kdsnn's SynOps without the pooling connections (NeuroBench counts no pooling);
* ``Dense``: every in-bounds tap of every conv/linear layer, every weight, every step;
* ``ActivationSparsity``: 1 - spikes / (spiking neurons x T);
* ``MembraneUpdates``: every spiking neuron at the first step, then where its membrane
  changed (the readout, not a spiking neuron, is not hooked).

The figures come from kdsnn's own counters; ``tests/test_neurobench.py`` runs NeuroBench
itself on the same network and inputs and checks them layer by layer.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

from .conventions import CONVENTION_PRESETS, DEFAULT_CONVENTIONS
from .graph_stats import GraphStats

NEUROBENCH_VERSION = "2.3.0"
NEUROBENCH_CONVENTIONS = replace(DEFAULT_CONVENTIONS, **CONVENTION_PRESETS["neurobench"])


def neurobench_metrics(stats: GraphStats) -> dict:
    """Per layer and total, per sample: Effective_MACs, Effective_ACs, Dense,
    MembraneUpdates (``None`` without a float membrane) and the activation counts behind
    ActivationSparsity."""
    nb = stats.under(NEUROBENCH_CONVENTIONS)
    T = nb.time_steps
    layers = []
    for s in nb:
        membrane: Optional[float] = s.membrane_changes if s.spiking else 0.0
        layers.append({
            "name": s.name, "spiking": s.spiking,
            "Effective_MACs": float(s.macs_in),
            "Effective_ACs": float(s.synops_in - s.pooled_synops),
            "Dense": float(s.synaptic_taps * T),
            "MembraneUpdates": membrane,
            "activations": int(s.neurons * T) if s.spiking else 0,
            "spikes": float(s.spikes) if s.spiking else 0.0,
        })
    acts = sum(l["activations"] for l in layers)
    spikes = sum(l["spikes"] for l in layers)
    membranes = [l["MembraneUpdates"] for l in layers]
    total = {k: float(sum(l[k] for l in layers))
             for k in ("Effective_MACs", "Effective_ACs", "Dense")}
    total["ActivationSparsity"] = (acts - spikes) / acts if acts else 0.0
    total["MembraneUpdates"] = None if None in membranes else float(sum(membranes))
    return {"version": NEUROBENCH_VERSION, "source": stats.source,
            "samples": stats.samples, "conventions": NEUROBENCH_CONVENTIONS.to_dict(),
            "layers": layers, "total": total}
