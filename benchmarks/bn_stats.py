"""Why one logit-KD student of the event ablation collapses in evaluation mode: each trained
student evaluated twice on the same test samples, with its batch-norm running statistics
(evaluation mode, what every accuracy in kdsnn uses) and with the statistics of each test
batch instead.  Equal figures: the running statistics describe the test activity; a gap:
they do not (the weights are fine, the statistics the layers normalise with are not).

    .venv/bin/python benchmarks/bn_stats.py                      # the event ablation's runs
    .venv/bin/python benchmarks/bn_stats.py --samples 1000 --variants logit_kd none

Needs the runs of ``benchmarks/ablation.py --ablation events`` (``runs/ablation_events``,
not committed).  Results: ``benchmarks/results/bn_stats.{json,md}``, rewritten after every
run.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "benchmarks"))

import lava.proc.lif.process  # noqa: E402,F401 - Lava first (multiprocessing start method)

from _common import machine_info, md_table, write_results  # noqa: E402

STEM = "bn_stats"
OUT = ROOT / "benchmarks" / "results"


def accuracies(run_dir: Path, samples: int, batch: int) -> dict:
    """Accuracy with running statistics and with per-batch statistics, same samples."""
    import torch
    from torch.utils.data import Subset

    from kd_snn.rundir import RunDir
    from kd_snn.run import evaluate, load_trained, open_dataset

    run = RunDir(run_dir)
    cfg = run.load_config()
    cfg.data.eval_batch_size = batch
    model, _ = load_trained(run.model_path("student"), expect_spiking=True)
    test = open_dataset(cfg, "test")
    subset = Subset(test, range(min(samples, len(test))))
    running = evaluate(model, subset, cfg, "student", torch.device("cpu"))["accuracy"]
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)):
        bn.track_running_stats, bn.running_mean, bn.running_var = False, None, None
    per_batch = evaluate(model, subset, cfg, "student", torch.device("cpu"))["accuracy"]
    return {"running_stats": running, "batch_stats": per_batch,
            "samples": len(subset), "batch": batch}


def markdown(obj: dict) -> str:
    rows = [[r["variant"], str(r["seed"]), f"{100 * r['running_stats']:.1f} %",
             f"{100 * r['batch_stats']:.1f} %",
             f"{100 * (r['batch_stats'] - r['running_stats']):+.1f} pp"] for r in obj["rows"]]
    m = obj["machine"]
    return "\n".join([
        "# Batch-norm statistics of the event ablation's students", "",
        f"`{obj['command']}` on {m['cpu']}, {m['cores']} cores, {m['date']}: each trained "
        f"student on the first {obj['samples']} test samples (batches of {obj['batch']}), "
        "normalised with its running statistics (evaluation mode) and with each batch's own.",
        "", md_table(["variant", "seed", "running statistics", "batch statistics", "gap"],
                     rows), ""])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=ROOT / "runs" / "ablation_events" /
                   "fashion_mnist_events")
    p.add_argument("--variants", nargs="+", default=["logit_kd", "none"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--batch", type=int, default=200)
    a = p.parse_args()
    import torch
    torch.set_num_threads(2)
    obj = {"command": "python benchmarks/bn_stats.py " + " ".join(sys.argv[1:]),
           "machine": machine_info(), "samples": a.samples, "batch": a.batch, "rows": []}
    for variant in a.variants:
        for seed in a.seeds:
            run = a.root / variant / f"seed{seed}"
            if not (run / "student" / "model.safetensors").is_file():
                print(f"{variant} seed {seed}: no trained student at {run}, skipped")
                continue
            row = {"variant": variant, "seed": seed, **accuracies(run, a.samples, a.batch)}
            obj["rows"].append(row)
            print(f"{variant} seed {seed}: running {row['running_stats']:.4f}, batch "
                  f"{row['batch_stats']:.4f}", flush=True)
            write_results(OUT, STEM, obj, markdown(obj))
    return 0


if __name__ == "__main__":
    sys.exit(main())
