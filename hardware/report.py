"""Energy / activity report of a distilled student against its teacher.

``build_report`` writes, into one directory, atomically and deterministically (same input,
same bytes):

* ``report.json``  versioned (``"schema": "kdsnn.report/1"``), the returned dict;
* ``report.md``    Markdown tables: per layer, totals, teacher vs student per profile;
* ``firing_rate.png``, ``ops_per_layer.png``, ``energy.png`` and, when there are at least
  two (accuracy, energy) points, ``accuracy_vs_energy.png``;
* ``report.html``  (``html=True``) one self-contained page: tables plus the PNGs inlined
  as base64 data URIs, no external resource.

``make_report`` is the one-call entry point (graph + inputs + teacher -> report).
Energies are per inference (one sample); accuracies are fractions in [0, 1].
"""
from __future__ import annotations

import base64
import html as _html
import io
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from kd_snn.io import remove, transaction, write_bytes, write_json, write_text

from .energy import (GraphStats, analyze_graph, energy, energy_ratio, load_profile,
                     teacher_energy, teacher_macs)

SCHEMA = "kdsnn.report/1"
DEFAULT_PROFILES = ("cmos45nm", "loihi")
PLOT_FILES = ("firing_rate.png", "ops_per_layer.png", "energy.png", "accuracy_vs_energy.png")
_PNG_META = {"Software": None}


# --------------------------------------------------------------------------- formatting


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


# --------------------------------------------------------------------------- plots


def _figure(width=7.0, height=4.0):
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height), dpi=100)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata=_PNG_META)
    return buf.getvalue()


def _plot_firing(records: Sequence[dict]) -> bytes:
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    names = [l["name"] for l in records[0]["layers"] if l["spiking"]]
    x = np.arange(len(names))
    width = 0.8 / len(records)
    for k, rec in enumerate(records):
        rates = {l["name"]: l["firing_rate"] for l in rec["layers"] if l["spiking"]}
        ax.bar(x + (k - (len(records) - 1) / 2) * width,
               [100 * (rates.get(n) or 0.0) for n in names], width, label=rec["label"])
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("firing rate (% of neurons per step)")
    ax.set_title("Firing rate per layer")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _plot_ops(student: dict, teacher: Optional[dict]) -> bytes:
    fig = _figure(10.0 if teacher else 7.0, 4.2)
    axes = fig.subplots(1, 2 if teacher else 1, sharey=bool(teacher), squeeze=False)[0]
    layers = student["layers"]
    x = np.arange(len(layers))
    syn = np.array([l["synops_in"] for l in layers])
    mac = np.array([l["macs_in"] for l in layers])
    ax = axes[0]
    ax.bar(x, syn, 0.7, label="SynOps")
    ax.bar(x, mac, 0.7, bottom=syn, label="MACs (real-valued input)")
    ax.set_xticks(x)
    ax.set_xticklabels([l["name"] for l in layers], rotation=45, ha="right", fontsize=8)
    ax.set_title(f"Student ({student['label']}) ops per inference")
    ax.set_ylabel("operations per inference")
    ax.legend(fontsize=8)
    if teacher:
        ax2 = axes[1]
        tx = np.arange(len(teacher["layers"]))
        ax2.bar(tx, [l["macs"] for l in teacher["layers"]], 0.7, color="tab:red", label="MACs")
        ax2.set_xticks(tx)
        ax2.set_xticklabels([l["name"] for l in teacher["layers"]], rotation=45, ha="right",
                            fontsize=7)
        ax2.set_title("Teacher MACs per inference")
        ax2.legend(fontsize=8)
    vals = list(syn + mac) + ([l["macs"] for l in teacher["layers"]] if teacher else [])
    positive = [v for v in vals if v > 0]
    if positive:
        for a in axes:
            a.set_yscale("log")
            a.set_ylim(bottom=max(0.5, min(positive) / 2), top=max(positive) * 2)
    fig.tight_layout()
    return _png(fig)


def _plot_energy(energy_block: Mapping[str, dict], order: Sequence[str],
                 labels: Sequence[str]) -> bytes:
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    series = [f"student ({lab})" for lab in labels] + ["teacher"]
    x = np.arange(len(order))
    width = 0.8 / len(series)
    top = max([s["total_pj"] for p in order for s in energy_block[p]["student"]] +
              [energy_block[p]["teacher"]["total_pj"] for p in order
               if energy_block[p]["teacher"]])
    unit, scale = _unit(top)
    for k, name in enumerate(series):
        vals = []
        for prof in order:
            blk = energy_block[prof]
            if name == "teacher":
                vals.append(blk["teacher"]["total_pj"] / scale if blk["teacher"] else 0.0)
            else:
                st = next(s for s in blk["student"] if f"student ({s['label']})" == name)
                vals.append(st["total_pj"] / scale)
        bars = ax.bar(x + (k - (len(series) - 1) / 2) * width, vals, width, label=name)
        for b, v in zip(bars, vals):
            if v > 0:
                ax.annotate(f"{v:.3g}", (b.get_x() + b.get_width() / 2, v), ha="center",
                            va="bottom", fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels(list(order))
    ax.set_ylabel(f"energy per inference ({unit})")
    ax.set_title("Energy: student vs teacher per device profile")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _plot_scatter(points: Sequence[dict], order: Sequence[str]) -> bytes:
    profs = [p for p in order if any(p in pt["energy_pj"] for pt in points)]
    fig = _figure(5.0 * max(1, len(profs)), 4.0)
    axes = fig.subplots(1, max(1, len(profs)), squeeze=False)[0]
    from matplotlib.ticker import NullFormatter
    for ax, prof in zip(axes, profs):
        es = [pt["energy_pj"][prof] for pt in points if pt["energy_pj"].get(prof)]
        unit, scale = _unit(max(es) if es else 1.0)
        for pt in points:
            e = pt["energy_pj"].get(prof)
            if e is None or pt.get("accuracy") is None:
                continue
            marker = "s" if pt.get("kind") == "teacher" else "o"
            ax.scatter([e / scale], [100 * pt["accuracy"]], marker=marker)
            ax.annotate(pt["name"], (e / scale, 100 * pt["accuracy"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        if es and max(es) / min(es) > 20:  # several decades: log axis, major labels only
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"energy per inference ({unit}), {prof}")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"Accuracy vs energy ({prof})")
    fig.tight_layout()
    return _png(fig)


# --------------------------------------------------------------------------- tables


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    e = _html.escape
    head = "".join(f"<th>{e(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _sections(rep: dict) -> List[tuple]:
    """(title, header, rows, note) for every table, shared by Markdown and HTML."""
    out = []
    primary = rep["student"][0]
    layer_hdr = ["layer", "neurons", "spikes/inference", "spikes/step", "firing rate",
                 "SynOps in", "MACs in", "neuron updates"]
    for rec in rep["student"]:
        rows = [[l["name"], _num(l["neurons"]), _num(l["spikes"]), _num(l["spikes_per_step"]),
                 _pct(l["firing_rate"]), _num(l["synops_in"]), _num(l["macs_in"]),
                 _num(l["neuron_updates"])] for l in rec["layers"]]
        t = rec["totals"]
        rows.append(["**total**", _num(t["neurons"]), _num(t["spikes"]),
                     _num(t["spikes_per_step"]), _pct(t["firing_rate"]), _num(t["synops"]),
                     _num(t["macs"]), _num(t["neuron_updates"])])
        out.append((f"Student per layer ({rec['label']})", layer_hdr, rows,
                    f"{rec['samples']} samples, T = {rec['time_steps']}, fan-out "
                    f"'{rec['fanout']}', input counted as {rec['input_mode']}; counts per "
                    "inference (summed over T)."))
    if len(rep["student"]) > 1:
        hdr = ["layer"]
        for rec in rep["student"]:
            hdr += [f"spikes ({rec['label']})", f"SynOps ({rec['label']})"]
        rows = []
        for i, l in enumerate(primary["layers"]):
            row = [l["name"]]
            for rec in rep["student"]:
                other = rec["layers"][i]
                row += [_num(other["spikes"]), _num(other["synops_in"])]
            rows.append(row)
        out.append(("Spike records side by side", hdr, rows, ""))
    if rep["teacher"]:
        rows = [[l["name"], _num(l["macs"])] for l in rep["teacher"]["layers"]]
        rows.append(["**total**", _num(rep["teacher"]["macs"])])
        out.append(("Teacher MACs per layer", ["layer", "MACs"], rows, ""))
    hdr = ["profile", "student", "SynOps", "MACs", "neuron updates", "student total",
           "teacher total", "teacher / student"]
    rows = []
    for prof in rep["profile_order"]:
        blk = rep["energy"][prof]
        for st in blk["student"]:
            rows.append([prof, st["label"], _energy(st["synops_pj"]), _energy(st["macs_pj"]),
                         _energy(st["neuron_pj"]), _energy(st["total_pj"]),
                         _energy(blk["teacher"]["total_pj"]) if blk["teacher"] else "n/a",
                         _ratio(st["teacher_over_student"])])
    out.append(("Energy per inference: teacher vs student", hdr, rows,
                "; ".join(f"{p}: {rep['energy'][p]['profile']['source']}"
                          for p in rep["profile_order"])))
    if rep["accuracy"]:
        rows = [[k, _pct(v)] for k, v in rep["accuracy"].items()]
        out.append(("Accuracy", ["model", "accuracy"], rows, ""))
    if rep["runs"]:
        hdr = ["run", "accuracy"] + list(rep["profile_order"])
        rows = [[r["name"], _pct(r.get("accuracy"))] +
                [_energy(r["energy_pj"].get(p)) for p in rep["profile_order"]]
                for r in rep["runs"]]
        out.append(("Runs compared", hdr, rows, ""))
    return out


def _markdown(rep: dict) -> str:
    parts = [f"# {rep['title']}", "", f"Schema `{rep['schema']}`."]
    if rep["meta"]:
        parts += [""] + [f"- {k}: {rep['meta'][k]}" for k in sorted(rep["meta"])]
    for title, hdr, rows, note in _sections(rep):
        parts += ["", f"## {title}", "", _md_table(hdr, rows)]
        if note:
            parts += ["", note]
    if rep["files"]["plots"]:
        parts += ["", "## Plots", ""]
        parts += [f"![{p}]({p})" for p in rep["files"]["plots"]]
    return "\n".join(parts) + "\n"


_CSS = ("body{font-family:sans-serif;margin:2em;max-width:70em}"
        "table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #bbb;padding:.2em .6em;text-align:right}"
        "td:first-child,th:first-child{text-align:left}th{background:#eee}"
        "img{max-width:100%;display:block;margin:1em 0}.note{color:#555;font-size:90%}")


def _html_page(rep: dict, pngs: Mapping[str, bytes]) -> str:
    e = _html.escape
    parts = ["<!DOCTYPE html>", "<html><head><meta charset=\"utf-8\">",
             f"<title>{e(rep['title'])}</title><style>{_CSS}</style></head><body>",
             f"<h1>{e(rep['title'])}</h1><p class=\"note\">Schema {e(rep['schema'])}</p>"]
    if rep["meta"]:
        parts.append("<ul>" + "".join(f"<li>{e(str(k))}: {e(str(rep['meta'][k]))}</li>"
                                      for k in sorted(rep["meta"])) + "</ul>")
    for title, hdr, rows, note in _sections(rep):
        rows = [[str(c).replace("**", "") for c in r] for r in rows]
        parts.append(f"<h2>{e(title)}</h2>{_html_table(hdr, rows)}")
        if note:
            parts.append(f"<p class=\"note\">{e(note)}</p>")
    if pngs:
        parts.append("<h2>Plots</h2>")
    for name in rep["files"]["plots"]:
        data = base64.b64encode(pngs[name]).decode("ascii")
        parts.append(f"<img alt=\"{e(name)}\" src=\"data:image/png;base64,{data}\">")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


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


def run_entry(report: Mapping, name: str, accuracy_key: str = "student") -> dict:
    """A ``runs`` entry (name, accuracy, primary student energy per profile) from a report dict
    (e.g. another run's ``report.json``), for the accuracy-vs-energy scatter."""
    if report.get("schema") != SCHEMA:
        raise ValueError(f"not a {SCHEMA} report (schema {report.get('schema')!r})")
    return {"name": name, "accuracy": (report.get("accuracy") or {}).get(accuracy_key),
            "energy_pj": {p: blk["student"][0]["total_pj"]
                          for p, blk in report["energy"].items()}}


def build_report(out_dir, stats, *, teacher_macs: Optional[Mapping[str, int]] = None,
                 profiles: Sequence = DEFAULT_PROFILES,
                 accuracy: Optional[Mapping[str, float]] = None,
                 runs: Optional[Sequence[Mapping]] = None, html: bool = False,
                 title: str = "kdsnn energy report", meta: Optional[Mapping] = None) -> dict:
    """Write the report files into ``out_dir`` and return the JSON dict.

    ``stats``: a :class:`GraphStats` or an ordered mapping label -> GraphStats (e.g.
    ``{"float": ..., "lava": ...}``; the first is the primary student, all are tabulated
    side by side).  ``teacher_macs``: from :func:`teacher_macs`.  ``profiles``: built-in
    names, YAML paths or :class:`Profile` objects.  ``accuracy``: label -> fraction, with
    keys ``"student"`` / ``"teacher"`` used for the scatter.  ``runs``: other runs for the
    accuracy-vs-energy scatter, each ``{"name", "accuracy", "energy_pj": {profile: pJ}}``
    (see :func:`run_entry`).  ``meta``: JSON-serialisable run information copied verbatim
    (keep it free of timestamps for byte-identical output).
    """
    out_dir = Path(out_dir)
    records = _as_records(stats)
    labels = list(records)
    profs = [load_profile(p) for p in profiles]
    if not profs:
        raise ValueError("at least one energy profile is needed")
    names = [p.name for p in profs]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate profile names: {names}")
    acc = {str(k): _check_accuracy(k, v) for k, v in (accuracy or {}).items()}

    student = []
    for label, st in records.items():
        d = st.to_dict()
        d["label"] = label
        student.append(d)
    teacher = None
    if teacher_macs is not None:
        teacher = {"layers": [{"name": k, "macs": int(v)} for k, v in teacher_macs.items()],
                   "macs": int(sum(int(v) for v in teacher_macs.values()))}

    energy_block = {}
    for prof in profs:
        t_e = teacher_energy(teacher_macs, prof) if teacher_macs is not None else None
        studs = []
        for label, st in records.items():
            s_e = energy(st, prof)
            s_e["label"] = label
            s_e["teacher_over_student"] = energy_ratio(s_e, t_e) if t_e else None
            studs.append(s_e)
        energy_block[prof.name] = {"profile": prof.to_dict(), "student": studs, "teacher": t_e}

    run_list = []
    for r in runs or []:
        run_list.append({"name": str(r["name"]),
                         "accuracy": _check_accuracy(r["name"], r.get("accuracy")),
                         "energy_pj": {str(k): float(v)
                                       for k, v in (r.get("energy_pj") or {}).items()}})
    points = list(run_list)
    if acc.get("student") is not None:
        points.append({"name": "this run", "accuracy": acc["student"],
                       "energy_pj": {p: energy_block[p]["student"][0]["total_pj"]
                                     for p in names}})
    if acc.get("teacher") is not None and teacher is not None:
        points.append({"name": "teacher", "kind": "teacher", "accuracy": acc["teacher"],
                       "energy_pj": {p: energy_block[p]["teacher"]["total_pj"]
                                     for p in names}})

    pngs = {"firing_rate.png": _plot_firing(student),
            "ops_per_layer.png": _plot_ops(student[0], teacher),
            "energy.png": _plot_energy(energy_block, names, labels)}
    if len(points) >= 2:
        pngs["accuracy_vs_energy.png"] = _plot_scatter(points, names)

    rep = {
        "schema": SCHEMA,
        "title": title,
        "meta": dict(meta or {}),
        "profile_order": names,
        "student": student,
        "teacher": teacher,
        "accuracy": acc,
        "energy": energy_block,
        "runs": run_list,
        "files": {"json": "report.json", "markdown": "report.md",
                  "plots": [p for p in PLOT_FILES if p in pngs],
                  "html": "report.html" if html else None},
    }
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
                accuracy: Optional[Mapping[str, float]] = None,
                records: Optional[Mapping[str, Mapping]] = None,
                profiles: Sequence = DEFAULT_PROFILES, runs=None, html: bool = True,
                batch_size: int = 64, fanout: str = "nonzero", input_mode: str = "auto",
                title: str = "kdsnn energy report", meta: Optional[Mapping] = None) -> dict:
    """One call from a run: analyse ``graph`` on ``x_seq`` ``(T, N, *input_shape)`` with the
    float executor, plus any precomputed spike ``records`` (label -> {layer: (T, N, ...)},
    e.g. ``{"lava": aligned_lava_spikes}``), count the ``teacher``'s MACs on
    ``teacher_input_shape`` (default ``graph.input_shape``), and write the report."""
    stats = {"float": analyze_graph(graph, x_seq, batch_size=batch_size, fanout=fanout,
                                    input_mode=input_mode)}
    for label, rec in (records or {}).items():
        stats[label] = analyze_graph(graph, x_seq, spikes=rec, batch_size=batch_size,
                                     source=label, fanout=fanout, input_mode=input_mode)
    macs = None
    if teacher is not None:
        macs = teacher_macs(teacher, teacher_input_shape or graph.input_shape)
    return build_report(out_dir, stats, teacher_macs=macs, profiles=profiles,
                        accuracy=accuracy, runs=runs, html=html, title=title, meta=meta)
