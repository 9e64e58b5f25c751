"""The paper's ablations (arXiv 2511.06902) as one resumable, fixed-budget experiment.

    kdsnn ablate OUT [--data both] [--seeds 0 1 2] [--variants ...] [--set KEY=VALUE]
                     [--modes spiking reference] [--teacher RUN] [--jobs N]
                     [--config NAME_OR_YAML]

For every data set and seed, one ANN teacher is trained (variant ``teacher``) and shared
by that seed's spiking students, one per distillation variant (see :data:`VARIANTS`) and
student mode (see :data:`MODES`); ``--teacher RUN`` instead gives every student one
teacher trained beforehand (for example on more data than the students see).
Every run is an ordinary run directory::

    OUT/<data>/<variant>/seed<k>/          (config.yaml, metrics.json, teacher|student/...)
    OUT/<data>/<mode>/<variant>/seed<k>/   students of a mode other than ``spiking``
    OUT/ablation.json                      every run: test accuracy, curve, config, timing
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
import functools
import json
import logging
import math
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
from .io import write_bytes, write_json, write_text
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
#: student mode -> (description, config keys it sets after ``--set``). ``reference`` is
#: the authors' student (SinoLeu/CKDSNN): analog (ReLU) last block, fc-fc head, T = 1, hard
#: reset with gradient, triangle surrogate, batch-global SAMD normalisation, teacher
#: BatchNorm in train mode, CAM-CAM on the detached student classifier.
MODES: dict[str, tuple[str, dict]] = {
    "spiking": ("fully spiking student (kdsnn default)", {}),
    "reference": ("reference-code student (ReLU last block, T = 1)", {
        "student.last_block": "relu", "student.head": "reference", "data.time_steps": 1,
        "neuron.detach_reset": False, "neuron.surrogate": "triangle", "neuron.width": 1,
        "loss.samd_norm": "batch", "loss.teacher_mode": "train", "loss.camcam_detach": True}),
}
DEFAULT_MODES = ("spiking",)
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
    mode: str = "spiking"
    external_teacher: Optional[Path] = None  # --teacher: one trained teacher for all
    status: str = "pending"  # pending, running, done, failed, blocked; conditional ->
    #                          pending or not_needed (an extra seed, see Runner._decide)
    resumed: bool = False
    result: dict = field(default_factory=dict)
    error: Optional[str] = None

    @property
    def stage(self) -> str:
        return "teacher" if self.variant == "teacher" else "student"

    @property
    def group(self) -> str:
        """Runs compared in one table: a data set, and the student mode unless default."""
        return group_name(self.data, self.mode)

    @property
    def key(self) -> str:
        return f"{self.group}/{self.variant}/seed{self.seed}"

    @property
    def run(self) -> RunDir:
        return RunDir(self.path)

    @property
    def teacher_path(self) -> Optional[Path]:
        if self.external_teacher is not None:
            return self.external_teacher
        return None if self.teacher is None else self.teacher.run.model_path("teacher")


def group_name(data: str, mode: str) -> str:
    return data if mode == "spiking" else f"{data}/{mode}"


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


def _variants(names: Optional[list[str]], external_teacher: bool = False) -> list[str]:
    """The variants to run; ``teacher`` joins them unless ``--teacher`` brings one."""
    if not names:
        names = list(VARIANTS)
    for n in names:
        if n not in VARIANTS:
            raise KdsnnError(f"--variants: unknown variant {n!r} (choose from "
                             f"{', '.join(VARIANTS)})")
    if external_teacher:
        students = [v for v in VARIANTS if v in names and v != "teacher"]
        if not students:
            raise KdsnnError("--teacher gives the students a trained teacher: name at least "
                             "one student variant")
        return students
    wanted = set(names) | {"teacher"}  # students need their teacher
    return [v for v in VARIANTS if v in wanted]


def _modes(names: Optional[list[str]]) -> list[str]:
    names = list(DEFAULT_MODES if not names else names)
    for n in names:
        if n not in MODES:
            raise KdsnnError(f"--modes: unknown student mode {n!r} (choose from "
                             f"{', '.join(MODES)})")
    if len(set(names)) != len(names):
        raise KdsnnError(f"--modes has duplicates: {names}")
    return names


def check_teacher_fits(info: dict, datasets: list[str]) -> None:
    """--teacher must have been trained for every data set's classes and channels."""
    from .data import dataset_spec
    for data in datasets:
        spec = dataset_spec(data)
        if (info.get("num_classes"), info.get("in_channels")) != \
                (spec.num_classes, spec.in_channels):
            raise KdsnnError(f"--teacher '{info['path']}' was trained for "
                             f"{info.get('num_classes')} classes / {info.get('in_channels')} "
                             f"channels ({info.get('data')}); data set '{data}' has "
                             f"{spec.num_classes} / {spec.in_channels}")


def teacher_info(path) -> tuple[Path, dict]:
    """Check a ``--teacher`` checkpoint (an ANN) and describe it for the result files."""
    from .io import sha256_file
    from .run import load_trained, resolve_checkpoint
    model_path = resolve_checkpoint(path)
    _, meta = load_trained(model_path, expect_spiking=False)
    metrics = meta.get("metrics", {}) if isinstance(meta.get("metrics"), dict) else {}
    cfg = meta.get("config", {}) if isinstance(meta.get("config"), dict) else {}
    model = meta.get("model", {})
    limit = (cfg.get("data", {}).get("options", {}) or {}).get("limit")
    info = {"path": str(path), "sha256": sha256_file(model_path),
            "model": model.get("name"), "width": model.get("width"),
            "num_classes": model.get("num_classes"), "in_channels": model.get("in_channels"),
            "data": meta.get("data"), "train_samples": train_samples(limit),
            "epochs": metrics.get("epochs"), "train_seconds": metrics.get("train_seconds"),
            "test_accuracy": metrics.get("test_accuracy"),
            "best_test_accuracy": metrics.get("best_test_accuracy"),
            "curve": read_curve(model_path.parent / "metrics.csv")}
    return model_path, info


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


def train_samples(limit) -> object:
    """A ``data.options.limit`` as the result files state it: an int, or "all"."""
    return int(limit) if limit is not None else "all"


def _sets(sets: dict) -> list[str]:
    return [f"{k}={'true' if v is True else 'false' if v is False else v}"
            for k, v in sets.items()]


def plan(out: Path, datasets: list[str], seeds: list[int], variants: list[str],
         config: Optional[str], overrides: list[str], modes: Optional[list[str]] = None,
         external_teacher: Optional[Path] = None) -> list[Task]:
    """Every run, teachers first: a seed's teacher is shared by all its students' modes."""
    tasks: list[Task] = []
    modes = list(modes or DEFAULT_MODES)
    for data in datasets:
        raw = base_config(data, config, overrides)
        for seed in seeds:
            teacher = None
            for mode in modes:
                mode_raw = C.apply_overrides(raw, _sets(MODES[mode][1]))
                for variant in variants:
                    if variant == "teacher" and teacher is not None:
                        continue  # one teacher per seed, whatever the modes
                    # the teacher is the ANN of the base config: no mode touches it
                    task_mode = "spiking" if variant == "teacher" else mode
                    group = group_name(data, task_mode)
                    name = "-".join(["ablation", *group.split("/"), variant, f"seed{seed}"])
                    sets = {"seed": seed, "name": name, **VARIANTS[variant][1]}
                    cfg = C.from_dict(C.apply_overrides(
                        raw if variant == "teacher" else mode_raw, _sets(sets)))
                    task = Task(data, variant, seed, out / group / variant / f"seed{seed}",
                                cfg, teacher=teacher, mode=task_mode,
                                external_teacher=external_teacher)
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
    recorded = _run_record(task).get("teacher")
    if recorded is not None and recorded != _teacher_key(task):
        raise KdsnnError(f"'{run.path}' holds a student of another teacher ({recorded}): use "
                         f"another OUT directory or delete it")
    metrics = run.read_metrics().get(task.stage, {})
    if run.has_model(task.stage) and metrics.get("test_accuracy") is not None:
        task.status = "done"
        task.result = _result(task)


def read_curve(csv_path: Path) -> list:
    """Test accuracy after every epoch, from a stage's metrics.csv ([] if absent)."""
    import csv
    try:
        with open(csv_path, newline="") as fh:
            return [float(row["test_acc"]) for row in csv.DictReader(fh)]
    except (OSError, KeyError, ValueError):
        return []


def _result(task: Task) -> dict:
    m = task.run.read_metrics().get(task.stage, {})
    extra = _run_record(task)
    return {"test_accuracy": m.get("test_accuracy"),
            "best_test_accuracy": m.get("best_test_accuracy"),
            "epochs": m.get("epochs"), "train_seconds": m.get("train_seconds"),
            "curve": read_curve(task.run.stage_dir(task.stage) / "metrics.csv"),
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
    old = _run_record(task)
    write_json(path, {**old, "wall_seconds": round(old.get("wall_seconds", 0.0) + wall, 2),
                      "cpu_seconds": round(old.get("cpu_seconds", 0.0) + cpu, 2),
                      "resumed": bool(old.get("resumed") or task.resumed)})


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str) -> str:
    from .io import sha256_file
    return sha256_file(path)


def _teacher_key(task: Task) -> Optional[str]:
    """What a student distils from: --teacher's file hash, or its seed's teacher run."""
    if task.stage != "student":
        return None
    if task.external_teacher is not None:
        return "sha256:" + _file_sha256(str(task.external_teacher))
    return "per-seed:" + str(task.teacher.path) if task.teacher is not None else None


def _run_record(task: Task) -> dict:
    path = task.path / "ablate_run.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _prepare(task: Task) -> None:
    task.run.path.mkdir(parents=True, exist_ok=True)
    task.run.save_config(task.cfg)
    task.resumed = task.run.state_path(task.stage).is_file()
    if task.stage == "student":
        write_json(task.path / "ablate_run.json",
                   {**_run_record(task), "teacher": _teacher_key(task)})


class Runner:
    """Runs the plan, ``jobs`` at a time, and rewrites the result files after each run."""

    def __init__(self, out: Path, tasks: list[Task], jobs: int, meta: dict,
                 echo=print, extra_if_std: Optional[float] = None):
        self.out, self.tasks, self.jobs, self.meta, self.echo = out, tasks, jobs, meta, echo
        self.extra_if_std = extra_if_std
        self.threads = max(1, _cores() // jobs)
        self.t0 = time.time()
        self.ran = 0

    # scheduling ------------------------------------------------------------------------
    def base_spread(self, group: str) -> Optional[float]:
        """The largest std (pp) over the group's variants on its base seeds, once every
        base student of the group has finished (None before)."""
        base = [t for t in self.tasks if t.group == group and t.variant != "teacher"
                and t.seed in self.meta["seeds"]]
        if any(t.status in ("pending", "running") for t in base):
            return None
        spreads = []
        for v in {t.variant for t in base}:
            s = stats([t.result["test_accuracy"] for t in base
                       if t.variant == v and t.status == "done"])
            spreads.append(100 * s["std"] if s["std"] is not None else 0.0)
        return max(spreads, default=0.0)

    def _needs_more(self, group: str) -> Optional[bool]:
        if self.extra_if_std is None or not self.meta.get("extra_seeds"):
            return None
        spread = self.base_spread(group)
        return None if spread is None else spread > self.extra_if_std

    def _decide(self, task: Task) -> None:
        """An extra seed runs only for a group whose base seeds spread more than
        ``extra_if_std`` points (its teacher when any group of its data needs it)."""
        groups = [task.group] if task.variant != "teacher" else \
            list(dict.fromkeys(t.group for t in self.tasks
                               if t.data == task.data and t.variant != "teacher"))
        verdicts = [self._needs_more(g) for g in groups]
        if any(v is True for v in verdicts):
            task.status = "pending"
        elif all(v is False for v in verdicts):  # also: no student group to serve
            task.status = "not_needed"

    def _ready(self) -> Optional[Task]:
        for task in self.tasks:
            if task.status == "conditional":
                self._decide(task)
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
    def _members(self, group: str, variant: str) -> list[Task]:
        """A group's runs of a variant; a shared teacher belongs to every group of its data."""
        if variant == "teacher":
            data = group.split("/")[0]
            return [t for t in self.tasks if t.variant == "teacher" and t.data == data]
        members = [t for t in self.tasks if t.group == group and t.variant == variant]
        if self._needs_more(group) is False:  # extra seeds finished earlier do not count
            members = [t for t in members if t.seed in self.meta["seeds"]]
        return members

    def summary(self, group: str) -> dict:
        out = {}
        for v in VARIANTS:
            members = self._members(group, v)
            if members:
                done = [t for t in members if t.status == "done"]
                out[v] = stats([t.result["test_accuracy"] for t in done])
                out[v]["best"] = stats([t.result.get("best_test_accuracy") for t in done])
        return compare(out)

    def groups(self) -> list[str]:
        """One table per data set and student mode; a data set with only its teachers
        (``--variants teacher``) gets its own."""
        out = list(dict.fromkeys(t.group for t in self.tasks if t.variant != "teacher"))
        for t in self.tasks:
            if t.variant == "teacher" and not any(g.split("/")[0] == t.data for g in out):
                out.append(t.group)
        return out

    def summary_all(self) -> dict:
        return {g: self.summary(g) for g in self.groups()}

    def progress_line(self, task: Task, wall: float) -> str:
        planned = [t for t in self.tasks if t.status != "not_needed"]
        done = sum(t.status == "done" for t in planned)
        head = f"[{done}/{len(planned)}] {task.key}"
        if task.status == "done":
            head += (f": {100 * task.result['test_accuracy']:.2f}% in {wall:.0f} s"
                     + (" (resumed)" if task.resumed else ""))
        else:
            head += f": FAILED ({task.error})"
        cells = [f"{v} {_fmt(s, short=True)}" for v, s in self.summary(task.group).items()
                 if s["n"]]
        return head + " | " + ", ".join(cells)

    def write(self) -> None:
        runs = []
        for t in self.tasks:
            if t.status in ("done", "failed", "blocked"):
                entry = {"data": t.data, "mode": t.mode, "group": t.group,
                         "variant": t.variant, "seed": t.seed,
                         "status": t.status, "run_dir": str(t.path),
                         "budget": _run_budget(t), "config": t.cfg.to_dict()}
                if t.status == "done":
                    entry.update(t.result)
                else:
                    entry["error"] = t.error
                runs.append(entry)
        per_group = {}
        for g in self.groups():
            members = [t for t in self.tasks if t.group == g]
            first = next((t for t in members if t.variant != "teacher"), members[0])
            cfg, mode = first.cfg, first.mode
            per_group[g] = {"data": cfg.data.name, "mode": mode,
                            "mode_described": MODES[mode][0], "mode_sets": MODES[mode][1],
                            "budget": budget(cfg, self.meta.get("teacher")),
                            "model": cfg.student.model,
                            "model_kwargs": dict(cfg.student.model_kwargs),
                            "width": cfg.student.width, "time_steps": cfg.data.time_steps,
                            "encoding": cfg.data.encoding, "summary": self.summary(g),
                            "curves": self.curves(g)}
            per_group[g]["missing"] = self.missing(g)
            if self.meta.get("extra_seeds"):
                spread = self.base_spread(g)
                per_group[g]["extra_seeds"] = {
                    "base_spread_pp": None if spread is None else round(spread, 3),
                    "threshold_pp": self.extra_if_std,
                    "ran": None if spread is None else spread > self.extra_if_std}
        planned = [t for t in self.tasks if t.status != "not_needed"]
        obj = {"format": FORMAT, **self.meta, "variants_described": {
                   v: VARIANTS[v][0] for v in self.meta["variants"]},
               "complete": all(t.status == "done" for t in planned),
               "finished_runs": sum(t.status == "done" for t in planned),
               "total_runs": len(planned),
               "elapsed_seconds_this_invocation": round(time.time() - self.t0, 1),
               "jobs": self.jobs, "threads_per_job": self.threads,
               "cpu_seconds_total": round(sum(r.get("cpu_seconds") or 0 for r in runs), 1),
               "datasets_detail": per_group, "runs": runs}
        refresh(obj)
        write_json(self.out / "ablation.json", obj)
        write_text(self.out / "ablation.md", markdown(obj))
        write_bytes(self.out / "ablation.png", plot(obj))

    def missing(self, group: str) -> list:
        """The group's student runs not finished yet ('samd_nld seed 2'; an extra seed the
        spread rule has not decided on yet says so)."""
        return [f"{t.variant} seed {t.seed}" + (" (extra, if the spread asks)"
                                                if t.status == "conditional" else "")
                for t in self.tasks if t.group == group and t.variant != "teacher"
                and t.status in ("pending", "running", "conditional")]

    def curves(self, group: str) -> dict:
        """Mean test accuracy after every epoch, per variant, over the finished seeds."""
        out = {}
        for v in VARIANTS:
            rows = [t.result.get("curve") or [] for t in self._members(group, v)
                    if t.status == "done"]
            rows = [r for r in rows if r]
            if rows and len({len(r) for r in rows}) == 1:
                out[v] = [round(statistics.fmean(col), 6) for col in zip(*rows)]
        return out


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


def compare(summary: dict, base: str = "none") -> dict:
    """Add, to every student variant, its difference of means to ``base`` and whether
    it exceeds two standard errors of that difference (Welch: sqrt(s1^2/n1 + s0^2/n0))."""
    ref = summary.get(base)
    for v, s in summary.items():
        if v in (base, "teacher") or ref is None or not s["n"] or not ref["n"]:
            continue
        s["delta"] = s["mean"] - ref["mean"]
        if s["std"] is not None and ref["std"] is not None:
            se = math.sqrt(s["std"] ** 2 / s["n"] + ref["std"] ** 2 / ref["n"])
            s["se_delta"] = se
            s["exceeds_2se"] = abs(s["delta"]) > 2 * se
    return summary


def paired(values: dict, base: dict) -> dict:
    """Paired comparison of two variants over the seeds both finished.

    A seed fixes the teacher, the initialisation and the data order of every variant, so the
    per-seed differences d = variant - base are paired: their mean, the 95 % t interval
    mean +- t(0.975, n-1) * sd(d) / sqrt(n), the two-sided p of the paired t test, and the
    sign count (wins / losses / ties of the variant).  Fewer than two pairs: no interval.
    """
    seeds = sorted(set(values) & set(base))
    # accuracies are counts / test size: rounding drops float noise (equal gaps, exact ties)
    diffs = [round(float(values[k]) - float(base[k]), 12) for k in seeds]
    n = len(diffs)
    out = {"n": n, "seeds": seeds, "differences": diffs,
           "mean": statistics.fmean(diffs) if n else None, "sd": None, "ci95": None,
           "p_value": None, "wins": sum(d > 0 for d in diffs),
           "losses": sum(d < 0 for d in diffs), "ties": sum(d == 0 for d in diffs)}
    if n >= 2:
        from scipy.stats import t as student_t
        sd = statistics.stdev(diffs)
        half = float(student_t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
        if sd > 0:
            p = 2 * float(student_t.sf(abs(out["mean"]) / (sd / math.sqrt(n)), n - 1))
        else:
            p = 1.0 if out["mean"] == 0 else 0.0
        out.update(sd=sd, ci95=[out["mean"] - half, out["mean"] + half], p_value=p)
    return out


def counted_seeds(obj: dict, group: str) -> set:
    """The seeds a group's statistics use: the base seeds, and the extra seeds unless the
    spread rule decided they were not needed (then finished extras stay out)."""
    extra = (obj["datasets_detail"][group].get("extra_seeds") or {}).get("ran")
    return set(obj["seeds"]) | (set() if extra is False else set(obj.get("extra_seeds") or []))


def paired_analysis(obj: dict, group: str) -> dict:
    """``{base: {variant: paired(...)}}`` for a group, from the finished runs of a result
    object, for every pair of student variants (the tables show ``none`` and the ablation's
    ``reference``; the README's claims table reads the others)."""
    seeds = counted_seeds(obj, group)
    per_seed: dict = {}
    for r in obj["runs"]:
        if r.get("group", r["data"]) == group and r["variant"] != "teacher" and \
                r["status"] == "done" and r["seed"] in seeds:
            per_seed.setdefault(r["variant"], {})[r["seed"]] = r["test_accuracy"]
    return {ref: {v: paired(vals, per_seed[ref]) for v, vals in per_seed.items() if v != ref}
            for ref in per_seed}


def refresh(obj: dict) -> dict:
    """Recompute the derived paired analysis of a result object from its runs (for result
    files written before it existed; the runs themselves are not touched)."""
    for g in obj["datasets_detail"]:
        obj["datasets_detail"][g]["paired"] = paired_analysis(obj, g)
    return obj


def _fmt(s: dict, short: bool = False) -> str:
    if not s["n"]:
        return "–"
    m = 100 * s["mean"]
    if s["std"] is None:
        return f"{m:.1f}" if short else f"{m:.2f} ± –"
    return f"{m:.1f}±{100 * s['std']:.1f}" if short else f"{m:.2f} ± {100 * s['std']:.2f}"


def budget(cfg: C.Config, teacher: Optional[dict] = None) -> dict:
    """The training budget every variant of a group shares (``teacher``: --teacher's info)."""
    def stage(tc: C.TrainConfig) -> dict:
        return {"epochs": tc.epochs, "optimizer": tc.optimizer, "lr": tc.lr,
                "weight_decay": tc.weight_decay, "scheduler": tc.scheduler,
                "warmup_epochs": tc.warmup_epochs}
    return {"train_samples": train_samples(cfg.data.options.get("limit")),
            "test_samples": "all (full test split)", "batch_size": cfg.data.batch_size,
            "augment": cfg.data.augment,
            "teacher": stage(cfg.teacher) if teacher is None else {"external": teacher},
            "student": stage(cfg.student), "data_options": dict(cfg.data.options)}


def _run_budget(task: Task) -> dict:
    """One run's budget: its stage's epochs, optimizer and schedule, data, batch, T."""
    tc = getattr(task.cfg, task.stage)
    return {"stage": task.stage, "epochs": tc.epochs, "optimizer": tc.optimizer, "lr": tc.lr,
            "scheduler": tc.scheduler, "batch_size": task.cfg.data.batch_size,
            "train_samples": train_samples(task.cfg.data.options.get("limit")),
            "time_steps": task.cfg.data.time_steps}


def _budget_text(b: dict) -> str:
    def st(s):
        return (f"{s['epochs']} epoch{'s' if s['epochs'] != 1 else ''}, {s['optimizer']} "
                f"lr {s['lr']:g} wd {s['weight_decay']:g}, {s['scheduler']}")
    n = b["train_samples"]
    train = "full train split" if n == "all" else f"first {n} training samples"
    teacher = b["teacher"]
    if "external" in teacher:
        t = teacher["external"]
        tn = t["train_samples"]
        teacher_text = (f"one shared teacher `{t['path']}` (trained beforehand on "
                        f"{'the full train split' if tn == 'all' else f'{tn} samples'}, "
                        f"{t['epochs']} epochs, test acc. {_pct(t['test_accuracy'])})")
    else:
        teacher_text = f"teacher {st(teacher)}"
    return (f"{train}, batch {b['batch_size']}, augment {'on' if b['augment'] else 'off'}; "
            f"student {st(b['student'])}; {teacher_text}; evaluated on the full test split")


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.2f} %"


def _order(variant: str) -> int:
    return list(VARIANTS).index(variant) if variant in VARIANTS else len(VARIANTS)


def paired_cells(pr: Optional[dict]) -> tuple[str, str]:
    """('+0.78 [+0.21, +1.35]', '3 / 0 / 0') in points; blanks without pairs."""
    if not pr or not pr["n"]:
        return "", ""
    text = f"{100 * pr['mean']:+.2f}"
    if pr["ci95"] is not None:
        text += f" [{100 * pr['ci95'][0]:+.2f}, {100 * pr['ci95'][1]:+.2f}]"
    return text, f"{pr['wins']} / {pr['losses']} / {pr['ties']}"


def _mean_of(runs: list, key: str) -> str:
    vals = [r[key] for r in runs if r.get(key)]
    return f"{statistics.fmean(vals):.0f}" if vals else ""


def _curve_text(curve: list) -> str:
    """'1: 70.1, 2: 75.3, ...' (percent, one decimal)."""
    return ", ".join(f"{i + 1}: {100 * a:.1f}" for i, a in enumerate(curve))


def plateau(curve: list) -> Optional[dict]:
    """How much the last third of the epochs still added (a converged curve adds ~0)."""
    if len(curve) < 3:
        return None
    k = max(1, len(curve) // 3)
    return {"epochs": k, "gain": curve[-1] - curve[-1 - k], "best_epoch":
            max(range(len(curve)), key=lambda i: curve[i]) + 1}


def markdown(obj: dict) -> str:
    lines = ["# kdsnn ablation: SAMD + NLD (arXiv 2511.06902) and baselines", "",
             f"Command: `{obj['command']}`  ",
             f"Runs finished: {obj['finished_runs']}/{obj['total_runs']}"
             + ("" if obj["complete"] else " (in progress or incomplete)")
             + f"; seeds {' '.join(map(str, obj['seeds']))}"
             + (f" (+ {' '.join(map(str, obj['extra_seeds']))} for a student mode whose base "
                f"seeds spread more than {obj['extra_if_std']:g} pp)"
                if obj.get("extra_seeds") else "") + f"; {obj['jobs']} job(s) x "
             f"{obj['threads_per_job']} thread(s).  ",
             "Metric: top-1 accuracy on the full test split after the last epoch (best "
             "epoch beside it); mean ± sample std over seeds (n runs); Δ = difference of "
             "means to `none`; 2 SE = twice the standard error of that difference "
             "(sqrt(s²/n + s₀²/n₀)); `yes` where |Δ| exceeds it — a screening rule, not a "
             "test: with 3–5 seeds it is weaker than p < 0.05 and not corrected for the "
             "several variants compared. Paired Δ = mean over the seeds both finished of the "
             "per-seed difference (a seed fixes teacher, initialisation and data order), "
             "with its 95 % t interval (n − 1 degrees of freedom); + / − / = counts the "
             "seeds where the variant is above / below / equal.  ",
             f"Compute: {sum(r.get('cpu_seconds') or 0 for r in obj['runs']):.0f} CPU s over "
             f"all runs; the last invocation took {obj['elapsed_seconds_this_invocation']:.0f} "
             f"s wall.", ""]
    by_key = {}
    for r in obj["runs"]:
        by_key.setdefault((r.get("group", r["data"]), r["variant"]), []).append(r)
        if r["variant"] == "teacher":  # a seed's teacher serves every mode of its data
            for g in obj["datasets_detail"]:
                if g != r["data"] and g.split("/")[0] == r["data"]:
                    by_key.setdefault((g, "teacher"), []).append(r)
    for g, det in obj["datasets_detail"].items():
        ext_teacher = det["budget"]["teacher"].get("external")
        lines += [f"## {g}", "",
                  f"- data: `{det.get('data', g)}`, encoding {det['encoding']}, "
                  f"T = {det['time_steps']}",
                  f"- model: `{det['model']}` width {det['width']}"
                  + "".join(f", {k} {v}" for k, v in (det.get("model_kwargs") or {}).items())
                  + (f" (spiking student; teacher: `{ext_teacher['model']}` width "
                     f"{ext_teacher['width']} ANN)" if ext_teacher else
                     " (spiking student)" if det.get("model_kwargs")
                     else " (ANN teacher and spiking student)")]
        if det.get("mode", "spiking") != "spiking":
            sets = ", ".join(f"{k}={v}" for k, v in det.get("mode_sets", {}).items())
            lines.append(f"- student mode `{det['mode']}`: {det['mode_described']} ({sets})")
        extra = det.get("extra_seeds")
        if extra and extra["ran"] is not None:
            lines.append(f"- largest std over the variants on the base seeds: "
                         f"{extra['base_spread_pp']:.2f} pp, so the extra seeds "
                         + ("ran" if extra["ran"] else "were not needed")
                         + f" (threshold {extra['threshold_pp']:g} pp)")
        lines += [f"- budget (identical for every student variant): "
                  f"{_budget_text(det['budget'])}", "",
                  "| variant | objective | test acc. % (mean ± std) | n | best epoch % "
                  "| Δ vs none (pp) | 2 SE (pp) | \\|Δ\\| > 2 SE | paired Δ (pp) [95 % CI] "
                  "| + / − / = | wall s / run | CPU s / run |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        vs_none = det.get("paired", {}).get("none", {})
        for v in [v for v in VARIANTS if v in det["summary"]]:  # JSON keys come sorted
            s = det["summary"][v]
            delta = f"{100 * s['delta']:+.2f}" if "delta" in s else ""
            se2 = f"{200 * s['se_delta']:.2f}" if "se_delta" in s else ""
            sig = ("yes" if s["exceeds_2se"] else "no") if "exceeds_2se" in s else ""
            best = _fmt(s["best"]) if s.get("best") else ""
            done = [r for r in by_key.get((g, v), []) if r["status"] == "done"]
            secs = [_mean_of(done, k) for k in ("wall_seconds", "cpu_seconds")]
            pd, signs = paired_cells(vs_none.get(v))
            lines.append(f"| {v} | {VARIANTS[v][0]} | {_fmt(s)} | {s['n']} | {best} | "
                         f"{delta} | {se2} | {sig} | {pd} | {signs} | {secs[0]} | {secs[1]} |")
        ref = obj.get("reference")
        if ref and ref != "none" and det.get("paired", {}).get(ref):
            lines += ["", f"Paired against `{ref}` ({VARIANTS[ref][0]}):", "",
                      f"| variant | pairs | paired Δ vs {ref} (pp) [95 % CI] | + / − / = |",
                      "|---|---|---|---|"]
            for v, pr in sorted(det["paired"][ref].items(), key=lambda i: _order(i[0])):
                lines.append(f"| {v} | {pr['n']} | " + " | ".join(paired_cells(pr)) + " |")
        if det.get("missing"):
            lines.append(f"\nNot finished yet ({len(det['missing'])}): "
                         + ", ".join(det["missing"]) + ".")
        failed = [r for r in obj["runs"] if r.get("group", r["data"]) == g
                  and r["status"] != "done"]
        for r in failed:
            lines.append(f"\n{r['variant']} seed {r['seed']}: {r['status']} ({r['error']})")
        curves = det.get("curves", {})
        notes = []
        ext = det["budget"]["teacher"].get("external")
        if ext and ext.get("curve"):
            notes.append(f"teacher learning curve (test acc. % by epoch): "
                         f"{_curve_text(ext['curve'])}")
        for v in ("none", "samd_nld"):
            if v in curves:
                pl = plateau(curves[v])
                tail = "" if pl is None else (
                    f" — the last {pl['epochs']} epoch(s) added {100 * pl['gain']:+.2f} pp; "
                    f"best at epoch {pl['best_epoch']}")
                notes.append(f"`{v}` learning curve (mean over seeds, test acc. % by epoch): "
                             f"{_curve_text(curves[v])}{tail}")
        if notes:
            lines += [""] + [f"- {n}" for n in notes]
        lines.append("")
    return "\n".join(lines)


def plot(obj: dict) -> bytes:
    """PNG: per group, accuracy per variant (mean ± std, every seed a dot, no-KD dashed)
    beside the mean learning curves."""
    import io
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
    groups = list(obj["datasets_detail"].items())
    fig = Figure(figsize=(11, 3.6 * max(1, len(groups))), dpi=100)
    for row, (g, det) in enumerate(groups):
        summary = {v: s for v, s in det["summary"].items() if v != "teacher" and s["n"]}
        ax = fig.add_subplot(len(groups), 2, 2 * row + 1)
        names = [v for v in VARIANTS if v in summary]
        for i, v in enumerate(names):
            s = summary[v]
            colour = "tab:green" if s.get("exceeds_2se") and s["delta"] > 0 else \
                "tab:red" if s.get("exceeds_2se") else "tab:gray" if v != "none" else "tab:blue"
            ax.bar(i, 100 * s["mean"], yerr=100 * (s["std"] or 0), color=colour, alpha=0.6,
                   capsize=3)
            ax.plot([i] * len(s["values"]), [100 * x for x in s["values"]], "k.", ms=4)
        if "none" in summary:
            ax.axhline(100 * summary["none"]["mean"], color="tab:blue", ls="--", lw=1)
        vals = [100 * x for s in summary.values() for x in s["values"]]
        if vals:
            span = max(vals) - min(vals)
            ax.set_ylim(min(vals) - max(1.0, span), max(vals) + max(1.0, 0.5 * span))
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=20, fontsize=8)
        ax.set_ylabel("test accuracy %")
        ax.set_title(f"{g}: final test accuracy (green/red: |Δ| > 2 SE)", fontsize=9)
        ax = fig.add_subplot(len(groups), 2, 2 * row + 2)
        curves = {v: c for v, c in det.get("curves", {}).items() if v != "teacher"}
        for v, curve in curves.items():
            ax.plot(range(1, len(curve) + 1), [100 * a for a in curve], label=v,
                    lw=2 if v in ("none", "samd_nld") else 1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy %")
        ax.set_title(f"{g}: mean learning curves", fontsize=9)
        if curves:
            ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


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
