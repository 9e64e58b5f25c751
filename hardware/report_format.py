"""Shared by the report's and parity's text and plots: labels and number formatting."""
from __future__ import annotations

import numpy as np

_PNG_META = {"Software": None}
#: accuracy labels, in display order, and what they measure
ACCURACY_LABELS = {"teacher": "ANN teacher", "student": "student, float",
                   "quantized": "student, Loihi fixed point (integer emulation)",
                   "lava": "student, Lava fixed_pt"}
#: which accuracy belongs to the spikes of which student record
RECORD_ACCURACY = {"torch": "student", "float": "student", "lava": "lava",
                   "emulate": "quantized", "emulation": "quantized"}
PART_LABELS = {"synops_pj": "SynOps", "macs_pj": "MACs", "neuron_active_pj":
               "neuron updates (active)", "neuron_inactive_pj": "neuron updates (inactive)",
               "spike_pj": "spikes sent"}


# --------------------------------------------------------------------------- formatting
def stock_words(stock: dict) -> str:
    """How the stock re-check ran, in words (parity.md, the command's summary, README blocks)."""
    if "synapses" in stock:
        return (f"run on every one of the {stock['synapses']} synapses with the spike trains "
                f"of the first {stock['samples']} sample(s) ({stock['steps']} steps each)")
    return f"in a network of their own on the first {stock['samples']} sample(s)"


def _num(x) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    x = float(x)
    if x == int(x) and abs(x) < 1e15:
        return f"{int(x):,}"
    if abs(x) >= 100:
        return f"{x:,.1f}"
    return f"{x:.4g}"


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * float(x):.2f}%"


def _energy(pj) -> str:
    if pj is None:
        return "n/a"
    pj = float(pj)
    unit, scale = _unit(abs(pj))
    return f"{pj / scale:.4g} {unit}"


def _unit(pj: float):
    """(unit, pJ per unit) for a value in pJ."""
    for unit, scale in (("mJ", 1e9), ("µJ", 1e6), ("nJ", 1e3)):
        if pj >= scale:
            return unit, scale
    return "pJ", 1.0


def _ratio(r) -> str:
    return "n/a" if r is None else f"{r:.3g}x"
