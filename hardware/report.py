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

import base64
import html as _html
import io
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from kd_snn.io import remove, transaction, write_bytes, write_json, write_text

from .energy import (CONVENTION_CHOICES, DEFAULT_CONVENTIONS, ENERGY_PARTS, PROFILE_ALIASES,
                     Conventions, GraphStats, TeacherLayer, TeacherStats, analyze_graph,
                     convention_grid, count_teacher, energy, energy_ratio, load_profile,
                     teacher_energy, teacher_profile)

SCHEMA = "kdsnn.report/2"
READABLE_SCHEMAS = ("kdsnn.report/1", SCHEMA)  # run_entry reads older reports too
DEFAULT_PROFILES = ("cmos45nm_fp32", "cmos45nm_int8", "loihi")
PLOT_FILES = ("energy.png", "ops_per_layer.png", "firing_rate.png", "firing_heatmap.png",
              "spike_raster.png", "rate_distribution.png", "accuracy_energy.png",
              "accuracy_vs_energy.png")
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


def _xlabels(ax, names, fontsize=8):
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=fontsize)


def _plot_energy(rep: dict) -> bytes:
    """Stacked energy parts per profile: one panel per profile, own unit, labelled bars."""
    order = rep["profile_order"]
    fig = _figure(4.2 * len(order), 5.0)
    axes = fig.subplots(1, len(order), squeeze=False)[0]
    handles = {}
    colors = dict(zip(list(PART_LABELS) + ["teacher"],
                      ["tab:blue", "tab:orange", "tab:green", "tab:olive", "tab:purple",
                       "tab:red"]))
    for ax, prof in zip(axes, order):
        blk = rep["energy"][prof]
        bars = [(f"student ({s['label']})\n@ {prof}", {k: s[k] for k in PART_LABELS})
                for s in blk["student"]]
        if blk["teacher"]:
            bars.append((f"teacher\n@ {blk['teacher']['charged_as']}",
                         {"teacher": blk["teacher"]["total_pj"]}))
        top = max(sum(parts.values()) for _, parts in bars) or 1.0
        unit, scale = _unit(top)
        for i, (_, parts) in enumerate(bars):
            bottom = 0.0
            for key, val in parts.items():
                if val <= 0:
                    continue
                label = "teacher MACs" if key == "teacher" else PART_LABELS[key]
                bar = ax.bar(i, val / scale, 0.6, bottom=bottom, color=colors[key])
                handles.setdefault(label, bar)
                bottom += val / scale
            ax.annotate(f"{bottom:.3g}", (i, bottom), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(np.arange(len(bars)))
        ax.set_xticklabels([b[0] for b in bars], fontsize=7)
        ax.set_ylabel(f"energy per inference ({unit})")
        ax.set_ylim(0, top / scale * 1.15)
        ax.set_title(prof, fontsize=10)
    fig.suptitle("Energy per inference by part (" + _conv_label(rep) + ")", fontsize=9)
    fig.legend(list(handles.values()), list(handles), loc="lower center",
               ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return _png(fig)


def _conv_label(rep: dict) -> str:
    c = rep["conventions"]["applied"]
    return (f"padding {c['padding']}, first layer {c['first_layer']}, zero input "
            f"{c['zero_input']}, neuron updates {c['neuron_updates']}")


def _plot_ops(rep: dict) -> bytes:
    """Student SynOps + MACs per layer beside the teacher's MACs under matching names."""
    rows = rep["layer_match"]
    names = [r["layer"] for r in rows]
    fig = _figure(max(7.0, 1.1 * len(names) + 3), 4.4)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(names))
    syn = np.array([r["student_synops"] or 0.0 for r in rows])
    mac = np.array([r["student_macs"] or 0.0 for r in rows])
    tea = np.array([r["teacher_macs"] or 0.0 for r in rows])
    w = 0.38
    ax.bar(x - w / 2, syn, w, label="student SynOps", color="tab:blue")
    ax.bar(x - w / 2, mac, w, bottom=syn, label="student MACs (real-valued input)",
           color="tab:orange")
    if rep["teacher"]:
        ax.bar(x + w / 2, tea, w, label="teacher MACs", color="tab:red")
    _xlabels(ax, names)
    positive = [v for v in list(syn + mac) + list(tea) if v > 0]
    if positive:
        ax.set_yscale("log")
        ax.set_ylim(bottom=max(0.5, min(positive) / 2), top=max(positive) * 3)
    ax.set_ylabel("operations per inference")
    ax.set_title(f"Ops per layer, student ({rep['student'][0]['label']}) vs teacher\n"
                 + _conv_label(rep), fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


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
    _xlabels(ax, names)
    ax.set_ylabel("firing rate (% of neurons per step)")
    ax.set_title("Firing rate per layer")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _spiking(rec: dict) -> List[dict]:
    return [l for l in rec["layers"] if l["spiking"]]


def _plot_heatmap(records: Sequence[dict]) -> bytes:
    """Firing rate per layer (rows) and time step (columns), one panel per spike record."""
    fig = _figure(4.5 * len(records) + 1, 0.45 * len(_spiking(records[0])) + 2.2)
    axes = fig.subplots(1, len(records), squeeze=False)[0]
    for ax, rec in zip(axes, records):
        layers = _spiking(rec)
        data = np.array([[100 * s / l["neurons"] for s in l["spikes_by_step"]]
                         for l in layers])
        im = ax.imshow(data, aspect="auto", cmap="viridis", vmin=0,
                       vmax=max(1.0, float(data.max())))
        ax.set_yticks(np.arange(len(layers)))
        ax.set_yticklabels([l["name"] for l in layers], fontsize=8)
        ax.set_xticks(np.arange(data.shape[1]))
        ax.set_xlabel("time step")
        for (i, j), v in np.ndenumerate(data):
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=7,
                    color="white" if v < 0.6 * data.max() else "black")
        ax.set_title(f"Firing rate % ({rec['label']})", fontsize=9)
        fig.colorbar(im, ax=ax, label="% of neurons spiking")
    fig.tight_layout()
    return _png(fig)


def _plot_raster(rec: dict) -> bytes:
    """Spikes of a few evenly spaced neurons per layer for sample 0."""
    layers = [l for l in _spiking(rec) if l.get("raster")]
    rows = sum(len(l["raster"]["neurons"]) for l in layers)
    fig = _figure(7.0, max(3.0, 0.16 * rows + 1.5))
    ax = fig.add_subplot(1, 1, 1)
    y, ticks, labels = 0, [], []
    T = rec["time_steps"]
    for k, l in enumerate(layers):
        r = l["raster"]
        color = f"C{k % 10}"
        start = y
        for neuron, steps in zip(r["neurons"], r["spike_steps"]):
            ax.scatter(steps, [y] * len(steps), marker="|", s=120, color=color)
            y += 1
        ticks.append((start + y - 1) / 2)
        labels.append(f"{l['name']}\n({len(r['neurons'])} of {l['neurons']})")
        ax.axhline(y - 0.5, color="#ccc", lw=0.5)
    ax.set_yticks(ticks)
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xticks(np.arange(T))
    ax.set_xlim(-0.5, T - 0.5)
    ax.set_ylim(-0.5, max(0.5, y - 0.5))
    ax.invert_yaxis()
    ax.set_xlabel("time step")
    ax.set_title(f"Spike raster, sample 0 ({rec['label']}), evenly spaced neurons", fontsize=9)
    fig.tight_layout()
    return _png(fig)


def _plot_rates(rec: dict) -> bytes:
    """Distribution of per-neuron firing rates per layer, dead/saturated shares in the legend."""
    layers = _spiking(rec)
    fig = _figure(7.0, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    for k, l in enumerate(layers):
        h = l["rate_histogram"]
        edges = 100 * np.array(h["edges"])
        share = 100 * np.array(h["counts"]) / max(1, l["neurons"])
        ax.stairs(share, edges, label=f"{l['name']}: dead {100 * h['dead_fraction']:.1f} %, "
                  f"saturated {100 * h['saturated_fraction']:.1f} %", color=f"C{k % 10}")
    ax.set_xlabel("per-neuron firing rate (% of steps, over all samples)")
    ax.set_ylabel("% of the layer's neurons")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_title(f"Per-neuron firing rates ({rec['label']}); dead = never spikes, "
                 "saturated = spikes every step", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _plot_accuracy_energy(rep: dict) -> bytes:
    """Accuracy of teacher / float / quantized / Lava next to each one's energy."""
    acc = rep["accuracy"]
    models = [k for k in ACCURACY_LABELS if k in acc]
    fig = _figure(11.0, 4.2)
    ax1, ax2 = fig.subplots(1, 2)
    vals = [100 * acc[k]["value"] for k in models]
    bars = ax1.bar(np.arange(len(models)), vals, color=[f"C{i}" for i in range(len(models))])
    for b, v in zip(bars, vals):
        ax1.annotate(f"{v:.2f}", (b.get_x() + b.get_width() / 2, v), ha="center",
                     va="bottom", fontsize=8)
    ax1.set_xticks(np.arange(len(models)))
    ax1.set_xticklabels([_SHORT_ACCURACY[k] for k in models], fontsize=8)
    ax1.set_ylim(min(vals + [100]) * 0.9 if vals else 0, 100)
    ax1.set_ylabel("accuracy (%)")
    ax1.set_title("Accuracy", fontsize=9)
    order = rep["profile_order"]
    entries = _energy_entries(rep)
    x = np.arange(len(order))
    width = 0.8 / max(1, len(entries))
    for k, (name, per_prof) in enumerate(entries):
        ax2.bar(x + (k - (len(entries) - 1) / 2) * width,
                [per_prof.get(p) or 0.0 for p in order], width, label=name)
    ax2.set_yscale("log")
    ax2.set_xticks(x)
    ax2.set_xticklabels(order, fontsize=8)
    ax2.set_ylabel("energy per inference (pJ, log)")
    ax2.set_title("Energy per inference\n" + _conv_label(rep), fontsize=8)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


_SHORT_ACCURACY = {"teacher": "teacher", "student": "student\nfloat",
                   "quantized": "student\nquantized", "lava": "student\nLava"}


def _energy_entries(rep: dict) -> List[tuple]:
    """(label, {profile: pJ}) of every student record and the teacher (its charged profile)."""
    out = []
    for i, st in enumerate(rep["student"]):
        out.append((f"student ({st['label']})",
                    {p: rep["energy"][p]["student"][i]["total_pj"] for p in rep["profile_order"]}))
    if rep["teacher"]:
        out.append(("teacher (as charged)", {p: rep["energy"][p]["teacher"]["total_pj"]
                                             for p in rep["profile_order"]}))
    return out


def _plot_scatter(points: Sequence[dict], order: Sequence[str]) -> bytes:
    profs = [p for p in order if any(p in pt["energy_pj"] for pt in points)]
    fig = _figure(5.0 * max(1, len(profs)), 4.4)
    axes = fig.subplots(1, max(1, len(profs)), squeeze=False)[0]
    from matplotlib.ticker import NullFormatter
    for ax, prof in zip(axes, profs):
        es = [pt["energy_pj"][prof] for pt in points if pt["energy_pj"].get(prof)]
        unit, scale = _unit(max(es) if es else 1.0)
        for k, pt in enumerate(points):
            e = pt["energy_pj"].get(prof)
            if e is None or pt.get("accuracy") is None:
                continue
            marker = "s" if pt.get("kind") == "teacher" else "o"
            ax.scatter([e / scale], [100 * pt["accuracy"]], marker=marker, s=40,
                       color=f"C{k % 10}", label=pt["name"])
        if es and max(es) / min(es) > 20:  # several decades: log axis, major labels only
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"energy per inference ({unit}), {prof}")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"Accuracy vs energy ({prof})", fontsize=9)
        ax.legend(fontsize=7, loc="best")
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
    """(title, header, rows, notes) for every section, shared by Markdown and HTML;
    ``header`` None: the section is its notes (a bullet list) only."""
    out = []
    conv = rep["conventions"]
    rows = []
    for axis, choices in CONVENTION_CHOICES.items():
        applied = conv["applied"][axis]
        other = [v for v in choices if v != applied]
        rows.append([axis, applied, choices[applied],
                     "; ".join(f"{v}: {choices[v]}" for v in other)])
    out.append(("Conventions", ["convention", "applied", "meaning", "alternative"], rows,
                ["Applied to student and teacher alike. MACs count every weight, zero or "
                 "not; SynOps count only synapses with a non-zero weight (fan-out "
                 f"'{rep['student'][0]['fanout']}') and never depend on padding (a padding "
                 "tap carries no spike). The teacher/student ratio under every convention "
                 "is in the section 'Teacher / student by convention'."]))
    primary = rep["student"][0]
    if rep["accuracy"]:
        rows = []
        energies = dict(_energy_entries(rep))
        for key in [k for k in ACCURACY_LABELS if k in rep["accuracy"]] + sorted(
                k for k in rep["accuracy"] if k not in ACCURACY_LABELS):
            a = rep["accuracy"][key]
            rec = _energy_for_accuracy(rep, key, energies)
            rows.append([ACCURACY_LABELS.get(key, key), _pct(a["value"]), a["note"]] +
                        [_energy(rec.get(p)) if rec else "" for p in rep["profile_order"]])
        out.append(("Accuracy and energy per inference",
                    ["model", "accuracy", "measured on"] + list(rep["profile_order"]), rows,
                    ["Energy of the student record whose spikes match the model (float: "
                     "the PyTorch spikes, Lava: the Lava spikes); the teacher as charged "
                     "under each profile."]))
    hdr = ["profile", "model", "charged as"] + [PART_LABELS[k] for k in ENERGY_PARTS] + [
        "total", "teacher / student"]
    rows = []
    for prof in rep["profile_order"]:
        blk = rep["energy"][prof]
        for st in blk["student"]:
            rows.append([prof, f"student ({st['label']})", prof] +
                        [_energy(st[k]) for k in ENERGY_PARTS] +
                        [_energy(st["total_pj"]), _ratio(st["teacher_over_student"])])
        if blk["teacher"]:
            t = blk["teacher"]
            rows.append([prof, "teacher", t["charged_as"], "", _energy(t["total_pj"]), "", "",
                         "", _energy(t["total_pj"]), ""])
    out.append(("Energy per inference: teacher vs student", hdr, rows,
                [f"Conventions: {_conv_label(rep)}."]))
    grid = rep["by_convention"]
    if grid:
        hdr = ["padding", "first layer", "zero input", "student MACs", "teacher MACs"] + [
            f"{p}: teacher / student" for p in rep["profile_order"]]
        rows = [[g["conventions"]["padding"], g["conventions"]["first_layer"],
                 g["conventions"]["zero_input"], _num(g["student_macs"]),
                 _num(g["teacher_macs"])] +
                [_ratio(g["energy"][p]["teacher_over_student"]) for p in rep["profile_order"]]
                for g in grid]
        notes = [f"Student: the '{primary['label']}' spikes; SynOps "
                 f"{_num(primary['totals']['synops'])} per inference under every row."]
        for p, (lo, hi) in rep["ratio_range"].items():
            notes.append(f"{p}: teacher / student between {_ratio(lo)} and {_ratio(hi)} "
                         "depending on the convention.")
        out.append(("Teacher / student by convention", hdr, rows, notes))
    layer_hdr = ["layer", "neurons", "spikes/inference", "spikes/step", "firing rate",
                 "dead", "saturated", "SynOps in", "MACs in", "neuron updates", "active"]
    for rec in rep["student"]:
        rows = []
        for l in rec["layers"]:
            h = l.get("rate_histogram") or {}
            rows.append([l["name"], _num(l["neurons"]), _num(l["spikes"]),
                         _num(l["spikes_per_step"]), _pct(l["firing_rate"]),
                         _pct(h.get("dead_fraction")), _pct(h.get("saturated_fraction")),
                         _num(l["synops_in"]), _num(l["macs_in"]), _num(l["neuron_updates"]),
                         _num(l["active_updates"])])
        t = rec["totals"]
        rows.append(["**total**", _num(t["neurons"]), _num(t["spikes"]),
                     _num(t["spikes_per_step"]), _pct(t["firing_rate"]),
                     _pct(t["dead_fraction"]), _pct(t["saturated_fraction"]),
                     _num(t["synops"]), _num(t["macs"]), _num(t["neuron_updates"]),
                     _num(t["active_updates"])])
        out.append((f"Student per layer ({rec['label']})", layer_hdr, rows,
                    [f"{rec['samples']} samples, T = {rec['time_steps']}, input counted as "
                     f"{rec['input_mode']}; counts per inference (summed over T). Dead: "
                     "never spikes on any sample; saturated: spikes at every step of every "
                     "sample."]))
    if len(rep["student"]) > 1:
        hdr = ["layer"]
        for rec in rep["student"]:
            hdr += [f"spikes ({rec['label']})", f"SynOps ({rec['label']})"]
        rows = []
        for l in primary["layers"]:
            row = [l["name"]]
            for rec in rep["student"]:
                other = next((o for o in rec["layers"] if o["name"] == l["name"]), None)
                row += [_num(other["spikes"]), _num(other["synops_in"])] if other else ["", ""]
            rows.append(row)
        out.append(("Spike records side by side", hdr, rows, []))
    if rep["teacher"]:
        rows = [[r["layer"], r["teacher"] or "", _num(r["student_synops"]),
                 _num(r["student_macs"]), _num(r["teacher_macs"]),
                 _num(r["teacher_macs_padded"])] for r in rep["layer_match"]]
        rows.append(["**total**", "", _num(primary["totals"]["synops"]),
                     _num(primary["totals"]["macs"]), _num(rep["teacher"]["macs"]),
                     _num(rep["teacher"]["macs_padded"])])
        out.append(("Per layer: student SynOps vs teacher MACs",
                    ["layer", "teacher module", "student SynOps", "student MACs",
                     "teacher MACs", "teacher MACs with padding taps"], rows,
                    ["Teacher MACs under the applied conventions, counted by the student's "
                     "counter; with padding taps they equal torch.utils.flop_counter's "
                     "(flops / 2)."]))
    if rep["runs"]:
        hdr = ["run", "accuracy"] + list(rep["profile_order"])
        rows = [[r["name"], _pct(r.get("accuracy"))] +
                [_energy(r["energy_pj"].get(p)) for p in rep["profile_order"]]
                for r in rep["runs"]]
        out.append(("Runs compared", hdr, rows, []))
    for prof in rep["profile_order"]:
        p = rep["energy"][prof]["profile"]
        notes = [f"Source: {p['source']}", p["description"]] + list(p["notes"])
        out.append((f"Profile {prof}", None, [], [n for n in notes if n]))
    return out


def _energy_for_accuracy(rep: dict, key: str, energies: Mapping) -> Optional[dict]:
    if key == "teacher":
        return energies.get("teacher (as charged)")
    for want in (key, "lava") if key == "quantized" else (key,):  # Lava runs the quantized net
        for st in rep["student"]:
            if RECORD_ACCURACY.get(st["label"]) == want:
                return energies.get(f"student ({st['label']})")
    return None


def _markdown(rep: dict) -> str:
    parts = [f"# {rep['title']}", "", f"Schema `{rep['schema']}`. Conventions: "
             f"{_conv_label(rep)}."]
    if rep["meta"]:
        parts += [""] + [f"- {k}: {rep['meta'][k]}" for k in sorted(rep["meta"])]
    for title, hdr, rows, notes in _sections(rep):
        parts += ["", f"## {title}"]
        if hdr is not None:
            parts += ["", _md_table(hdr, rows)]
            if notes:
                parts += [""] + [" ".join(notes)]
        else:
            parts += [""] + [f"- {n}" for n in notes]
    if rep["files"]["plots"]:
        parts += ["", "## Plots", ""]
        parts += [f"![{p}]({p})" for p in rep["files"]["plots"]]
    return "\n".join(parts) + "\n"


_CSS = ("body{font-family:sans-serif;margin:2em;max-width:80em}"
        "table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #bbb;padding:.2em .6em;text-align:right}"
        "td:first-child,th:first-child{text-align:left}th{background:#eee}"
        "img{max-width:100%;display:block;margin:1em 0}.note{color:#555;font-size:90%}"
        ".conv{background:#f4f4ff;border:1px solid #99c;padding:.5em 1em}")


def _html_page(rep: dict, pngs: Mapping[str, bytes]) -> str:
    e = _html.escape
    parts = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>{e(rep['title'])}</title><style>{_CSS}</style></head><body>",
             f"<h1>{e(rep['title'])}</h1><p class=\"note\">Schema {e(rep['schema'])}</p>",
             f"<p class=\"conv\">Conventions: {e(_conv_label(rep))}</p>"]
    if rep["meta"]:
        parts.append("<ul>" + "".join(f"<li>{e(str(k))}: {e(str(rep['meta'][k]))}</li>"
                                      for k in sorted(rep["meta"])) + "</ul>")
    for title, hdr, rows, notes in _sections(rep):
        parts.append(f"<h2>{e(title)}</h2>")
        if hdr is not None:
            rows = [[str(c).replace("**", "") for c in r] for r in rows]
            parts.append(_html_table(hdr, rows))
            parts += [f"<p class=\"note\">{e(n)}</p>" for n in notes]
        else:
            parts.append("<ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
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


def _match_layers(student: dict, teacher: Optional[TeacherStats],
                  conventions: Conventions) -> List[dict]:
    """Student layers and teacher modules side by side: a teacher module matches the student
    layer whose name is one of its dotted parts (``conv1.conv`` -> ``conv1``)."""
    rows = [{"layer": l["name"], "student": l["name"], "teacher": None,
             "student_synops": l["synops_in"], "student_macs": l["macs_in"],
             "teacher_macs": None, "teacher_macs_padded": None} for l in student["layers"]]
    for t in (teacher.layers if teacher else ()):
        parts = t.name.split(".")
        row = next((r for r in rows if r["teacher"] is None and r["student"] in parts), None)
        if row is None:
            row = {"layer": t.name, "student": None, "student_synops": None,
                   "student_macs": None}
            rows.append(row)
        row.update(teacher=t.name, teacher_macs=t.macs(conventions),
                   teacher_macs_padded=t.padded)
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
