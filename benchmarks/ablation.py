"""The paper's ablations on Fashion-MNIST and its event version (kdsnn ablate).

Every variant (ANN teacher; SNN without KD; logit KD; NLD only; SAMD only; SAMD + NLD with
softmax, z-score and L2-norm scaling; CAM-CAM) x 3 seeds x {fashion_mnist,
fashion_mnist_events}, one fixed budget per data set (kd_snn/configs/ablation_fmnist*.yaml),
on CPU. Resumable: rerun the same command to continue.

    nice -n 10 .venv/bin/python benchmarks/ablation.py [--out runs/ablation] [--jobs 2] [--save]

is the same as ``kdsnn ablate runs/ablation --data both --seeds 0 1 2 --jobs 2``; it prints
the table, and ``--save`` copies OUT/ablation.md and .json to
benchmarks/results/ablation_fmnist.{md,json}.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from kdsnn.cli import main as kdsnn_main  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/ablation", help="output directory (resumable)")
    p.add_argument("--jobs", type=int, default=2, help="parallel runs (default 2)")
    p.add_argument("--save", action="store_true",
                   help="copy the results to benchmarks/results/ablation_fmnist.{md,json}")
    args = p.parse_args()
    rc = kdsnn_main(["ablate", args.out, "--data", "both", "--seeds", "0", "1", "2",
                      "--jobs", str(args.jobs)])
    out = Path(args.out)
    if (out / "ablation.md").is_file():
        print((out / "ablation.md").read_text())
    if args.save and rc == 0:
        for ext in ("md", "json"):
            shutil.copyfile(out / f"ablation.{ext}", HERE / "results" / f"ablation_fmnist.{ext}")
        print(f"saved: {HERE / 'results'}/ablation_fmnist.{{md,json}}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
