"""Shared by the report's and parity's text and plots: labels, colours, number formatting."""
from __future__ import annotations

import math
import re
from typing import Iterable, Optional, Tuple

import numpy as np

PNG_META = {"Software": None}
PNG_DPI = 300  # print resolution of every PNG figure
#: matplotlib metadata that would differ from one call to the next (dates) is left out
SVG_META = {"Date": None}
PDF_META = {"CreationDate": None, "ModDate": None}
SVG_HASHSALT = "kdsnn-report"  # svg ids from a fixed salt: same input, same bytes

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

# --------------------------------------------------------------------------- models
#: the four models a report compares, in display order, and their names in prose
MODELS = {"teacher": "ANN teacher", "float": "float student",
          "emulation": "integer emulation", "lava": "Lava fixed_pt"}
#: one colour per model in every figure (Okabe-Ito, safe for colour-blind readers and in
#: greyscale print: the four differ in lightness too)
MODEL_COLORS = {"teacher": "#D55E00", "float": "#0072B2", "emulation": "#009E73",
                "lava": "#CC79A7"}
OTHER_COLORS = ("#555555", "#E69F00", "#56B4E9", "#999999", "#F0E442", "#000000")
#: the model a student spike record (its label) or an accuracy label stands for
MODEL_OF = {"teacher": "teacher", "torch": "float", "float": "float", "student": "float",
            "lava": "lava", "emulate": "emulation", "emulation": "emulation",
            "quantized": "emulation"}
#: hatch per energy part (bars keep their model's colour; the hatch tells the part)
PART_HATCHES = {"synops_pj": "", "macs_pj": "////", "neuron_active_pj": "xxx",
                "neuron_inactive_pj": "...", "spike_pj": "---"}


def model_of(label: str) -> Optional[str]:
    """The model (key of :data:`MODELS`) a record or accuracy label stands for, or None."""
    return MODEL_OF.get(str(label))


def model_color(label: str, k: int = 0) -> str:
    """The colour of the model ``label`` stands for; an unknown label the k-th other one."""
    m = model_of(label)
    return MODEL_COLORS[m] if m else OTHER_COLORS[k % len(OTHER_COLORS)]


def record_name(label: str) -> str:
    """A student spike record in words: ``torch`` -> ``float student (torch spikes)``."""
    m = model_of(label)
    return f"{MODELS[m]} ({label} spikes)" if m and m != "teacher" else f"student ({label})"


def record_short(label: str) -> str:
    """A student spike record in a table header: ``float student``, ``Lava``, ..."""
    m = model_of(label)
    return {"float": "float student", "emulation": "emulation", "lava": "Lava"}.get(
        m, f"student ({label})")


# --------------------------------------------------------------------------- formatting
def stock_words(stock: dict) -> str:
    """How the stock re-check ran, in words (parity.md, the command's summary, README blocks)."""
    if "synapses" in stock:
        return (f"run on every one of the {stock['synapses']} synapses with the spike trains "
                f"of the first {stock['samples']} sample(s) ({stock['steps']} steps each)")
    return f"in a network of their own on the first {stock['samples']} sample(s)"


def fmt_num(x) -> str:
    """A count: integers with thousands separators, else four significant digits."""
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


def fmt_pct(x) -> str:
    """A fraction as a percentage with two decimals (``0.95`` -> ``95.00%``)."""
    return "n/a" if x is None else f"{100 * float(x):.2f}%"


def fmt_energy(pj) -> str:
    """An energy in pJ with its own unit (prose only; a table column uses one unit)."""
    if pj is None:
        return "n/a"
    pj = float(pj)
    unit, scale = energy_unit(abs(pj))
    return f"{pj / scale:.4g} {unit}"


def energy_unit(pj: float) -> Tuple[str, float]:
    """(unit, pJ per unit) for a value in pJ."""
    for unit, scale in (("mJ", 1e9), ("µJ", 1e6), ("nJ", 1e3)):
        if pj >= scale:
            return unit, scale
    return "pJ", 1.0


def column_unit(values: Iterable) -> Tuple[str, float]:
    """The one unit of a table column of energies in pJ: that of its largest value."""
    vals = [abs(float(v)) for v in values if v is not None]
    return energy_unit(max(vals) if vals else 0.0)


def fmt_in(pj, scale: float, digits: int = 4) -> str:
    """``pj`` in the unit of ``scale`` pJ, ``digits`` significant digits, never in
    exponent notation (a column of one unit reads down without a second unit)."""
    if pj is None:
        return "n/a"
    v = float(pj) / scale
    if v == 0:
        return "0"
    decimals = max(0, min(8, digits - 1 - int(math.floor(math.log10(abs(v))))))
    return f"{v:,.{decimals}f}"


def fmt_ratio(r) -> str:
    return "n/a" if r is None else f"{r:.3g}x"


_NUMERIC = re.compile(r"^(n/a|[-−+]?[\d,]*\.?\d+(e[-+]?\d+)?\s*(%|x|×| pts)?|—|-)$")


def is_numeric(cell) -> bool:
    """A table cell that holds a number (right-aligned) rather than words (left-aligned)."""
    return bool(_NUMERIC.match(str(cell).replace("**", "").strip()))

