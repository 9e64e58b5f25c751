"""What each ``kdsnn`` command does, under the rules every command shares.

* Writing commands hold the run directory's lock (:meth:`RunDir.lock`) for their
  whole duration: a second writer is refused with the holder's PID.
* Everything a command needs is loaded and checked before its first write.
  Commands that produce files (eval, quantize, export, parity, report) write inside
  one :func:`kd_snn.io.transaction`, so a failure anywhere publishes nothing.
  Training writes checkpoints as it goes (that is what ``--resume`` needs), after
  :meth:`Stage.prepare` has checked data, models, teacher and resume state.
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import time
from pathlib import Path

from kd_snn import io as kio
from kd_snn.ablate import (BASE_EVENT, BASE_STATIC, DEFAULT_SEEDS, MODES, VARIANTS, Runner,
                           _check_existing, _check_overrides, _datasets, _modes, _seeds,
                           _variants, check_teacher_fits, plan, teacher_info)
from kd_snn.errors import KdsnnError
from kd_snn.rundir import RunDir

from .common import _load_quant_or_make, _positive, _run_for_export, writing  # noqa: F401


# training ----------------------------------------------------------------------------
def stage_command(args, stage: str) -> int:
    from kd_snn.trainer import Stage

    run = RunDir(args.run)
    run.check_writable()
    if stage == "student" and run.imported_student_path.is_file():
        raise KdsnnError(f"'{run.path}' holds a student imported from NIR; distil into a "
                         "new run")
    cfg = run.resolve_config(args.config, args.overrides)
    fail_at = os.environ.get("KDSNN_FAIL_AT_STEP")
    with writing(run, transactional=False):
        if run.has_model(stage) and not (args.resume or args.force):
            raise KdsnnError(f"'{run.model_path(stage)}' exists: pass --force to retrain "
                             "or --resume to continue")
        if run.config_path.is_file() and not args.force and \
                run.load_config().to_dict() != cfg.to_dict():
            if args.resume:
                raise KdsnnError(f"cannot resume '{run.path}': the config changed since it was "
                                 "written (resume without --set/--config, or start a new run)")
            if args.config is not None:
                raise KdsnnError(f"'{run.path}' already holds a different config: use a new "
                                 "run directory, --set to change it, or --force")
        runner = Stage(run, cfg, stage, teacher_path=getattr(args, "teacher", None),
                       device=args.device, progress=not args.no_progress,
                       fail_at_step=int(fail_at) if fail_at else None)
        runner.prepare(resume=args.resume)  # refuses before the first write
        final = runner.fit(resume=args.resume)
    print(f"{stage} test accuracy: {final['test_accuracy'] * 100:.2f}% "
          f"(best {final['best_test_accuracy'] * 100:.2f}%)  -> {run.model_path(stage)}")
    return 0


def eval_command(args) -> int:
    import torch

    from kd_snn.run import evaluate, load_trained, open_dataset, pick_device

    run = RunDir(args.run)
    cfg = run.resolve_config(None, args.overrides)
    device = pick_device(args.device or cfg.device)
    stages = ("teacher", "student") if args.which == "both" else (args.which,)
    with writing(run):
        models = {}
        for stage in stages:  # every model loads before anything is evaluated or written
            if run.has_model(stage):
                models[stage] = load_trained(run.model_path(stage),
                                             expect_spiking=stage == "student")[0]
            elif stage == "student" and run.imported_student_path.is_file():
                from export.pipeline import load_student
                models[stage] = load_student(run)[2]  # its graph: kdsnn's float forward
            elif args.which != "both":
                raise KdsnnError(f"no trained {stage} in '{run.path}'")
        if not models:
            raise KdsnnError(f"no trained model in '{run.path}'")
        run.read_metrics()  # a corrupt metrics.json is refused before the evaluation
        test = open_dataset(cfg, "test")
        for stage, model in models.items():
            if isinstance(model, torch.nn.Module):
                res = evaluate(model.to(device), test, cfg, stage, device,
                               progress=not args.no_progress)
            else:  # an imported student's DeployGraph
                from kdsnn.import_cmd import float_accuracy
                res = float_accuracy(cfg, model, not args.no_progress)
            run.update_metrics(stage, {"eval_accuracy": res["accuracy"],
                                       "eval_samples": res["samples"]})
            print(f"{stage} test accuracy: {res['accuracy'] * 100:.2f}% on "
                  f"{res['samples']} samples")
    return 0


# export and hardware -----------------------------------------------------------------
def quantize_command(args) -> int:
    from export.pipeline import export_run

    _positive(calib=args.calib, samples=args.samples)
    run, _ = _run_for_export(args)
    with writing(run):
        export_run(run, ["quant"], args.calib, args.samples, progress=not args.no_progress)
    print(f"report: {args.run}/export/quantize.md")
    return 0


def export_command(args) -> int:
    from export.pipeline import check_targets, export_run

    _positive(calib=args.calib, samples=args.samples)
    targets = check_targets(args.target)
    run, _ = _run_for_export(args)
    with writing(run):
        export_run(run, targets, args.calib, args.samples, progress=not args.no_progress)
    print(f"manifest: {run.subdir('export') / 'manifest.json'}")
    return 0


def _parity(args) -> int:
    from kdsnn.parity_cmd import parity_command
    return parity_command(args)


def _import(args) -> int:
    from kdsnn.import_cmd import import_command
    return import_command(args)


def _compare_entries(names: list) -> list:
    from hardware.report import run_entry

    entries = []
    for other in names:
        path = RunDir(other).subdir("report") / "report.json"
        if not path.is_file():
            raise KdsnnError(f"'{other}' has no report: run 'kdsnn report {other}' first")
        report = kio.read_json_object(path, "kdsnn report")
        try:
            entries.append(run_entry(report, str(other)))
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            raise KdsnnError(f"'{path}' is not a kdsnn report") from None
    return entries


def report_command(args) -> int:
    from export.pipeline import load_student, sample_inputs
    from hardware.energy import analyze_graph, count_teacher, parse_conventions
    from hardware.report import DEFAULT_PROFILES, build_report
    from kd_snn.run import load_trained

    _positive(samples=args.samples)
    conventions = parse_conventions(getattr(args, "conventions", None) or [])
    if conventions.membrane == "changed" and args.source != "torch":
        raise KdsnnError("--conventions membrane=changed counts the float membrane: "
                         "use --source torch")
    run, cfg = _run_for_export(args)
    runs = _compare_entries(args.compare)
    with writing(run):
        use_lava, kept = args.source in ("lava", "both"), None
        if use_lava:
            from .common import QUANT_FILE
            if not (run.subdir("export") / QUANT_FILE).is_file():  # export builds Lava:
                import lava.proc.lif.process  # noqa: F401  (fork start method first)
            _, _, qgraph = _load_quant_or_make(run, not args.no_progress)
            kept = _parity_spikes(run, qgraph)
        n = args.samples or (kept.samples if kept is not None else 256)
        x, y = sample_inputs(cfg, "test", n)
        _, _, graph = load_student(run)
        stage = (lambda text: None) if args.no_progress else (
            lambda text: print(f"report: {text}", flush=True))  # ResNet-19: ~20 s each
        stats = {}
        if args.source in ("torch", "both"):
            stage(f"the float student's spikes and operations on {x.shape[1]} samples")
            stats["torch"] = analyze_graph(graph, x, source="torch")
        if use_lava:
            import torch
            readout, spikes = _lava_run_or_reuse(kept, qgraph, x, not args.no_progress)
            stage(f"Lava's spikes and operations on {x.shape[1]} samples")
            stats["lava"] = analyze_graph(qgraph, x, spikes=spikes, source="lava")
            lava_acc = float((torch.as_tensor(readout).argmax(1) == torch.as_tensor(y))
                             .double().mean())
        stage("the teacher's MACs, energy, tables and plots")
        macs = None
        images = x[0] if cfg.data.encoding == "direct" else None  # zero-input counts
        onnx_teacher = run.stage_dir("teacher") / "model.onnx"  # from 'kdsnn import'
        if run.has_model("teacher"):
            teacher, _ = load_trained(run.model_path("teacher"), expect_spiking=False)
            macs = count_teacher(teacher.float(), tuple(x.shape[2:]), x=images)
        elif onnx_teacher.is_file():
            from hardware.energy.teacher_onnx import count_onnx_teacher
            macs = count_onnx_teacher(onnx_teacher, tuple(x.shape[2:]),
                                      x=None if images is None else images.float())
        metrics = run.read_metrics()
        accuracy = {k: {"value": metrics[k]["test_accuracy"], "note": "test split (metrics)"}
                    for k in ("student", "teacher")
                    if k in metrics and isinstance(metrics[k].get("test_accuracy"), (int, float))}
        if "lava" in stats:  # on the very samples whose spikes the report counts
            accuracy["lava"] = {"value": lava_acc, "note": f"the {len(y)} report samples"}
        for key, path in (("quantized", ("quantized", "quantized")),
                          ("lava", ("parity", "accuracy", "lava"))):
            if key in accuracy:
                continue
            value = metrics
            for k in path:
                value = value.get(k) if isinstance(value, dict) else None
            if isinstance(value, (int, float)):
                n = metrics[path[0]].get("samples")
                accuracy[key] = {"value": value, "note": f"{n} test images ({path[0]})"}
        try:
            report = build_report(run.subdir("report"), stats, teacher_macs=macs,
                                  profiles=args.profile or DEFAULT_PROFILES,
                                  accuracy=accuracy, runs=runs or None, html=args.html,
                                  meta={"run": run.path.name, "samples": int(x.shape[1]),
                                        "time_steps": cfg.data.time_steps},
                                  conventions=conventions)
        except ValueError as exc:
            raise KdsnnError(str(exc).splitlines()[0]) from None
    _print_report_summary(report)
    print(f"report: {run.subdir('report') / 'report.md'}")
    return 0


def _parity_spikes(run: RunDir, qgraph):
    """The Lava spikes the last parity run kept (RUN/parity/lava_spikes.npz) when they are
    of this very quantized graph (``QuantGraph.digest``); else None."""
    from hardware.spike_record import SpikeRecord

    path = run.subdir("parity") / "lava_spikes.npz"
    if not kio.exists(path):
        return None
    try:
        rec = SpikeRecord.from_bytes(kio.read_bytes(path))
    except (OSError, ValueError):
        return None  # a broken cache is only a miss
    return rec if rec.digest == qgraph.digest() and rec.samples else None


def _lava_run_or_reuse(rec, qgraph, x, progress: bool) -> tuple:
    """``(readout, spikes)`` of the samples ``x`` (the first of the test split): parity's
    when its record covers them, else a Lava run with the fast synapse models."""
    n = x.shape[1]
    if rec is not None and rec.samples >= n:
        print(f"Lava spikes: reused from the parity run ({n} of the {rec.samples} samples in "
              f"parity/lava_spikes.npz, quantized graph sha256 {rec.digest[:12]})")
        return rec.first(n)
    print(f"Lava spikes: running Lava on {n} samples (no parity run of this quantized graph "
          "kept them)")
    import lava.proc.lif.process  # noqa: F401  (fork start method first)

    from export.fixed_point import encode_input
    from hardware.lava_sim import run_lava_batches
    return run_lava_batches(qgraph, encode_input(x), conv_model="fast", progress=progress,
                            desc="report: Lava")


def _print_report_summary(report: dict) -> None:
    for profile, blk in report.get("energy", {}).items():
        for student in blk["student"]:
            teacher = blk.get("teacher") or {}
            ratio = student.get("teacher_over_student")
            line = (f"[{profile}] student ({student['label']}) "
                    f"{student['total_pj'] / 1e6:.4f} uJ/inference")
            if teacher:
                line += (f", teacher {teacher['total_pj'] / 1e6:.4f} uJ"
                         f" (as {teacher.get('charged_as', profile)})")
            if ratio:
                line += f", teacher/student energy {ratio:.2f}x"
            print(line)


def configs_command(args) -> int:
    from kd_snn.config import builtin_configs
    from kd_snn.data import list_datasets
    from kd_snn.models import list_models
    print("configs: " + ", ".join(builtin_configs()))
    print("models: " + ", ".join(list_models()))
    print("datasets: " + ", ".join(list_datasets()))
    return 0


def add_ablate_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "ablate", help="the paper's ablations: every variant x seed at one fixed budget",
        description="Train one teacher per seed (or take --teacher) and one student per "
        "distillation variant and student mode (same budget), write OUT/ablation.json, "
        "OUT/ablation.md and OUT/ablation.png as runs finish. Rerun to resume.")
    p.add_argument("out", help="output directory (one run directory per variant and seed)")
    p.add_argument("--data", nargs="+", default=["both"], metavar="NAME",
                   help="fashion_mnist, fashion_mnist_events or both (default); any "
                        "registered data set works")
    p.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS), metavar="S",
                   help="seeds (default 0 1 2)")
    p.add_argument("--variants", nargs="+", metavar="V",
                   help=f"subset of {', '.join(VARIANTS)} (default all; the teacher runs unless "
                        "--teacher brings one)")
    p.add_argument("--config", help="base config for every data set (default: "
                                    f"{BASE_STATIC} / {BASE_EVENT} by data kind)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override applied to every run, e.g. --set student.epochs=1")
    p.add_argument("--modes", nargs="+", metavar="MODE",
                   help=f"student modes: {', '.join(MODES)} (default spiking; reference = "
                        "the authors' student: ReLU last block, T = 1, ...)")
    p.add_argument("--teacher", metavar="RUN_OR_CHECKPOINT",
                   help="one trained ANN teacher for every student (instead of one teacher "
                        "per seed trained at the students' budget)")
    p.add_argument("--extra-seeds", nargs="+", type=int, default=[], metavar="S",
                   help="more seeds, run for a student mode only where some variant's std "
                        "over --seeds exceeds --extra-if-std points")
    p.add_argument("--extra-if-std", type=float, default=1.0, metavar="PP",
                   help="threshold for --extra-seeds, in accuracy points (default 1.0)")
    p.add_argument("--reference", metavar="V",
                   help="a student variant every other one is also compared with, paired by "
                        "seed (none always is), e.g. samd_nld for the SAMD scalings")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs in parallel (worker processes, cores // jobs threads each)")
    return p


def _check_same_teacher(out: Path, teacher) -> None:
    """Finished students are reused on a rerun: they must come from the same teacher
    (``teacher``: --teacher's description, or None for one teacher per seed)."""
    old = out / "ablation.json"
    if not old.is_file():
        return
    record = kio.read_json_object(old, "ablation record")
    if not any(r.get("variant") != "teacher" and r.get("status") == "done"
               for r in record.get("runs", []) if isinstance(r, dict)):
        return
    before = (record.get("teacher") or {}).get("sha256")
    now = None if teacher is None else teacher["sha256"]
    if before != now:
        def name(sha):
            return "one teacher per seed" if sha is None else f"teacher sha256 {sha[:12]}..."
        raise KdsnnError(f"'{out}' holds students of another teacher ({name(before)}; this "
                         f"command: {name(now)}): use another OUT directory")


def ablate_command(args) -> int:
    logging.getLogger("kdsnn").setLevel(logging.INFO)  # train.log of every stage
    if args.jobs < 1:
        raise KdsnnError(f"--jobs must be >= 1, got {args.jobs}")
    _check_overrides(args.overrides)
    datasets = _datasets(args.data)
    seeds = _seeds(args.seeds)
    extra = list(args.extra_seeds)
    if extra:
        if len(seeds) < 2:
            raise KdsnnError("--extra-seeds needs at least 2 --seeds (their spread decides)")
        if set(extra) & set(seeds):
            raise KdsnnError(f"--extra-seeds {sorted(set(extra) & set(seeds))} already in "
                             f"--seeds")
        _seeds(extra)
        if not args.extra_if_std >= 0:
            raise KdsnnError(f"--extra-if-std must be >= 0, got {args.extra_if_std}")
    variants = _variants(args.variants, external_teacher=args.teacher is not None)
    if args.reference is not None and (args.reference == "teacher"
                                       or args.reference not in variants):
        raise KdsnnError(f"--reference {args.reference!r} must be one of the student variants "
                         f"run ({', '.join(v for v in variants if v != 'teacher')})")
    modes = _modes(args.modes)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise KdsnnError(f"'{out}' exists and is not a directory")
    teacher_path = teacher = None
    if args.teacher is not None:
        teacher_path, teacher = teacher_info(args.teacher)
        check_teacher_fits(teacher, datasets)
    _check_same_teacher(out, teacher)
    tasks = plan(out, datasets, seeds + extra, variants, args.config, args.overrides, modes,
                 external_teacher=teacher_path)
    for task in tasks:
        if task.seed in extra:
            task.status = "conditional"
        _check_existing(task)
    cmd = ["kdsnn", "ablate", str(out), "--data", *args.data, "--seeds", *map(str, seeds)]
    if args.variants:
        cmd += ["--variants", *args.variants]
    if args.modes:
        cmd += ["--modes", *modes]
    if args.teacher:
        cmd += ["--teacher", args.teacher]
    if extra:
        cmd += ["--extra-seeds", *map(str, extra), "--extra-if-std", f"{args.extra_if_std:g}"]
    if args.reference:
        cmd += ["--reference", args.reference]
    if args.config:
        cmd += ["--config", args.config]
    for o in args.overrides:
        cmd += ["--set", o]
    if args.jobs != 1:
        cmd += ["--jobs", str(args.jobs)]
    meta = {"command": shlex.join(cmd), "datasets": datasets, "seeds": seeds,
            "variants": variants, "modes": modes, "overrides": list(args.overrides),
            "config": args.config, "teacher": teacher, "extra_seeds": extra,
            "extra_if_std": args.extra_if_std if extra else None, "reference": args.reference}
    skipped = sum(t.status == "done" for t in tasks)
    maybe = sum(t.status == "conditional" for t in tasks)
    print(f"ablation: {len(tasks) - maybe} runs ({skipped} already finished)"
          + (f" + up to {maybe} for --extra-seeds" if maybe else "")
          + f" in '{out}', {args.jobs} job(s)", flush=True)
    runner = Runner(out, tasks, args.jobs, meta, echo=lambda s: print(s, flush=True),
                    extra_if_std=args.extra_if_std)
    with RunDir(out).lock():  # one ablation per output directory
        runner.run()
    print(f"tables: {out / 'ablation.md'}  ({time.time() - runner.t0:.0f} s)", flush=True)
    bad = [t for t in tasks if t.status not in ("done", "not_needed")]
    if bad:
        raise KdsnnError(f"{len(bad)} run(s) did not finish, first: {bad[0].key} "
                         f"({bad[0].error})")
    return 0


COMMANDS = {
    "teacher": lambda a: stage_command(a, "teacher"),
    "distill": lambda a: stage_command(a, "student"),
    "eval": eval_command,
    "quantize": quantize_command,
    "export": export_command,
    "parity": lambda a: _parity(a),
    "import": lambda a: _import(a),
    "report": report_command,
    "configs": configs_command,
    "ablate": ablate_command,
}
