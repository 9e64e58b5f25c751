"""The report's figures, rendered in memory (matplotlib's Agg, no display) as PNG (300 dpi),
SVG and PDF, byte for byte the same from the same input.

Every figure colours a model the same way (:data:`hardware.report_format.MODEL_COLORS`:
teacher, float student, integer emulation, Lava) and an energy part by its hatch
(:data:`~hardware.report_format.PART_HATCHES`).  Each ``plot_*`` function takes the
report dict and returns a matplotlib Figure (or None when there is nothing to draw);
:func:`render` turns one into its three files.
"""
from __future__ import annotations

import io
import re
from typing import Dict, List, Optional, Sequence

import numpy as np

from .report_format import (MODEL_COLORS, MODELS, PART_HATCHES, PART_LABELS, PDF_META,
                            PNG_DPI, PNG_META, SVG_HASHSALT, SVG_META, energy_unit,
                            model_color, model_of, record_name)

#: the figures, in the order a reader meets them (file base names)
FIGURES = ("accuracy", "energy", "accuracy_vs_energy", "ops_per_layer", "firing_rate",
           "firing_heatmap", "spike_raster", "rate_distribution")
FORMATS = ("png", "svg", "pdf")
MAX_HEIGHT_IN = 14.0  # every per-layer plot stays under 14 inches tall at 60 layers
RASTER_ROWS = 240  # neuron rows of the spike raster, all layers together (at most)
_RELAY = re.compile(r"\.relay\d+$")
_GRID = dict(color="#dddddd", lw=0.5)


# --------------------------------------------------------------------------- output
def figure(width: float = 7.0, height: float = 4.0):
    """A figure laid out by matplotlib's constrained engine (nothing clipped)."""
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def render(fig) -> Dict[str, bytes]:
    """``{"png", "svg", "pdf"}`` bytes of ``fig``: PNG at :data:`PNG_DPI`; no date, no
    random id in any of them (same figure, same bytes)."""
    import matplotlib
    out = {}
    with matplotlib.rc_context({"svg.hashsalt": SVG_HASHSALT, "svg.fonttype": "path",
                                "pdf.fonttype": 42}):
        for fmt, meta, kw in (("png", PNG_META, {"dpi": PNG_DPI}), ("svg", SVG_META, {}),
                              ("pdf", PDF_META, {})):
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, metadata=meta, **kw)
            out[fmt] = buf.getvalue()
    return out


def conv_label(rep: dict) -> str:
    """The applied conventions in one line."""
    c = rep["conventions"]["applied"]
    extra = {"mac_weights": ("all", "MAC weights"), "membrane": ("every_step", "membrane"),
             "readout": ("counted", "readout")}
    return (f"padding {c['padding']}, first layer {c['first_layer']}, zero input "
            f"{c['zero_input']}, neuron updates {c['neuron_updates']}" +
            "".join(f", {label} {c[k]}" for k, (default, label) in extra.items()
                    if c.get(k, default) != default))


def energy_entries(rep: dict) -> List[tuple]:
    """(label, {profile: pJ}, colour key) of every student record and the teacher."""
    out = []
    for i, st in enumerate(rep["student"]):
        out.append((record_name(st["label"]),
                    {p: rep["energy"][p]["student"][i]["total_pj"] for p in rep["profile_order"]},
                    st["label"]))
    if rep["teacher"]:
        out.append(("ANN teacher (as charged)", {p: rep["energy"][p]["teacher"]["total_pj"]
                                                 for p in rep["profile_order"]}, "teacher"))
    return out


def _rows_size(n: int) -> tuple:
    """(figure height in inches, label font size) for ``n`` rows of layers."""
    height = min(MAX_HEIGHT_IN, max(3.0, 0.21 * n + 1.8))
    return height, (8 if n <= 24 else 6.5 if n <= 40 else 5.5)


def _spiking(rec: dict) -> List[dict]:
    return [l for l in rec["layers"] if l["spiking"]]


def _aligned(records: Sequence[dict]) -> tuple:
    """Spiking layer names shared by the panels, relays folded out: (names, relays per
    record label).  A relay (``SRC.relayK``) repeats SRC's spikes K steps later, so its row
    would only repeat SRC's; the panels line up row by row without them."""
    names, relays = [], {}
    for rec in records:
        relays[rec["label"]] = sum(1 for l in _spiking(rec) if _RELAY.search(l["name"]))
        names += [l["name"] for l in _spiking(rec)
                  if not _RELAY.search(l["name"]) and l["name"] not in names]
    return names, relays


def relay_note(relays: dict) -> str:
    folded = {k: v for k, v in relays.items() if v}
    if not folded:
        return ""
    return " (relays not shown: " + ", ".join(f"{v} in {k}" for k, v in folded.items()) + ")"


# --------------------------------------------------------------------------- accuracy
def plot_accuracy(rep: dict):
    """Accuracy per group of like samples (one panel each), bars from 0 %, n and the
    difference to the teacher written beside every bar, the bit-exactness verdict at
    Lava's."""
    groups = [g for g in rep.get("accuracy_groups") or [] if g["models"]]
    if not groups:
        return None
    rows = sum(len(g["models"]) for g in groups)
    fig = figure(9.0, 0.8 + 0.36 * rows + 0.5 * len(groups))
    axes = fig.subplots(len(groups), 1, squeeze=False, sharex=True,
                        height_ratios=[len(g["models"]) + 0.4 for g in groups])[:, 0]
    for ax, g in zip(axes, groups):
        models = g["models"]
        y = np.arange(len(models))
        vals = [100 * m["value"] for m in models]
        ax.barh(y, vals, 0.66, color=[MODEL_COLORS[m["model"]] for m in models])
        teacher = next((m["value"] for m in models if m["model"] == "teacher"), None)
        for i, m in enumerate(models):
            text = f"{100 * m['value']:.2f} %   n = {m['n'] if m['n'] else '?'}"
            if teacher is not None and m["model"] != "teacher":
                text += f"   {100 * (m['value'] - teacher):+.2f} pts vs teacher"
            if m["model"] == "lava" and g.get("bit_exact") is not None:
                text += ("   = emulation bit for bit" if g["bit_exact"]
                         else "   NOT bit-exact to the emulation")
            ax.text(102, i, text, va="center", ha="left", fontsize=8, clip_on=False)
        ax.set_yticks(y)
        ax.set_yticklabels([MODELS[m["model"]] for m in models], fontsize=8)
        ax.set_ylim(len(models) - 0.5, -0.5)
        ax.set_xlim(0, 100)
        ax.set_xticks([0, 20, 40, 60, 80, 100])
        ax.grid(axis="x", **_GRID)
        ax.set_axisbelow(True)
        ax.set_title(_group_title(g), fontsize=9, loc="left")
    axes[-1].set_xlabel("accuracy (%), axis from 0")
    return fig


def _group_title(g: dict) -> str:
    title = g["label"][:1].upper() + g["label"][1:]
    if g.get("bit_exact") is not None:
        title += (f": Lava == emulation bit for bit on {g['n']} samples" if g["bit_exact"]
                  else f": Lava differs from the emulation on {g['n']} samples")
    return title


def plot_accuracy_energy(rep: dict):
    """Accuracy against energy per inference, one panel per profile; this run's points all
    from one accuracy group (like with like), each point labelled with its accuracy and n;
    accuracy axis from 0."""
    pts = (rep.get("accuracy_vs_energy") or {}).get("points") or []
    order = [p for p in rep["profile_order"] if any(p in pt["energy_pj"] for pt in pts)]
    if len(pts) < 2 or not order:
        return None
    from matplotlib.ticker import NullFormatter
    fig = figure(max(6.0, 3.6 * len(order)), 3.6)
    axes = fig.subplots(1, len(order), squeeze=False)[0]
    for ax, prof in zip(axes, order):
        es = [pt["energy_pj"][prof] for pt in pts if pt["energy_pj"].get(prof)]
        unit, scale = energy_unit(max(es) if es else 1.0)
        k_other = 0
        for k, pt in enumerate(pts):
            e = pt["energy_pj"].get(prof)
            if e is None or pt.get("accuracy") is None:
                continue
            model = pt.get("model")
            color = MODEL_COLORS[model] if model else model_color("", k_other + 1)
            k_other += 0 if model else 1
            ax.scatter([e / scale], [100 * pt["accuracy"]], s=42, zorder=3,
                       marker="s" if model == "teacher" else "o" if model else "D",
                       color=color, label=pt["name"] if ax is axes[0] else None)
            short = _SHORT.get(model) or pt["name"].split(":")[0]
            ax.annotate(f"{short} {100 * pt['accuracy']:.2f} %",
                        (e / scale, 100 * pt["accuracy"]), xytext=(5, -4 - 10 * (k % 4)),
                        textcoords="offset points", fontsize=7, color=color, va="top")
        if es and max(es) / min(es) > 20:  # several decades: log axis, major labels only
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        else:
            ax.set_xlim(0, max(es) / scale * 1.25)
        ax.set_ylim(0, 105)
        ax.grid(**_GRID)
        ax.set_axisbelow(True)
        ax.set_xlabel(f"energy per inference ({unit})")
        ax.set_ylabel("accuracy (%), axis from 0")
        ax.set_title(prof, fontsize=9)
    fig.legend(loc="outside lower center", ncol=2, fontsize=7, frameon=False)
    return fig


_SHORT = {"teacher": "teacher", "float": "float", "emulation": "emulation", "lava": "Lava"}


# --------------------------------------------------------------------------- energy
def plot_energy(rep: dict):
    """Energy per inference, one panel per profile (own unit, axis from 0): a bar per model
    in its colour, stacked by part (hatch), total and teacher / student written."""
    from matplotlib.patches import Patch
    order = rep["profile_order"]
    fig = figure(max(6.0, 3.6 * len(order)), 4.8)
    axes = fig.subplots(1, len(order), squeeze=False)[0]
    used = set()
    for ax, prof in zip(axes, order):
        blk = rep["energy"][prof]
        bars = [(s["label"], _short_record(s["label"]), {k: s[k] for k in PART_LABELS},
                 s.get("teacher_over_student")) for s in blk["student"]]
        if blk["teacher"]:
            bars.append(("teacher", f"teacher\n(as {blk['teacher']['charged_as']})",
                         {"macs_pj": blk["teacher"]["total_pj"]}, None))
        top = max(sum(parts.values()) for _, _, parts, _ in bars) or 1.0
        unit, scale = energy_unit(top)
        for i, (label, _, parts, ratio) in enumerate(bars):
            bottom = 0.0
            for key, val in parts.items():
                if val <= 0:
                    continue
                ax.bar(i, val / scale, 0.62, bottom=bottom, color=model_color(label, i),
                       hatch=PART_HATCHES[key], edgecolor="white", linewidth=0.6)
                used.add(key)
                bottom += val / scale
            text = f"{bottom:.4g}"
            if ratio:
                text += f"\n{ratio:.3g}x less" if ratio >= 1 else f"\n{1 / ratio:.3g}x more"
            ax.annotate(text, (i, bottom), xytext=(0, 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=7)
        ax.set_xticks(np.arange(len(bars)))
        ax.set_xticklabels([b[1] for b in bars], fontsize=7)
        ax.set_ylabel(f"energy per inference ({unit})")
        ax.set_ylim(0, top / scale * 1.25)
        ax.grid(axis="y", **_GRID)
        ax.set_axisbelow(True)
        ax.set_title(prof, fontsize=9)
    handles = [Patch(facecolor="#777777", edgecolor="white", hatch=PART_HATCHES[k],
                     label=PART_LABELS[k]) for k in PART_LABELS if k in used]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8,
               frameon=False, title="energy part (hatch); the colour is the model; 'x less' "
               "/ 'x more': the student's energy against the teacher's", title_fontsize=8)
    return fig


def _short_record(label: str) -> str:
    m = model_of(label)
    return {"float": "float\nstudent", "emulation": "integer\nemulation",
            "lava": "Lava"}.get(m, label) + f"\n({label} spikes)"


def plot_ops(rep: dict):
    """Per student layer (rows, top to bottom): its SynOps + MACs beside the MACs of the
    teacher modules paired with it (same stage/block), log scale, relays folded in."""
    rows = rep["layer_match"]
    labels = []
    for r in rows:
        name = r["layer"] + (f" (+{r['relays']} relays)" if r.get("relays") else "")
        if r.get("teacher") and r["student"]:
            name += "  \u2194  " + ", ".join(m.rsplit(".conv", 1)[0] if m.endswith(".conv")
                                             else m for m in r.get("teacher_modules") or
                                             [r["teacher"]])
        labels.append(name if r["student"] else f"(teacher only) {r['layer']}")
    height, fs = _rows_size(len(rows))
    fig = figure(10.0, height + 0.4)
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(rows))
    syn = np.array([r["student_synops"] or 0.0 for r in rows])
    mac = np.array([r["student_macs"] or 0.0 for r in rows])
    tea = np.array([r["teacher_macs"] or 0.0 for r in rows])
    h = 0.4
    color = model_color(rep["student"][0]["label"])
    ax.barh(y - h / 2, syn, h, label="student SynOps", color=color, edgecolor="white",
            linewidth=0.4)
    ax.barh(y - h / 2, mac, h, left=syn, label="student MACs (real-valued input)",
            color=color, hatch=PART_HATCHES["macs_pj"], edgecolor="white", linewidth=0.4)
    if rep["teacher"]:
        ax.barh(y + h / 2, tea, h, label="teacher MACs", color=MODEL_COLORS["teacher"],
                hatch=PART_HATCHES["macs_pj"], edgecolor="white", linewidth=0.4)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=fs)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    positive = [v for v in list(syn + mac) + list(tea) if v > 0]
    if positive and max(positive) / min(positive) > 20:  # counts span decades
        ax.set_xscale("log")
        ax.set_xlim(left=max(0.5, min(positive) / 2), right=max(positive) * 2)
    ax.set_xlabel("operations per inference")
    ax.grid(axis="x", **_GRID)
    ax.set_axisbelow(True)
    name = record_name(rep["student"][0]["label"])
    ax.set_title(f"{name[:1].upper() + name[1:]} vs its teacher counterpart", fontsize=9)
    fig.legend(loc="outside lower center", ncol=3, fontsize=7, frameon=False)
    return fig


# --------------------------------------------------------------------------- activity
def plot_firing(rep: dict):
    """Firing rate per spiking layer (rows), one bar per spike record, rows aligned."""
    records = rep["student"]
    names, relays = _aligned(records)
    height, fs = _rows_size(len(names))
    fig = figure(8.0, height + 0.3)
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(names))
    h = 0.8 / len(records)
    for k, rec in enumerate(records):
        rates = {l["name"]: l["firing_rate"] for l in rec["layers"] if l["spiking"]}
        ax.barh(y + (k - (len(records) - 1) / 2) * h,
                [100 * (rates.get(n) or 0.0) for n in names], h,
                label=record_name(rec["label"]), color=model_color(rec["label"], k))
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=fs)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlim(left=0)
    ax.set_xlabel("firing rate (% of neurons per step)")
    ax.grid(axis="x", **_GRID)
    ax.set_axisbelow(True)
    ax.set_title("Firing rate per layer" + relay_note(relays), fontsize=9)
    fig.legend(loc="outside lower center", ncol=len(records), fontsize=8, frameon=False)
    return fig


def plot_heatmap(rep: dict):
    """Firing rate per layer (rows) and time step (columns), one panel per spike record;
    the same rows in every panel (relays folded out), so torch and Lava line up."""
    records = rep["student"]
    names, relays = _aligned(records)
    height, fs = _rows_size(len(names))
    fig = figure(min(16.0, 4.0 * len(records) + 2.5), height + 0.6)
    axes = fig.subplots(1, len(records), squeeze=False, sharey=True)[0]
    panels = []
    for rec in records:
        by_name = {l["name"]: l for l in _spiking(rec)}
        T = rec["time_steps"]
        panels.append(np.array([[100 * s / by_name[n]["neurons"] for s in
                                 by_name[n]["spikes_by_step"]] if n in by_name
                                else [np.nan] * T for n in names]))
    vmax = max(1.0, max(float(np.nanmax(d)) if np.isfinite(d).any() else 0.0 for d in panels))
    for k, (ax, rec, data) in enumerate(zip(axes, records, panels)):
        im = ax.imshow(data, aspect="auto", cmap="viridis", vmin=0, vmax=vmax,
                       interpolation="nearest")
        ax.set_yticks(np.arange(len(names)))
        ax.set_yticklabels(names, fontsize=fs)
        ax.tick_params(axis="y", labelleft=(k == 0))
        ax.set_xticks(np.arange(data.shape[1]) if data.shape[1] <= 16 else
                      np.linspace(0, data.shape[1] - 1, 9).round())
        ax.set_xlabel("time step")
        if data.size <= 240:  # numbers only where they stay legible
            for (i, j), v in np.ndenumerate(data):
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=min(7, fs),
                            color="white" if v < 0.6 * vmax else "black")
        ax.set_title(record_name(rec["label"]), fontsize=9,
                     color=model_color(rec["label"], k))
    fig.colorbar(im, ax=list(axes), label="% of neurons spiking", shrink=0.8)
    fig.suptitle("Firing rate per layer and time step" + relay_note(relays), fontsize=9)
    return fig


def plot_raster(rep: dict):
    """Spike raster of sample 0: spiking neurons of each layer, from its busiest to its
    quietest (``hardware.energy``'s raster; as many per layer as keep every layer on the
    page, at most :data:`RASTER_ROWS` rows), all layers stacked top to bottom, one row per
    neuron, one column per time step."""
    from matplotlib.colors import ListedColormap
    rec = rep["student"][0]
    layers = [l for l in _spiking(rec) if l.get("raster") and not _RELAY.search(l["name"])]
    if not layers:
        return None
    T = rec["time_steps"]
    keep = max(2, min(max(len(l["raster"]["neurons"]) for l in layers),
                      RASTER_ROWS // len(layers)))
    bands, labels, ticks, rows = [], [], [], 0
    for k, l in enumerate(layers):
        r = l["raster"]
        n = min(keep, len(r["neurons"]))
        band = np.full((n, T), 1.0 if k % 2 else 0.0)  # 0 / 1: silent (shaded by layer)
        for i, steps in enumerate(r["spike_steps"][:n]):
            band[i, [s for s in steps if s < T]] = 2.0  # spike
        bands.append(band)
        ticks.append(rows + (n - 1) / 2)
        rows += n
        if "active" in r:
            shown = min(n, r["active"])
            labels.append(f"{l['name']}: {shown} of its {r['active']:,} spiking "
                          f"(of {l['neurons']:,})" + (f", {n - shown} silent" if n > shown
                                                       else ""))
        else:  # a report of an older version: evenly spaced neurons
            labels.append(f"{l['name']}: {n} evenly spaced of {l['neurons']:,}")
    data = np.vstack(bands)
    fs = _rows_size(len(layers))[1]
    height = min(MAX_HEIGHT_IN, max(3.0, 0.05 * rows + 0.16 * len(layers) + 1.2))
    fig = figure(8.5 if T <= 32 else 10.0, height)
    ax = fig.add_subplot(1, 1, 1)
    color = model_color(rec["label"])
    ax.imshow(data, aspect="auto", interpolation="nearest", vmin=0, vmax=2,
              cmap=ListedColormap(["#ffffff", "#eeeeee", color]),
              extent=(-0.5, T - 0.5, rows - 0.5, -0.5))
    ax.hlines(np.arange(1, rows) - 0.5, -0.5, T - 0.5, color="#ffffff",  # neurons apart
              lw=0.3 if rows <= 120 else 0.15)
    if T <= 64:
        ax.vlines(np.arange(1, T) - 0.5, -0.5, rows - 0.5, color="#ffffff", lw=0.6)
    ax.hlines(np.cumsum([len(b) for b in bands])[:-1] - 0.5, -0.5, T - 0.5,
              color="#666666", lw=0.5)
    ax.set_yticks(ticks)
    ax.set_yticklabels(labels, fontsize=fs)
    ax.tick_params(axis="y", length=0)
    ax.set_xticks(np.arange(T) if T <= 16 else np.linspace(0, T - 1, 9).round())
    ax.set_xlabel("time step")
    ax.set_title(f"Spike raster of sample 0, {record_name(rec['label'])}: a filled cell is a "
                 "spike", fontsize=9)
    return fig


def plot_rates(rep: dict):
    """Distribution of per-neuron firing rates: layers (rows) x 5 % rate bins, colour = share
    of the layer's neurons (log); dead / saturated shares beside each layer's name."""
    from matplotlib.colors import LogNorm
    rec = rep["student"][0]
    layers = [l for l in _spiking(rec) if not _RELAY.search(l["name"])]
    if not layers:
        return None
    height, fs = _rows_size(len(layers))
    fig = figure(9.0, height)
    ax = fig.add_subplot(1, 1, 1)
    data = np.array([100 * np.array(l["rate_histogram"]["counts"]) / max(1, l["neurons"])
                     for l in layers])
    edges = 100 * np.array(layers[0]["rate_histogram"]["edges"])
    shown = np.where(data > 0, data, np.nan)
    im = ax.imshow(shown, aspect="auto", cmap="magma_r", norm=LogNorm(vmin=0.01, vmax=100),
                   extent=(edges[0], edges[-1], len(layers) - 0.5, -0.5),
                   interpolation="nearest")
    ax.set_yticks(np.arange(len(layers)))
    ax.set_yticklabels([f"{l['name']}  dead {100 * l['rate_histogram']['dead_fraction']:.0f}%"
                        f" sat {100 * l['rate_histogram']['saturated_fraction']:.0f}%"
                        for l in layers], fontsize=fs)
    ax.set_xlabel("per-neuron firing rate (% of steps, over all samples)")
    fig.colorbar(im, ax=ax, label="% of the layer's neurons (log)")
    ax.set_title(f"Per-neuron firing rates ({record_name(rec['label'])}); white: no neuron; "
                 "dead: never spikes, sat: spikes every step", fontsize=9)
    return fig


#: figure base name -> the function that draws it
PLOTS = {"accuracy": plot_accuracy, "energy": plot_energy,
         "accuracy_vs_energy": plot_accuracy_energy, "ops_per_layer": plot_ops,
         "firing_rate": plot_firing, "firing_heatmap": plot_heatmap,
         "spike_raster": plot_raster, "rate_distribution": plot_rates}


def draw_all(rep: dict) -> Dict[str, Dict[str, bytes]]:
    """``{base name: {"png", "svg", "pdf": bytes}}`` of every figure there is data for."""
    out = {}
    for name in FIGURES:
        fig = PLOTS[name](rep)
        if fig is not None:
            out[name] = render(fig)
    return out


def figure_size_in(png: bytes) -> Optional[tuple]:
    """(width, height) in inches of a PNG this module wrote (from its pixel size)."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return (int.from_bytes(png[16:20], "big") / PNG_DPI,
            int.from_bytes(png[20:24], "big") / PNG_DPI)
