"""The paper's ablations (arXiv 2511.06902) as one resumable, fixed-budget experiment.

    kdsnn ablate OUT [--data both] [--seeds 0 1 2] [--variants ...] [--set KEY=VALUE]
                     [--jobs N] [--config NAME_OR_YAML]

For every data set and seed, one ANN teacher is trained (variant ``teacher``) and shared
by that seed's spiking students, one per distillation variant (see :data:`VARIANTS`).
Every run is an ordinary run directory::

    OUT/<data>/<variant>/seed<k>/          (config.yaml, metrics.json, teacher|student/...)
    OUT/ablation.json                      every run: test accuracy, config, budget, timing
    OUT/ablation.md                        mean +- std over seeds per variant, with the budget

Every variant of a data set gets the same budget: the data set's base config (shipped
``ablation_fmnist`` for static data, ``ablation_fmnist_events`` for event data, or
``--config``) with the ``--set`` overrides, then only the variant's loss keys and the seed
changed.  Both result files are rewritten (atomically) whenever a run finishes.

Rerunning the same command skips finished runs and resumes an interrupted one from its
``state.safetensors``; a run directory that holds a different config is refused.
``--jobs N`` runs independent runs in N worker processes (``python -m kd_snn.ablate``),
each with ``max(1, cores // N)`` torch threads; students wait for their teacher.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from . import config as C
from .errors import KdsnnError
from .io import write_json, write_text
from .rundir import RunDir

FORMAT = 1
WORKER = "_worker"
FAIL_ENV = "KDSNN_FAIL_AT_STEP"  # test hook (as in the CLI): crash after a checkpoint
BOTH = ("fashion_mnist", "fashion_mnist_events")
DEFAULT_SEEDS = (0, 1, 2)
BASE_STATIC, BASE_EVENT = "ablation_fmnist", "ablation_fmnist_events"

#: variant -> (description, config keys it sets). ``teacher`` is the ANN teacher stage.
VARIANTS: dict[str, tuple[str, dict]] = {
    "teacher": ("ANN teacher (CE)", {}),
    "none": ("SNN, no KD (CE only)", {"loss.preset": "none"}),
    "logit_kd": ("CE + logit KD (Hinton)", {"loss.preset": "logit_kd"}),
    "nld": ("CE + NLD only", {"loss.preset": "nld"}),
    "samd": ("CE + SAMD only (softmax)", {"loss.preset": "samd", "loss.samd_scaling": "softmax"}),
    "samd_nld": ("CE + SAMD + NLD (paper; softmax)",
                 {"loss.preset": "samd_nld", "loss.samd_scaling": "softmax"}),
    "samd_nld_zscore": ("CE + SAMD (z-score scaling) + NLD",
                        {"loss.preset": "samd_nld", "loss.samd_scaling": "zscore"}),
    "samd_nld_l2": ("CE + SAMD (L2-norm scaling) + NLD",
                    {"loss.preset": "samd_nld", "loss.samd_scaling": "l2"}),
    "camcam": ("CE + CAM-CAM", {"loss.preset": "camcam"}),
}
#: keys the runner sets itself; ``--set`` may not touch them
RESERVED = ("seed", "name", "data.name", "loss.preset", "loss.samd_scaling")


# --------------------------------------------------------------------------- plan

@dataclass(eq=False)
class Task:
    data: str
    variant: str
    seed: int
    path: Path
    cfg: C.Config
    teacher: Optional["Task"] = None
    status: str = "pending"  # pending, running, done, failed, blocked
    resumed: bool = False
    result: dict = field(default_factory=dict)
    error: Optional[str] = None

    @property
    def stage(self) -> str:
        return "teacher" if self.variant == "teacher" else "student"

    @property
    def key(self) -> str:
        return f"{self.data}/{self.variant}/seed{self.seed}"

    @property
    def run(self) -> RunDir:
        return RunDir(self.path)

    @property
    def teacher_path(self) -> Optional[Path]:
        return None if self.teacher is None else self.teacher.run.model_path("teacher")


def _datasets(names: list[str]) -> list[str]:
    from .data import list_datasets
    known = list_datasets()
    out: list[str] = []
    for name in names:
        for n in (BOTH if name == "both" else (name,)):
            key = str(n).strip().lower().replace("-", "_")
            if key not in known:
                raise KdsnnError(f"--data: unknown data set {n!r} (choose both, "
                                 f"{', '.join(known)})")
            if key not in out:
                out.append(key)
    return out


def _variants(names: Optional[list[str]]) -> list[str]:
    if not names:
        return list(VARIANTS)
    for n in names:
        if n not in VARIANTS:
            raise KdsnnError(f"--variants: unknown variant {n!r} (choose from "
                             f"{', '.join(VARIANTS)})")
    wanted = set(names) | {"teacher"}  # students need their teacher
    return [v for v in VARIANTS if v in wanted]


def _seeds(seeds: Optional[list[int]]) -> list[int]:
    seeds = list(DEFAULT_SEEDS if seeds is None else seeds)
    if not seeds:
        raise KdsnnError("--seeds: give at least one seed")
    if any(s < 0 for s in seeds):
        raise KdsnnError(f"--seeds must be >= 0, got {seeds}")
    if len(set(seeds)) != len(seeds):
        raise KdsnnError(f"--seeds has duplicates: {seeds}")
    return seeds


def _check_overrides(overrides: list[str]) -> None:
    for item in overrides:
        if "=" not in item:
            raise KdsnnError(f"--set '{item}' must look like key.sub=value")
        key = item.split("=", 1)[0].strip()
        if key in RESERVED or any(key.startswith(r + ".") for r in RESERVED):
            raise KdsnnError(f"--set {key} is set by the ablation itself (use --data, "
                             f"--seeds, --variants)")


def base_config(data: str, config: Optional[str], overrides: list[str]) -> dict:
    """The raw config every run of ``data`` starts from (seed and loss not yet set)."""
    from .data import dataset_spec
    if config is None:
        config = BASE_EVENT if dataset_spec(data).kind == "event" else BASE_STATIC
    raw = C.apply_overrides(C.load_yaml(config), overrides)
    raw = C.apply_overrides(raw, [f"data.name={data}"])
    C.from_dict(raw)  # validate once, with a one-line error
    return raw


def plan(out: Path, datasets: list[str], seeds: list[int], variants: list[str],
         config: Optional[str], overrides: list[str]) -> list[Task]:
    tasks: list[Task] = []
    for data in datasets:
        raw = base_config(data, config, overrides)
        for seed in seeds:
            teacher = None
            for variant in variants:
                sets = {"seed": seed, "name": f"ablation-{data}-{variant}-seed{seed}",
                        **VARIANTS[variant][1]}
                cfg = C.from_dict(C.apply_overrides(raw, [f"{k}={v}" for k, v in sets.items()]))
                task = Task(data, variant, seed, out / data / variant / f"seed{seed}", cfg,
                            teacher=teacher)
                if variant == "teacher":
                    teacher = task
                tasks.append(task)
    return tasks


def _check_existing(task: Task) -> None:
    """Refuse a run directory made with another config; mark finished runs done."""
    run = task.run
    if run.config_path.is_file():
        try:
            old = run.load_config().to_dict()
        except KdsnnError:
            old = None
        if old != task.cfg.to_dict():
            raise KdsnnError(f"'{run.path}' holds a run with a different config (other budget "
                             f"or --set?): use another OUT directory or delete it")
    metrics = run.read_metrics().get(task.stage, {})
    if run.has_model(task.stage) and metrics.get("test_accuracy") is not None:
        task.status = "done"
        task.result = _result(task)


def _result(task: Task) -> dict:
    m = task.run.read_metrics().get(task.stage, {})
    extra_path = task.path / "ablate_run.json"
    extra = json.loads(extra_path.read_text()) if extra_path.is_file() else {}
    return {"test_accuracy": m.get("test_accuracy"),
            "best_test_accuracy": m.get("best_test_accuracy"),
            "epochs": m.get("epochs"), "train_seconds": m.get("train_seconds"),
            "wall_seconds": extra.get("wall_seconds"),
            "cpu_seconds": extra.get("cpu_seconds"), "resumed": extra.get("resumed", False)}


# --------------------------------------------------------------------------- execution

def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _fail_at() -> Optional[int]:
    value = os.environ.get(FAIL_ENV)
    return int(value) if value else None


def train_one(run_path, stage: str, teacher_path=None, threads: Optional[int] = None) -> dict:
    """Train (or resume) one stage of a prepared run directory (its config.yaml)."""
    import torch
    from .trainer import Stage

    run = RunDir(run_path)
    cfg = run.load_config()
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        with run.lock():
            resume = run.state_path(stage).is_file()
            final = Stage(run, cfg, stage, teacher_path=teacher_path, progress=False,
                          fail_at_step=_fail_at()).fit(resume=resume)
    finally:
        torch.set_num_threads(previous)
    return final


def _record(task: Task, wall: float, cpu: float) -> None:
    """Accumulate the run's wall and CPU seconds (over resumes) in RUN/ablate_run.json."""
    path = task.path / "ablate_run.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    write_json(path, {"wall_seconds": round(old.get("wall_seconds", 0.0) + wall, 2),
                      "cpu_seconds": round(old.get("cpu_seconds", 0.0) + cpu, 2),
                      "resumed": bool(old.get("resumed") or task.resumed)})


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _prepare(task: Task) -> None:
    task.run.path.mkdir(parents=True, exist_ok=True)
    task.run.save_config(task.cfg)
    task.resumed = task.run.state_path(task.stage).is_file()


class Runner:
    """Runs the plan, ``jobs`` at a time, and rewrites the result files after each run."""

    def __init__(self, out: Path, tasks: list[Task], jobs: int, meta: dict,
                 echo=print):
        self.out, self.tasks, self.jobs, self.meta, self.echo = out, tasks, jobs, meta, echo
        self.threads = max(1, _cores() // jobs)
        self.t0 = time.time()
        self.ran = 0

    # scheduling ------------------------------------------------------------------------
    def _ready(self) -> Optional[Task]:
        for task in self.tasks:
            if task.status != "pending":
                continue
            if task.teacher is None or task.teacher.status == "done":
                return task
            if task.teacher.status in ("failed", "blocked"):
                task.status, task.error = "blocked", f"teacher {task.teacher.key} failed"
        return None

    def run(self) -> dict:
        self.write()
        if self.jobs == 1:
            self._run_inline()
        else:
            self._run_processes()
        self.write()
        return self.summary_all()

    def _run_inline(self) -> None:
        while (task := self._ready()) is not None:
            _prepare(task)
            task.status = "running"
            t, cpu = time.time(), time.process_time()
            log = task.path / "ablate.log"
            try:
                with open(log, "a") as fh, contextlib.redirect_stdout(fh):
                    train_one(task.path, task.stage, task.teacher_path, self.threads)
            except KdsnnError as exc:
                self._finish(task, time.time() - t, time.process_time() - cpu, error=str(exc))
                continue
            self._finish(task, time.time() - t, time.process_time() - cpu)

    def _run_processes(self) -> None:
        running: dict[Task, tuple[subprocess.Popen, float, object]] = {}
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads),
                   MKL_NUM_THREADS=str(self.threads))
        try:
            while True:
                while len(running) < self.jobs and (task := self._ready()) is not None:
                    _prepare(task)
                    task.status = "running"
                    fh = open(task.path / "ablate.log", "a")
                    cmd = [sys.executable, "-m", "kd_snn.ablate", WORKER, str(task.path),
                           task.stage, str(task.teacher_path or "-"), str(self.threads)]
                    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
                    running[task] = (proc, time.time(), fh)
                if not running:
                    break
                time.sleep(0.2)
                for task, (proc, t, fh) in list(running.items()):
                    cpu = _children_cpu()  # grows only when a child is reaped (by poll)
                    if proc.poll() is None:
                        continue
                    cpu = _children_cpu() - cpu
                    fh.close()
                    del running[task]
                    error = None
                    if proc.returncode != 0:
                        error = _last_error(task.path / "ablate.log", proc.returncode)
                    self._finish(task, time.time() - t, cpu, error=error)
        finally:
            for task, (proc, _, fh) in running.items():  # interrupted: stop our workers
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
                fh.close()

    def _finish(self, task: Task, wall: float, cpu: float, error: Optional[str] = None) -> None:
        _record(task, wall, cpu)
        if error is not None:
            task.status, task.error = "failed", error
            if task.variant == "teacher":  # same config for every run: stop at once
                self.write()
                raise KdsnnError(f"{task.key} failed: {error}")
        else:
            task.status = "done"
            task.result = _result(task)
        self.ran += 1
        self.write()
        self.echo(self.progress_line(task, wall))

    # results ---------------------------------------------------------------------------
    def summary(self, data: str) -> dict:
        out = {}
        for v in VARIANTS:
            accs = [t.result["test_accuracy"] for t in self.tasks
                    if t.data == data and t.variant == v and t.status == "done"]
            if any(t.data == data and t.variant == v for t in self.tasks):
                out[v] = stats(accs)
        return out

    def summary_all(self) -> dict:
        return {d: self.summary(d) for d in self.meta["datasets"]}

    def progress_line(self, task: Task, wall: float) -> str:
        done = sum(t.status == "done" for t in self.tasks)
        head = f"[{done}/{len(self.tasks)}] {task.key}"
        if task.status == "done":
            head += (f": {100 * task.result['test_accuracy']:.2f}% in {wall:.0f} s"
                     + (" (resumed)" if task.resumed else ""))
        else:
            head += f": FAILED ({task.error})"
        cells = [f"{v} {_fmt(s, short=True)}" for v, s in self.summary(task.data).items()
                 if s["n"]]
        return head + " | " + ", ".join(cells)

    def write(self) -> None:
        runs = []
        for t in self.tasks:
            if t.status in ("done", "failed", "blocked"):
                entry = {"data": t.data, "variant": t.variant, "seed": t.seed,
                         "status": t.status, "run_dir": str(t.path),
                         "config": t.cfg.to_dict()}
                if t.status == "done":
                    entry.update(t.result)
                else:
                    entry["error"] = t.error
                runs.append(entry)
        per_data = {}
        for d in self.meta["datasets"]:
            cfg = next(t.cfg for t in self.tasks if t.data == d)
            per_data[d] = {"budget": budget(cfg), "model": cfg.student.model,
                           "width": cfg.student.width, "time_steps": cfg.data.time_steps,
                           "encoding": cfg.data.encoding, "summary": self.summary(d)}
        obj = {"format": FORMAT, **self.meta, "variants_described": {
                   v: VARIANTS[v][0] for v in self.meta["variants"]},
               "complete": all(t.status == "done" for t in self.tasks),
               "finished_runs": sum(t.status == "done" for t in self.tasks),
               "total_runs": len(self.tasks),
               "elapsed_seconds_this_invocation": round(time.time() - self.t0, 1),
               "jobs": self.jobs, "threads_per_job": self.threads,
               "datasets_detail": per_data, "runs": runs}
        write_json(self.out / "ablation.json", obj)
        write_text(self.out / "ablation.md", markdown(obj))


def _last_error(log: Path, code: int) -> str:
    try:
        lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
    except OSError:
        lines = []
    for ln in reversed(lines):
        if ln.startswith("kdsnn: error:"):
            return ln[len("kdsnn: error:"):].strip()
    tail = lines[-1].strip() if lines else ""
    return f"worker exited with code {code}" + (f": {tail}" if tail else "")


# --------------------------------------------------------------------------- tables

def stats(values: list) -> dict:
    vals = [float(v) for v in values if v is not None]
    n = len(vals)
    mean = statistics.fmean(vals) if n else None
    std = statistics.stdev(vals) if n > 1 else None
    return {"mean": mean, "std": std, "n": n, "values": vals}


def _fmt(s: dict, short: bool = False) -> str:
    if not s["n"]:
        return "–"
    m = 100 * s["mean"]
    if s["std"] is None:
        return f"{m:.1f}" if short else f"{m:.2f} ± –"
    return f"{m:.1f}±{100 * s['std']:.1f}" if short else f"{m:.2f} ± {100 * s['std']:.2f}"


def budget(cfg: C.Config) -> dict:
    """The training budget every variant of a data set shares."""
    def stage(tc: C.TrainConfig) -> dict:
        return {"epochs": tc.epochs, "optimizer": tc.optimizer, "lr": tc.lr,
                "weight_decay": tc.weight_decay, "scheduler": tc.scheduler,
                "warmup_epochs": tc.warmup_epochs}
    limit = cfg.data.options.get("limit")
    return {"train_samples": int(limit) if limit is not None else "all",
            "test_samples": "all (full test split)", "batch_size": cfg.data.batch_size,
            "augment": cfg.data.augment, "teacher": stage(cfg.teacher),
            "student": stage(cfg.student), "data_options": dict(cfg.data.options)}


def _budget_text(b: dict) -> str:
    def st(s):
        return (f"{s['epochs']} epoch{'s' if s['epochs'] != 1 else ''}, {s['optimizer']} "
                f"lr {s['lr']:g} wd {s['weight_decay']:g}, {s['scheduler']}")
    n = b["train_samples"]
    train = "full train split" if n == "all" else f"first {n} training samples"
    return (f"{train}, batch {b['batch_size']}, augment {'on' if b['augment'] else 'off'}; "
            f"student {st(b['student'])}; teacher {st(b['teacher'])}; "
            f"evaluated on the full test split")


def _mean_of(runs: list, key: str) -> str:
    vals = [r[key] for r in runs if r.get(key)]
    return f"{statistics.fmean(vals):.0f}" if vals else ""


def markdown(obj: dict) -> str:
    lines = ["# kdsnn ablation: SAMD + NLD (arXiv 2511.06902) and baselines", "",
             f"Command: `{obj['command']}`  ",
             f"Runs finished: {obj['finished_runs']}/{obj['total_runs']}"
             + ("" if obj["complete"] else " (in progress or incomplete)")
             + f"; seeds {' '.join(map(str, obj['seeds']))}; {obj['jobs']} job(s) x "
             f"{obj['threads_per_job']} thread(s).  ",
             "Metric: top-1 accuracy on the full test split after the last epoch; "
             "mean ± sample std over seeds (n runs); Δ = difference of means to `none`.  ",
             f"Compute: {sum(r.get('cpu_seconds') or 0 for r in obj['runs']):.0f} CPU s over "
             f"all runs; the last invocation took {obj['elapsed_seconds_this_invocation']:.0f} "
             f"s wall.", ""]
    by_key = {}
    for r in obj["runs"]:
        by_key.setdefault((r["data"], r["variant"]), []).append(r)
    for d, det in obj["datasets_detail"].items():
        lines += [f"## {d}", "",
                  f"- data: `{d}`, encoding {det['encoding']}, T = {det['time_steps']}",
                  f"- model: `{det['model']}` width {det['width']} (ANN teacher and spiking "
                  f"student)",
                  f"- budget (identical for every student variant): "
                  f"{_budget_text(det['budget'])}", "",
                  "| variant | objective | test acc. % (mean ± std) | n | Δ vs none (pp) "
                  "| wall s / run | CPU s / run |", "|---|---|---|---|---|---|---|"]
        base = det["summary"].get("none", {})
        for v in [v for v in VARIANTS if v in det["summary"]]:  # JSON keys come sorted
            s = det["summary"][v]
            delta = ""
            if v not in ("none", "teacher") and s["n"] and base.get("n"):
                delta = f"{100 * (s['mean'] - base['mean']):+.2f}"
            done = [r for r in by_key.get((d, v), []) if r["status"] == "done"]
            secs = [_mean_of(done, k) for k in ("wall_seconds", "cpu_seconds")]
            lines.append(f"| {v} | {VARIANTS[v][0]} | {_fmt(s)} | {s['n']} | {delta} | "
                         f"{secs[0]} | {secs[1]} |")
        failed = [r for r in obj["runs"] if r["data"] == d and r["status"] != "done"]
        for r in failed:
            lines.append(f"\n{r['variant']} seed {r['seed']}: {r['status']} ({r['error']})")
        lines.append("")
    return "\n".join(lines)


def _worker(argv: list[str]) -> int:
    run_path, stage, teacher, threads = argv
    logging.getLogger("kdsnn").setLevel(logging.INFO)
    try:
        train_one(run_path, stage, None if teacher == "-" else teacher, int(threads))
    except KdsnnError as exc:
        print(f"kdsnn: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m kd_snn.ablate _worker ...``: one run in a worker process (the command
    itself is ``kdsnn ablate``, in the app layer ``kdsnn.commands``)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != [WORKER]:
        print("kdsnn: error: use 'kdsnn ablate' (this module only runs worker processes)",
              file=sys.stderr)
        return 2
    return _worker(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
