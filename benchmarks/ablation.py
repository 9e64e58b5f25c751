"""The paper's ablations on Fashion-MNIST and its event version (kdsnn ablate).

    nice -n 10 .venv/bin/python benchmarks/ablation.py [--out runs/ablation] [--jobs 2] [--save]

is the first, one-epoch grid: every variant x 3 seeds x {fashion_mnist,
fashion_mnist_events} (``kdsnn ablate runs/ablation --data both --seeds 0 1 2 --jobs 2``);
``--save`` copies OUT/ablation.{md,json,png} to benchmarks/results/ablation_fmnist.*.

    nice -n 19 .venv/bin/python benchmarks/ablation.py --ablation NAME [--save]

runs one converged ablation (NAME in :data:`ABLATIONS`; ``--converged`` = ``--ablation
converged``): first its shared teacher, ``kdsnn teacher --config <teacher config> RUN``
(full 60k training split, 20 epochs; skipped when it exists, resumed when interrupted), then
``kdsnn ablate runs/ablation_NAME --config <base config> --teacher RUN ...`` at the converged
budget (students: first 5000 images, 20 epochs), 3 seeds, and seeds 3 and 4 for a student mode
where some variant's std over those 3 exceeds 1 point. Resumable: rerun the same command.
``--save`` writes benchmarks/results/ablation_NAME.{md,json,png} (partial results too: the
tables say how many runs finished); ``--save-only`` copies them without running anything (for
an ablation stopped part-way). ``--refresh`` recomputes the committed result file's paired
analysis from its runs and rewrites its .json and .md (no training; the plot is unchanged).

- ``converged``  (issue 12) none, logit_kd, nld, samd, samd_nld, camcam; spiking and reference
  students (~90 min on 2 cores);
- ``scaling``    (issue 21) SAMD + NLD with softmax / z-score / L2 scaling and none, paired also
  against samd_nld (softmax), the paper's CIFAR-100 ordering;
- ``spikformer`` (issue 21) none, logit_kd, samd_nld with a Spikformer-1-32 student;
- ``events``     (issues 21, 32) none, logit_kd, nld, samd, samd_nld on fashion_mnist_events,
  with its own event-data teacher (T = 10: the costliest; issue 32's budget: teacher 10 epochs
  on the full 60k, students 10 epochs on the first 5000, the test split evaluated every 5
  epochs; benchmarks/events_epoch.py measures where an epoch goes).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from kdsnn.cli import main as kdsnn_main  # noqa: E402

SPREAD = ["--extra-seeds", "3", "4", "--extra-if-std", "1"]
#: name -> (teacher config, default teacher run, data set, student base config, ablate args)
ABLATIONS = {
    "converged": ("ablation_fmnist_teacher", "runs/fmnist_teacher", "fashion_mnist",
                  "ablation_fmnist_converged",
                  ["--modes", "spiking", "reference", "--variants", "none", "logit_kd", "nld",
                   "samd", "samd_nld", "camcam"]),
    "scaling": ("ablation_fmnist_teacher", "runs/fmnist_teacher", "fashion_mnist",
                "ablation_fmnist_converged",
                ["--variants", "none", "samd_nld", "samd_nld_zscore", "samd_nld_l2",
                 "--reference", "samd_nld"]),
    "spikformer": ("ablation_fmnist_teacher", "runs/fmnist_teacher", "fashion_mnist",
                   "ablation_fmnist_spikformer",
                   ["--variants", "none", "logit_kd", "samd_nld"]),
    "events": ("ablation_fmnist_events_teacher", "runs/fmnist_events_teacher",
               "fashion_mnist_events", "ablation_fmnist_events_converged",
               ["--variants", "none", "logit_kd", "nld", "samd", "samd_nld"]),
}


def train_teacher(config: str, teacher: Path) -> int:
    """The shared teacher, once: skipped when trained, resumed when interrupted."""
    if (teacher / "teacher" / "model.safetensors").is_file():
        return 0
    resume = ["--resume"] if (teacher / "teacher" / "state.safetensors").is_file() else []
    return kdsnn_main(["teacher", "--config", config, "--no-progress", *resume, str(teacher)])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="output directory (resumable; default runs/ablation, "
                                  "runs/ablation_NAME with --ablation NAME)")
    p.add_argument("--ablation", choices=sorted(ABLATIONS),
                   help="one converged ablation (shared 60k teacher)")
    p.add_argument("--converged", action="store_true", help="= --ablation converged")
    p.add_argument("--teacher", help="the shared teacher's run directory (default: "
                                     "runs/fmnist_teacher, runs/fmnist_events_teacher for events)")
    p.add_argument("--seeds", nargs="+", default=["0", "1", "2"], help="seeds (default 0 1 2)")
    p.add_argument("--jobs", type=int, default=2, help="parallel runs (default 2)")
    p.add_argument("--save", action="store_true",
                   help="copy the results to benchmarks/results/<name>.{md,json,png}")
    p.add_argument("--save-only", action="store_true",
                   help="only copy OUT's current results (train nothing)")
    p.add_argument("--refresh", action="store_true",
                   help="recompute the committed results' paired analysis and tables")
    args = p.parse_args()
    which = "converged" if args.converged else args.ablation
    if args.refresh:
        return refresh(HERE / "results" / f"ablation_{which or 'converged'}.json")
    if args.save_only:
        out = Path(args.out or (f"runs/ablation_{which}" if which else "runs/ablation"))
        return save(out, f"ablation_{which}" if which else "ablation_fmnist")
    if which is not None:
        teacher_config, default_teacher, data, config, extra = ABLATIONS[which]
        out, name = Path(args.out or f"runs/ablation_{which}"), f"ablation_{which}"
        teacher = Path(args.teacher or default_teacher)
        rc = train_teacher(teacher_config, teacher)
        if rc != 0:
            return rc
        cmd = ["ablate", str(out), "--data", data, "--config", config, "--teacher",
               str(teacher), *extra, *SPREAD]
    else:
        out, name = Path(args.out or "runs/ablation"), "ablation_fmnist"
        cmd = ["ablate", str(out), "--data", "both"]
    rc = kdsnn_main([*cmd, "--seeds", *args.seeds, "--jobs", str(args.jobs)])
    if (out / "ablation.md").is_file():
        print((out / "ablation.md").read_text())
    if args.save and (out / "ablation.json").is_file():  # partial results are kept too
        save(out, name)
    return rc


def save(out: Path, name: str) -> int:
    if not (out / "ablation.json").is_file():
        print(f"nothing to save: no {out / 'ablation.json'}", file=sys.stderr)
        return 2
    for ext in ("md", "json", "png"):
        shutil.copyfile(out / f"ablation.{ext}", HERE / "results" / f"{name}.{ext}")
    print(f"saved: {HERE / 'results'}/{name}.{{md,json,png}}")
    return 0


def refresh(path: Path) -> int:
    """The paired analysis (and the tables that show it) of a result file written before it
    existed, from the file's own runs; nothing is retrained."""
    from kd_snn import ablate
    from kd_snn.io import transaction, write_json, write_text
    obj = ablate.refresh(json.loads(path.read_text()))
    with transaction():
        write_json(path, obj)
        write_text(path.with_suffix(".md"), ablate.markdown(obj))
    print(f"refreshed: {path} and {path.with_suffix('.md').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
