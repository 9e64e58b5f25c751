"""The report's PNG plots, rendered in memory (matplotlib's Agg, no display)."""
from __future__ import annotations

import io
import re
from typing import List, Sequence

import numpy as np

from .report_format import _PNG_META, ACCURACY_LABELS, PART_LABELS, _unit


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
    extra = {"mac_weights": ("all", "MAC weights"), "membrane": ("every_step", "membrane"),
             "readout": ("counted", "readout")}
    return (f"padding {c['padding']}, first layer {c['first_layer']}, zero input "
            f"{c['zero_input']}, neuron updates {c['neuron_updates']}" +
            "".join(f", {label} {c[k]}" for k, (default, label) in extra.items()
                    if c.get(k, default) != default))


MAX_HEIGHT_IN = 14.0  # every per-layer plot stays under 1,400 px tall at 60 layers
_RELAY = re.compile(r"\.relay\d+$")


def _rows_size(n: int) -> tuple:
    """(figure height in inches, label font size) for ``n`` rows of layers."""
    height = min(MAX_HEIGHT_IN, max(3.0, 0.21 * n + 1.8))
    return height, (8 if n <= 24 else 6.5 if n <= 40 else 5.5)


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


def _relay_note(relays: dict) -> str:
    folded = {k: v for k, v in relays.items() if v}
    if not folded:
        return ""
    return " (relays not shown: " + ", ".join(f"{v} in {k}" for k, v in folded.items()) + ")"


def _plot_ops(rep: dict) -> bytes:
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
    fig = _figure(10.0, height + 0.4)
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(rows))
    syn = np.array([r["student_synops"] or 0.0 for r in rows])
    mac = np.array([r["student_macs"] or 0.0 for r in rows])
    tea = np.array([r["teacher_macs"] or 0.0 for r in rows])
    h = 0.4
    ax.barh(y - h / 2, syn, h, label="student SynOps", color="tab:blue")
    ax.barh(y - h / 2, mac, h, left=syn, label="student MACs (real-valued input)",
            color="tab:orange")
    if rep["teacher"]:
        ax.barh(y + h / 2, tea, h, label="teacher MACs", color="tab:red")
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=fs)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    positive = [v for v in list(syn + mac) + list(tea) if v > 0]
    if positive and max(positive) / min(positive) > 20:  # counts span decades
        ax.set_xscale("log")
        ax.set_xlim(left=max(0.5, min(positive) / 2), right=max(positive) * 2)
    ax.set_xlabel("operations per inference")
    ax.grid(axis="x", color="#ddd", lw=0.5)
    ax.set_axisbelow(True)
    ax.set_title(f"Ops per layer: student ({rep['student'][0]['label']}) vs its teacher "
                 f"counterpart\n{_conv_label(rep)}", fontsize=9)
    fig.legend(loc="outside lower center", ncol=3, fontsize=7, frameon=False)
    return _png(fig)


def _plot_firing(records: Sequence[dict]) -> bytes:
    """Firing rate per spiking layer (rows), one bar per spike record, rows aligned."""
    names, relays = _aligned(records)
    height, fs = _rows_size(len(names))
    fig = _figure(8.0, height + 0.3)
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(names))
    h = 0.8 / len(records)
    for k, rec in enumerate(records):
        rates = {l["name"]: l["firing_rate"] for l in rec["layers"] if l["spiking"]}
        ax.barh(y + (k - (len(records) - 1) / 2) * h,
                [100 * (rates.get(n) or 0.0) for n in names], h, label=rec["label"])
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=fs)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlabel("firing rate (% of neurons per step)")
    ax.grid(axis="x", color="#ddd", lw=0.5)
    ax.set_axisbelow(True)
    ax.set_title("Firing rate per layer" + _relay_note(relays), fontsize=9)
    fig.legend(loc="outside lower center", ncol=len(records), fontsize=8, frameon=False)
    return _png(fig)


def _spiking(rec: dict) -> List[dict]:
    return [l for l in rec["layers"] if l["spiking"]]


def _plot_heatmap(records: Sequence[dict]) -> bytes:
    """Firing rate per layer (rows) and time step (columns), one panel per spike record;
    the same rows in every panel (relays folded out), so torch and Lava line up."""
    names, relays = _aligned(records)
    height, fs = _rows_size(len(names))
    fig = _figure(min(16.0, 4.0 * len(records) + 2.5), height + 0.6)
    fig.set_layout_engine("constrained")  # room for the suptitle, labels and colour bar
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
        ax.set_xticks(np.arange(data.shape[1]))
        ax.set_xlabel("time step")
        if data.size <= 240:  # numbers only where they stay legible
            for (i, j), v in np.ndenumerate(data):
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=min(7, fs),
                            color="white" if v < 0.6 * vmax else "black")
        ax.set_title(f"{rec['label']}", fontsize=9)
    fig.colorbar(im, ax=list(axes), label="% of neurons spiking", shrink=0.8)
    fig.suptitle("Firing rate per layer and time step" + _relay_note(relays), fontsize=9)
    return _png(fig)


def _plot_raster(rec: dict) -> bytes:
    """Spikes of a few evenly spaced neurons per layer for sample 0 (fewer neurons per
    layer in deep networks, so the figure stays bounded)."""
    layers = [l for l in _spiking(rec) if l.get("raster") and not _RELAY.search(l["name"])]
    keep = max(2, min(12, 160 // max(1, len(layers))))
    rows = sum(min(keep, len(l["raster"]["neurons"])) for l in layers)
    height = _rows_size(rows // 3 + len(layers) // 2)[0]
    fs = _rows_size(len(layers))[1]
    fig = _figure(8.0, height)
    ax = fig.add_subplot(1, 1, 1)
    y, ticks, labels = 0, [], []
    T = rec["time_steps"]
    for k, l in enumerate(layers):
        r = l["raster"]
        idx = sorted(set(np.linspace(0, len(r["neurons"]) - 1,
                                     min(keep, len(r["neurons"]))).round().astype(int)))
        start = y
        for i in idx:
            steps = r["spike_steps"][i]
            ax.scatter(steps, [y] * len(steps), marker="|", s=60 if rows > 60 else 120,
                       color=f"C{k % 10}")
            y += 1
        ticks.append((start + y - 1) / 2)
        labels.append(f"{l['name']} ({len(idx)} of {l['neurons']})")
        ax.axhline(y - 0.5, color="#ccc", lw=0.5)
    ax.set_yticks(ticks)
    ax.set_yticklabels(labels, fontsize=fs)
    ax.set_xticks(np.arange(T))
    ax.set_xlim(-0.5, T - 0.5)
    ax.set_ylim(-0.5, max(0.5, y - 0.5))
    ax.invert_yaxis()
    ax.set_xlabel("time step")
    ax.set_title(f"Spike raster, sample 0 ({rec['label']}), evenly spaced neurons", fontsize=9)
    fig.tight_layout()
    return _png(fig)


def _plot_rates(rec: dict) -> bytes:
    """Distribution of per-neuron firing rates: layers (rows) x 5 % rate bins, colour = share
    of the layer's neurons (log); dead / saturated shares beside each layer's name."""
    from matplotlib.colors import LogNorm
    layers = [l for l in _spiking(rec) if not _RELAY.search(l["name"])]
    height, fs = _rows_size(len(layers))
    fig = _figure(9.0, height)
    ax = fig.add_subplot(1, 1, 1)
    data = np.array([100 * np.array(l["rate_histogram"]["counts"]) / max(1, l["neurons"])
                     for l in layers])
    edges = 100 * np.array(layers[0]["rate_histogram"]["edges"]) if layers else np.arange(2)
    shown = np.where(data > 0, data, np.nan)
    im = ax.imshow(shown, aspect="auto", cmap="magma_r", norm=LogNorm(vmin=0.01, vmax=100),
                   extent=(edges[0], edges[-1], len(layers) - 0.5, -0.5),
                   interpolation="nearest")
    ax.set_yticks(np.arange(len(layers)))
    ax.set_yticklabels([f"{l['name']}  dead {100 * l['rate_histogram']['dead_fraction']:.0f}%"
                        f" sat {100 * l['rate_histogram']['saturated_fraction']:.0f}%"
                        for l in layers], fontsize=fs)
    ax.set_xlabel("per-neuron firing rate (% of steps, over all samples)")
    fig.colorbar(im, ax=ax, label="% of the layer's neurons (log; white: none)")
    ax.set_title(f"Per-neuron firing rates ({rec['label']}); dead = never spikes, "
                 "sat = spikes every step", fontsize=9)
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
