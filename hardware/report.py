"""Energy / activity report of a distilled student against its teacher.

``build_report`` writes, into one directory, atomically and deterministically (same input,
same bytes):

* ``report.json``  versioned (``"schema": "kdsnn.report/2"``), the returned dict: the
  conventions the figures follow, per-layer counts, energy split into parts per profile,
  the teacher/student ratio under every convention, accuracies, the profiles' notes;
* ``report.md``    the same as Markdown tables, conventions and notes first;
* PNG plots (:data:`PLOT_FILES`), rendered in memory;
* ``report.html``  (``html=True``) one self-contained page: tables plus the PNGs inlined
  as base64 data URIs, no external resource (``scripts/check_report_html.py`` opens it
  in headless Chromium).

``make_report`` is the one-call entry point (graph + inputs + teacher -> report).
Energies are per inference (one sample); accuracies are fractions in [0, 1].
"""
from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from kd_snn.errors import KdsnnError
from kd_snn.io import remove, transaction, write_bytes, write_json, write_text

from .energy import (CONVENTION_CHOICES, DEFAULT_CONVENTIONS, PROFILE_ALIASES, Conventions,
                     GraphStats, TeacherLayer, TeacherStats, analyze_graph,
                     convention_grid, count_teacher, energy, energy_ratio, load_profile,
                     neurobench_metrics, teacher_energy, teacher_profile)
from .report_format import ACCURACY_LABELS, RECORD_ACCURACY  # noqa: F401 (public)
from .report_plots import (_plot_accuracy_energy, _plot_energy, _plot_firing,
                           _plot_heatmap, _plot_ops, _plot_raster, _plot_rates,
                           _plot_scatter)
from .report_text import _html_page, _markdown

SCHEMA = "kdsnn.report/2"
READABLE_SCHEMAS = ("kdsnn.report/1", SCHEMA)  # run_entry reads older reports too
DEFAULT_PROFILES = ("cmos45nm_fp32", "cmos45nm_int8", "loihi")
PLOT_FILES = ("energy.png", "ops_per_layer.png", "firing_rate.png", "firing_heatmap.png",
              "spike_raster.png", "rate_distribution.png", "accuracy_energy.png",
              "accuracy_vs_energy.png")


# --------------------------------------------------------------------------- report


def _as_records(stats) -> Dict[str, GraphStats]:
    if isinstance(stats, GraphStats):
        return {stats.source: stats}
    if isinstance(stats, Mapping) and stats and all(isinstance(v, GraphStats)
                                                    for v in stats.values()):
        return dict(stats)
    raise TypeError("stats must be a GraphStats or a non-empty mapping label -> GraphStats")


def _check_accuracy(name: str, value) -> Optional[float]:
    if value is None:
        return None
    v = float(value)
    if not (0.0 <= v <= 1.0):
        raise ValueError(f"accuracy '{name}' must be a fraction in [0, 1], got {value}")
    return v


def _accuracy_entry(name: str, value) -> dict:
    """``{"value", "note"}`` from a fraction or a mapping with those keys."""
    if isinstance(value, Mapping):
        return {"value": _check_accuracy(name, value.get("value")),
                "note": str(value.get("note") or "")}
    return {"value": _check_accuracy(name, value), "note": ""}


def _teacher_stats(teacher) -> Optional[TeacherStats]:
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


def _match_layers(student: dict, teacher: Optional[TeacherStats],
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


def _grid_axes(records: Mapping[str, GraphStats], teacher: Optional[TeacherStats]) -> tuple:
    """Convention axes the data can vary: zero skipping needs the input values of both."""
    axes = ["padding", "first_layer"]
    student_ok = all(c["nonzero_steps"] is not None for st in records.values() for l in st
                     for c in l.mac_counts.values() if c["input"])
    teacher_ok = teacher is None or all(l.nonzero is not None for l in teacher.layers
                                        if l.input)
    if student_ok and teacher_ok:
        axes.append("zero_input")
    return tuple(axes)


def _by_convention(primary: GraphStats, teacher: Optional[TeacherStats], profs,
                   base: Conventions, axes: Sequence[str]) -> List[dict]:
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


def _neurobench_block(records: Mapping[str, GraphStats]) -> dict:
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


def run_entry(report: Mapping, name: str, accuracy_key: str = "student") -> dict:
    """A ``runs`` entry (name, accuracy, primary student energy per profile) from a report dict
    (e.g. another run's ``report.json``, schema 1 or 2), for the accuracy-vs-energy plot."""
    if report.get("schema") not in READABLE_SCHEMAS:
        raise ValueError(f"not a kdsnn report (schema {report.get('schema')!r})")
    acc = (report.get("accuracy") or {}).get(accuracy_key)
    if isinstance(acc, Mapping):
        acc = acc.get("value")
    return {"name": name, "accuracy": acc,
            "energy_pj": {PROFILE_ALIASES.get(p, p): blk["student"][0]["total_pj"]
                          for p, blk in report["energy"].items()}}


def build_report(out_dir, stats, *, teacher_macs=None,
                 profiles: Sequence = DEFAULT_PROFILES,
                 accuracy: Optional[Mapping] = None,
                 runs: Optional[Sequence[Mapping]] = None, html: bool = False,
                 title: str = "kdsnn energy report", meta: Optional[Mapping] = None,
                 conventions: Conventions = DEFAULT_CONVENTIONS) -> dict:
    """Write the report files into ``out_dir`` and return the JSON dict.

    ``stats``: a :class:`GraphStats` or an ordered mapping label -> GraphStats (e.g.
    ``{"torch": ..., "lava": ...}``; the first is the primary student, all are tabulated
    side by side).  ``teacher_macs``: a :class:`TeacherStats` from :func:`count_teacher`
    (counted like the student under every convention), or fixed counts layer -> MACs.
    ``profiles``: built-in names, YAML paths or :class:`Profile` objects.  ``accuracy``:
    label -> fraction or ``{"value", "note"}``; labels ``teacher``, ``student`` (float),
    ``quantized``, ``lava`` (see :data:`ACCURACY_LABELS`).  ``runs``: other runs for the
    accuracy-vs-energy plot, each ``{"name", "accuracy", "energy_pj": {profile: pJ}}``
    (see :func:`run_entry`).  ``meta``: JSON-serialisable run information copied verbatim
    (keep it free of timestamps for byte-identical output).  ``conventions``: how every
    figure is charged; the teacher/student ratio under the alternatives is added.
    """
    out_dir = Path(out_dir)
    records = {k: v.under(conventions) for k, v in _as_records(stats).items()}
    profs = [load_profile(p) for p in profiles]
    if not profs:
        raise ValueError("at least one energy profile is needed")
    names = [p.name for p in profs]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate profile names: {names}")
    for p in profs:
        teacher_profile(p)  # a bad teacher_profile fails before anything is written
    acc = {str(k): _accuracy_entry(str(k), v) for k, v in (accuracy or {}).items()
           if v is not None}
    tstats = _teacher_stats(teacher_macs)

    student = []
    for label, st in records.items():
        d = st.to_dict()
        d["label"] = label
        student.append(d)
    teacher = None
    if tstats is not None:
        macs = tstats.macs(conventions)
        teacher = {"layers": [dict(asdict(l), macs=macs[l.name]) for l in tstats.layers],
                   "macs": float(sum(macs.values())),
                   "macs_padded": float(sum(l.padded for l in tstats.layers)),
                   "macs_in_bounds": float(sum(l.in_bounds for l in tstats.layers)),
                   "samples": tstats.samples}

    energy_block = {}
    for prof in profs:
        t_e = teacher_energy(tstats, prof, conventions) if tstats is not None else None
        studs = []
        for label, st in records.items():
            s_e = energy(st, prof)
            s_e["label"] = label
            s_e["teacher_over_student"] = energy_ratio(s_e, t_e) if t_e else None
            studs.append(s_e)
        energy_block[prof.name] = {"profile": prof.to_dict(), "student": studs, "teacher": t_e}

    primary = next(iter(records.values()))
    grid = _by_convention(primary, tstats, profs, conventions, _grid_axes(records, tstats))
    ratio_range = {}
    for p in names:
        vals = [g["energy"][p]["teacher_over_student"] for g in grid
                if g["energy"][p]["teacher_over_student"] is not None]
        if vals:
            ratio_range[p] = [min(vals), max(vals)]

    run_list = []
    for r in runs or []:
        run_list.append({"name": str(r["name"]),
                         "accuracy": _check_accuracy(r["name"], r.get("accuracy")),
                         "energy_pj": {str(k): float(v)
                                       for k, v in (r.get("energy_pj") or {}).items()}})
    points = list(run_list)
    for i, label in enumerate(records):
        key = RECORD_ACCURACY.get(label, label)
        if key in acc:
            points.append({"name": f"this run: student ({label} spikes, {key} accuracy)",
                           "accuracy": acc[key]["value"],
                           "energy_pj": {p: energy_block[p]["student"][i]["total_pj"]
                                         for p in names}})
    if "teacher" in acc and teacher is not None:
        points.append({"name": "this run: teacher (as charged)", "kind": "teacher",
                       "accuracy": acc["teacher"]["value"],
                       "energy_pj": {p: energy_block[p]["teacher"]["total_pj"]
                                     for p in names}})

    rep = {
        "schema": SCHEMA,
        "title": title,
        "meta": dict(meta or {}),
        "conventions": {"applied": conventions.to_dict(), "meaning": conventions.describe(),
                        "choices": {k: dict(v) for k, v in CONVENTION_CHOICES.items()}},
        "profile_order": names,
        "student": student,
        "teacher": teacher,
        "layer_match": _match_layers(student[0], tstats, conventions),
        "accuracy": acc,
        "energy": energy_block,
        "by_convention": grid,
        "neurobench": _neurobench_block(records),
        "ratio_range": ratio_range,
        "runs": run_list,
        "files": {},
    }
    pngs = {"energy.png": _plot_energy(rep), "ops_per_layer.png": _plot_ops(rep),
            "firing_rate.png": _plot_firing(student),
            "firing_heatmap.png": _plot_heatmap(student),
            "spike_raster.png": _plot_raster(student[0]),
            "rate_distribution.png": _plot_rates(student[0])}
    if acc:
        pngs["accuracy_energy.png"] = _plot_accuracy_energy(rep)
    if len(points) >= 2:
        pngs["accuracy_vs_energy.png"] = _plot_scatter(points, names)
    rep["files"] = {"json": "report.json", "markdown": "report.md",
                    "plots": [p for p in PLOT_FILES if p in pngs],
                    "html": "report.html" if html else None}
    with transaction():  # all files of the report, or none
        for name in PLOT_FILES:  # no stale plot from an earlier call survives
            if name not in pngs and (out_dir / name).is_file():
                remove(out_dir / name)
        for name, data in pngs.items():
            write_bytes(out_dir / name, data)
        write_text(out_dir / "report.md", _markdown(rep))
        if html:
            write_text(out_dir / "report.html", _html_page(rep, pngs))
        elif (out_dir / "report.html").is_file():
            remove(out_dir / "report.html")
        write_json(out_dir / "report.json", rep)
    return rep


def make_report(out_dir, graph, x_seq, *, teacher=None, teacher_input_shape=None,
                accuracy: Optional[Mapping] = None,
                records: Optional[Mapping[str, Mapping]] = None,
                profiles: Sequence = DEFAULT_PROFILES, runs=None, html: bool = True,
                batch_size: int = 64, fanout: str = "nonzero", input_mode: str = "auto",
                title: str = "kdsnn energy report", meta: Optional[Mapping] = None,
                conventions: Conventions = DEFAULT_CONVENTIONS) -> dict:
    """One call from a run: analyse ``graph`` on ``x_seq`` ``(T, N, *input_shape)`` with the
    float executor, plus any precomputed spike ``records`` (label -> {layer: (T, N, ...)},
    e.g. ``{"lava": aligned_lava_spikes}``), count the ``teacher``'s MACs on the images
    ``x_seq[0]`` (shape ``teacher_input_shape``, default ``graph.input_shape``; zeros when
    the input is spiking), and write the report."""
    stats = {"float": analyze_graph(graph, x_seq, batch_size=batch_size, fanout=fanout,
                                    input_mode=input_mode)}
    for label, rec in (records or {}).items():
        stats[label] = analyze_graph(graph, x_seq, spikes=rec, batch_size=batch_size,
                                     source=label, fanout=fanout, input_mode=input_mode)
    tstats = None
    if teacher is not None:
        images = x_seq[0] if stats["float"].input_mode == "macs" else None
        tstats = count_teacher(teacher, teacher_input_shape or graph.input_shape, x=images)
    return build_report(out_dir, stats, teacher_macs=tstats, profiles=profiles,
                        accuracy=accuracy, runs=runs, html=html, title=title, meta=meta,
                        conventions=conventions)
