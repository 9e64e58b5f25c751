"""Energy per inference: counts times a profile's figures, student and teacher alike."""
from __future__ import annotations

from typing import Iterable, Mapping, Optional, Union

from kd_snn.errors import KdsnnError

from .conventions import DEFAULT_CONVENTIONS, Conventions
from .graph_stats import GraphStats, LayerStats
from .profiles import load_profile, teacher_profile
from .teacher import TeacherStats

ENERGY_PARTS = ("synops_pj", "macs_pj", "neuron_active_pj", "neuron_inactive_pj", "spike_pj")


def neuron_updates(s: LayerStats, conv: Conventions) -> tuple:
    """(active, inactive) neuron updates of one layer per inference under ``conv``:
    ``membrane="changed"`` makes the changed membranes the active ones; the readout's
    accumulators count unless ``readout="excluded"``."""
    if not s.spiking and conv.readout == "excluded":
        return 0.0, 0.0
    if conv.membrane == "changed" and s.spiking:
        if s.membrane_changes is None:
            raise KdsnnError(f"membrane=changed needs the float membrane of '{s.name}': "
                             "count on the torch source")
        return float(s.membrane_changes), float(s.neuron_updates - s.membrane_changes)
    return float(s.active_updates), float(s.neuron_updates - s.active_updates)


def energy(stats: Union[GraphStats, Iterable[LayerStats]], profile,
           conventions: Optional[Conventions] = None) -> dict:
    """Student energy per inference in pJ, split into parts: SynOps * E_AC, MACs * E_MAC,
    active / inactive neuron updates * E_neuron, spikes * E_spike (profiles without a
    figure charge nothing for that part).

    ``conventions``: derive the counts under these (default: the stats' own).  Returns
    ``{"profile", "conventions", "synops_pj", "macs_pj", "neuron_active_pj",
    "neuron_inactive_pj", "neuron_pj", "spike_pj", "total_pj", "layers": [...]}``.
    """
    prof = load_profile(profile)
    if conventions is not None:
        if not isinstance(stats, GraphStats):
            raise TypeError("conventions need a GraphStats")
        stats = stats.under(conventions)
    conv = stats.conventions if isinstance(stats, GraphStats) else DEFAULT_CONVENTIONS
    layers = []
    for s in stats:
        active, inactive = neuron_updates(s, conv)
        if conv.neuron_updates == "all_active" or not prof.e_neuron_inactive_pj:
            active, inactive = active + inactive, 0.0
        e_inactive = prof.e_neuron_inactive_pj or prof.e_neuron_pj or 0.0
        part = {"synops_pj": s.synops_in * prof.e_ac_pj, "macs_pj": s.macs_in * prof.e_mac_pj,
                "neuron_active_pj": active * (prof.e_neuron_pj or 0.0),
                "neuron_inactive_pj": inactive * e_inactive,
                "spike_pj": s.spikes * (prof.e_spike_pj or 0.0)}
        part["neuron_pj"] = part["neuron_active_pj"] + part["neuron_inactive_pj"]
        part["total_pj"] = sum(part[k] for k in ENERGY_PARTS)
        layers.append({"name": s.name, **part})
    keys = ENERGY_PARTS + ("neuron_pj", "total_pj")
    tot = {k: float(sum(l[k] for l in layers)) for k in keys}
    return {"profile": prof.name, "conventions": conv.to_dict(), **tot, "layers": layers}


def teacher_energy(macs: Union[Mapping[str, float], TeacherStats, int, float], profile,
                   conventions: Conventions = DEFAULT_CONVENTIONS) -> dict:
    """ANN energy per inference in pJ: MACs * E_MAC of the profile the teacher is charged
    with under ``profile`` (``"charged_as"``, see :func:`teacher_profile`)."""
    prof = load_profile(profile)
    charged = teacher_profile(prof)
    if isinstance(macs, TeacherStats):
        macs = macs.macs(conventions)
    if not isinstance(macs, Mapping):
        macs = {"total": macs}
    layers = [{"name": k, "macs": float(v), "total_pj": float(v) * charged.e_mac_pj}
              for k, v in macs.items()]
    return {"profile": prof.name, "charged_as": charged.name,
            "macs": float(sum(l["macs"] for l in layers)),
            "total_pj": float(sum(l["total_pj"] for l in layers)), "layers": layers}


def energy_ratio(student: dict, teacher: dict) -> Optional[float]:
    """Teacher energy / student energy (> 1: the student is that many times cheaper)."""
    s, t = float(student["total_pj"]), float(teacher["total_pj"])
    return t / s if s > 0 else None
