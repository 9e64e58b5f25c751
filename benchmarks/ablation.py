"""The paper's ablations on Fashion-MNIST and its event version (kdsnn ablate).

Every variant (ANN teacher; SNN without KD; logit KD; NLD only; SAMD only; SAMD + NLD with
softmax, z-score and L2-norm scaling; CAM-CAM) x 3 seeds x {fashion_mnist,
fashion_mnist_events}, one fixed budget per data set (kd_snn/configs/ablation_fmnist*.yaml),
on CPU. Resumable: rerun the same command to continue.

    nice -n 10 .venv/bin/python benchmarks/ablation.py [--out runs/ablation] [--jobs 2] [--save]

is the same as ``kdsnn ablate runs/ablation --data both --seeds 0 1 2 --jobs 2``; it prints
the table, and ``--save`` copies OUT/ablation.md and .json to
benchmarks/results/ablation_fmnist.{md,json}.

    nice -n 10 .venv/bin/python benchmarks/ablation.py --converged [--save]

is the converged ablation of issue 12 (about 80 minutes on 2 cores): first the shared
teacher, ``kdsnn teacher --config ablation_fmnist_teacher runs/fmnist_teacher`` (full 60k
training split, 20 epochs; skipped when it exists, resumed when interrupted), then
``kdsnn ablate runs/ablation_converged --config ablation_fmnist_converged --teacher
runs/fmnist_teacher --modes spiking reference`` over 6 variants x 3 seeds, and seeds 3 and
4 for a student mode where some variant's std over those 3 exceeds 1 point; ``--save``
writes benchmarks/results/ablation_converged.{md,json,png}.
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
    p.add_argument("--out", help="output directory (resumable; default runs/ablation, "
                                  "runs/ablation_converged with --converged)")
    p.add_argument("--converged", action="store_true",
                   help="the converged low-data ablation (shared 60k teacher, both modes)")
    p.add_argument("--teacher", default="runs/fmnist_teacher",
                   help="--converged: the shared teacher's run directory")
    p.add_argument("--seeds", nargs="+", default=["0", "1", "2"], help="seeds (default 0 1 2)")
    p.add_argument("--jobs", type=int, default=2, help="parallel runs (default 2)")
    p.add_argument("--save", action="store_true",
                   help="copy the results to benchmarks/results/ablation_fmnist.{md,json}")
    args = p.parse_args()
    if args.converged:
        out, name = Path(args.out or "runs/ablation_converged"), "ablation_converged"
        teacher = Path(args.teacher)
        if not (teacher / "teacher" / "model.safetensors").is_file():
            resume = ["--resume"] if (teacher / "teacher" / "state.safetensors").is_file() \
                else []
            rc = kdsnn_main(["teacher", "--config", "ablation_fmnist_teacher", "--no-progress",
                             *resume, str(teacher)])
            if rc != 0:
                return rc
        cmd = ["ablate", str(out), "--data", "fashion_mnist", "--config",
               "ablation_fmnist_converged", "--teacher", str(teacher), "--modes", "spiking",
               "reference", "--variants", "none", "logit_kd", "nld", "samd", "samd_nld",
               "camcam", "--extra-seeds", "3", "4", "--extra-if-std", "1"]
    else:
        out, name = Path(args.out or "runs/ablation"), "ablation_fmnist"
        cmd = ["ablate", str(out), "--data", "both"]
    rc = kdsnn_main([*cmd, "--seeds", *args.seeds, "--jobs", str(args.jobs)])
    if (out / "ablation.md").is_file():
        print((out / "ablation.md").read_text())
    if args.save and (out / "ablation.json").is_file():  # partial results are kept too
        for ext in ("md", "json", "png"):
            shutil.copyfile(out / f"ablation.{ext}", HERE / "results" / f"{name}.{ext}")
        print(f"saved: {HERE / 'results'}/{name}.{{md,json,png}}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
