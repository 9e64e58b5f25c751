"""Hardware parity: float PyTorch student vs integer emulation vs Lava fixed_pt.

For each test sample the folded float graph (``export.graph.run_float``), the
integer emulation of the quantized graph (``export.emulate``) and Lava's
bit-accurate simulation (``hardware.lava_sim``) are run; Lava's spikes come back
aligned by layer depth (Lava adds one step per synapse, T + L steps in all), so
all three compare step by step.  Reported: accuracy of each, prediction
agreement, and per layer and per step the spike agreement (fraction of
(neuron, sample) pairs with the same spike) and the spike counts.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from dataclasses import dataclass


import numpy as np
import torch

from export.emulate import emulate
from export.graph import DeployGraph, run_float
from export.fixed_point import QuantGraph, encode_input
from kd_snn.progress import progress as make_progress

SCHEMA = "kdsnn.parity/1"
PAIRS = (("float", "emulation"), ("emulation", "lava"), ("float", "lava"))


@dataclass
class _Tally:
    """Running sums over samples; merged across jobs."""

    layers: list
    T: int

    def __post_init__(self):
        L, T = len(self.layers), self.T
        self.equal = {p: np.zeros((L, T), np.int64) for p in PAIRS}
        self.total = np.zeros((L, T), np.int64)
        self.counts = {k: np.zeros((L, T), np.int64) for k in ("float", "emulation", "lava")}
        self.pred = {k: [] for k in ("float", "emulation", "lava")}
        self.labels = []

    def add(self, spikes: dict, preds: dict, labels: np.ndarray) -> None:
        for i, name in enumerate(self.layers):
            s = {k: np.asarray(v[name]).astype(np.int64) for k, v in spikes.items()}
            T, B = s["lava"].shape[:2]
            flat = {k: v.reshape(T, B, -1) for k, v in s.items()}
            self.total[i] += B * flat["lava"].shape[2]
            for k, v in flat.items():
                self.counts[k][i] += v.sum(axis=(1, 2))
            for a, b in PAIRS:
                self.equal[(a, b)][i] += (flat[a] == flat[b]).sum(axis=(1, 2))
        for k, v in preds.items():
            self.pred[k].extend(int(p) for p in v)
        self.labels.extend(int(y) for y in labels)

    def merge(self, other: "_Tally") -> None:
        self.total += other.total
        for p in PAIRS:
            self.equal[p] += other.equal[p]
        for k in self.counts:
            self.counts[k] += other.counts[k]
            self.pred[k].extend(other.pred[k])
        self.labels.extend(other.labels)


def _chunk(graph: DeployGraph, qgraph: QuantGraph, layers: list, x: torch.Tensor,
           y: np.ndarray, runner) -> tuple[dict, dict]:
    """One batch through the three executors -> (spikes per executor, predictions)."""
    x = x.to(torch.float64)
    logits_f, spikes_f = run_float(graph, x, record=True)
    x_int = encode_input(x)
    v_e, spikes_e = emulate(qgraph, x_int, record=True)
    v_l, spikes_l = runner.run(x_int)
    spikes = {"float": {n: spikes_f[n] for n in layers}, "emulation": spikes_e,
              "lava": spikes_l}
    preds = {"float": logits_f.argmax(1).numpy(),
             "emulation": np.asarray(v_e).reshape(len(y), -1).argmax(1),
             "lava": np.asarray(v_l).reshape(len(y), -1).argmax(1)}
    return spikes, preds


def _work(graph, qgraph, layers, x, y, batch, conv_model="lava", progress_q=None) -> _Tally:
    from hardware.lava_sim import LavaRunner

    tally = _Tally(layers, qgraph.time_steps)
    with LavaRunner(qgraph, chunk_samples=batch, record=True, conv_model=conv_model) as runner:
        for start in range(0, x.shape[1], batch):
            xb, yb = x[:, start:start + batch], y[start:start + batch]
            spikes, preds = _chunk(graph, qgraph, layers, xb, yb, runner)
            tally.add(spikes, preds, yb)
            if progress_q is not None:
                progress_q.put(("progress", len(yb)))
    return tally


def _job(args, queue):
    torch.set_num_threads(1)  # OpenMP pools do not survive fork (as in DataLoader workers)
    try:
        tally = _work(*args, progress_q=queue)
        queue.put(("done", tally))
    except BaseException as exc:  # reported to the parent, which raises
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def run_parity(graph: DeployGraph, qgraph: QuantGraph, x_seq: torch.Tensor, labels,
               jobs: int = 1, batch: int = 16, progress: bool = True,
               conv_model: str = "lava") -> dict:
    """Compare the three executors on ``x_seq`` ``(T, N, *input_shape)`` in [0, 1].

    ``graph`` is the float graph with the same layers as ``qgraph`` (relays included,
    i.e. ``export.latency.balance_latency`` applied).  ``jobs`` > 1 splits the samples
    over processes, each with its own Lava network; Lava is always stopped.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = x_seq.shape[1]
    layers = [layer.name for layer in qgraph.layers if layer.spiking]
    jobs = max(1, min(int(jobs), n))
    bar = make_progress(total=n, unit="sample", desc="parity (Lava)", enabled=progress, every=10)
    t0 = time.time()
    try:
        if jobs == 1:
            class _Q:
                def put(self, item):
                    bar.update(item[1])
            tally = _work(graph, qgraph, layers, x_seq, labels, batch, conv_model, _Q())
        else:
            tally = _parallel(graph, qgraph, layers, x_seq, labels, batch, conv_model, jobs,
                              bar)
    finally:
        bar.close()
    seconds = time.time() - t0
    result = summarize(tally, qgraph, seconds, jobs)
    result["conv_model"] = conv_model
    return result


def _parallel(graph, qgraph, layers, x_seq, labels, batch, conv_model, jobs, bar) -> _Tally:
    ctx = mp.get_context("fork")  # Lava requires fork; workers inherit the graphs
    queue = ctx.Queue()
    bounds = np.linspace(0, x_seq.shape[1], jobs + 1).astype(int)
    procs = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        args = (graph, qgraph, layers, x_seq[:, a:b], labels[a:b], batch, conv_model)
        p = ctx.Process(target=_job, args=(args, queue), daemon=False)
        p.start()
        procs.append(p)
    tally, finished, error = _Tally(layers, qgraph.time_steps), 0, None
    try:
        while finished < len(procs):
            kind, payload = queue.get()
            if kind == "progress":
                bar.update(payload)
            elif kind == "done":
                tally.merge(payload)
                finished += 1
            else:
                error, finished = payload, finished + 1
        for p in procs:
            p.join()
    finally:
        for p in procs:  # Ctrl-C or error: let workers stop their Lava runtimes
            if p.is_alive():
                os.kill(p.pid, 2)
                p.join(10)
                if p.is_alive():
                    p.terminate()
    if error:
        raise RuntimeError(f"parity worker failed: {error}")
    return tally


def summarize(tally: _Tally, qgraph: QuantGraph, seconds: float, jobs: int) -> dict:
    labels = np.asarray(tally.labels)
    n = len(labels)
    preds = {k: np.asarray(v) for k, v in tally.pred.items()}
    acc = {k: float((v == labels).mean()) if n else 0.0 for k, v in preds.items()}
    agree = {f"{a}_vs_{b}": float((preds[a] == preds[b]).mean()) if n else 0.0
             for a, b in PAIRS}
    layers = []
    for i, name in enumerate(tally.layers):
        entry = {"name": name, "neurons": int(np.prod(qgraph.layer(name).shape)),
                 "agreement": {f"{a}_vs_{b}": (tally.equal[(a, b)][i] / np.maximum(
                     1, tally.total[i])).round(8).tolist() for a, b in PAIRS},
                 "spikes": {k: tally.counts[k][i].tolist() for k in tally.counts},
                 "bit_exact": bool((tally.equal[("emulation", "lava")][i]
                                    == tally.total[i]).all())}
        layers.append(entry)
    return {
        "schema": SCHEMA, "samples": n, "time_steps": qgraph.time_steps,
        "latency_steps": int(max(qgraph.depths().values())),
        "accuracy": acc, "prediction_agreement": agree,
        "bit_exact_emulation_vs_lava": all(l["bit_exact"] for l in layers),
        "layers": layers,
        "lava_seconds": round(seconds, 3), "jobs": jobs,
        "throughput_samples_per_s": round(n / seconds, 3) if seconds > 0 else None,
    }


def markdown(result: dict) -> str:
    acc = result["accuracy"]
    lines = [f"# Hardware parity ({result['samples']} samples, T = {result['time_steps']}, "
             f"Lava latency {result['latency_steps']} steps)", "",
             "| executor | accuracy |", "|---|---|"]
    lines += [f"| {k} | {v * 100:.2f} % |" for k, v in acc.items()]
    lines += ["", "| predictions | agreement |", "|---|---|"]
    lines += [f"| {k.replace('_', ' ')} | {v * 100:.2f} % |"
              for k, v in result["prediction_agreement"].items()]
    lines += ["", f"Emulation == Lava bit for bit at every layer and step: "
              f"**{'yes' if result['bit_exact_emulation_vs_lava'] else 'NO'}**", "",
              "| layer | neurons | spike agreement float/Lava (mean over steps) | "
              "emulation/Lava | spikes float | spikes Lava |", "|---|---|---|---|---|---|"]
    for l in result["layers"]:
        fl = np.mean(l["agreement"]["float_vs_lava"]) * 100
        el = np.mean(l["agreement"]["emulation_vs_lava"]) * 100
        lines.append(f"| {l['name']} | {l['neurons']} | {fl:.3f} % | {el:.3f} % | "
                     f"{sum(l['spikes']['float'])} | {sum(l['spikes']['lava'])} |")
    tp = result.get("throughput_samples_per_s")
    lines += ["", f"Wall time {result['lava_seconds']} s with {result['jobs']} job(s) "
              f"(float + emulation + Lava): {tp} samples/s."]
    stock = result.get("stock_conv_check")
    if stock:
        lines += ["", f"Conv model: kdsnn's vectorised one for the run above; Lava's stock "
                  f"`PyConvModelFixed` on the first {stock['samples']} sample(s) gives the same "
                  f"bits: **{'yes' if stock['bit_exact'] else 'NO'}**."]
    full = result.get("emulation_full_test")
    if full:
        lines += ["", "## Which figure is which", "",
                  f"- Lava-certified: the {result['samples']} samples above, run in Lava's "
                  "fixed_pt simulator and compared with the emulation spike by spike.",
                  f"- Full test split ({full['samples']} samples) in kdsnn's integer "
                  f"emulation (the model of the chip that the Lava run certifies): float "
                  f"{full['float'] * 100:.2f} %, fixed point {full['quantized'] * 100:.2f} %, "
                  f"prediction agreement {full['agreement'] * 100:.2f} %."]
    return "\n".join(lines) + "\n"


def plot(result: dict, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import io

    from kd_snn.io import write_bytes

    names = [l["name"] for l in result["layers"]]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(names) + 3), 3.6))
    for k, (pair, label) in enumerate([("float_vs_lava", "float vs Lava"),
                                       ("emulation_vs_lava", "emulation vs Lava")]):
        vals = [np.mean(l["agreement"][pair]) * 100 for l in result["layers"]]
        ax.bar(x + (k - 0.5) * 0.38, vals, 0.38, label=label)
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_ylabel("spike agreement (%)")
    low = min([np.min(l["agreement"]["float_vs_lava"]) * 100 for l in result["layers"]] + [90])
    ax.set_ylim(max(0, low - 2), 100.5)
    ax.set_title("Per-layer spike agreement with Lava fixed_pt")
    ax.legend(loc="lower left")
    fig.tight_layout()
    buf = io.BytesIO()  # rendered in memory: a full disk is then one write error, not a traceback
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    write_bytes(path, buf.getvalue())
