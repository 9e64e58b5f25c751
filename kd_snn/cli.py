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

    p = sub.add_parser("quantize", help="quantize the student to Loihi fixed point and report")
    _add_run(p, config=False)
    p.add_argument("--calib", type=int, default=256, help="calibration samples (train set)")
    p.add_argument("--samples", type=int, help="test samples for the accuracy (default: all)")

    p = sub.add_parser("export", help="export the student (and teacher) to NIR, ONNX, Lava")
    _add_run(p, config=False)
    p.add_argument("--target", action="append", required=True,
                   help="quant, nir, onnx, lava or all (repeatable)")
    p.add_argument("--calib", type=int, default=256, help="calibration samples (train set)")
    p.add_argument("--samples", type=int, help="test samples for the quantized accuracy")

    p = sub.add_parser("parity", help="float vs integer emulation vs Lava fixed_pt")
    _add_run(p, config=False)
    p.add_argument("--samples", type=int, default=100, help="test samples (default 100)")
    p.add_argument("--jobs", type=int, default=1, help="parallel Lava processes")
    p.add_argument("--batch", type=int, default=16, help="samples per Lava segment")
    p.add_argument("--conv-model", choices=("lava", "fast"), default="lava",
                   help="Lava's stock fixed_pt Conv model, or kdsnn's bit-identical vectorised "
                        "one (much faster for wide layers)")

    p = sub.add_parser("report", help="energy and sparsity report of the student")
    _add_run(p, config=False)
    p.add_argument("--samples", type=int, default=256, help="test samples analysed")
    p.add_argument("--source", choices=("torch", "lava", "both"), default="torch",
                   help="spike counts from PyTorch, from a Lava run, or both side by side")
    p.add_argument("--profile", action="append", default=None,
                   help="energy profile name or YAML file (repeatable; default cmos45nm, loihi)")
    p.add_argument("--html", action="store_true", help="also write a self-contained report.html")
    p.add_argument("--compare", nargs="*", default=[], metavar="RUN",
                   help="other runs (with a report) for the accuracy-vs-energy plot")

    from .ablate import add_parser as add_ablate
    add_ablate(sub)

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
    final = stage_runner.fit(resume=args.resume)
    print(f"{stage} test accuracy: {final['test_accuracy'] * 100:.2f}% "
          f"(best {final['best_test_accuracy'] * 100:.2f}%)  -> {run.model_path(stage)}")
    return 0


def _eval_command(args) -> int:
    from .rundir import RunDir
    from .trainer import evaluate, load_trained, open_dataset, pick_device

    run = RunDir(args.run)
    cfg = run.resolve_config(None, args.overrides)
    device = pick_device(args.device or cfg.device)
    stages = ("teacher", "student") if args.which == "both" else (args.which,)
    test = open_dataset(cfg, "test")
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


def _run_for_export(args):
    from .rundir import RunDir
    run = RunDir(args.run)
    if not run.config_path.is_file():
        raise KdsnnError(f"'{run.path}' is not a kdsnn run directory (no config.yaml)")
    if args.overrides:
        raise KdsnnError("--set is only for training commands; the run's config is used as is")
    return run


def _quantize_command(args) -> int:
    from export.pipeline import export_run
    export_run(_run_for_export(args), ["quant"], args.calib, args.samples)
    print(f"report: {args.run}/export/quantize.md")
    return 0


def _export_command(args) -> int:
    from export.pipeline import export_run
    run = _run_for_export(args)
    export_run(run, args.target, args.calib, args.samples)
    print(f"manifest: {run.subdir('export') / 'manifest.json'}")
    return 0


def _load_quant_or_make(run):
    """The exported QuantGraph (RUN/export/student.quant.npz), made if missing."""
    from export.pipeline import export_run, load_student
    from export.quantize import load_quant
    from export.latency import balance_latency

    qpath = run.subdir("export") / "student.quant.npz"
    if not qpath.is_file():
        export_run(run, ["quant"])
    _, _, graph = load_student(run)
    try:
        qgraph = load_quant(qpath)
    except (OSError, ValueError, KeyError) as exc:
        raise KdsnnError(f"'{qpath}' is corrupt ({type(exc).__name__}); re-run "
                         f"'kdsnn export {run.path} --target lava'") from None
    balanced = balance_latency(graph)
    if [l.name for l in balanced.layers] != [l.name for l in qgraph.layers]:
        raise KdsnnError(f"'{qpath}' does not match the run's student; re-run "
                         f"'kdsnn export {run.path} --target lava'")
    return graph, balanced, qgraph


def _parity_command(args) -> int:
    import lava.proc.lif.process  # noqa: F401  (fixes the fork start method first)

    from export.pipeline import sample_inputs
    from hardware import parity
    from kd_snn.io import write_json, write_text

    run = _run_for_export(args)
    if args.samples <= 0 or args.jobs <= 0 or args.batch <= 0:
        raise KdsnnError("--samples, --jobs and --batch must be > 0")
    _, balanced, qgraph = _load_quant_or_make(run)
    x, y = sample_inputs(run.load_config(), "test", args.samples)
    result = parity.run_parity(balanced, qgraph, x, y, jobs=args.jobs, batch=args.batch,
                               progress=not args.no_progress, conv_model=args.conv_model)
    out = run.subdir("parity")
    write_json(out / "parity.json", result)
    write_text(out / "parity.md", parity.markdown(result))
    parity.plot(result, out / "parity.png")
    run.update_metrics("parity", {"accuracy": result["accuracy"], "samples": result["samples"],
                                  "bit_exact": result["bit_exact_emulation_vs_lava"],
                                  "lava_samples_per_s": result["throughput_samples_per_s"]})
    acc = result["accuracy"]
    print(f"parity on {result['samples']} samples: float {acc['float'] * 100:.2f}%, emulation "
          f"{acc['emulation'] * 100:.2f}%, Lava {acc['lava'] * 100:.2f}%; emulation == Lava "
          f"bit for bit: {'yes' if result['bit_exact_emulation_vs_lava'] else 'NO'}; "
          f"{result['throughput_samples_per_s']} samples/s  -> {out / 'parity.md'}")
    return 0


def _report_command(args) -> int:
    import json as _json

    from export.pipeline import load_student, sample_inputs
    from hardware.energy import analyze_graph, teacher_macs
    from hardware.report import build_report, run_entry
    from .rundir import RunDir
    from .trainer import load_trained

    run = _run_for_export(args)
    if args.samples <= 0:
        raise KdsnnError("--samples must be > 0")
    cfg = run.load_config()
    x, _ = sample_inputs(cfg, "test", args.samples)
    _, _, graph = load_student(run)
    stats = {}
    if args.source in ("torch", "both"):
        stats["torch"] = analyze_graph(graph, x, source="torch")
    if args.source in ("lava", "both"):
        import lava.proc.lif.process  # noqa: F401
        from export.quantize import encode_input
        from hardware.lava_sim import run_lava
        _, _, qgraph = _load_quant_or_make(run)
        _, spikes = run_lava(qgraph, encode_input(x), record=True)
        stats["lava"] = analyze_graph(qgraph, x, spikes=spikes, source="lava")
    macs = None
    if run.has_model("teacher"):
        teacher, _ = load_trained(run.model_path("teacher"), expect_spiking=False)
        macs = teacher_macs(teacher.float(), tuple(x.shape[2:]))
    metrics = run.read_metrics()
    accuracy = {k: metrics[k]["test_accuracy"] for k in ("student", "teacher")
                if k in metrics and metrics[k].get("test_accuracy") is not None}
    runs = []
    for other in args.compare:
        path = RunDir(other).subdir("report") / "report.json"
        if not path.is_file():
            raise KdsnnError(f"'{other}' has no report: run 'kdsnn report {other}' first")
        try:
            runs.append(run_entry(_json.loads(path.read_text()), str(other)))
        except (ValueError, KeyError):
            raise KdsnnError(f"'{path}' is not a kdsnn report") from None
    try:
        report = build_report(run.subdir("report"), stats, teacher_macs=macs,
                              profiles=args.profile or ("cmos45nm", "loihi"),
                              accuracy=accuracy, runs=runs or None, html=args.html,
                              meta={"run": run.path.name, "samples": int(x.shape[1]),
                                    "time_steps": cfg.data.time_steps})
    except ValueError as exc:
        raise KdsnnError(str(exc).splitlines()[0]) from None
    _print_report_summary(report)
    print(f"report: {run.subdir('report') / 'report.md'}")
    return 0


def _print_report_summary(report: dict) -> None:
    for profile, blk in report.get("energy", {}).items():
        for student in blk["student"]:
            teacher = blk.get("teacher") or {}
            ratio = student.get("teacher_over_student")
            line = (f"[{profile}] student ({student['label']}) "
                    f"{student['total_pj'] / 1e6:.4f} uJ/inference")
            if teacher:
                line += f", teacher {teacher['total_pj'] / 1e6:.4f} uJ"
            if ratio:
                line += f", teacher/student energy {ratio:.2f}x"
            print(line)


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
    "quantize": _quantize_command,
    "export": _export_command,
    "parity": _parity_command,
    "report": _report_command,
    "configs": _configs_command,
    "ablate": lambda a: __import__("kd_snn.ablate", fromlist=["command"]).command(a),
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
        hint = ("rerun the same command to resume" if args.command == "ablate" else
                "checkpoints are kept: --resume continues training")
        print(f"kdsnn: interrupted ({hint})", file=sys.stderr)
        return 130


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
