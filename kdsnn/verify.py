"""Parity: the run's student as float graph, integer emulation and Lava ``fixed_pt`` process
network on the same test samples, compared spike by spike.

A run compares the three on the first ``samples`` test samples and writes
``RUN/parity/parity.{json,md,png}`` (a function of the samples alone: no timing),
``RUN/parity/lava_spikes.npz`` (Lava's spikes of the first 256 samples, for the report) and
``RUN/parity/run.json`` (wall time, jobs, what was reused).

:func:`parity_shard` runs the K-th of N contiguous, disjoint slices of those samples and
writes only ``RUN/parity/shards/K-of-N.json`` (+ ``.spikes.npz``) under its own lock, so N
shards can run at once on N machines sharing the run directory. :func:`merge_parity` checks
that the N shards cover the samples of one quantized graph and writes the same parity.json /
parity.md a single run writes, byte for byte.
"""
from __future__ import annotations

import re
from typing import Callable, Optional

import numpy as np

from kd_snn import io as kio
from kd_snn.errors import KdsnnError

from .deploy import quantized_network
from .devices import step_device
from .results import ParityResult, ShardResult
from .runs import (QUANT_FILE, RunPath, check_positive, full_test_accuracy,
                   open_trained_run, quant_source, writing)

__all__ = ["parity", "parity_shard", "merge_parity", "parse_shard", "shard_bounds",
           "CONV_MODELS"]

SHARD_SCHEMA = "kdsnn.parity_shard/1"
SHARD_RE = re.compile(r"^(\d+)-of-(\d+)\.json$")
CONV_MODELS = ("fast", "lava")


def parse_shard(text: str) -> tuple:
    """``"K/N"`` -> ``(K, N)`` with 1 <= K <= N."""
    m = re.fullmatch(r"(\d+)/(\d+)", text or "")
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise KdsnnError(f"--shard must be K/N with 1 <= K <= N, got '{text}'")
    return int(m.group(1)), int(m.group(2))


def shard_bounds(n: int, shards: int) -> np.ndarray:
    """Sample index bounds of N contiguous slices (as even as possible)."""
    return np.linspace(0, n, shards + 1).astype(int)


def _check(samples, jobs, batch, stock_check, conv_model, device):
    """Every option checked before any work; returns the device the step computes on."""
    check_positive(samples=samples, jobs=jobs, batch=batch)
    if stock_check < 0:
        raise KdsnnError(f"--stock-check must be >= 0, got {stock_check}")
    if conv_model not in CONV_MODELS:
        raise KdsnnError(f"conv_model must be one of {', '.join(CONV_MODELS)}, got "
                         f"{conv_model!r}")
    return step_device(device)


def parity(run: RunPath, *, samples: int = 100, jobs: int = 1, batch: int = 16,
           conv_model: str = "fast", stock_check: int = 2, full_test: bool = True,
           device: Optional[str] = None, progress: bool = True) -> ParityResult:
    """Float vs integer emulation vs Lava fixed_pt on the first ``samples`` test samples.

    ``conv_model``: ``fast`` (kdsnn's BLAS Conv/Dense process models with the stock
    arithmetic; Lava's stock models then re-check every synapse on the spike trains of the
    first ``stock_check`` samples) or ``lava`` (Lava's stock models throughout); ``jobs``
    parallel Lava processes, ``batch`` samples per Lava segment; ``full_test`` adds the
    integer emulation's accuracy over the whole test split (reused when stored).
    ``device``: where the float pass and the emulation compute (None/``auto``: CUDA when
    present); Lava runs on the CPU."""
    compute_on = _check(samples, jobs, batch, stock_check, conv_model, device)
    import lava.proc.lif.process  # noqa: F401  (fixes the fork start method first)

    run, cfg = open_trained_run(run)
    with writing(run):
        balanced, qgraph, x, y = _inputs(run, cfg, samples, progress, need_export=False)
        pr, stock = _run(balanced, qgraph, x, y, jobs, batch, stock_check, conv_model,
                         progress, 0, x.shape[1], compute_on)
        result = _settle(pr.result, stock)
        timing = {"seconds": round(pr.seconds, 3), "jobs": pr.jobs,
                  "samples_per_s": round(x.shape[1] / pr.seconds, 3) if pr.seconds > 0
                  else None}
        return _publish(run, cfg, full_test, progress, balanced, qgraph, result, pr.record,
                        timing, compute_on)


def parity_shard(run: RunPath, shard: int, shards: int, *, samples: int = 100, jobs: int = 1,
                 batch: int = 16, conv_model: str = "fast", stock_check: int = 2,
                 device: Optional[str] = None, progress: bool = True) -> ShardResult:
    """The ``shard``-th of ``shards`` disjoint slices of :func:`parity`'s samples (needs
    ``export --target lava`` first); writes RUN/parity/shards/K-of-N.json under its own
    lock, so shards run at once on machines sharing the run directory."""
    compute_on = _check(samples, jobs, batch, stock_check, conv_model, device)
    parse_shard(f"{shard}/{shards}")
    import lava.proc.lif.process  # noqa: F401  (fixes the fork start method first)

    run, cfg = open_trained_run(run)
    balanced, qgraph, x, y = _inputs(run, cfg, samples, progress, need_export=True)
    bounds = shard_bounds(x.shape[1], shards)
    lo, hi = int(bounds[shard - 1]), int(bounds[shard])
    if hi <= lo:
        raise KdsnnError(f"shard {shard}/{shards} of {x.shape[1]} samples is empty: use "
                         f"fewer shards")
    with run.lock(name=f".kdsnn-parity-{shard}-of-{shards}.lock", clean=False), \
            kio.transaction():
        pr, stock = _run(balanced, qgraph, x, y, jobs, batch, stock_check, conv_model,
                         progress, lo, hi, compute_on)
        base = run.subdir("parity") / "shards" / f"{shard}-of-{shards}"
        record = {"schema": SHARD_SCHEMA, "shard": shard, "shards": shards,
                  "samples": int(x.shape[1]), "range": [lo, hi],
                  "graph_sha256": qgraph.digest(), "conv_model": conv_model,
                  "stock_conv_check": stock, "tally": pr.tally.to_json(),
                  "seconds": round(pr.seconds, 3), "jobs": pr.jobs,
                  "spikes": pr.record is not None and pr.record.samples > 0}
        kio.write_json(base.with_suffix(".json"), record)
        if record["spikes"]:
            kio.write_bytes(base.with_suffix(".spikes.npz"), pr.record.to_bytes())
    return ShardResult(shard=shard, shards=shards, lo=lo, hi=hi, samples=int(x.shape[1]),
                       seconds=pr.seconds, path=base.with_suffix(".json"))


def merge_parity(run: RunPath, *, full_test: bool = True, device: Optional[str] = None,
                 progress: bool = True) -> ParityResult:
    """Combine RUN/parity/shards/*-of-N.json into parity.json/md: the same bytes one run
    of :func:`parity` over all the shards' samples writes."""
    from hardware import parity as hw_parity
    from hardware.spike_record import SpikeRecord

    compute_on = step_device(device)
    import lava.proc.lif.process  # noqa: F401  (fixes the fork start method first)

    run, cfg = open_trained_run(run)
    with writing(run):
        shards = _read_shards(run)
        n = shards[0].get("samples")
        if not isinstance(n, int) or n <= 0:
            raise KdsnnError("shard 1 is not a kdsnn parity shard (no sample count)")
        balanced, qgraph, _, _ = _inputs(run, cfg, n, progress, need_export=True)
        digest, first = qgraph.digest(), shards[0]
        bounds = shard_bounds(n, len(shards))
        tally, record, seconds = None, None, []
        for k, sh in enumerate(shards, 1):
            where = f"shard {k}/{len(shards)}"
            if sh.get("schema") != SHARD_SCHEMA:
                raise KdsnnError(f"{where} is not a kdsnn parity shard")
            if sh.get("graph_sha256") != digest:
                raise KdsnnError(f"{where} was run on another quantized graph than "
                                 f"'{run.path}/export' holds now: rerun it")
            if sh.get("samples") != n or \
                    sh.get("range") != [int(bounds[k - 1]), int(bounds[k])]:
                raise KdsnnError(f"{where} covers other samples than the other shards "
                                 "(run every shard with the same --samples)")
            if sh.get("conv_model") != first.get("conv_model"):
                raise KdsnnError(f"{where} used other synapse models than shard 1")
            try:
                part = hw_parity.Tally.from_json(sh.get("tally"))
            except ValueError as exc:
                raise KdsnnError(f"{where}: {exc}") from None
            if tally is None:
                tally = part
            else:
                tally.merge(part)
            seconds.append(sh.get("seconds"))
            if sh.get("spikes"):
                path = run.subdir("parity") / "shards" / f"{k}-of-{len(shards)}.spikes.npz"
                try:
                    part_rec = SpikeRecord.from_bytes(kio.read_bytes(path))
                except (OSError, ValueError) as exc:
                    raise KdsnnError(f"'{path}': {exc}") from None
                if record is None:
                    record = part_rec
                elif record.samples == int(bounds[k - 1]):
                    record.extend(part_rec)
        result = hw_parity.summarize(tally, qgraph)
        result["conv_model"] = first.get("conv_model")
        result = _settle(result, first.get("stock_conv_check"))
        timing = {"shards": len(shards), "shard_seconds": seconds,
                  "seconds": round(max(s or 0 for s in seconds), 3), "jobs": None,
                  "samples_per_s": None}
        return _publish(run, cfg, full_test, progress, balanced, qgraph, result, record,
                        timing, compute_on)


# ---- the steps ------------------------------------------------------------------------
def _inputs(run, cfg, samples: int, progress: bool, need_export: bool):
    from kd_snn.run import sample_inputs

    if need_export and not (run.subdir("export") / QUANT_FILE).is_file():
        raise KdsnnError(f"'{run.path}' has no quantized export: run 'kdsnn export "
                         f"{run.path} --target lava' before the shards")
    _, balanced, qgraph = quantized_network(run, progress)
    x, y = sample_inputs(cfg, "test", samples)
    return balanced, qgraph, x, y


def _run(balanced, qgraph, x, y, jobs, batch, stock_check, conv_model, progress,
         lo: int, hi: int, device=None):
    from export.fixed_point import encode_input
    from hardware import parity as hw_parity
    from hardware.spike_record import KEEP_SAMPLES
    from hardware.stock_check import check_synapses

    check = (min(stock_check, hi) if conv_model != "lava" and stock_check > 0
             and lo == 0 else 0)
    keep = max(0, min(KEEP_SAMPLES, x.shape[1]) - lo, check)
    pr = hw_parity.run_parity(balanced, qgraph, x[:, lo:hi], y[lo:hi], jobs=jobs,
                              batch=batch, progress=progress, conv_model=conv_model,
                              keep_spikes=keep, device=device)
    stock = None
    if check:
        if progress:
            print(f"re-checking every synapse with Lava's stock Conv/Dense models on the "
                  f"spike trains of the first {check} sample(s)", flush=True)
        _, spikes = pr.record.first(check)  # Lava's stock models on the run's spike trains
        stock = check_synapses(qgraph, encode_input(x[:, :check]), spikes, conv_model,
                               progress=progress)
    return pr, stock


def _settle(result: dict, stock) -> dict:
    if stock is not None:
        result["stock_conv_check"] = stock
        result["bit_exact_emulation_vs_lava"] &= stock["bit_exact"]
    return result


def _publish(run, cfg, full_test: bool, progress: bool, balanced, qgraph, result, record,
             timing, device=None) -> ParityResult:
    from hardware import parity as hw_parity

    log: Callable[[str], None] = print if progress else (lambda s: None)
    if full_test:
        result["emulation_full_test"] = full_test_accuracy(
            run, cfg, balanced, qgraph, progress=progress, log=log, device=device)
    result["process_network"] = quant_source(run, qgraph)
    out = run.subdir("parity")
    kio.write_json(out / "parity.json", result)
    kio.write_text(out / "parity.md", hw_parity.markdown(result))
    hw_parity.plot(result, out / "parity.png")
    files = [out / "parity.json", out / "parity.md", out / "parity.png"]
    if record is not None and record.samples:
        kio.write_bytes(out / "lava_spikes.npz", record.to_bytes())
        files.append(out / "lava_spikes.npz")
    timing = {**timing, "device": str(device or "cpu")}
    kio.write_json(out / "run.json", {"graph_sha256": qgraph.digest(), **timing})
    files.append(out / "run.json")
    run.update_metrics("parity", {"accuracy": result["accuracy"],
                                  "samples": result["samples"],
                                  "bit_exact": result["bit_exact_emulation_vs_lava"],
                                  "lava_samples_per_s": timing.get("samples_per_s"),
                                  "jobs": timing.get("jobs"),
                                  "conv_model": result.get("conv_model"),
                                  "emulation_full_test": result.get("emulation_full_test")})
    return ParityResult(bit_exact=bool(result["bit_exact_emulation_vs_lava"]),
                        samples=int(result["samples"]), accuracy=dict(result["accuracy"]),
                        files=tuple(files), result=result, timing=timing)


def _read_shards(run) -> list:
    folder = run.subdir("parity") / "shards"
    found = {}
    if folder.is_dir():
        for path in folder.iterdir():
            m = SHARD_RE.match(path.name)
            if m:
                found.setdefault(int(m.group(2)), {})[int(m.group(1))] = path
    if not found:
        raise KdsnnError(f"no parity shards in '{folder}': run 'kdsnn parity {run.path} "
                         "--shard K/N' for K = 1..N first")
    if len(found) > 1:
        raise KdsnnError(f"'{folder}' holds shards of several splits "
                         f"({', '.join(f'N={n}' for n in sorted(found))}): keep one")
    n_shards, paths = next(iter(found.items()))
    missing = sorted(set(range(1, n_shards + 1)) - set(paths))
    if missing:
        raise KdsnnError(f"shard(s) {', '.join(f'{k}/{n_shards}' for k in missing)} missing "
                         f"in '{folder}'")
    return [kio.read_json_object(paths[k], "parity shard") for k in range(1, n_shards + 1)]
