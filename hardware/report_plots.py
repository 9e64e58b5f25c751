"""The report's PNG plots, rendered in memory (matplotlib's Agg, no display)."""
from __future__ import annotations

import io
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
