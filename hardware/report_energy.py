"""The report's per-layer and per-convention figures: the teacher beside the student.

The student's layers and the teacher's modules do not line up one to one (relays, shortcut
convs, ``head.fc`` against ``fc``), and the teacher/student energy ratio depends on how
MACs are counted; this module pairs the layers (:func:`match_layers`), charges both under
every counting convention the data allow (:func:`by_convention`) and gives NeuroBench's
metrics per spike record (:func:`neurobench_block`).
"""
from __future__ import annotations

import re
from typing import List, Mapping, Optional, Sequence

from kd_snn.errors import KdsnnError

from .energy import (Conventions, GraphStats, TeacherLayer, TeacherStats, convention_grid,
                     energy, energy_ratio, neurobench_metrics, teacher_energy)

__all__ = ["teacher_stats", "is_relay", "match_layers", "grid_axes", "by_convention",
           "neurobench_block"]


def teacher_stats(teacher) -> Optional[TeacherStats]:
    """A TeacherStats, also from fixed per-layer counts (then equal under every convention)."""
    if teacher is None or isinstance(teacher, TeacherStats):
        return teacher
    if isinstance(teacher, Mapping):
        return TeacherStats(tuple(TeacherLayer(str(k), int(v), int(v))
                                  for k, v in teacher.items()))
    raise TypeError("teacher_macs must be a TeacherStats (hardware.energy.count_teacher) or "
                    "a mapping layer -> MACs")


_GENERIC = ("conv", "fc", "linear", "dense", "bn", "lif", "neuron")
_RELAY = re.compile(r"\.relay\d+$")


def is_relay(name: str) -> bool:
    """A relay layer ``SRC.relayK`` (``export.latency``): SRC's spikes, K steps later."""
    return bool(_RELAY.search(name))


def _block_key(name: str) -> tuple:
    """(block, index) of a layer or module name: ``layer1.0.lif2`` and
    ``layer1.0.conv2.conv`` both give ``("layer1.0", "2")``; ``stem.conv`` ``("stem", "")``."""
    parts = name.split(".")
    while len(parts) > 1 and parts[-1] in _GENERIC:
        parts = parts[:-1]
    m = re.fullmatch(r"([A-Za-z_]*?)(\d*)", parts[-1])
    if len(parts) > 1 and m and m.group(1) in _GENERIC + ("", "conv", "lif") and m.group(2):
        return ".".join(parts[:-1]), m.group(2)
    return ".".join(parts), ""


def match_layers(student: dict, teacher: Optional[TeacherStats],
                 conventions: Conventions) -> List[dict]:
    """Student layers and teacher modules side by side, by stage/block.

    A teacher module pairs with the student layer that is one of its dotted parts
    (``head.fc`` -> ``fc``), else with the same (block, index) (``layer1.0.conv2.conv`` ->
    ``layer1.0.lif2``, ``stem.conv`` -> ``stem``), else (a shortcut conv) with the block's
    last student layer, where the residual sum lands.  Relay layers are folded into the
    layer whose spikes they carry (``relays`` counts them)."""
    rows, by_name = [], {}
    for l in student["layers"]:
        src = _RELAY.sub("", l["name"])
        if is_relay(l["name"]) and src in by_name:
            row = by_name[src]
            row["relays"] += 1
            row["student_synops"] += l["synops_in"]
            row["student_macs"] += l["macs_in"]
            continue
        row = {"layer": l["name"], "student": l["name"], "teacher": None, "teacher_modules": [],
               "relays": 0, "student_synops": l["synops_in"], "student_macs": l["macs_in"],
               "teacher_macs": None, "teacher_macs_padded": None}
        rows.append(row)
        by_name[l["name"]] = row
    keys = {_block_key(r["student"]): r for r in rows}
    blocks = {}
    for r in rows:
        blocks[_block_key(r["student"])[0]] = r
    for t in (teacher.layers if teacher else ()):
        parts = t.name.split(".")
        key = _block_key(t.name)
        parent = key[0].rsplit(".", 1)[0] if "." in key[0] else None  # shortcut -> block
        row = (next((r for r in rows if r["student"] and r["student"] in parts), None)
               or keys.get(key) or blocks.get(parent))
        if row is None:
            row = {"layer": t.name, "student": None, "teacher": None, "teacher_modules": [],
                   "relays": 0, "student_synops": None, "student_macs": None,
                   "teacher_macs": None, "teacher_macs_padded": None}
            rows.append(row)
        row["teacher_modules"].append(t.name)
        row["teacher"] = " + ".join(row["teacher_modules"])
        row["teacher_macs"] = (row["teacher_macs"] or 0.0) + t.macs(conventions)
        row["teacher_macs_padded"] = (row["teacher_macs_padded"] or 0) + t.padded
    return rows


def grid_axes(records: Mapping[str, GraphStats], teacher: Optional[TeacherStats]) -> tuple:
    """Convention axes the data can vary: zero skipping needs the input values of both."""
    axes = ["padding", "first_layer"]
    student_ok = all(c["nonzero_steps"] is not None for st in records.values() for l in st
                     for c in l.mac_counts.values() if c["input"])
    teacher_ok = teacher is None or all(l.nonzero is not None for l in teacher.layers
                                        if l.input)
    if student_ok and teacher_ok:
        axes.append("zero_input")
    return tuple(axes)


def by_convention(primary: GraphStats, teacher: Optional[TeacherStats], profs,
                  base: Conventions, axes: Sequence[str]) -> List[dict]:
    """MACs and energy of the primary student and the teacher under every convention of
    the grid over ``axes`` (``[]`` without a teacher): the ratio depends on how both are
    counted, so the report shows its range rather than one figure."""
    if teacher is None:
        return []
    rows = []
    for conv in convention_grid(axes, base):
        st = primary.under(conv)
        row = {"conventions": conv.to_dict(), "student_macs": st.totals["macs"],
               "teacher_macs": float(sum(teacher.macs(conv).values())), "energy": {}}
        for prof in profs:
            s_e, t_e = energy(st, prof), teacher_energy(teacher, prof, conv)
            row["energy"][prof.name] = {"student_pj": s_e["total_pj"],
                                        "teacher_pj": t_e["total_pj"],
                                        "teacher_over_student": energy_ratio(s_e, t_e)}
        rows.append(row)
    return rows


def neurobench_block(records: Mapping[str, GraphStats]) -> dict:
    """NeuroBench's metrics of the primary record (per layer and total) and the totals of
    the others; a record whose counts cannot follow NeuroBench says why."""
    out = {}
    for label, st in records.items():
        try:
            out[label] = neurobench_metrics(st)
        except KdsnnError as exc:
            out[label] = {"unavailable": str(exc)}
    primary = next(iter(out))
    return {"record": primary, **out[primary],
            "other_records": {k: v.get("total", v) for k, v in out.items() if k != primary}}
