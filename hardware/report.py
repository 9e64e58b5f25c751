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

This module assembles the report and writes its files; the parts are computed by
``report_accuracy`` (accuracy groups), ``report_energy`` (teacher beside student per
layer and per convention, NeuroBench), ``report_runs`` (other runs compared, the report
in place before a rerun) and drawn or written by ``report_plots`` and ``report_text``.
The names that were public here before that split are still importable from here.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

from kd_snn.io import remove, transaction, write_bytes, write_json, write_text

from .energy import (CONVENTION_CHOICES, DEFAULT_CONVENTIONS, Conventions, GraphStats,
                     analyze_graph, count_teacher, energy, energy_ratio, load_profile,
                     teacher_energy, teacher_profile)
from .report_accuracy import (GROUP_LABELS, accuracy_groups, check_accuracy,
                              normalise_accuracy, sample_count)
from .report_energy import (by_convention, grid_axes, is_relay, match_layers,
                            neurobench_block, teacher_stats)
from .report_format import ACCURACY_LABELS, MODEL_COLORS, MODELS, RECORD_ACCURACY, model_of
from .report_plots import FIGURES, FORMATS, draw_all, figure_size_in
from .report_runs import (READABLE_SCHEMAS, SCHEMA, dropped_by_rerun, run_entry,
                          scatter_points, written_files)
from .report_text import html_page, markdown

__all__ = [
    # this module: the report assembled and written
    "build_report", "make_report", "DEFAULT_PROFILES", "PLOT_FILES", "LEGACY_PLOT_FILES",
    "HTML_IMAGE",
    # re-exported (public here before the split): callers keep one import
    "SCHEMA", "READABLE_SCHEMAS", "run_entry", "written_files", "dropped_by_rerun",
    "GROUP_LABELS", "accuracy_groups", "is_relay", "ACCURACY_LABELS", "MODEL_COLORS",
    "MODELS", "RECORD_ACCURACY", "model_of"]

DEFAULT_PROFILES = ("cmos45nm_fp32", "cmos45nm_int8", "loihi")
#: every figure's PNG (each also as .svg and .pdf), in the order the report shows them
PLOT_FILES = tuple(f"{name}.png" for name in FIGURES)
#: figure files of earlier versions, removed when a report is rewritten
LEGACY_PLOT_FILES = ("accuracy_energy.png",)
HTML_IMAGE = "svg"  # the format report.html inlines (vector: sharp on screen and in print)


def _as_records(stats) -> Dict[str, GraphStats]:
    if isinstance(stats, GraphStats):
        return {stats.source: stats}
    if isinstance(stats, Mapping) and stats and all(isinstance(v, GraphStats)
                                                    for v in stats.values()):
        return dict(stats)
    raise TypeError("stats must be a GraphStats or a non-empty mapping label -> GraphStats")


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
    acc, groups = normalise_accuracy(accuracy)
    tstats = teacher_stats(teacher_macs)

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
    grid = by_convention(primary, tstats, profs, conventions, grid_axes(records, tstats))
    ratio_range = {}
    for p in names:
        vals = [g["energy"][p]["teacher_over_student"] for g in grid
                if g["energy"][p]["teacher_over_student"] is not None]
        if vals:
            ratio_range[p] = [min(vals), max(vals)]

    run_list = []
    for r in runs or []:
        entry = {"name": str(r["name"]),
                 "accuracy": check_accuracy(r["name"], r.get("accuracy")),
                 "energy_pj": {str(k): float(v)
                               for k, v in (r.get("energy_pj") or {}).items()}}
        if r.get("n") is not None:
            entry["n"] = sample_count(str(r["name"]), r["n"])
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
        "layer_match": match_layers(student[0], tstats, conventions),
        "accuracy": acc,
        "accuracy_groups": groups,
        "energy": energy_block,
        "by_convention": grid,
        "neurobench": neurobench_block(records),
        "ratio_range": ratio_range,
        "runs": run_list,
        "files": {},
    }
    rep["accuracy_vs_energy"] = scatter_points(rep, groups)
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
