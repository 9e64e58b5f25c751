"""Train a run's ANN teacher, distil its spiking student, evaluate either on the test split.

Training writes checkpoints as it goes (that is what ``resume`` needs), after the stage has
checked data, models, teacher and resume state; the run's writer lock is held throughout.
"""
from __future__ import annotations

import os
from typing import Dict, Optional, Sequence

from kd_snn.errors import KdsnnError

from .results import EvalResult, StageResult
from .runs import RunPath, as_run, writing

__all__ = ["train_teacher", "distill", "evaluate"]


def train_teacher(run: RunPath, *, config: Optional[str] = None,
                  overrides: Sequence[str] = (), device: Optional[str] = None,
                  resume: bool = False, force: bool = False,
                  progress: bool = True) -> StageResult:
    """Train the run's ANN teacher. ``config``: a shipped config name or a YAML path (for a
    new run; default the run's ``config.yaml``); ``overrides``: ``"key=value"`` strings such
    as ``"teacher.epochs=5"``."""
    return _train(run, "teacher", config, overrides, device, resume, force, progress, None)


def distill(run: RunPath, *, teacher: Optional[str] = None, config: Optional[str] = None,
            overrides: Sequence[str] = (), device: Optional[str] = None,
            resume: bool = False, force: bool = False, progress: bool = True) -> StageResult:
    """Distil the run's spiking student from its frozen teacher (``teacher``: another run
    directory or checkpoint; default RUN/teacher/model.safetensors) with the config's loss
    (default SAMD + NLD, arXiv 2511.06902)."""
    return _train(run, "student", config, overrides, device, resume, force, progress, teacher)


def _train(path, stage, config, overrides, device, resume, force, progress,
           teacher) -> StageResult:
    from kd_snn.trainer import Stage

    run = as_run(path)
    run.check_writable()
    if stage == "student" and run.imported_student_path.is_file():
        raise KdsnnError(f"'{run.path}' holds a student imported from NIR; distil into a "
                         "new run")
    cfg = run.resolve_config(config, list(overrides))
    fail_at = os.environ.get("KDSNN_FAIL_AT_STEP")  # tests: a crash right after a checkpoint
    with writing(run, transactional=False):
        if run.has_model(stage) and not (resume or force):
            raise KdsnnError(f"'{run.model_path(stage)}' exists: pass --force to retrain "
                             "or --resume to continue")
        if run.config_path.is_file() and not force and \
                run.load_config().to_dict() != cfg.to_dict():
            if resume:
                raise KdsnnError(f"cannot resume '{run.path}': the config changed since it was "
                                 "written (resume without --set/--config, or start a new run)")
            if config is not None:
                raise KdsnnError(f"'{run.path}' already holds a different config: use a new "
                                 "run directory, --set to change it, or --force")
        runner = Stage(run, cfg, stage, teacher_path=teacher, device=device,
                       progress=progress, fail_at_step=int(fail_at) if fail_at else None)
        runner.prepare(resume=resume)  # refuses before the first write
        final = runner.fit(resume=resume)
    return StageResult(stage=stage, test_accuracy=final["test_accuracy"],
                       best_test_accuracy=final["best_test_accuracy"],
                       model_path=run.model_path(stage), metrics=final)


def evaluate(run: RunPath, *, which: str = "both", overrides: Sequence[str] = (),
             device: Optional[str] = None, progress: bool = True) -> Dict[str, EvalResult]:
    """Top-1 accuracy of the run's teacher and/or student (``which``: ``teacher``,
    ``student`` or ``both``) on the whole test split, recorded in RUN/metrics.json. An
    imported student runs kdsnn's float forward of its graph; ``overrides`` change the
    run's config for this evaluation only (e.g. ``"data.eval_batch_size=64"``)."""
    import torch

    from kd_snn.run import evaluate as evaluate_model, load_trained, open_dataset, pick_device

    if which not in ("teacher", "student", "both"):
        raise KdsnnError(f"which must be teacher, student or both, got {which!r}")
    run = as_run(run)
    run.load_config()  # a missing or broken config.yaml is refused as such (no --config here)
    cfg = run.resolve_config(None, list(overrides))
    dev = pick_device(device or cfg.device)
    stages = ("teacher", "student") if which == "both" else (which,)
    results = {}
    with writing(run):
        models = {}
        for stage in stages:  # every model loads before anything is evaluated or written
            if run.has_model(stage):
                models[stage] = load_trained(run.model_path(stage),
                                             expect_spiking=stage == "student")[0]
            elif stage == "student" and run.imported_student_path.is_file():
                from .runs import load_student
                models[stage] = load_student(run)[2]  # its graph: kdsnn's float forward
            elif which != "both":
                raise KdsnnError(f"no trained {stage} in '{run.path}'")
        if not models:
            raise KdsnnError(f"no trained model in '{run.path}'")
        run.read_metrics()  # a corrupt metrics.json is refused before the evaluation
        test = open_dataset(cfg, "test")
        for stage, model in models.items():
            if isinstance(model, torch.nn.Module):
                res = evaluate_model(model.to(dev), test, cfg, stage, dev, progress=progress)
            else:  # an imported student's DeployGraph
                from export.accuracy import float_accuracy
                res = float_accuracy(model, cfg, progress)
            run.update_metrics(stage, {"eval_accuracy": res["accuracy"],
                                       "eval_samples": res["samples"]})
            results[stage] = EvalResult(stage, res["accuracy"], res["samples"])
    return results
