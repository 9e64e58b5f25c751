"""What each run leaves for the result files: its record (accuracy, curve, config, budget,
CPU time, teacher) read back from its run directory."""
from __future__ import annotations

import functools
import json
import resource
from pathlib import Path
from typing import Optional

from .. import config as C
from ..errors import KdsnnError
from ..io import write_json
from .plan import Task, train_samples


def teacher_info(path) -> tuple[Path, dict]:
    """Check a ``--teacher`` checkpoint (an ANN) and describe it for the result files."""
    from ..io import sha256_file
    from ..run import load_trained, resolve_checkpoint
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


def check_existing(task: Task) -> None:
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
    recorded = read_run_record(task).get("teacher")
    if recorded is not None and recorded != teacher_key(task):
        raise KdsnnError(f"'{run.path}' holds a student of another teacher ({recorded}): use "
                         f"another OUT directory or delete it")
    metrics = run.read_metrics().get(task.stage, {})
    if run.has_model(task.stage) and metrics.get("test_accuracy") is not None:
        task.status = "done"
        task.result = run_result(task)


def read_curve(csv_path: Path) -> list:
    """Test accuracy after every epoch, from a stage's metrics.csv ([] if absent); None for
    an epoch the run did not evaluate (``eval_every`` > 1)."""
    import csv
    try:
        with open(csv_path, newline="") as fh:
            return [float(row["test_acc"]) if row["test_acc"] != "" else None
                    for row in csv.DictReader(fh)]
    except (OSError, KeyError, ValueError):
        return []


def run_result(task: Task) -> dict:
    m = task.run.read_metrics().get(task.stage, {})
    extra = read_run_record(task)
    return {"test_accuracy": m.get("test_accuracy"),
            "best_test_accuracy": m.get("best_test_accuracy"),
            "epochs": m.get("epochs"), "train_seconds": m.get("train_seconds"),
            "curve": read_curve(task.run.stage_dir(task.stage) / "metrics.csv"),
            "wall_seconds": extra.get("wall_seconds"),
            "cpu_seconds": extra.get("cpu_seconds"), "resumed": extra.get("resumed", False)}


def save_record(task: Task, wall: float, cpu: float) -> None:
    """Accumulate the run's wall and CPU seconds (over resumes) in RUN/ablate_run.json."""
    path = task.path / "ablate_run.json"
    old = read_run_record(task)
    write_json(path, {**old, "wall_seconds": round(old.get("wall_seconds", 0.0) + wall, 2),
                      "cpu_seconds": round(old.get("cpu_seconds", 0.0) + cpu, 2),
                      "resumed": bool(old.get("resumed") or task.resumed)})


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


@functools.lru_cache(maxsize=8)
def file_sha256(path: str) -> str:
    from ..io import sha256_file
    return sha256_file(path)


def teacher_key(task: Task) -> Optional[str]:
    """What a student distils from: --teacher's file hash, or its seed's teacher run."""
    if task.stage != "student":
        return None
    if task.external_teacher is not None:
        return "sha256:" + file_sha256(str(task.external_teacher))
    return "per-seed:" + str(task.teacher.path) if task.teacher is not None else None


def read_run_record(task: Task) -> dict:
    path = task.path / "ablate_run.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def prepare_run(task: Task) -> None:
    task.run.path.mkdir(parents=True, exist_ok=True)
    task.run.save_config(task.cfg)
    task.resumed = task.run.state_path(task.stage).is_file()
    if task.stage == "student":
        write_json(task.path / "ablate_run.json",
                   {**read_run_record(task), "teacher": teacher_key(task)})


def last_error(log: Path, code: int) -> str:
    try:
        lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
    except OSError:
        lines = []
    for ln in reversed(lines):
        if ln.startswith("kdsnn: error:"):
            return ln[len("kdsnn: error:"):].strip()
    tail = lines[-1].strip() if lines else ""
    return f"worker exited with code {code}" + (f": {tail}" if tail else "")


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


def run_budget(task: Task) -> dict:
    """One run's budget: its stage's epochs, optimizer and schedule, data, batch, T."""
    tc = getattr(task.cfg, task.stage)
    return {"stage": task.stage, "epochs": tc.epochs, "optimizer": tc.optimizer, "lr": tc.lr,
            "scheduler": tc.scheduler, "batch_size": task.cfg.data.batch_size,
            "train_samples": train_samples(task.cfg.data.options.get("limit")),
            "time_steps": task.cfg.data.time_steps}
