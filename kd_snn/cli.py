"""The ``kdsnn`` command line.  Every command takes a run directory first.

    kdsnn teacher --config digits runs/demo
    kdsnn distill runs/demo
    kdsnn eval runs/demo
    kdsnn export runs/demo --target lava
    kdsnn parity runs/demo --samples 50
    kdsnn report runs/demo

Bad input ends with one line ``kdsnn: error: ...`` and exit code 2.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Optional

from .errors import KdsnnError

EXIT_USAGE = 2


def _add_run(p: argparse.ArgumentParser, config: bool = True) -> None:
    p.add_argument("run", help="run directory (created if needed)")
    if config:
        p.add_argument("--config", help="shipped config name or YAML path "
                                         "(default: the run's config.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set student.epochs=5 (repeatable)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: config, 'auto')")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kdsnn", description="Distil spiking students from ANN teachers (SAMD + NLD), "
        "export them to Loihi through NIR and Lava, check parity, measure energy.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("teacher", help="train the ANN teacher of a run")
    _add_run(p)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--force", action="store_true", help="retrain when a model exists")

    p = sub.add_parser("distill", help="train the spiking student from the frozen teacher")
    _add_run(p)
    p.add_argument("--teacher", help="teacher run directory or checkpoint "
                                     "(default: RUN/teacher/model.safetensors)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--force", action="store_true", help="retrain when a model exists")

    p = sub.add_parser("eval", help="evaluate the teacher and/or student of a run")
    _add_run(p, config=False)
    p.add_argument("--which", choices=("teacher", "student", "both"), default="both")

    p = sub.add_parser("configs", help="list the shipped configs and models")
    return parser


def _setup_logging() -> None:
    logger = logging.getLogger("kdsnn")
    logger.setLevel(logging.INFO)


def _stage_command(args, stage: str) -> int:
    from .rundir import RunDir
    from .trainer import Stage

    run = RunDir(args.run)
    cfg = run.resolve_config(args.config, args.overrides)
    if run.has_model(stage) and not (args.resume or args.force):
        raise KdsnnError(f"'{run.model_path(stage)}' exists: pass --force to retrain "
                         "or --resume to continue")
    if run.config_path.is_file() and args.config is not None and \
            run.load_config().to_dict() != cfg.to_dict() and not args.force:
        raise KdsnnError(f"'{run.path}' already holds a different config: use a new run "
                         "directory, --set to change it, or --force")
    teacher = getattr(args, "teacher", None)
    fail_at = os.environ.get("KDSNN_FAIL_AT_STEP")
    stage_runner = Stage(run, cfg, stage, teacher_path=teacher, device=args.device,
                         progress=not args.no_progress,
                         fail_at_step=int(fail_at) if fail_at else None)
    run.path.mkdir(parents=True, exist_ok=True)
    run.save_config(cfg)
    final = stage_runner.fit(resume=args.resume)
    print(f"{stage} test accuracy: {final['test_accuracy'] * 100:.2f}% "
          f"(best {final['best_test_accuracy'] * 100:.2f}%)  -> {run.model_path(stage)}")
    return 0


def _eval_command(args) -> int:
    from .data import build_dataset
    from .rundir import RunDir
    from .trainer import evaluate, load_trained, pick_device

    run = RunDir(args.run)
    cfg = run.resolve_config(None, args.overrides)
    device = pick_device(args.device or cfg.device)
    stages = ("teacher", "student") if args.which == "both" else (args.which,)
    test = build_dataset(cfg.data.name, "test", root=cfg.data.root, download=cfg.data.download)
    results = {}
    for stage in stages:
        if not run.has_model(stage):
            if args.which != "both":
                raise KdsnnError(f"no trained {stage} in '{run.path}'")
            continue
        model, _ = load_trained(run.model_path(stage), expect_spiking=stage == "student")
        res = evaluate(model.to(device), test, cfg, stage, device, progress=not args.no_progress)
        results[stage] = res
        run.update_metrics(stage, {"eval_accuracy": res["accuracy"], "eval_samples": res["samples"]})
        print(f"{stage} test accuracy: {res['accuracy'] * 100:.2f}% on {res['samples']} samples")
    if not results:
        raise KdsnnError(f"no trained model in '{run.path}'")
    return 0


def _configs_command(args) -> int:
    from .config import builtin_configs
    from .data import list_datasets
    from .models import list_models
    print("configs: " + ", ".join(builtin_configs()))
    print("models: " + ", ".join(list_models()))
    print("datasets: " + ", ".join(list_datasets()))
    return 0


COMMANDS = {
    "teacher": lambda a: _stage_command(a, "teacher"),
    "distill": lambda a: _stage_command(a, "student"),
    "eval": _eval_command,
    "configs": _configs_command,
}


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging()
    try:
        return COMMANDS[args.command](args)
    except KdsnnError as exc:
        print(f"kdsnn: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("kdsnn: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
