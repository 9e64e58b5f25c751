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

from export.devices import as_device, exact_kernels
from export.emulate import emulate
from export.graph import DeployGraph, run_float
from export.fixed_point import QuantGraph, encode_input
from hardware.report_format import stock_words
from kd_snn.progress import progress as make_progress

SCHEMA = "kdsnn.parity/1"
PAIRS = (("float", "emulation"), ("emulation", "lava"), ("float", "lava"))


@dataclass
class Tally:
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

    def merge(self, other: "Tally") -> None:
        """Add ``other``'s samples after this tally's (sample order is kept)."""
        self.total += other.total
        for p in PAIRS:
            self.equal[p] += other.equal[p]
        for k in self.counts:
            self.counts[k] += other.counts[k]
            self.pred[k].extend(other.pred[k])
        self.labels.extend(other.labels)

    def to_json(self) -> dict:
        """Integer sums and predictions: what a shard hands to ``--merge``."""
        return {"layers": list(self.layers), "T": self.T, "total": self.total.tolist(),
                "equal": {f"{a}_vs_{b}": self.equal[(a, b)].tolist() for a, b in PAIRS},
                "counts": {k: v.tolist() for k, v in self.counts.items()},
                "pred": {k: list(v) for k, v in self.pred.items()},
                "labels": list(self.labels)}

    @classmethod
    def from_json(cls, obj: dict) -> "Tally":
        """Inverse of ``to_json``; a malformed record raises ValueError."""
        try:
            tally = cls([str(n) for n in obj["layers"]], int(obj["T"]))
            shape = tally.total.shape
            tally.total = _int_array(obj["total"], shape)
            tally.equal = {(a, b): _int_array(obj["equal"][f"{a}_vs_{b}"], shape)
                           for a, b in PAIRS}
            tally.counts = {k: _int_array(obj["counts"][k], shape) for k in tally.counts}
            tally.pred = {k: [int(p) for p in obj["pred"][k]] for k in tally.pred}
            tally.labels = [int(y) for y in obj["labels"]]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a parity tally ({type(exc).__name__})") from None
        if any(len(v) != len(tally.labels) for v in tally.pred.values()):
            raise ValueError("not a parity tally (predictions and labels differ in length)")
        return tally


def _int_array(value, shape: tuple) -> np.ndarray:
    arr = np.asarray(value, dtype=np.int64)
    if arr.shape != shape:
        raise ValueError(f"shape {arr.shape}, expected {shape}")
    return arr


def _chunk(graph: DeployGraph, qgraph: QuantGraph, layers: list, x: torch.Tensor,
           x_int: torch.Tensor, y: np.ndarray, lava: tuple, device=None) -> tuple:
    """One batch (``x``, and ``x_int`` as Lava got it) through float and emulation (on
    ``device``), beside Lava's ``(readout v, spikes)`` of it -> (spikes per executor,
    predictions, Lava's readout v)."""
    dev = as_device(device)
    with exact_kernels(dev):
        logits_f, spikes_f = run_float(graph, x.to(device=dev, dtype=torch.float64),
                                       record=True)
    logits_f, spikes_f = logits_f.cpu(), {k: v.cpu() for k, v in spikes_f.items()}
    v_e, spikes_e = emulate(qgraph, x_int, record=True, device=dev)
    v_l, spikes_l = lava
    spikes = {"float": {n: spikes_f[n] for n in layers}, "emulation": spikes_e,
              "lava": spikes_l}
    preds = {"float": logits_f.argmax(1).numpy(),
             "emulation": np.asarray(v_e).reshape(len(y), -1).argmax(1),
             "lava": np.asarray(v_l).reshape(len(y), -1).argmax(1)}
    return spikes, preds, np.asarray(v_l).reshape(len(y), -1)


def _work(graph, qgraph, layers, x, y, batch, conv_model="fast", progress_q=None,
          keep: int = 0, device=None) -> tuple:
    """Batches through the three executors: ``(tally, spike record of the first `keep`)``."""
    from hardware.lava_sim import LavaRunner
    from hardware.spike_record import empty_record

    tally = Tally(layers, qgraph.time_steps)
    record = empty_record(qgraph) if keep > 0 else None
    starts = range(0, x.shape[1], batch)
    encoded = {}  # batch start -> its integer input, from when Lava is fed until it is tallied

    def feed():
        for a in starts:
            encoded[a] = encode_input(x[:, a:a + batch].to(torch.float64))
            yield encoded[a]

    with LavaRunner(qgraph, chunk_samples=batch, record=True, conv_model=conv_model) as runner:
        for start, lava_out in zip(starts, runner.stream(feed())):  # batches back to back
            xb, yb = x[:, start:start + batch], y[start:start + batch]
            spikes, preds, readout = _chunk(graph, qgraph, layers, xb, encoded.pop(start), yb,
                                            lava_out, device)
            tally.add(spikes, preds, yb)
            if record is not None and start < keep:
                n = min(len(yb), keep - start)
                record.add(readout[:n], {k: v[:, :n] for k, v in spikes["lava"].items()})
            if progress_q is not None:
                progress_q.put(("progress", len(yb)))
    return tally, record


def _job(args, keep, index, queue):
    torch.set_num_threads(1)  # OpenMP pools do not survive fork (as in DataLoader workers)
    try:
        queue.put(("done", (index, *_work(*args, progress_q=queue, keep=keep))))
    except BaseException as exc:  # reported to the parent, which raises
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


@dataclass
class ParityRun:
    """A parity run: ``result`` (parity.json: a function of the samples alone, no timing),
    the integer ``tally`` behind it (what a shard hands to ``--merge``), the Lava spikes of
    its first samples (``record``, for the report) and its wall time."""

    result: dict
    tally: Tally
    record: object
    seconds: float
    jobs: int


def run_parity(graph: DeployGraph, qgraph: QuantGraph, x_seq: torch.Tensor, labels,
               jobs: int = 1, batch: int = 16, progress: bool = True,
               conv_model: str = "fast", keep_spikes: int = 0, device=None) -> ParityRun:
    """Compare the three executors on ``x_seq`` ``(T, N, *input_shape)`` in [0, 1].

    ``graph`` is the float graph with the same layers as ``qgraph`` (relays included,
    i.e. ``export.latency.balance_latency`` applied).  ``jobs`` > 1 splits the samples
    over processes, each with its own Lava network; Lava is always stopped.  Lava's spikes
    of the first ``keep_spikes`` samples are kept (``ParityRun.record``).  ``device``: where
    the float pass and the emulation of each batch compute with ``jobs`` = 1 (Lava is CPU
    code; with ``jobs`` > 1 the comparison runs in the forked Lava workers, on the CPU:
    CUDA does not survive fork).
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = x_seq.shape[1]
    layers = [layer.name for layer in qgraph.layers if layer.spiking]
    jobs = max(1, min(int(jobs), n))
    bar = make_progress(total=n, unit="sample", desc=f"parity (Lava, {conv_model} synapses)",
                        enabled=progress, every=10)
    if progress:  # compiling is part of the first batch: say so before the bar's first mark
        procs = 2 + sum(1 + len(l.connections) + int(l.spiking) for l in qgraph.layers)
        bar.write(f"Lava: {procs} processes x {jobs} job(s), {conv_model} synapse models, on "
                  f"the CPU; the first batch of {min(batch, n)} includes building and "
                  "compiling")
        if as_device(device).type != "cpu":
            bar.write(f"float pass and integer emulation of each batch: on "
                      f"{as_device(device) if jobs == 1 else 'the CPU, in the Lava workers'}")
    t0 = time.time()
    try:
        if jobs == 1:
            class _Q:
                def put(self, item):
                    bar.update(item[1])
            tally, record = _work(graph, qgraph, layers, x_seq, labels, batch, conv_model,
                                  _Q(), keep=keep_spikes, device=device)
        else:
            tally, record = _parallel(graph, qgraph, layers, x_seq, labels, batch,
                                      conv_model, jobs, bar, keep_spikes)
    finally:
        bar.close()
    result = summarize(tally, qgraph)
    result["conv_model"] = conv_model
    return ParityRun(result, tally, record, time.time() - t0, jobs)


def _parallel(graph, qgraph, layers, x_seq, labels, batch, conv_model, jobs, bar,
              keep) -> tuple:
    """Contiguous slices in worker processes; merged back in sample order."""
    ctx = mp.get_context("fork")  # Lava requires fork; workers inherit the graphs
    queue = ctx.Queue()
    bounds = np.linspace(0, x_seq.shape[1], jobs + 1).astype(int)
    procs = []
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        args = (graph, qgraph, layers, x_seq[:, a:b], labels[a:b], batch, conv_model)
        p = ctx.Process(target=_job, args=(args, max(0, keep - a), i, queue), daemon=False)
        p.start()
        procs.append(p)
    parts, finished, error = {}, 0, None
    try:
        while finished < len(procs):
            kind, payload = queue.get()
            if kind == "progress":
                bar.update(payload)
            elif kind == "done":
                parts[payload[0]] = payload[1:]
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
    tally, record = Tally(layers, qgraph.time_steps), None
    for i in range(len(procs)):
        part_tally, part_record = parts[i]
        tally.merge(part_tally)
        if part_record is not None:
            if record is None:
                record = part_record
            else:
                record.extend(part_record)
    return tally, record


def summarize(tally: Tally, qgraph: QuantGraph) -> dict:
    """parity.json's content: a function of the samples alone (no timing), so a run split
    in shards and merged writes the same bytes as one run."""
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
    stock = result.get("stock_conv_check")
    if result.get("conv_model", "lava") == "lava":
        lines += ["", "Synapse models: Lava's stock fixed_pt `PyConvModelFixed` / "
                  "`PyDenseModelBitAcc` throughout."]
    elif stock:
        lines += ["", f"Synapse models: kdsnn's BLAS Conv/Dense models "
                  f"(`{result['conv_model']}`) for the run above; Lava's stock "
                  f"`PyConvModelFixed` / `PyDenseModelBitAcc`, {stock_words(stock)}, give the "
                  f"same outputs: **{'yes' if stock['bit_exact'] else 'NO'}**."]
        if stock.get("mismatches"):
            lines.append(f"Synapses that differ: {', '.join(stock['mismatches'])}.")
    else:
        lines += ["", f"Synapse models: kdsnn's BLAS Conv/Dense models "
                  f"(`{result['conv_model']}`); **not re-checked** with Lava's stock models "
                  "in this run (`--stock-check 0`)."]
    net = result.get("process_network")
    if net:
        lines += ["", f"Process network: built from `{net['file']}` (read with `nir.read`; "
                  f"file sha256 `{net['file_sha256'][:16]}`, integer graph "
                  f"`{net['graph_sha256'][:16]}`)."]
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
