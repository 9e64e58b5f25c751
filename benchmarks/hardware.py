"""The hardware path at scale: fold -> quantize -> emulate -> NIR -> ONNX -> Lava, per student.

    .venv/bin/python benchmarks/hardware.py                 # all rows, resumable
    .venv/bin/python benchmarks/hardware.py --rows resnet20 --force

Rows: ``cnn`` on digits (8x8), ``resnet8`` and ``resnet20`` width 1 on 28x28x1
(Fashion-MNIST images when the Debian package is installed, else uniform noise), and
``resnet19`` width 8 on 32x32x3 with 100 classes (the paper's student; CIFAR cannot be had
offline, so its inputs are smooth random images).  Weights are random (BatchNorm statistics
randomised), then every spiking layer's threshold is set so that its firing rate on the
calibration images is about ``--rate`` (default 15 %): Lava and SynOps costs depend on the
rates, which are reported per row.

Every measurement runs in its own interpreter (its peak RSS is that of its whole process
tree, Lava's workers included) with a wall-clock limit; a measurement that hits the limit
is recorded as such.  Lava runs with kdsnn's BLAS Conv/Dense
models (``--conv fast``, bit-identical to Lava's stock models) on two batches of B samples
(steady state = the second), and both those models and the models of the code before
(``--baseline int64``: the int64-einsum Conv model) are timed per step on the same
network and inputs in the same run.  The floor is the
same process graph with one neuron per group: what Lava's per-step synchronisation alone
costs.  Results: ``benchmarks/results/hardware.{json,md}``, rewritten after every row.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from _common import machine_info, md_table, write_results  # noqa: E402

ROWS = {
    "cnn": dict(model="cnn", width=1, input_shape=(1, 8, 8), classes=10, data="digits"),
    "resnet8": dict(model="resnet8", width=1, input_shape=(1, 28, 28), classes=10,
                    data="fashion_mnist"),
    "resnet20": dict(model="resnet20", width=1, input_shape=(1, 28, 28), classes=10,
                     data="fashion_mnist"),
    "resnet19": dict(model="resnet19", width=8, input_shape=(3, 32, 32), classes=100,
                     data="smooth_noise"),
}
T = 4
OUT = HERE / "results"


# ---------------------------------------------------------------------------- the student
def _images(row: dict, n: int, offset: int = 0):
    import torch
    shape = row["input_shape"]
    if row["data"] == "digits":
        from kd_snn.data import build_dataset
        ds = build_dataset("digits", "test")
        return torch.stack([ds[i][0] for i in range(offset, offset + n)]).double(), "digits"
    if row["data"] == "fashion_mnist" and Path("/usr/share/datasets/fashion-mnist").is_dir():
        from kd_snn.data import build_dataset
        ds = build_dataset("fashion_mnist", "test")
        return (torch.stack([ds[i][0] for i in range(offset, offset + n)]).double(),
                "Fashion-MNIST test images")
    gen = torch.Generator().manual_seed(1000 + offset)
    if row["data"] == "smooth_noise":  # 4x4 noise upsampled: images with spatial structure
        small = torch.rand((n, shape[0], 4, 4), generator=gen, dtype=torch.float64)
        return (torch.nn.functional.interpolate(small, size=shape[1:], mode="bilinear",
                                                align_corners=False),
                "smooth random images (4x4 noise, bilinear)")
    return torch.rand((n,) + shape, generator=gen, dtype=torch.float64), "uniform noise"


def calibrate_thresholds(graph, x_seq, rate: float):
    """Set each spiking layer's threshold so it fires at about ``rate`` on ``x_seq``.

    Layers are visited in order; a layer's input current does not depend on its own
    threshold, so it is computed once and the threshold found by bisection on the
    neuron update alone.
    """
    import dataclasses

    import numpy as np
    import torch

    from export.graph import INPUT
    from export.quantize import _apply, _float_conns

    T_, B = x_seq.shape[:2]
    outs = {INPUT: x_seq}
    layers = []
    for layer in graph.layers:
        conns = _float_conns(graph, layer)
        current = torch.stack([
            sum(_apply(c, g, outs[c.source][t]) for c, g, _ in conns).reshape(B, *layer.shape)
            for t in range(T_)])
        if not layer.spiking:
            layers.append(layer)
            continue
        alpha, beta = torch.as_tensor(layer.alpha), torch.as_tensor(layer.beta)
        bias = torch.as_tensor(layer.bias)

        def run(th):
            i = torch.zeros_like(current[0])
            v = torch.zeros_like(current[0])
            spikes = []
            for t in range(T_):
                i = alpha * i + current[t]
                v = beta * v + i + bias
                s = (v > th).to(v.dtype)
                v = v * (1 - s)
                spikes.append(s)
            return torch.stack(spikes)

        lo, hi = 1e-6, float(current.abs().max()) * 4 + float(np.abs(layer.bias).max()) + 1e-3
        for _ in range(30):  # rate falls as the threshold rises
            mid = math.sqrt(lo * hi)
            if float(run(mid).mean()) > rate:
                lo = mid
            else:
                hi = mid
        new = dataclasses.replace(layer, threshold=np.full(layer.shape, hi))
        layers.append(new)
        outs[layer.name] = run(hi)
    return dataclasses.replace(graph, layers=tuple(layers))


def build(row: dict, rate: float, calib: int = 16):
    """(balanced float graph, quantized graph, spike rates, data description)."""
    import torch

    from export.fold import fold_student
    from export.latency import balance_latency
    from export.quantize import quantize
    from kd_snn.data.encoding import encode
    from kd_snn.models import create_model
    from kd_snn.models.synthetic import randomise_batchnorm

    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = create_model(row["model"], num_classes=row["classes"],
                         in_channels=row["input_shape"][0], spiking=True, width=row["width"])
    randomise_batchnorm(model, gen)
    model = model.double().eval()
    timing = {}
    t0 = time.perf_counter()
    graph = fold_student(model, row["input_shape"], time_steps=T)
    timing["fold_s"] = time.perf_counter() - t0
    x, what = _images(row, calib)
    x_seq = encode(x, T, "direct").double()
    graph = calibrate_thresholds(graph, x_seq, rate)
    t0 = time.perf_counter()
    balanced = balance_latency(graph)
    q = quantize(balanced, x_seq)
    timing["quantize_s"] = time.perf_counter() - t0
    params = sum(int(c.weight.size) for l in graph.layers for c in l.connections
                 if c.weight is not None)
    neurons = sum(int(math.prod(l.shape)) for l in graph.layers)
    return balanced, q, timing, {"data": what, "parameters": params, "neurons": neurons}


# ---------------------------------------------------------------------------- measurements
def _inputs(row, n, offset):
    from export.fixed_point import encode_input
    from kd_snn.data.encoding import encode
    x, _ = _images(row, n, offset)
    x_seq = encode(x, T, "direct").double()
    return x_seq, encode_input(x_seq)


def measure_compute(row: dict, rate: float, samples: int) -> dict:
    """Fold/quantize times, float and emulation throughput, firing rates, NIR/ONNX export."""
    import tempfile

    from export.emulate import emulate
    from export.graph import run_float
    from export.nir_io import write_nir
    from export.onnx_export import export_onnx_student

    balanced, q, timing, info = build(row, rate)
    x_seq, x_int = _inputs(row, samples, 100)
    run_float(balanced, x_seq[:, :2])
    t0 = time.perf_counter()
    run_float(balanced, x_seq)
    float_sps = samples / (time.perf_counter() - t0)
    emulate(q, x_int[:, :2])
    t0 = time.perf_counter()
    _, spikes = emulate(q, x_int, record=True)
    emu_sps = samples / (time.perf_counter() - t0)
    rates = {k: round(float(v.double().mean()), 4) for k, v in spikes.items()}
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        write_nir(balanced, Path(d) / "s.nir")
        timing["nir_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        try:
            export_onnx_student(balanced, Path(d) / "s.onnx", static_input=True)
            timing["onnx_s"] = time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001 (reported, not fatal)
            timing["onnx_s"] = None
            info["onnx_error"] = f"{type(exc).__name__}: {str(exc)[:120]}"
    return {**info, **{k: round(v, 3) if v is not None else None for k, v in timing.items()},
            "float_samples_per_s": round(float_sps, 3),
            "emulation_samples_per_s": round(emu_sps, 3), "firing_rates": rates,
            "mean_firing_rate": round(sum(rates.values()) / max(1, len(rates)), 4)}


def measure_lava(row: dict, rate: float, samples: int, io: str, conv: str,
                 floor: bool = False) -> dict:
    """Lava: build, first run (compile + samples), steady state, bit-exactness."""
    import lava.proc.lif.process  # noqa: F401

    import torch

    from export.emulate import emulate
    from hardware.lava_sim import LavaRunner

    _, q, _, _ = build(row, rate)
    if floor:
        q = trivial_like(q)
    x_seq, x_int = _inputs(row, 2 * samples, 100)
    if floor:
        x_int = torch.zeros((T, 2 * samples) + tuple(q.input_shape), dtype=torch.int64)
    t0 = time.perf_counter()
    runner = LavaRunner(q, chunk_samples=max(1, samples), record=True, conv_model=conv, io=io)
    build_s = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        v1, s1 = runner.run(x_int[:, :samples])
        first_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        v2, s2 = runner.run(x_int[:, samples:])
        steady_s = time.perf_counter() - t0
        processes = 2 + len(runner.lifs) + len(runner.synapses) + len(runner.sinks)
    finally:
        runner.close()
    v_ref, s_ref = emulate(q, x_int, record=True)
    v = torch.cat([v1, v2]).reshape(v_ref.shape[0], -1)
    exact = bool(torch.equal(v, v_ref.reshape(v.shape)))
    for k in s1:
        exact &= bool(torch.equal(torch.cat([s1[k], s2[k]], 1), s_ref[k]))
    return {"processes": processes, "build_s": round(build_s, 3),
            "first_run_s": round(first_s, 3), "samples": 2 * samples,
            "s_per_sample": round(steady_s / samples, 4),
            "s_per_sample_with_build": round((build_s + first_s) / samples, 4),
            "bit_exact": exact}


def measure_lava_steps(row: dict, rate: float, batch: int, conv: str, steps: int,
                       warmup: int = 4) -> dict:
    """Seconds per Lava step in steady state (after ``warmup`` steps, compile included),
    on the samples' own input ints; a step's cost does not depend on which sample it carries
    (every process computes every step), so seconds per sample at batch B follow as
    s/step x (B + ceil(L/T)) x T / B."""
    import lava.proc.lif.process  # noqa: F401

    from hardware.lava_sim import LavaRunner, to_lava

    _, q, _, _ = build(row, rate)
    _, x_int = _inputs(row, batch, 100)
    feed = to_lava(x_int.numpy().transpose(1, 0, *range(2, x_int.ndim))
                   .reshape((-1,) + tuple(q.input_shape)), q.input_shape)
    runner = LavaRunner(q, chunk_samples=batch, record=True, conv_model=conv, io="shm")
    try:
        runner._segment(feed[:warmup])
        t0 = time.perf_counter()
        runner._segment(feed[warmup:warmup + steps])
        per_step = (time.perf_counter() - t0) / steps
    finally:
        runner.close()
    L = runner.L
    per_sample = per_step * (batch + math.ceil(L / T)) * T / batch
    return {"s_per_step": round(per_step, 4), "steps_timed": steps, "batch": batch,
            "s_per_sample": round(per_sample, 4)}


def trivial_like(q):
    """The same process graph (groups, connections, fan-in, depths) with one neuron each."""
    import dataclasses

    import numpy as np


    layers = []
    for layer in q.layers:
        conns = []
        for c in layer.connections:
            conns.append(dataclasses.replace(
                c, kind="dense", weight=np.ones((1, 1), np.int64), weight_exp=0,
                stride=(1, 1), padding=(0, 0), groups=1))
        one = {k: np.asarray(getattr(layer, k)).reshape(-1)[:1].reshape(1)
               for k in ("bias_mant", "bias_exp") if hasattr(layer, k)}
        layers.append(dataclasses.replace(layer, shape=(1,), connections=tuple(conns), **one))
    return dataclasses.replace(q, input_shape=(1,), layers=tuple(layers))


# ---------------------------------------------------------------------------- workers
def _tree_pss(pgid: int) -> int:
    """Proportional set size of a process group (shared pages of forked workers counted once)."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # field 5 of stat: process group
                with open(f"/proc/{pid}/smaps_rollup") as f:
                    for line in f:
                        if line.startswith("Pss:"):
                            total += int(line.split()[1]) * 1024
                            break
        except (OSError, IndexError, ValueError):
            continue
    return total


def run_measurement(args: list, timeout: float) -> dict:
    """One measurement in a fresh interpreter and process group; peak RSS of the group."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=env, start_new_session=True)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.wait(0.5):
            peak[0] = max(peak[0], _tree_pss(proc.pid))
    threading.Thread(target=sample, daemon=True).start()
    t0 = time.perf_counter()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        done.set()
        return {"timed_out_after_s": round(time.perf_counter() - t0, 1),
                "peak_rss_mb": round(peak[0] / 1e6, 1)}
    finally:
        done.set()
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # Lava workers left behind by a failure
        except ProcessLookupError:
            pass
    for line in out.splitlines()[::-1]:
        if line.startswith("RESULT "):
            res = json.loads(line[7:])
            res["peak_rss_mb"] = round(peak[0] / 1e6, 1)
            res["wall_s"] = round(time.perf_counter() - t0, 1)
            return res
    return {"error": (err.strip().splitlines() or ["no output"])[-1][:300]}


def worker(argv: list) -> None:
    kind, name, rate, samples = argv[:4]
    row = ROWS[name]
    if kind == "compute":
        res = measure_compute(row, float(rate), int(samples))
    elif kind == "steps":
        res = measure_lava_steps(row, float(rate), int(samples), argv[4], int(argv[5]))
    else:
        io, conv, floor = argv[4], argv[5], argv[6] == "1"
        res = measure_lava(row, float(rate), int(samples), io, conv, floor)
    print("RESULT " + json.dumps(res), flush=True)


# ---------------------------------------------------------------------------- table
def save(obj: dict) -> None:
    write_results(OUT, "hardware", obj, markdown(obj))


def _f(v, fmt="{:.3g}"):
    if isinstance(v, bool):
        return "yes" if v else "NO"
    return "-" if v is None else (fmt.format(v) if isinstance(v, (int, float)) else str(v))


MODEL_NAMES = {"fast": "kdsnn's BLAS Conv/Dense models", "lava": "Lava's stock models",
               "int64": "the int64-einsum Conv model (landed before the BLAS models)"}


def markdown(obj: dict) -> str:
    rows = []
    for r in obj["rows"]:
        ratio = (r["lava_s_per_step_baseline"] / r["lava_s_per_step"]
                 if r.get("lava_s_per_step") and r.get("lava_s_per_step_baseline") else None)
        floor = (r["lava_s_per_sample"] / r["lava_floor_s_per_sample"]
                 if r.get("lava_s_per_sample") and r.get("lava_floor_s_per_sample") else None)
        emu = (r["float_samples_per_s"] / r["emulation_samples_per_s"]
               if r.get("emulation_samples_per_s") else None)
        rows.append([
            f"{r['model']} w{r['width']}", "x".join(map(str, r["input_shape"])),
            _f(r.get("parameters"), "{:,}"), _f(r.get("neurons"), "{:,}"), _f(r.get("processes")),
            _f(r.get("mean_firing_rate"), "{:.1%}"), _f(r.get("quantize_s")),
            _f(r.get("lava_build_s")), _f(r.get("float_samples_per_s")),
            _f(r.get("emulation_samples_per_s")), _f(emu, "{:.2f}x"),
            _f(r.get("lava_s_per_sample")), _f(r.get("lava_s_per_sample_with_build")),
            _f(r.get("lava_s_per_step")), _f(r.get("lava_s_per_step_baseline")),
            _f(r.get("lava_s_per_sample_baseline")), _f(ratio, "{:.1f}x"),
            _f(r.get("lava_floor_s_per_sample")), _f(floor, "{:.2f}x"),
            _f(r.get("peak_rss_mb"), "{:.0f}"), _f(r.get("bit_exact")), _f(r.get("samples"))])
    m = obj["meta"]
    now, before = m.get("conv_model", "fast"), m.get("baseline_model", "int64")
    head = ["student", "input", "params", "neurons", "Lava procs", "mean rate",
            "quantize s", "Lava build s", "float samples/s", "emulation samples/s",
            "emulation cost vs float", "Lava s/sample", "Lava s/sample incl. build",
            "Lava s/step", f"Lava s/step before ({before})",
            f"Lava s/sample before ({before}, from s/step)", "speed-up (per step)",
            "Lava floor s/sample", "vs floor", "peak PSS MB", "Lava == emulation",
            "Lava samples"]
    lines = ["# Hardware path at scale", "",
             f"`{m['command']}` — {m['machine']['cpu']}, {m['machine']['cores']} cores, "
             f"{m['machine']['date']}; load average at start {m['machine']['loadavg']}. "
             "All figures depend on the machine and on its load (the ratios less so: both "
             "models ran on the same inputs in the same run).", "",
             md_table(head, rows), "",
             "- Weights: random, BatchNorm statistics randomised, thresholds set per layer for "
             f"a {m['rate']:.0%} firing rate on calibration images; rates per layer in "
             "`hardware.json`. Inputs per row: " + "; ".join(
                 f"{r['model']}: {r.get('data', '-')}" for r in obj["rows"]) + ".",
             f"- Lava: stock fixed_pt LIFReset models, synapses: {MODEL_NAMES.get(now, now)} "
             f"(now) vs {MODEL_NAMES.get(before, before)} (before); both bit-identical to "
             "Lava's stock models (tested); kdsnn's shared-memory source/sinks. 'Lava "
             "s/sample' = the second of two batches of B samples through the same compiled "
             "network (B = 'Lava samples' / 2 per segment), checked bit for bit against the "
             "integer emulation; 'incl. build' = construction + compile + first batch. A batch "
             "of B samples takes (B + ceil(L/T)) x T steps (L = the readout's depth).",
             "- Per step: both models timed over the same steady-state steps of the same "
             "network and inputs (after 4 warm-up steps that include the compile); every "
             "process computes every step, so 'before, s/sample' = its s/step x (B + "
             "ceil(L/T)) x T / B. The speed-up is the per-step ratio (same work).",
             "- Floor: the same process graph (groups, connections, sinks) with one neuron "
             "per group and 1x1 weights: Lava's own per-step cost.",
             "- Peak memory: proportional set size (PSS) of all processes of the Lava "
             "measurement (its workers included), sampled every 0.5 s.", ""]
    for r in obj["rows"]:
        for key in ("baseline_error", "lava_error", "onnx_error"):
            if r.get(key):
                lines.append(f"- {r['model']}: {key.replace('_', ' ')}: {r[key]}")
    return "\n".join(lines) + "\n"


def run_row(name: str, args, old: dict = None) -> dict:
    row = ROWS[name]
    rate, n = str(args.rate), args.samples.get(name, 2)
    out = dict(old or {})
    out.update({"model": row["model"], "width": row["width"],
                "input_shape": list(row["input_shape"]), "classes": row["classes"]})
    print(f"[{name}] compute ...", flush=True)
    comp = run_measurement(["compute", name, rate, str(max(8, 4 * n))], args.timeout)
    out.update({k: v for k, v in comp.items() if k not in ("peak_rss_mb", "wall_s")})
    if args.parts == "compute":
        return out
    print(f"[{name}] Lava (shared-memory I/O) on {2 * n} samples ...", flush=True)
    new = run_measurement(["lava", name, rate, str(n), "shm", args.conv, "0"], args.timeout)
    if "s_per_sample" in new:
        out.update(processes=new["processes"], lava_build_s=new["build_s"],
                   lava_s_per_sample=new["s_per_sample"],
                   lava_s_per_sample_with_build=new["s_per_sample_with_build"],
                   bit_exact=new["bit_exact"], samples=new["samples"],
                   peak_rss_mb=new["peak_rss_mb"])
    else:
        out["lava_error"] = new.get("error") or f"timed out after {new.get('timed_out_after_s')} s"
    print(f"[{name}] Lava floor ...", flush=True)
    fl = run_measurement(["lava", name, rate, str(n), "shm", "lava", "1"], args.timeout)
    out["lava_floor_s_per_sample"] = fl.get("s_per_sample")
    steps = str(args.baseline_steps)
    print(f"[{name}] Lava per step, this model ({args.conv}) ...", flush=True)
    now = run_measurement(["steps", name, rate, str(n), args.conv, steps], args.timeout)
    out["lava_s_per_step"] = now.get("s_per_step")
    print(f"[{name}] Lava per step, before ({args.baseline}) ...", flush=True)
    base = run_measurement(["steps", name, rate, str(n), args.baseline, steps],
                           args.baseline_timeout)
    out.pop("baseline_note", None)
    out.pop("baseline_error", None)
    if "s_per_step" in base:
        out.update(lava_s_per_step_baseline=base["s_per_step"],
                   lava_s_per_sample_baseline=base["s_per_sample"],
                   baseline_steps=base["steps_timed"])
    elif "timed_out_after_s" in base:
        out["baseline_error"] = f"stopped after {base['timed_out_after_s']} s"
    else:
        out["baseline_error"] = base.get("error")
    return out


def _pairs(items: list, default: int) -> dict:
    out = {name: default for name in ROWS}
    for item in items or []:
        k, v = item.split("=")
        out[k] = int(v)
    return out


def main() -> int:
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2:])
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    p.add_argument("--rate", type=float, default=0.15, help="target firing rate per layer")
    p.add_argument("--samples", nargs="*", default=["cnn=16", "resnet8=16", "resnet20=16",
                                                    "resnet19=16"],
                   help="Lava samples per batch (segment; two batches are run), NAME=N")
    p.add_argument("--conv", choices=("fast", "lava", "int64"), default="fast",
                   help="synapse models measured: kdsnn's BLAS 'fast' ones, Lava's stock "
                        "'lava' ones, or 'int64' (the earlier fast Conv model)")
    p.add_argument("--baseline", choices=("fast", "lava", "int64"), default="int64",
                   help="synapse models of the code before (default int64: the landed "
                        "fast Conv model), timed per step beside --conv in the same run")
    p.add_argument("--baseline-steps", type=int, default=8,
                   help="steady-state steps timed per model for the per-step comparison")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per measurement")
    p.add_argument("--baseline-timeout", type=float, default=900)
    p.add_argument("--force", action="store_true", help="re-measure rows already in the file")
    p.add_argument("--parts", choices=("all", "compute"), default="all",
                   help="compute: re-measure only fold/quantize/float/emulation/NIR/ONNX "
                        "(Lava figures of the rows are kept)")
    args = p.parse_args()
    args.samples = _pairs(args.samples, 2)
    path = OUT / "hardware.json"
    old = json.loads(path.read_text()) if path.is_file() else {"rows": []}
    done = {r["model"]: r for r in old.get("rows", [])}
    meta = {"command": "python benchmarks/hardware.py " + " ".join(sys.argv[1:]),
            "machine": machine_info(), "rate": args.rate, "conv_model": args.conv,
            "baseline_model": args.baseline, "T": T}
    obj = {"meta": meta, "rows": [done[ROWS[n]["model"]] for n in ROWS
                                  if ROWS[n]["model"] in done]}
    for name in args.rows:
        if ROWS[name]["model"] in done and not args.force and args.parts == "all":
            print(f"[{name}] already measured (--force to redo)")
            continue
        row = run_row(name, args, done.get(ROWS[name]["model"]))
        done[row["model"]] = row
        obj["rows"] = [done[ROWS[n]["model"]] for n in ROWS if ROWS[n]["model"] in done]
        save(obj)
        print(markdown(obj), flush=True)
    save(obj)
    return 0


if __name__ == "__main__":
    sys.exit(main())
