"""The report's tables as Markdown and as one self-contained HTML page."""
from __future__ import annotations

import base64
import html as _html
from typing import List, Mapping, Optional, Sequence

from .energy import CONVENTION_CHOICES, ENERGY_PARTS
from .report_format import (ACCURACY_LABELS, PART_LABELS, RECORD_ACCURACY, _energy,
                            _num, _pct, _ratio)
from .report_plots import _conv_label, _energy_entries


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
                ["Applied to student and teacher alike. SynOps count only synapses with a "
                 f"non-zero weight (fan-out '{rep['student'][0]['fanout']}') and never "
                 "depend on padding (a padding tap carries no spike). The teacher/student "
                 "ratio under every convention is in the section 'Teacher / student by "
                 "convention'; NeuroBench's metrics in the section 'NeuroBench'."]))
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
    out += _neurobench_sections(rep.get("neurobench"))
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


NEUROBENCH_KEYS = ("Effective_MACs", "Effective_ACs", "Dense", "MembraneUpdates")


def _neurobench_sections(nb: Optional[dict]) -> List[tuple]:
    """NeuroBench 2.3.0's metrics by name, per layer and in total (one section)."""
    if not nb:
        return []
    if "unavailable" in nb:
        return [("NeuroBench", None, [], [f"Not computed: {nb['unavailable']}"])]
    rows = [[l["name"]] + [_num(l[k]) for k in NEUROBENCH_KEYS] +
            [_pct(1 - l["spikes"] / l["activations"]) if l["activations"] else ""]
            for l in nb["layers"]]
    tot = nb["total"]
    rows.append(["**total**"] + [_num(tot[k]) for k in NEUROBENCH_KEYS] +
                [_pct(tot["ActivationSparsity"])])
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
                f"{k} {_num(tot[k])}" for k in NEUROBENCH_KEYS) +
                f", ActivationSparsity {_pct(tot['ActivationSparsity'])}.")
    return [("NeuroBench", ["layer"] + list(NEUROBENCH_KEYS) + ["ActivationSparsity"], rows,
             notes)]


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
