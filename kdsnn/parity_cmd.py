"""``kdsnn parity``: one run, a shard of one (``--shard K/N``), or the merge of the shards.

A run compares float / integer emulation / Lava on the first ``--samples`` test samples
and writes ``RUN/parity/parity.{json,md,png}`` (a function of the samples alone: no
timing), ``RUN/parity/lava_spikes.npz`` (Lava's spikes of the first 256 samples, for
``kdsnn report``) and ``RUN/parity/run.json`` (wall time, jobs, what was reused).

``--shard K/N`` runs the K-th of N contiguous, disjoint slices of those samples and writes
only ``RUN/parity/shards/K-of-N.json`` (+ ``.spikes.npz``) under its own lock, so N
shards can run at once on N machines sharing the run directory.  ``--merge`` checks that
the N shards cover the samples of one quantized graph and writes the same parity.json /
parity.md a single run writes, byte for byte.
"""
from __future__ import annotations

import re

import numpy as np

from kd_snn import io as kio
from kd_snn.errors import KdsnnError

SHARD_SCHEMA = "kdsnn.parity_shard/1"
SHARD_RE = re.compile(r"^(\d+)-of-(\d+)\.json$")


def parse_shard(text: str) -> tuple:
    m = re.fullmatch(r"(\d+)/(\d+)", text or "")
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise KdsnnError(f"--shard must be K/N with 1 <= K <= N, got '{text}'")
    return int(m.group(1)), int(m.group(2))


def shard_bounds(n: int, shards: int) -> np.ndarray:
    """Sample index bounds of N contiguous slices (as even as possible)."""
    return np.linspace(0, n, shards + 1).astype(int)


def _stock_check(qgraph, x, pr, k: int, conv_model: str, progress: bool) -> dict:
    """Lava's stock Conv/Dense models on the spike trains of the run's first ``k`` samples,
    synapse by synapse (``hardware.stock_check``)."""
    from export.quantize import encode_input
    from hardware.stock_check import check_synapses

    _, spikes = pr.record.first(k)
    return check_synapses(qgraph, encode_input(x[:, :k]), spikes, conv_model,
                          progress=progress)


def _settle(result: dict, stock) -> dict:
    if stock is not None:
        result["stock_conv_check"] = stock
        result["bit_exact_emulation_vs_lava"] &= stock["bit_exact"]
    return result


def parity_command(args) -> int:
    import lava.proc.lif.process  # noqa: F401  (fixes the fork start method first)

    from kdsnn.common import _positive, _run_for_export

    _positive(samples=args.samples, jobs=args.jobs, batch=args.batch)
    if args.stock_check < 0:
        raise KdsnnError(f"--stock-check must be >= 0, got {args.stock_check}")
    if args.shard and args.merge:
        raise KdsnnError("--shard and --merge exclude each other")
    shard = parse_shard(args.shard) if args.shard else None
    conv_model = "lava" if args.stock_models else args.conv_model
    run, cfg = _run_for_export(args)
    if shard:
        return _shard(run, cfg, args, shard, conv_model)
    from kdsnn.common import writing
    with writing(run):
        if args.merge:
            out = _merge(run, cfg, args)
        else:
            out = _single(run, cfg, args, conv_model)
    _print_summary(*out)
    return 0


def _inputs(run, cfg, args, need_export: bool):
    from export.pipeline import sample_inputs
    from kdsnn.common import _load_quant_or_make

    if need_export and not (run.subdir("export") / "student.quant.nir").is_file():
        raise KdsnnError(f"'{run.path}' has no quantized export: run 'kdsnn export "
                         f"{run.path} --target lava' before the shards")
    _, balanced, qgraph = _load_quant_or_make(run, not args.no_progress)
    x, y = sample_inputs(cfg, "test", args.samples)
    return balanced, qgraph, x, y


def _run(balanced, qgraph, x, y, args, conv_model, lo: int, hi: int):
    from hardware import parity
    from hardware.spike_record import KEEP_SAMPLES

    check = (min(args.stock_check, hi) if conv_model != "lava" and args.stock_check > 0
             and lo == 0 else 0)
    keep = max(0, min(KEEP_SAMPLES, x.shape[1]) - lo, check)
    pr = parity.run_parity(balanced, qgraph, x[:, lo:hi], y[lo:hi], jobs=args.jobs,
                           batch=args.batch, progress=not args.no_progress,
                           conv_model=conv_model, keep_spikes=keep)
    stock = None
    if check:
        if not args.no_progress:
            print(f"re-checking every synapse with Lava's stock Conv/Dense models on the "
                  f"spike trains of the first {check} sample(s)", flush=True)
        stock = _stock_check(qgraph, x, pr, check, conv_model, not args.no_progress)
    return pr, stock


def _single(run, cfg, args, conv_model) -> tuple:
    balanced, qgraph, x, y = _inputs(run, cfg, args, need_export=False)
    pr, stock = _run(balanced, qgraph, x, y, args, conv_model, 0, x.shape[1])
    result = _settle(pr.result, stock)
    timing = {"seconds": round(pr.seconds, 3), "jobs": pr.jobs,
              "samples_per_s": round(x.shape[1] / pr.seconds, 3) if pr.seconds > 0 else None}
    return _publish(run, cfg, args, balanced, qgraph, result, pr.record, timing)


def _publish(run, cfg, args, balanced, qgraph, result, record, timing) -> tuple:
    from export.pipeline import full_test_accuracy
    from hardware import parity
    from kd_snn.io import write_bytes, write_json, write_text

    if args.full_test:
        result["emulation_full_test"] = full_test_accuracy(
            run, cfg, balanced, qgraph, progress=not args.no_progress,
            log=(lambda s: None) if args.no_progress else print)
    from kdsnn.common import quant_source

    result["process_network"] = quant_source(run, qgraph)
    out = run.subdir("parity")
    write_json(out / "parity.json", result)
    write_text(out / "parity.md", parity.markdown(result))
    parity.plot(result, out / "parity.png")
    if record is not None and record.samples:
        write_bytes(out / "lava_spikes.npz", record.to_bytes())
    write_json(out / "run.json", {"graph_sha256": qgraph.digest(), **timing})
    run.update_metrics("parity", {"accuracy": result["accuracy"],
                                  "samples": result["samples"],
                                  "bit_exact": result["bit_exact_emulation_vs_lava"],
                                  "lava_samples_per_s": timing.get("samples_per_s"),
                                  "jobs": timing.get("jobs"),
                                  "conv_model": result.get("conv_model"),
                                  "emulation_full_test": result.get("emulation_full_test")})
    return result, timing, out


# ---- shards ---------------------------------------------------------------------------
def _shard(run, cfg, args, shard: tuple, conv_model: str) -> int:
    from kd_snn.io import write_bytes, write_json

    k, n_shards = shard
    balanced, qgraph, x, y = _inputs(run, cfg, args, need_export=True)
    bounds = shard_bounds(x.shape[1], n_shards)
    lo, hi = int(bounds[k - 1]), int(bounds[k])
    if hi <= lo:
        raise KdsnnError(f"shard {k}/{n_shards} of {x.shape[1]} samples is empty: use "
                         f"fewer shards")
    with run.lock(name=f".kdsnn-parity-{k}-of-{n_shards}.lock", clean=False), \
            kio.transaction():
        pr, stock = _run(balanced, qgraph, x, y, args, conv_model, lo, hi)
        base = run.subdir("parity") / "shards" / f"{k}-of-{n_shards}"
        record = {"schema": SHARD_SCHEMA, "shard": k, "shards": n_shards,
                  "samples": int(x.shape[1]), "range": [lo, hi],
                  "graph_sha256": qgraph.digest(), "conv_model": conv_model,
                  "stock_conv_check": stock, "tally": pr.tally.to_json(),
                  "seconds": round(pr.seconds, 3), "jobs": pr.jobs,
                  "spikes": pr.record is not None and pr.record.samples > 0}
        write_json(base.with_suffix(".json"), record)
        if record["spikes"]:
            write_bytes(base.with_suffix(".spikes.npz"), pr.record.to_bytes())
    print(f"parity shard {k}/{n_shards}: samples {lo}..{hi - 1} of {x.shape[1]}, "
          f"{pr.seconds:.1f} s -> {base.with_suffix('.json')}; when all {n_shards} are done: "
          f"kdsnn parity {run.path} --merge")
    return 0


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


def _merge(run, cfg, args) -> tuple:
    from hardware import parity
    from hardware.spike_record import SpikeRecord

    shards = _read_shards(run)
    balanced, qgraph, _, _ = _inputs(run, cfg, argparse_samples(args, shards), True)
    digest, first = qgraph.digest(), shards[0]
    n = first.get("samples")
    bounds = shard_bounds(n, len(shards)) if isinstance(n, int) and n > 0 else None
    tally, record, seconds = None, None, []
    for k, sh in enumerate(shards, 1):
        where = f"shard {k}/{len(shards)}"
        if sh.get("schema") != SHARD_SCHEMA:
            raise KdsnnError(f"{where} is not a kdsnn parity shard")
        if sh.get("graph_sha256") != digest:
            raise KdsnnError(f"{where} was run on another quantized graph than "
                             f"'{run.path}/export' holds now: rerun it")
        if sh.get("samples") != n or bounds is None or \
                sh.get("range") != [int(bounds[k - 1]), int(bounds[k])]:
            raise KdsnnError(f"{where} covers other samples than the other shards "
                             "(run every shard with the same --samples)")
        if sh.get("conv_model") != first.get("conv_model"):
            raise KdsnnError(f"{where} used other synapse models than shard 1")
        try:
            part = parity._Tally.from_json(sh.get("tally"))
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
    result = parity.summarize(tally, qgraph)
    result["conv_model"] = first.get("conv_model")
    result = _settle(result, first.get("stock_conv_check"))
    timing = {"shards": len(shards), "shard_seconds": seconds,
              "seconds": round(max(s or 0 for s in seconds), 3), "jobs": None,
              "samples_per_s": None}
    return _publish(run, cfg, args, balanced, qgraph, result, record, timing)


def argparse_samples(args, shards: list):
    """``args`` with ``--samples`` taken from the shards (merge reads the same samples)."""
    import copy
    merged = copy.copy(args)
    n = shards[0].get("samples")
    if not isinstance(n, int) or n <= 0:
        raise KdsnnError("shard 1 is not a kdsnn parity shard (no sample count)")
    merged.samples = n
    return merged


def _print_summary(result: dict, timing: dict, out) -> None:
    acc = result["accuracy"]
    full = result.get("emulation_full_test")
    if full:
        print(f"integer emulation on the whole test split ({full['samples']} samples): "
              f"fixed point {full['quantized'] * 100:.2f}% (float {full['float'] * 100:.2f}%)")
    from hardware.report_format import stock_words

    stock = result.get("stock_conv_check")
    models = ("Lava's stock models" if result.get("conv_model") == "lava" else
              f"kdsnn's BLAS synapse models; Lava's stock Conv/Dense models "
              f"{stock_words(stock)}: {'bit-exact' if stock['bit_exact'] else 'MISMATCH'}"
              if stock else "kdsnn's BLAS synapse models, NOT re-checked with the stock models")
    speed = (f"; {timing['samples_per_s']} samples/s" if timing.get("samples_per_s") else
             f"; merged from {timing['shards']} shards" if timing.get("shards") else "")
    print(f"parity on {result['samples']} samples: float {acc['float'] * 100:.2f}%, emulation "
          f"{acc['emulation'] * 100:.2f}%, Lava {acc['lava'] * 100:.2f}%; emulation == Lava "
          f"bit for bit: {'yes' if result['bit_exact_emulation_vs_lava'] else 'NO'} "
          f"({models}){speed}  -> {out / 'parity.md'}")
    net = result.get("process_network")
    if net:
        print(f"Lava's process network was built from {net['file']} (read with nir.read; "
              f"sha256 {net['file_sha256'][:12]}, integer graph {net['graph_sha256'][:12]})")
