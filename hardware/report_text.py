"""The report as Markdown and as one self-contained HTML page: the answer first (a summary
card), then a table of contents, then the sections with their tables and figures.

Both are built from the same blocks (:func:`summary`, :func:`sections`, :func:`captions`):
a table's numeric columns are right-aligned, its text columns left-aligned, and an energy
column holds one unit, named in its header.
"""
from __future__ import annotations

import base64
import html as _html
import re
from typing import Dict, List, Mapping, Optional, Sequence

from .energy import CONVENTION_CHOICES, ENERGY_PARTS
from .report_format import (MODELS, PART_LABELS, column_unit, fmt_in, fmt_num, fmt_pct,
                            fmt_ratio, is_numeric, record_name,
                            record_short)
from .report_plots import conv_label

CONVENTIONS_ID = "conventions"


# --------------------------------------------------------------------------- blocks
def slug(title: str) -> str:
    """The anchor of a heading, as GitHub makes it (so the Markdown links work there too)."""
    s = re.sub(r"[^\w\- ]", "", title.strip().lower())
    return s.replace(" ", "-")


def _table(header, rows, subtitle: Optional[str] = None) -> dict:
    return {"kind": "table", "header": list(header), "rows": [list(r) for r in rows],
            "subtitle": subtitle}


def _notes(*lines, bullets: bool = False) -> dict:
    return {"kind": "notes", "lines": [l for l in lines if l], "bullets": bullets}


def _figure(name: str) -> dict:
    return {"kind": "figure", "name": name}


def _samples(rep: dict) -> tuple:
    st = rep["student"][0]
    return int(st["samples"]), int(st["time_steps"])


def _pts(x) -> str:
    return f"{100 * x:+.2f}"


def bit_exact_line(rep: dict) -> str:
    """``Lava == emulation bit for bit: yes on 60 samples`` (or why it cannot say)."""
    for g in rep.get("accuracy_groups") or []:
        if g.get("bit_exact") is not None:
            return (f"Lava == emulation bit for bit: {'yes' if g['bit_exact'] else 'NO'} on "
                    f"{g['n']} samples")
    return "Lava == emulation bit for bit: not checked in this report (no parity result given)"


def _energy_table(rows: List[tuple], one_unit: bool = False) -> tuple:
    """(units, rows) of a table of ``(text cells, energies in pJ)`` rows: each energy column
    in one unit, that of its largest value (``one_unit``: every column in the unit of the
    table's largest value); ``None``: an empty cell."""
    ncols = len(rows[0][1]) if rows else 0
    units = [column_unit(r[1][j] for r in rows) for j in range(ncols)]
    if one_unit:
        units = [column_unit(v for r in rows for v in r[1])] * ncols
    return units, [list(r[0]) + [fmt_in(v, units[j][1]) if v is not None else ""
                                 for j, v in enumerate(r[1])] for r in rows]


def summary(rep: dict) -> dict:
    """The summary card: accuracy lines, the bit-exactness verdict, an energy table
    (profile x teacher / student / ratio, one unit per column), the conventions line."""
    lines = []
    for g in rep.get("accuracy_groups") or []:
        if g["models"]:
            lines.append(f"Accuracy, {g['label']}: " + ", ".join(
                f"{MODELS[m['model']]} {fmt_pct(m['value'])}" +
                (f" (n = {m['n']})" if m["n"] != g["n"] else "") for m in g["models"]) +
                (f" (n = {g['n']} each)" if g["n"] else ""))
    if not lines:
        lines.append("Accuracy: none given to this report")
    lines.append(bit_exact_line(rep))
    n, T = _samples(rep)
    order = rep["profile_order"]
    labels = [st["label"] for st in rep["student"]]
    header_first = ["profile", "teacher as"]
    rows = []
    for prof in order:
        blk = rep["energy"][prof]
        t = blk["teacher"]
        rows.append(([prof, t["charged_as"] if t else "n/a"],
                     [t["total_pj"] if t else None] +
                     [s["total_pj"] for s in blk["student"]]))
    units, body = _energy_table(rows)
    header = header_first + [f"teacher ({units[0][0]})"] + [
        f"{record_short(l)} ({u[0]})" for l, u in zip(labels, units[1:])]
    if rep["teacher"]:
        header += [f"teacher / {record_short(l)}" for l in labels]
        for prof, row in zip(order, body):
            row += [fmt_ratio(s["teacher_over_student"])
                    for s in rep["energy"][prof]["student"]]
    else:
        header, body = ([h for i, h in enumerate(header) if i != 2],
                        [[c for i, c in enumerate(r) if i != 2] for r in body])
    return {"lines": lines, "energy": _table(header, body),
            "energy_note": f"Energy per inference (one sample), spikes counted on {n} test "
                           f"samples, T = {T}.",
            "conventions": f"Conventions: {conv_label(rep)}"}


def captions(rep: dict) -> Dict[str, str]:
    """What each figure plots, on how many samples, under which conventions."""
    n, T = _samples(rep)
    conv = f"Conventions: {conv_label(rep)}."
    recs = ", ".join(record_name(s["label"]) for s in rep["student"])
    groups = [g for g in rep.get("accuracy_groups") or [] if g["models"]]
    primary = record_name(rep["student"][0]["label"])
    out = {
        "accuracy": "Accuracy by sample set, " + "; ".join(
            f"{g['label']}: " + ", ".join(MODELS[m["model"]] for m in g["models"])
            for g in groups) + ". Each panel compares models on the same samples only; "
        "bars start at 0 %, each gives its n and its difference to the teacher in "
        f"percentage points. {bit_exact_line(rep)}.",
        "energy": f"Energy per inference (one sample) of each student spike record ({recs}) "
        f"and of the ANN teacher, one panel per energy profile in its own unit, axis from 0; "
        f"student spikes counted on {n} test samples (T = {T}); the bar's parts by hatch, "
        f"the model by colour; 'x less': student energy against the teacher's. {conv}",
        "ops_per_layer": f"Operations per inference of each layer of the {primary} (SynOps "
        f"solid, MACs hatched; {n} samples, T = {T}) beside the MACs of the teacher module(s) "
        f"paired with it by stage and block; log axis when the counts span decades. {conv}",
        "firing_rate": f"Firing rate per spiking layer (share of its neurons spiking per "
        f"step, averaged over {n} samples and T = {T} steps), one bar per spike record "
        f"({recs}).",
        "firing_heatmap": f"Firing rate per spiking layer and time step, averaged over {n} "
        f"samples, one panel per spike record ({recs}); same colour scale in every panel.",
        "spike_raster": f"Spikes of sample 0 ({primary}) in every spiking layer, layers "
        f"stacked top to bottom, one row per neuron, T = {T} steps: neurons that spike in "
        "that sample, taken at evenly spaced ranks of their spike count (busiest at the top "
        "of each layer, quietest at the bottom); beside each name how many are shown, how "
        "many spike and how many the layer has.",
        "rate_distribution": f"Distribution of per-neuron firing rates ({primary}, over {n} "
        f"samples x {T} steps): share of each layer's neurons in each 5 % rate bin, log "
        f"colour scale, white: no neuron in that bin; dead and saturated shares beside each "
        f"layer's name.",
    }
    ave = rep.get("accuracy_vs_energy") or {}
    if ave.get("points"):
        g = next((g for g in groups if g["key"] == ave.get("group")), None)
        other = [p for p in ave["points"] if not p.get("model")]
        out["accuracy_vs_energy"] = (
            "Accuracy against energy per inference, one panel per profile; this run's "
            f"accuracies all from one sample set, {g['label'] if g else 'as given'}, their "
            f"energies from the spikes of {n} test samples (T = {T})" +
            (f"; other runs ({len(other)}) from their own reports, their student's accuracy"
             if other else "") + ". Accuracy axis from 0. " + conv)
    return out


def sections(rep: dict) -> List[dict]:
    """Every section after the summary: ``{"title", "id", "blocks"}`` (tables, notes,
    figures), shared by Markdown and HTML."""
    out = []
    n, T = _samples(rep)
    primary = rep["student"][0]
    figs = set(rep["files"].get("figures") or {})
    fig = lambda name: [_figure(name)] if name in figs else []  # noqa: E731

    groups = [g for g in rep.get("accuracy_groups") or [] if g["models"]]
    if groups:
        rows = []
        for g in groups:
            teacher = next((m["value"] for m in g["models"] if m["model"] == "teacher"), None)
            for m in g["models"]:
                verdict = ""
                if m["model"] == "lava" and g.get("bit_exact") is not None:
                    verdict = ("equal to the emulation bit for bit" if g["bit_exact"]
                               else "differs from the emulation")
                rows.append([g["label"], MODELS[m["model"]], fmt_num(m["n"]) if m["n"] else
                             "n/a", f"{100 * m['value']:.2f}",
                             _pts(m["value"] - teacher) if teacher is not None
                             and m["model"] != "teacher" else "", verdict])
        out.append({"title": "Accuracy", "blocks": [
            _table(["sample set", "model", "n", "accuracy (%)", "vs teacher (pts)",
                    "Lava vs emulation"], rows),
            _notes("Each sample set compares its models on the very same samples; compare "
                   "across sets only with their n in mind.")] + fig("accuracy") +
            fig("accuracy_vs_energy")})

    blocks = []
    for prof in rep["profile_order"]:
        blk = rep["energy"][prof]
        rows = [([record_short(st["label"]), prof],
                 [st[k] for k in ENERGY_PARTS] + [st["total_pj"]]) for st in blk["student"]]
        if blk["teacher"]:
            t = blk["teacher"]
            rows.append((["ANN teacher", t["charged_as"]],
                         [None, t["total_pj"]] + [None] * (len(ENERGY_PARTS) - 2) +
                         [t["total_pj"]]))
        units, body = _energy_table(rows, one_unit=True)  # a row adds up in one unit
        hdr = ["model", "charged as"] + [f"{PART_LABELS[k]} ({u[0]})" for k, u in
                                         zip(ENERGY_PARTS, units)] + [f"total ({units[-1][0]})"]
        if rep["teacher"]:
            hdr.append("teacher / student")
            for st, row in zip(blk["student"], body):
                row.append(fmt_ratio(st["teacher_over_student"]))
            body[-1].append("")
        blocks.append(_table(hdr, body, subtitle=f"Profile {prof}"))
    out.append({"title": "Energy per inference", "blocks": blocks + [
        _notes(f"Per inference (one sample), spikes counted on {n} test samples (T = {T}); "
               f"{conv_label(rep)}. The teacher's MACs are charged under the profile named "
               "in 'charged as'.")] + fig("energy")})

    grid = rep["by_convention"]
    if grid:
        hdr = ["padding", "first layer", "zero input", "student MACs", "teacher MACs"] + [
            f"{p}: teacher / student" for p in rep["profile_order"]]
        rows = [[g["conventions"]["padding"], g["conventions"]["first_layer"],
                 g["conventions"]["zero_input"], fmt_num(g["student_macs"]),
                 fmt_num(g["teacher_macs"])] +
                [fmt_ratio(g["energy"][p]["teacher_over_student"]) for p in rep["profile_order"]]
                for g in grid]
        notes = [f"Student: the '{primary['label']}' spikes; SynOps "
                 f"{fmt_num(primary['totals']['synops'])} per inference under every row."]
        for p, (lo, hi) in rep["ratio_range"].items():
            notes.append(f"{p}: teacher / student between {fmt_ratio(lo)} and {fmt_ratio(hi)} "
                         "depending on the convention.")
        out.append({"title": "Teacher / student by convention",
                    "blocks": [_table(hdr, rows), _notes(*notes)]})

    conv = rep["conventions"]
    rows = []
    for axis, choices in CONVENTION_CHOICES.items():
        applied = conv["applied"][axis]
        other = [v for v in choices if v != applied]
        rows.append([axis, applied, choices[applied],
                     "; ".join(f"{v}: {choices[v]}" for v in other)])
    out.append({"title": "Conventions", "id": CONVENTIONS_ID, "blocks": [
        _table(["convention", "applied", "meaning", "alternative"], rows),
        _notes("Applied to student and teacher alike. SynOps count only synapses with a "
               f"non-zero weight (fan-out '{primary['fanout']}') and never depend on padding "
               "(a padding tap carries no spike). The ratio under every convention: "
               "'Teacher / student by convention'; NeuroBench's metrics: 'NeuroBench'.")]})

    if rep["teacher"]:
        rows = [[r["layer"], r["teacher"] or "", fmt_num(r["student_synops"]),
                 fmt_num(r["student_macs"]), fmt_num(r["teacher_macs"]),
                 fmt_num(r["teacher_macs_padded"])] for r in rep["layer_match"]]
        rows.append(["**total**", "", fmt_num(primary["totals"]["synops"]),
                     fmt_num(primary["totals"]["macs"]), fmt_num(rep["teacher"]["macs"]),
                     fmt_num(rep["teacher"]["macs_padded"])])
        out.append({"title": "Operations per layer: student SynOps vs teacher MACs",
                    "blocks": fig("ops_per_layer") + [
                        _table(["layer", "teacher module", "student SynOps", "student MACs",
                                "teacher MACs", "teacher MACs with padding taps"], rows),
                        _notes("Teacher MACs under the applied conventions, counted by the "
                               "student's counter; with padding taps they equal "
                               "torch.utils.flop_counter's (flops / 2).")]})
    elif "ops_per_layer" in figs:
        out.append({"title": "Operations per layer", "blocks": fig("ops_per_layer")})

    blocks = (fig("firing_rate") + fig("firing_heatmap") + fig("spike_raster") +
              fig("rate_distribution"))
    layer_hdr = ["layer", "neurons", "spikes/inference", "spikes/step", "firing rate",
                 "dead", "saturated", "SynOps in", "MACs in", "neuron updates", "active"]
    for rec in rep["student"]:
        rows = []
        for l in rec["layers"]:
            h = l.get("rate_histogram") or {}
            rows.append([l["name"], fmt_num(l["neurons"]), fmt_num(l["spikes"]),
                         fmt_num(l["spikes_per_step"]), fmt_pct(l["firing_rate"]),
                         fmt_pct(h.get("dead_fraction")), fmt_pct(h.get("saturated_fraction")),
                         fmt_num(l["synops_in"]), fmt_num(l["macs_in"]),
                         fmt_num(l["neuron_updates"]), fmt_num(l["active_updates"])])
        t = rec["totals"]
        rows.append(["**total**", fmt_num(t["neurons"]), fmt_num(t["spikes"]),
                     fmt_num(t["spikes_per_step"]), fmt_pct(t["firing_rate"]),
                     fmt_pct(t["dead_fraction"]), fmt_pct(t["saturated_fraction"]),
                     fmt_num(t["synops"]), fmt_num(t["macs"]), fmt_num(t["neuron_updates"]),
                     fmt_num(t["active_updates"])])
        blocks += [_table(layer_hdr, rows, subtitle=f"Per layer: {record_name(rec['label'])}"),
                   _notes(f"{rec['samples']} samples, T = {rec['time_steps']}, input counted "
                          f"as {rec['input_mode']}; counts per inference (summed over T). "
                          "Dead: never spikes on any sample; saturated: spikes at every step "
                          "of every sample.")]
    out.append({"title": "Activity per layer", "blocks": blocks})

    if len(rep["student"]) > 1:
        hdr = ["layer"]
        for rec in rep["student"]:
            hdr += [f"spikes ({rec['label']})", f"SynOps ({rec['label']})"]
        rows = []
        for l in primary["layers"]:
            row = [l["name"]]
            for rec in rep["student"]:
                other = next((o for o in rec["layers"] if o["name"] == l["name"]), None)
                row += ([fmt_num(other["spikes"]), fmt_num(other["synops_in"])] if other
                        else ["", ""])
            rows.append(row)
        out.append({"title": "Spike records side by side", "blocks": [_table(hdr, rows)]})
    out += _neurobench_sections(rep.get("neurobench"))
    if rep["runs"]:
        units = [column_unit(r["energy_pj"].get(p) for r in rep["runs"])
                 for p in rep["profile_order"]]
        hdr = ["run", "accuracy (%)"] + [f"{p} ({u[0]})" for p, u in
                                         zip(rep["profile_order"], units)]
        rows = [[r["name"], "n/a" if r.get("accuracy") is None else
                 f"{100 * r['accuracy']:.2f}"] +
                [fmt_in(r["energy_pj"].get(p), u[1]) for p, u in
                 zip(rep["profile_order"], units)] for r in rep["runs"]]
        out.append({"title": "Runs compared", "blocks": [
            _table(hdr, rows), _notes("Each run's student accuracy and its student's energy "
                                      "per inference, from its own report.")]})
    blocks = []
    for prof in rep["profile_order"]:
        p = rep["energy"][prof]["profile"]
        blocks += [{"kind": "subtitle", "text": f"{prof}: source and notes"},
                   _notes(*([f"Source: {p['source']}", p["description"]] + list(p["notes"])),
                          bullets=True)]
    out.append({"title": "Energy profiles", "blocks": blocks})
    for s in out:
        s.setdefault("id", slug(s["title"]))
    return out


NEUROBENCH_KEYS = ("Effective_MACs", "Effective_ACs", "Dense", "MembraneUpdates")


def _neurobench_sections(nb: Optional[dict]) -> List[dict]:
    """NeuroBench 2.3.0's metrics by name, per layer and in total (one section)."""
    if not nb:
        return []
    if "unavailable" in nb:
        return [{"title": "NeuroBench", "blocks": [
            _notes(f"Not computed: {nb['unavailable']}", bullets=True)]}]
    rows = [[l["name"]] + [fmt_num(l[k]) for k in NEUROBENCH_KEYS] +
            [fmt_pct(1 - l["spikes"] / l["activations"]) if l["activations"] else ""]
            for l in nb["layers"]]
    tot = nb["total"]
    rows.append(["**total**"] + [fmt_num(tot[k]) for k in NEUROBENCH_KEYS] +
                [fmt_pct(tot["ActivationSparsity"])])
    notes = [f"NeuroBench {nb['version']}'s workload metrics per sample on the "
             f"'{nb['record']}' spikes, from kdsnn's counters under the 'neurobench' "
             "preset (checked against NeuroBench itself by tests/test_neurobench.py). "
             "Effective_MACs: non-binary inputs, zero inputs and zero weights skipped, every "
             "step; Effective_ACs: spikes x non-zero fan-out, pooling not counted; Dense: "
             "every in-bounds tap, every weight, every step; MembraneUpdates: spiking "
             "neurons only, every neuron at the first step, then where the membrane changed."]
    for label, tot in nb.get("other_records", {}).items():
        if "unavailable" in tot:
            notes.append(f"'{label}' spikes: {tot['unavailable']}")
        else:
            notes.append(f"'{label}' spikes: " + ", ".join(
                f"{k} {fmt_num(tot[k])}" for k in NEUROBENCH_KEYS) +
                f", ActivationSparsity {fmt_pct(tot['ActivationSparsity'])}.")
    return [{"title": "NeuroBench", "blocks": [
        _table(["layer"] + list(NEUROBENCH_KEYS) + ["ActivationSparsity"], rows),
        _notes(*notes)]}]


def _numeric_columns(header, rows) -> List[bool]:
    """A column is numeric (right-aligned) when every non-empty cell holds a number."""
    cols = []
    for j in range(len(header)):
        cells = [str(r[j]).strip() for r in rows if j < len(r) and str(r[j]).strip()]
        cols.append(bool(cells) and all(is_numeric(c) for c in cells))
    return cols


# --------------------------------------------------------------------------- Markdown
def _md_table(t: dict) -> str:
    header, rows = t["header"], t["rows"]
    num = _numeric_columns(header, rows)
    esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
    out = ["| " + " | ".join(esc(h) for h in header) + " |",
           "|" + "|".join("---:" if n else ":---" for n in num) + "|"]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def markdown(rep: dict) -> str:
    """report.md: title, summary card, contents, sections (figures as images + captions)."""
    s = summary(rep)
    secs = sections(rep)
    caps = captions(rep)
    number = _figure_numbers(secs)
    parts = [f"# {rep['title']}", "", "## Summary", ""]
    parts += [f"- {l}" for l in s["lines"]]
    parts += ["", _md_table(s["energy"]), "", s["energy_note"] + " " + s["conventions"] +
              f" ([definitions](#{CONVENTIONS_ID}))."]
    meta = rep["meta"]
    if meta:
        parts += ["", "Run: " + "; ".join(f"{k} {meta[k]}" for k in sorted(meta)) +
                  f". Schema `{rep['schema']}`."]
    parts += ["", "## Contents", ""]
    parts += [f"{i}. [{sec['title']}](#{sec['id']})" for i, sec in enumerate(secs, 1)]
    for sec in secs:
        parts += ["", f"## {sec['title']}"]
        for b in sec["blocks"]:
            if b["kind"] == "table":
                if b["subtitle"]:
                    parts += ["", f"### {b['subtitle']}"]
                parts += ["", _md_table(b)]
            elif b["kind"] == "subtitle":
                parts += ["", f"### {b['text']}"]
            elif b["kind"] == "notes" and b["lines"]:
                parts += [""] + ([f"- {l}" for l in b["lines"]] if b["bullets"]
                                 else [" ".join(b["lines"])])
            elif b["kind"] == "figure":
                name, files = b["name"], rep["files"]["figures"][b["name"]]
                parts += ["", f"![Figure {number[name]}: {name}]({files['png']})", "",
                          f"*Figure {number[name]}.* {caps.get(name, '')} "
                          f"(Vector: [SVG]({files['svg']}), [PDF]({files['pdf']}).)"]
    return "\n".join(parts) + "\n"


def _figure_numbers(secs: Sequence[dict]) -> Dict[str, int]:
    names = [b["name"] for s in secs for b in s["blocks"] if b["kind"] == "figure"]
    return {n: i for i, n in enumerate(names, 1)}


# --------------------------------------------------------------------------- HTML
CSS = ("body{font-family:system-ui,'DejaVu Sans',sans-serif;margin:1.5em auto;"
       "max-width:78em;padding:0 1.5em;line-height:1.45;color:#222}"
       "h1{font-size:1.6em;margin:.2em 0 .6em}h2{margin-top:1.8em;border-bottom:1px solid #ccc}"
       "h3{font-size:1.05em;margin:1.2em 0 .3em}"
       ".summary{border:2px solid #0072B2;border-radius:6px;padding:.6em 1.2em;"
       "background:#f4f8fb}.summary h2{margin-top:.2em;border:0}"
       ".summary ul{margin:.3em 0;padding-left:1.2em}"
       ".wrap{max-width:100%;overflow-x:auto}"
       "table{border-collapse:collapse;margin:.4em 0;font-size:88%}"
       "td,th{border:1px solid #bbb;padding:.2em .55em;text-align:left;vertical-align:top}"
       "th{background:#eee}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}"
       "td.num,td:first-child{white-space:nowrap}tr.total td{font-weight:bold}"
       "figure{margin:1.2em 0;max-width:100%}figure img{max-width:100%;height:auto;"
       "display:block}figcaption{font-size:90%;color:#333;max-width:60em;margin-top:.4em}"
       ".note{color:#444;font-size:92%;max-width:70em}nav.toc ol{columns:2;margin:.3em 0}"
       "a{color:#0060a0}")


def _html_table(t: dict) -> str:
    e = _html.escape
    header, rows = t["header"], t["rows"]
    num = _numeric_columns(header, rows)
    cls = lambda j: ' class="num"' if num[j] else ""  # noqa: E731
    head = "".join(f"<th{cls(j)}>{e(str(h))}</th>" for j, h in enumerate(header))
    body = []
    for r in rows:
        total = str(r[0]).startswith("**")
        cells = "".join(f"<td{cls(j)}>{e(str(c).replace('**', ''))}</td>"
                        for j, c in enumerate(r))
        body.append(f"<tr class=\"total\">{cells}</tr>" if total else f"<tr>{cells}</tr>")
    return (f"<div class=\"wrap\"><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def html_page(rep: dict, images: Mapping[str, tuple]) -> str:
    """report.html, self-contained: ``images`` maps a figure's base name to ``(mime type,
    bytes, (width, height) in CSS px)``, inlined as data URIs."""
    e = _html.escape
    s = summary(rep)
    secs = sections(rep)
    caps = captions(rep)
    number = _figure_numbers(secs)
    parts = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
             "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
             f"<title>{e(rep['title'])}</title><style>{CSS}</style></head><body>",
             f"<h1>{e(rep['title'])}</h1>",
             "<section class=\"summary\" id=\"summary\"><h2>Summary</h2><ul>"]
    parts += [f"<li>{e(l)}</li>" for l in s["lines"]]
    parts += ["</ul>", _html_table(s["energy"]),
              f"<p class=\"note\">{e(s['energy_note'])} {e(s['conventions'])} "
              f"(<a href=\"#{CONVENTIONS_ID}\">definitions</a>).</p>"]
    meta = rep["meta"]
    if meta:
        parts.append("<p class=\"note\">Run: " + e("; ".join(
            f"{k} {meta[k]}" for k in sorted(meta))) + f". Schema {e(rep['schema'])}.</p>")
    parts.append("</section>")
    parts.append("<nav class=\"toc\"><h2>Contents</h2><ol>" + "".join(
        f"<li><a href=\"#{sec['id']}\">{e(sec['title'])}</a></li>" for sec in secs) +
        "</ol></nav>")
    for sec in secs:
        parts.append(f"<section id=\"{sec['id']}\"><h2>{e(sec['title'])}</h2>")
        for b in sec["blocks"]:
            if b["kind"] == "table":
                if b["subtitle"]:
                    parts.append(f"<h3>{e(b['subtitle'])}</h3>")
                parts.append(_html_table(b))
            elif b["kind"] == "subtitle":
                parts.append(f"<h3>{e(b['text'])}</h3>")
            elif b["kind"] == "notes" and b["lines"]:
                if b["bullets"]:
                    parts.append("<ul class=\"note\">" + "".join(
                        f"<li>{e(l)}</li>" for l in b["lines"]) + "</ul>")
                else:
                    parts += [f"<p class=\"note\">{e(l)}</p>" for l in b["lines"]]
            elif b["kind"] == "figure" and b["name"] in images:
                name = b["name"]
                mime, data, (w, h) = images[name]
                files = rep["files"]["figures"][name]
                src = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
                parts.append(
                    f"<figure id=\"figure-{e(name)}\"><img alt=\"Figure {number[name]}: "
                    f"{e(caps.get(name, name))}\" width=\"{w}\" height=\"{h}\" src=\"{src}\">"
                    f"<figcaption><b>Figure {number[name]}.</b> {e(caps.get(name, ''))} "
                    f"Files: {e(files['png'])} (300 dpi), {e(files['svg'])}, "
                    f"{e(files['pdf'])}.</figcaption></figure>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
