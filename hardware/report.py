"""Energy / activity report of a distilled student against its teacher.

``build_report`` writes, into one directory, atomically and deterministically (same input,
same bytes):

* ``report.json``  versioned (``"schema": "kdsnn.report/2"``), the returned dict: the
  conventions the figures follow, per-layer counts, energy split into parts per profile,
  the teacher/student ratio under every convention, accuracies in groups measured on the
  same samples, the profiles' notes, every file written (``files.written``);
* ``report.md``    the answer first (a summary card: accuracies per sample set, Lava ==
  emulation bit for bit or not, energy per inference and teacher / student under every
  profile, the conventions in one line), a table of contents, then the sections with their
  tables and figures, each figure with a caption;
* the figures (:data:`PLOT_FILES`), each as PNG (300 dpi), SVG and PDF, one colour per
  model throughout (:data:`hardware.report_format.MODEL_COLORS`);
* ``report.html``  (``html=True``) the same page, self-contained: the SVGs inlined as data
  URIs in ``<figure>``s with captions, no external resource
  (``scripts/check_report_html.py`` opens it in headless Chromium).

``make_report`` is the one-call entry point (graph + inputs + teacher -> report);
``accuracy_groups`` builds the accuracy argument from a run's metrics, and
``dropped_by_rerun`` says what rewriting a report with other options would lose.
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
from .report_format import (ACCURACY_LABELS, MODEL_COLORS, MODELS,  # noqa: F401 (public)
                            RECORD_ACCURACY, model_of)
from .report_plots import FIGURES, FORMATS, draw_all, figure_size_in
from .report_text import html_page, markdown

SCHEMA = "kdsnn.report/2"
READABLE_SCHEMAS = ("kdsnn.report/1", SCHEMA)  # run_entry reads older reports too
DEFAULT_PROFILES = ("cmos45nm_fp32", "cmos45nm_int8", "loihi")
#: every figure's PNG (each also as .svg and .pdf), in the order the report shows them
PLOT_FILES = tuple(f"{name}.png" for name in FIGURES)
#: figure files of earlier versions, removed when a report is rewritten
LEGACY_PLOT_FILES = ("accuracy_energy.png",)
HTML_IMAGE = "svg"  # the format report.html inlines (vector: sharp on screen and in print)


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
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"accuracy '{name}' must be a fraction in [0, 1], got {value!r}") \
            from None
    if not (0.0 <= v <= 1.0):
        raise ValueError(f"accuracy '{name}' must be a fraction in [0, 1], got {value}")
    return v


def _accuracy_entry(name: str, value) -> dict:
    """``{"value", "note"}`` from a fraction or a mapping with those keys."""
    if isinstance(value, Mapping):
        return {"value": _check_accuracy(name, value.get("value")),
                "note": str(value.get("note") or "")}
    return {"value": _check_accuracy(name, value), "note": ""}


#: accuracy group keys with a meaning of their own (any other key is a group too)
GROUP_LABELS = {"same_samples": "same {n} test samples (parity's)",
                "full_split": "full test split ({n} samples)",
                "export_samples": "first {n} test samples (export's accuracy pass)"}
#: model keys a group may hold (aliases: the legacy labels)
_GROUP_MODELS = {"teacher": "teacher", "float": "float", "student": "float",
                 "emulation": "emulation", "quantized": "emulation", "lava": "lava"}
_LEGACY_MODEL = {"teacher": "teacher", "student": "float", "quantized": "emulation",
                 "lava": "lava"}


def _count(name: str, n) -> Optional[int]:
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, (int, float)) or n != int(n) or n < 1:
        raise ValueError(f"accuracy '{name}': n must be a positive whole number of samples, "
                         f"got {n!r}")
    return int(n)


def _is_group(value) -> bool:
    return isinstance(value, Mapping) and "value" not in value


def _group(key: str, g: Mapping) -> dict:
    """One normalised group: ``{"key", "label", "n", "models": [{"model", "value", "n"}],
    "bit_exact"}`` (models in :data:`MODELS` order)."""
    n = _count(key, g.get("n"))
    unknown = sorted(str(k) for k in g if k not in _GROUP_MODELS and
                     k not in ("n", "label", "bit_exact", "note"))
    if unknown:
        raise ValueError(f"accuracy group '{key}': unknown model(s) {', '.join(unknown)} "
                         f"(known: {', '.join(MODELS)})")
    models = {}
    for k, v in g.items():
        if k not in _GROUP_MODELS or v is None:
            continue
        m = _GROUP_MODELS[k]
        if isinstance(v, Mapping):
            models[m] = {"model": m, "value": _check_accuracy(f"{key}.{k}", v.get("value")),
                         "n": _count(f"{key}.{k}", v.get("n", n))}
        else:
            models[m] = {"model": m, "value": _check_accuracy(f"{key}.{k}", v), "n": n}
    bit_exact = g.get("bit_exact")
    if bit_exact is not None and not isinstance(bit_exact, bool):
        raise ValueError(f"accuracy group '{key}': bit_exact must be true or false")
    label = g.get("label") or g.get("note")
    if not label:
        label = (GROUP_LABELS[key].format(n=n if n is not None else "?") if key in GROUP_LABELS
                 else key.replace("_", " "))
    return {"key": str(key), "label": str(label), "n": n,
            "models": [models[m] for m in MODELS if m in models], "bit_exact": bit_exact}


def _accuracy(accuracy: Optional[Mapping]) -> tuple:
    """(flat, groups) from ``build_report``'s ``accuracy``: the flat legacy entries
    (label -> ``{"value", "note"}``, what ``run_entry`` and older readers use) and the
    groups of like-with-like values.  Legacy entries are grouped by their note (one group
    per sample set as stated); groups give legacy entries back (full split first)."""
    flat, groups, legacy = {}, [], {}
    for k, v in (accuracy or {}).items():
        if v is None:
            continue
        if _is_group(v):
            groups.append(_group(str(k), v))
        else:
            legacy[str(k)] = _accuracy_entry(str(k), v)
    by_note: Dict[str, dict] = {}
    for k, e in legacy.items():
        flat[k] = e
        if e["value"] is None or k not in _LEGACY_MODEL:
            continue
        g = by_note.setdefault(e["note"], {"label": e["note"] or "sample set not stated"})
        g.setdefault(_LEGACY_MODEL[k], e["value"])
    groups += [_group(f"as_given_{i + 1}", g) for i, g in enumerate(by_note.values())]
    order = sorted(groups, key=lambda g: (g["key"] != "full_split", -(g["n"] or 0)))
    for g in order:  # the flat entries of the groups: largest sample set first
        for m in g["models"]:
            key = {"float": "student", "emulation": "quantized"}.get(m["model"], m["model"])
            if key not in flat and m["value"] is not None:
                flat[key] = {"value": m["value"],
                             "note": g["label"] + (f" (n = {m['n']})" if m["n"] else "")}
    return flat, groups


def accuracy_groups(metrics: Mapping, teacher_same_samples: Optional[float] = None,
                    test_split_size: Optional[int] = None) -> dict:
    """The ``accuracy`` argument of :func:`build_report`, like with like, from a run's
    ``metrics.json`` (pure: no file, no model).

    ``same_samples``: parity's samples (``metrics["parity"]``: ``samples``, ``accuracy``
    {float, emulation, lava}, ``bit_exact``) plus ``teacher_same_samples``, the teacher's
    accuracy on those very samples (the caller computes it: the first
    ``metrics["parity"]["samples"]`` of the test split).  ``full_split``: the teacher's
    ``test_accuracy`` and export's accuracy pass (``metrics["quantized"]``: float and
    emulation on ``samples``).  ``test_split_size``: the split's size; when export's pass
    ran on fewer samples, its figures become a group of their own (``export_samples``) and
    the float student's full-split accuracy is its training ``test_accuracy``.  Without
    it, export's sample count is taken as the split's size."""
    num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    sub = lambda *keys: _dig(metrics, *keys)  # noqa: E731
    out = {}
    par = sub("parity") or {}
    pacc = par.get("accuracy") if isinstance(par.get("accuracy"), Mapping) else {}
    if num(par.get("samples")) and any(num(pacc.get(k)) for k in ("float", "emulation",
                                                                  "lava")):
        g = {"n": int(par["samples"])}
        if teacher_same_samples is not None:
            g["teacher"] = float(teacher_same_samples)
        g.update({k: float(pacc[k]) for k in ("float", "emulation", "lava") if num(pacc.get(k))})
        if isinstance(par.get("bit_exact"), bool):
            g["bit_exact"] = par["bit_exact"]
        out["same_samples"] = g
    q = sub("quantized")
    if not (isinstance(q, Mapping) and num(q.get("samples"))):
        q = par.get("emulation_full_test")
    q = q if isinstance(q, Mapping) and num(q.get("samples")) else None
    n = int(test_split_size) if test_split_size else (int(q["samples"]) if q else None)
    full = {"n": n} if n else {}
    if num(sub("teacher", "test_accuracy")):
        full["teacher"] = float(sub("teacher", "test_accuracy"))
    if q is not None and int(q["samples"]) == n:
        full.update({k: float(q[src]) for k, src in (("float", "float"),
                                                     ("emulation", "quantized"))
                     if num(q.get(src))})
    else:
        if num(sub("student", "test_accuracy")):
            full["float"] = float(sub("student", "test_accuracy"))
        if q is not None:
            out["export_samples"] = {"n": int(q["samples"]), **{
                k: float(q[src]) for k, src in (("float", "float"), ("emulation", "quantized"))
                if num(q.get(src))}}
    if set(full) - {"n"}:
        out["full_split"] = full
    return out


def _dig(d, *keys):
    for k in keys:
        d = d.get(k) if isinstance(d, Mapping) else None
    return d


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
    """A ``runs`` entry (name, accuracy, its n where the report states it, primary student
    energy per profile) from a report dict (e.g. another run's ``report.json``, schema 1 or
    2), for the accuracy-vs-energy plot."""
    if report.get("schema") not in READABLE_SCHEMAS:
        raise ValueError(f"not a kdsnn report (schema {report.get('schema')!r})")
    acc = (report.get("accuracy") or {}).get(accuracy_key)
    if isinstance(acc, Mapping):
        acc = acc.get("value")
    entry = {"name": name, "accuracy": acc,
             "energy_pj": {PROFILE_ALIASES.get(p, p): blk["student"][0]["total_pj"]
                           for p, blk in report["energy"].items()}}
    want = _GROUP_MODELS.get(accuracy_key)
    for g in report.get("accuracy_groups") or []:  # the group the flat value came from
        m = next((m for m in g.get("models") or [] if m.get("model") == want
                  and m.get("value") == acc), None)
        if m is not None and m.get("n"):
            entry["n"] = int(m["n"])
            break
    return entry


def _scatter_points(rep: dict, groups: List[dict]) -> dict:
    """This run's accuracy-vs-energy points, all from one accuracy group (the full split
    when there is one, else the first), plus the other runs: ``{"group", "points"}``.
    A model's energy is that of the spike record that stands for it (the emulation's,
    else Lava's: the same integer network); the teacher as charged."""
    names = rep["profile_order"]
    by_model = {}
    for i, st in enumerate(rep["student"]):
        by_model.setdefault(model_of(st["label"]), (st["label"], i))
    for a, b in (("emulation", "lava"), ("lava", "emulation")):
        if a not in by_model and b in by_model:
            by_model[a] = by_model[b]
    group = next((g for g in groups if g["key"] == "full_split" and g["models"]),
                 next((g for g in groups if g["models"]), None))
    points = []
    for m in (group["models"] if group else []):
        if m["model"] == "teacher":
            if rep["teacher"] is None:
                continue
            label, energy_pj = "teacher", {p: rep["energy"][p]["teacher"]["total_pj"]
                                           for p in names}
        elif m["model"] in by_model:
            label, i = by_model[m["model"]]
            energy_pj = {p: rep["energy"][p]["student"][i]["total_pj"] for p in names}
        else:
            continue
        points.append({"name": f"{MODELS[m['model']]} (n = {m['n'] or '?'})",
                       "model": m["model"], "accuracy": m["value"], "n": m["n"],
                       "energy_record": label, "energy_pj": energy_pj})
    for r in rep["runs"]:
        points.append({"name": f"run {r['name']}: student", "model": None,
                       "accuracy": r["accuracy"], "n": r.get("n"), "energy_record": None,
                       "energy_pj": dict(r["energy_pj"])})
    return {"group": group["key"] if group else None, "points": points}


def written_files(report: Mapping, out_dir=None) -> List[Path]:
    """Every file ``build_report`` wrote, in a fixed order (``report["files"]["written"]``),
    as paths under ``out_dir`` (relative names when it is None)."""
    names = list((report.get("files") or {}).get("written") or [])
    return [Path(n) if out_dir is None else Path(out_dir) / n for n in names]


#: the ``--source`` that makes a student record of this label
_SOURCE_OF = {"torch": "torch", "float": "torch", "lava": "lava"}


def dropped_by_rerun(old_report: Mapping, new_sources, *, html: Optional[bool] = None,
                     profiles: Optional[Sequence[str]] = None,
                     compare: Optional[Sequence[str]] = None) -> Optional[str]:
    """What rewriting ``old_report`` (the ``report.json`` in place) with the new options
    would silently drop, in one sentence naming the flag that keeps it; None if nothing.

    ``new_sources``: the spike records the rerun makes (``{"torch"}``, ``{"lava"}``,
    ``{"torch", "lava"}``; ``--source`` torch / lava / both).  Optional checks: ``html``
    (False: the rerun removes report.html), ``profiles`` (the rerun's profile names, after
    aliases), ``compare`` (the rerun's ``--compare`` runs).  Pure: reads nothing."""
    if not isinstance(old_report, Mapping) or old_report.get("schema") not in READABLE_SCHEMAS:
        return None
    new_sources = {_SOURCE_OF.get(str(s), str(s)) for s in new_sources}
    old_sources = [_SOURCE_OF[str(st.get("label"))] for st in old_report.get("student") or []
                   if isinstance(st, Mapping) and str(st.get("label")) in _SOURCE_OF]
    lost, flags = [], []
    gone = [s for s in old_sources if s not in new_sources]
    if gone:
        keep = set(new_sources) | set(gone)
        source = "both" if {"torch", "lava"} <= keep else sorted(keep)[0]
        what = " and ".join(f"the {s} spike record" for s in gone)
        lost.append(f"{what} (its energy, SynOps and firing-rate columns"
                    f"{', Lava energy in every profile' if 'lava' in gone else ''})")
        flags.append(f"--source {source}")
    files = old_report.get("files") or {}
    if html is False and files.get("html"):
        lost.append("report.html")
        flags.append("--html")
    if profiles is not None:
        new = {PROFILE_ALIASES.get(p, p) for p in profiles}
        old = [p for p in old_report.get("profile_order") or [] if PROFILE_ALIASES.get(p, p)
               not in new]
        if old:
            lost.append("the energy under profile(s) " + ", ".join(old))
            flags.append("--profile " + " ".join(list(profiles) + old))
    if compare is not None:
        old = [r.get("name") for r in old_report.get("runs") or [] if isinstance(r, Mapping)
               and r.get("name") not in set(map(str, compare))]
        if old:
            lost.append("the comparison with run(s) " + ", ".join(map(str, old)))
            flags.append("--compare " + " ".join(list(map(str, compare)) + list(map(str, old))))
    if not lost:
        return None
    return (f"this rerun would drop {_join(lost)} from the report in place; pass "
            f"{_join(flags)} to keep {'it' if len(lost) == 1 else 'them'}")


def _join(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


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
    ``profiles``: built-in names, YAML paths or :class:`Profile` objects.

    ``accuracy``: groups of accuracies measured on the same samples (compared only within
    a group), e.g. (:func:`accuracy_groups` builds it from a run's metrics)::

        {"same_samples": {"n": 60, "teacher": 0.9833, "float": 0.95, "emulation": 0.95,
                          "lava": 0.95, "bit_exact": True},
         "full_split":   {"n": 360, "teacher": 0.9889, "float": 0.9694,
                          "emulation": 0.9778}}

    A group: ``n`` (samples), fractions in [0, 1] under the model keys ``teacher``,
    ``float``, ``emulation``, ``lava`` (aliases ``student``, ``quantized``; a value may be
    ``{"value", "n"}`` when its n differs), optional ``bit_exact`` (Lava == emulation on
    those samples) and ``label``; any key names a group (``same_samples``, ``full_split``,
    ``export_samples`` have default labels).  The older flat form, label -> fraction or
    ``{"value", "note"}`` with labels ``teacher``, ``student``, ``quantized``, ``lava``, is
    still read: one group per distinct note (n unknown).  ``report["accuracy"]`` keeps the
    flat form (what :func:`run_entry` reads), ``report["accuracy_groups"]`` the groups.

    ``runs``: other runs for the accuracy-vs-energy plot, each ``{"name", "accuracy",
    "energy_pj": {profile: pJ}}`` (see :func:`run_entry`).  ``meta``: JSON-serialisable
    run information copied verbatim (keep it free of timestamps for byte-identical
    output).  ``conventions``: how every figure is charged; the teacher/student ratio under
    the alternatives is added.

    Writes report.json, report.md, every figure as PNG (300 dpi), SVG and PDF, and
    report.html when ``html``; ``report["files"]["written"]`` lists them all (see
    :func:`written_files`).
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
    if accuracy is not None and not isinstance(accuracy, Mapping):
        raise ValueError("accuracy must be a mapping (groups of like samples, or label -> "
                         "fraction)")
    acc, groups = _accuracy(accuracy)
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
        entry = {"name": str(r["name"]),
                 "accuracy": _check_accuracy(r["name"], r.get("accuracy")),
                 "energy_pj": {str(k): float(v)
                               for k, v in (r.get("energy_pj") or {}).items()}}
        if r.get("n") is not None:
            entry["n"] = _count(str(r["name"]), r["n"])
        run_list.append(entry)

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
        "accuracy_groups": groups,
        "energy": energy_block,
        "by_convention": grid,
        "neurobench": _neurobench_block(records),
        "ratio_range": ratio_range,
        "runs": run_list,
        "files": {},
    }
    rep["accuracy_vs_energy"] = _scatter_points(rep, groups)
    figs = draw_all(rep)
    plots = [f"{n}.png" for n in FIGURES if n in figs]
    figure_files = {n: {fmt: f"{n}.{fmt}" for fmt in FORMATS} for n in FIGURES if n in figs}
    written = [f for n in FIGURES if n in figs for f in figure_files[n].values()]
    written += ["report.md"] + (["report.html"] if html else []) + ["report.json"]
    rep["files"] = {"json": "report.json", "markdown": "report.md", "plots": plots,
                    "figures": figure_files, "html": "report.html" if html else None,
                    "written": written}
    with transaction():  # all files of the report, or none
        stale = [f"{n}.{fmt}" for n in FIGURES if n not in figs for fmt in FORMATS]
        stale += [f for n in LEGACY_PLOT_FILES for f in (n, n[:-4] + ".svg", n[:-4] + ".pdf")]
        for name in stale:  # no stale figure from an earlier call survives
            if (out_dir / name).is_file():
                remove(out_dir / name)
        for name, data in figs.items():
            for fmt in FORMATS:
                write_bytes(out_dir / figure_files[name][fmt], data[fmt])
        write_text(out_dir / "report.md", markdown(rep))
        if html:
            write_text(out_dir / "report.html", html_page(rep, _html_images(figs)))
        elif (out_dir / "report.html").is_file():
            remove(out_dir / "report.html")
        write_json(out_dir / "report.json", rep)
    return rep


def _html_images(figs: Mapping[str, Mapping[str, bytes]]) -> dict:
    """``{name: (mime, bytes, (width, height) in CSS px)}``: each figure at its size in
    inches (96 px each) as the page's image format."""
    mime = {"svg": "image/svg+xml", "png": "image/png"}[HTML_IMAGE]
    out = {}
    for name, data in figs.items():
        w, h = figure_size_in(data["png"])
        out[name] = (mime, data[HTML_IMAGE], (round(w * 96), round(h * 96)))
    return out


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
