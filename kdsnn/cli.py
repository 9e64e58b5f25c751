"""The ``kdsnn`` command line: it parses arguments, calls the Python API (:mod:`kdsnn`) and
prints. Every command takes a run directory first::

    kdsnn teacher --config digits runs/demo
    kdsnn distill runs/demo
    kdsnn eval runs/demo
    kdsnn export runs/demo --target all
    kdsnn parity runs/demo --samples 50
    kdsnn report runs/demo --html

Every failure ends with one line ``kdsnn: error: ...`` and exit code 2, and leaves the run
directory as it was.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn, Optional

from kd_snn.errors import KdsnnError

from . import __version__

EXIT_USAGE = 2


class UsageError(KdsnnError):
    """A command line argparse refused."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one error line (no usage block), options are
    never matched by prefix (``--htm`` is not ``--html``), and examples keep their lines."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _example(*lines: str) -> str:
    return "example:\n" + "\n".join(f"  {line}" for line in lines)


def _add_run(p: argparse.ArgumentParser, config: bool = False, overrides: bool = False,
             device: str = "cpu, cuda, cuda:1 ... (default: config, 'auto')") -> None:
    p.add_argument("run", help="run directory" + (" (created if needed)" if config else ""))
    if config:
        p.add_argument("--config", help="shipped config name or YAML path "
                                         "(default: the run's config.yaml)")
    if overrides:
        p.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE", help="override a config field, e.g. "
                       "--set teacher.epochs=5 (repeatable)")
    p.add_argument("--device", help=device)
    p.add_argument("--no-progress", action="store_true", help="hide progress output")


AFTER_TRAINING_DEVICE = ("cpu, cuda, cuda:1 ... (default: auto = CUDA when present): where "
                         "calibration, the float pass, the integer emulation (bit-identical "
                         "on every device) and the counting run; Lava runs on the CPU")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="kdsnn", description="Distil spiking students from ANN teachers (SAMD + NLD, "
        "arXiv 2511.06902), export them to Loihi fixed point through NIR and Lava, check "
        "bit-exact parity, measure energy.",
        epilog="A run directory is the unit every command takes. Chain on the embedded "
        "digits set:\n  kdsnn teacher --config digits runs/demo && kdsnn distill runs/demo"
        " && kdsnn export runs/demo --target all\n  kdsnn parity runs/demo --samples 60 && "
        "kdsnn report runs/demo --source both --html")
    parser.add_argument("--version", action="version", version=f"kdsnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    p = sub.add_parser("teacher", help="train the ANN teacher of a run",
                       description="Train the run's ANN teacher (plain cross-entropy).",
                       epilog=_example("kdsnn teacher --config digits runs/demo "
                                       "--set teacher.epochs=5"))
    _add_run(p, config=True, overrides=True)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--force", action="store_true", help="retrain when a model exists")

    p = sub.add_parser("distill", help="train the spiking student from the frozen teacher",
                       description="Distil the run's spiking student from its frozen teacher "
                       "with the config's loss (default SAMD + NLD).",
                       epilog=_example("kdsnn distill runs/demo --set student.epochs=5",
                                       "kdsnn distill runs/other --config digits "
                                       "--teacher runs/demo"))
    _add_run(p, config=True, overrides=True)
    p.add_argument("--teacher", help="teacher run directory or checkpoint "
                                     "(default: RUN/teacher/model.safetensors)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--force", action="store_true", help="retrain when a model exists")

    p = sub.add_parser("eval", help="evaluate the teacher and/or student of a run",
                       description="Top-1 accuracy on the whole test split, recorded in "
                       "RUN/metrics.json.", epilog=_example("kdsnn eval runs/demo --which "
                                                           "student"))
    _add_run(p, overrides=True)
    p.add_argument("--which", choices=("teacher", "student", "both"), default="both")

    p = sub.add_parser("quantize", help="quantize the student to Loihi fixed point and report",
                       description="Quantize the student to Loihi fixed point and compare "
                       "float vs integer emulation: RUN/export/student.quant.nir, "
                       "quantize.{json,md}.", epilog=_example("kdsnn quantize runs/demo "
                                                             "--calib 128"))
    _add_run(p, device=AFTER_TRAINING_DEVICE)
    p.add_argument("--calib", type=int, default=256, help="calibration samples (train set)")
    p.add_argument("--samples", type=int, help="test samples for the accuracy (default: all)")

    p = sub.add_parser("export", help="export the student (and teacher) to NIR, ONNX, Lava",
                       description="Write RUN/export/: the Loihi fixed-point network, NIR, "
                       "ONNX and netx files beside manifest.json.",
                       epilog=_example("kdsnn export runs/demo --target all",
                                       "kdsnn export runs/demo --target nir --target onnx"))
    _add_run(p, device=AFTER_TRAINING_DEVICE)
    p.add_argument("--target", action="append", required=True,
                   help="quant, nir, onnx, lava or all (repeatable)")
    p.add_argument("--calib", type=int, default=256, help="calibration samples (train set)")
    p.add_argument("--samples", type=int, help="test samples for the quantized accuracy")

    p = sub.add_parser("parity", help="float vs integer emulation vs Lava fixed_pt",
                       description="Run the first --samples test samples through the float "
                       "student, the integer emulation and Lava's fixed_pt simulator and "
                       "compare them spike by spike. Split over machines with --shard K/N "
                       "(each writes RUN/parity/shards/K-of-N.json), then --merge.",
                       epilog=_example("kdsnn parity runs/demo --samples 60",
                                       "kdsnn parity runs/demo --samples 64 --shard 1/2  "
                                       "# then 2/2, then --merge"))
    _add_run(p, device=AFTER_TRAINING_DEVICE)
    p.add_argument("--samples", type=int, default=100, help="test samples (default 100)")
    p.add_argument("--jobs", type=int, default=1, help="parallel Lava processes")
    p.add_argument("--batch", type=int, default=16, help="samples per Lava segment")
    p.add_argument("--conv-model", choices=("fast", "lava"), default="fast",
                   help="synapse models: kdsnn's BLAS Conv/Dense models with the stock "
                        "arithmetic (default; Lava's stock models re-check the first "
                        "--stock-check samples) or Lava's stock models throughout ('lava')")
    p.add_argument("--stock-models", action="store_true",
                   help="Lava's stock fixed_pt models throughout (= --conv-model lava)")
    p.add_argument("--stock-check", type=int, default=2, metavar="N",
                   help="samples re-run with Lava's stock models when the fast ones run "
                        "(default 2; 0 skips the re-check, and parity.md says so)")
    p.add_argument("--shard", metavar="K/N",
                   help="run only the K-th of N disjoint slices of the samples and write "
                        "RUN/parity/shards/K-of-N.json (needs 'kdsnn export --target lava')")
    p.add_argument("--merge", action="store_true",
                   help="combine RUN/parity/shards/*-of-N.json into parity.json/md (the "
                        "same bytes one run writes)")
    p.add_argument("--no-full-test", dest="full_test", action="store_false",
                   help="skip the integer emulation's accuracy over the whole test split "
                        "(reused from export when stored for the same quantized graph)")

    p = sub.add_parser(
        "import", help="make a run from a spiking network trained elsewhere (a NIR file)",
        description="Read a NIR graph written by another tool (snntorch, norse, "
        "spikingjelly, sinabs, ...), fit it to a data set and make RUN from it, so that "
        "quantize, export, parity and report work on it as on a distilled student.",
        epilog=_example("kdsnn import model.nir runs/imported --data digits",
                        "kdsnn import model.nir runs/mine --data my.npz  # your own arrays",
                        "kdsnn export runs/imported --target all"))
    p.add_argument("model", help="the NIR file (.nir)")
    p.add_argument("run", help="run directory to create (or a run holding only a teacher)")
    p.add_argument("--data", required=True, help="the data set it was trained on: a name "
                   "(see 'kdsnn configs'), or your own arrays as an .npz file (x_train, "
                   "y_train, x_test, y_test; samples (N, ...) or sequences (N, T, ...); see "
                   "the guide 'Your own data')")
    p.add_argument("--teacher", help="the ANN teacher for the report's ratio: a kdsnn run or "
                                     "checkpoint (.safetensors), or an ONNX file")
    p.add_argument("--time-steps", type=int, help="steps per sample (default: the file's "
                                                   "metadata, else the data set's default; "
                                                   "sequences: their own T)")
    p.add_argument("--dt", type=float, help="the time step the file's taus are in (default: "
                   "the file's metadata, else 1e-4 as snntorch and spikingjelly write; norse "
                   "writes taus for dt = 1e-6, sinabs for dt = 1)")
    p.add_argument("--force", action="store_true", help="replace an imported student")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: auto = CUDA when "
                   "present): where the float forward over the test split runs")
    p.add_argument("--no-progress", action="store_true", help="hide progress output")

    p = sub.add_parser("report", help="energy and sparsity report of the student",
                       description="Per-layer spikes, firing rates, synaptic operations and "
                       "energy against the teacher's MACs: RUN/report/report.{json,md} and "
                       "figures (--html: report.html).",
                       epilog=_example("kdsnn report runs/demo --source both --html",
                                       "kdsnn report runs/demo --conventions neurobench"))
    _add_run(p, device=AFTER_TRAINING_DEVICE)
    p.add_argument("--samples", type=int, default=None,
                   help="test samples analysed (default 256; with --source lava/both the "
                        "samples whose Lava spikes the last parity run kept, when it did)")
    p.add_argument("--source", choices=("torch", "lava", "both"), default="torch",
                   help="spike counts from PyTorch, from a Lava run, or both side by side")
    p.add_argument("--profile", action="append", default=None,
                   help="energy profile name or YAML file (repeatable; default cmos45nm_fp32, "
                        "cmos45nm_int8, loihi)")
    p.add_argument("--html", action="store_true", help="also write a self-contained report.html")
    p.add_argument("--compare", nargs="*", default=[], metavar="RUN",
                   help="other runs (with a report) for the accuracy-vs-energy plot")
    p.add_argument("--conventions", nargs="+", default=[], metavar="PRESET|AXIS=VALUE",
                   help="how operations are charged: a preset (kdsnn, the default; neurobench; "
                        "dense) and/or AXIS=VALUE pairs applied in order (axes: padding, "
                        "first_layer, zero_input, neuron_updates, mac_weights, membrane, "
                        "readout; see the docs' energy conventions)")
    p.add_argument("--replace", action="store_true",
                   help="rewrite the report in place even where that drops what it holds "
                        "(another --source, --profile or --compare); refused without it")

    _add_ablate_parser(sub)

    sub.add_parser("configs", help="list the shipped configs, models and data sets",
                   description="List the shipped configs, models and data sets.",
                   epilog=_example("kdsnn configs"))
    return parser


def _add_ablate_parser(sub) -> None:
    from kd_snn.ablate import BASE_EVENT, BASE_STATIC, DEFAULT_SEEDS, MODES, VARIANTS

    p = sub.add_parser(
        "ablate", help="the paper's ablations: every variant x seed at one fixed budget",
        description="Train one teacher per seed (or take --teacher) and one student per "
        "distillation variant and student mode (same budget), write OUT/ablation.json, "
        "OUT/ablation.md and OUT/ablation.png as runs finish. Rerun to resume.",
        epilog=_example("kdsnn ablate runs/abl --data fashion_mnist --seeds 0 1 2 "
                        "--variants none samd_nld --jobs 2",
                        "... --shard 1/4   # on 4 machines sharing runs/abl; then ... --merge"))
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
    p.add_argument("--shard", metavar="K/N",
                   help="run only the K-th of N disjoint parts of the plan (machines sharing "
                        "OUT; writes OUT/shards/K-of-N.json), then the same command with "
                        "--merge")
    p.add_argument("--merge", action="store_true",
                   help="write the result files from the parts' runs (trains nothing; the "
                        "files a single run writes)")


# the commands: arguments -> one API call -> printed results ---------------------------
def _teacher(a) -> int:
    from .training import train_teacher
    r = train_teacher(a.run, config=a.config, overrides=a.overrides, device=a.device,
                      resume=a.resume, force=a.force, progress=not a.no_progress)
    return _stage_line(r)


def _distill(a) -> int:
    from .training import distill
    r = distill(a.run, teacher=a.teacher, config=a.config, overrides=a.overrides,
                device=a.device, resume=a.resume, force=a.force, progress=not a.no_progress)
    return _stage_line(r)


def _stage_line(r) -> int:
    print(f"{r.stage} test accuracy: {r.test_accuracy * 100:.2f}% "
          f"(best {r.best_test_accuracy * 100:.2f}%)  -> {r.model_path}")
    return 0


def _eval(a) -> int:
    from .training import evaluate
    for r in evaluate(a.run, which=a.which, overrides=a.overrides, device=a.device,
                      progress=not a.no_progress).values():
        print(f"{r.stage} test accuracy: {r.accuracy * 100:.2f}% on {r.samples} samples")
    return 0


def _quantize(a) -> int:
    from .deploy import quantize
    r = quantize(a.run, calib=a.calib, samples=a.samples, device=a.device,
                 progress=not a.no_progress)
    for line in r.lines:
        print(line)
    print(f"report: {a.run}/export/quantize.md")
    return 0


def _export(a) -> int:
    from .deploy import export
    r = export(a.run, targets=a.target, calib=a.calib, samples=a.samples, device=a.device,
               progress=not a.no_progress)
    for line in r.lines:
        print(line)
    print(f"manifest: {r.manifest_path}")
    return 0


def _parity(a) -> int:
    import torch

    from hardware.report_format import stock_words

    from . import verify
    from .devices import lava_note
    if a.shard and a.merge:
        raise KdsnnError("--shard and --merge exclude each other")
    conv_model = "lava" if a.stock_models else a.conv_model
    common = dict(samples=a.samples, jobs=a.jobs, batch=a.batch, conv_model=conv_model,
                  stock_check=a.stock_check, device=a.device, progress=not a.no_progress)
    if a.shard:
        k, n = verify.parse_shard(a.shard)
        s = verify.parity_shard(a.run, k, n, **common)
        print(f"parity shard {k}/{n}: samples {s.lo}..{s.hi - 1} of {s.samples}, "
              f"{s.seconds:.1f} s -> {s.path}; when all {n} are done: "
              f"kdsnn parity {a.run} --merge")
        return 0
    if a.merge:
        r = verify.merge_parity(a.run, full_test=a.full_test, device=a.device,
                                progress=not a.no_progress)
    else:
        r = verify.parity(a.run, full_test=a.full_test, **common)
    result, timing = r.result, r.timing
    note = lava_note(torch.device(timing.get("device", "cpu")))
    if note:
        print(note)
    acc, full = result["accuracy"], result.get("emulation_full_test")
    if full:
        print(f"integer emulation on the whole test split ({full['samples']} samples): "
              f"fixed point {full['quantized'] * 100:.2f}% (float {full['float'] * 100:.2f}%)")
    stock = result.get("stock_conv_check")
    models = ("Lava's stock models" if result.get("conv_model") == "lava" else
              f"kdsnn's BLAS synapse models; Lava's stock Conv/Dense models "
              f"{stock_words(stock)}: {'bit-exact' if stock['bit_exact'] else 'MISMATCH'}"
              if stock else "kdsnn's BLAS synapse models, NOT re-checked with the stock models")
    speed = (f"; {timing['samples_per_s']} samples/s" if timing.get("samples_per_s") else
             f"; merged from {timing['shards']} shards" if timing.get("shards") else "")
    print(f"parity on {result['samples']} samples: float {acc['float'] * 100:.2f}%, emulation "
          f"{acc['emulation'] * 100:.2f}%, Lava {acc['lava'] * 100:.2f}%; emulation == Lava "
          f"bit for bit: {'yes' if r.bit_exact else 'NO'} ({models}){speed}  -> "
          f"{r.files[1]}")
    net = result.get("process_network")
    if net:
        print(f"Lava's process network was built from {net['file']} (read with nir.read; "
              f"sha256 {net['file_sha256'][:12]}, integer graph {net['graph_sha256'][:12]})")
    return 0


def _import(a) -> int:
    from .importing import import_nir
    r = import_nir(a.run, a.model, data=a.data, teacher=a.teacher, time_steps=a.time_steps,
                   dt=a.dt, force=a.force, device=a.device, progress=not a.no_progress)
    for note in r.notes:
        print(note)
    print(f"imported '{a.model}' into {r.run}: {r.layers} layers, input "
          f"{r.input_shape}, T = {r.time_steps}; float test accuracy "
          f"{r.test_accuracy * 100:.2f}% on {r.test_samples} {a.data} samples"
          + ("" if r.teacher is None else f"; teacher {r.teacher}"))
    if r.loihi_problems:
        problems = r.loihi_problems
        print(f"note: Loihi cannot run it as it is ({problems[0]}"
              + (f"; {len(problems) - 1} more" if len(problems) > 1 else "")
              + "): 'kdsnn report' (--source torch) works, quantize/export --target lava do not")
    else:
        print(f"next: kdsnn export {r.run} --target all; kdsnn parity {r.run}; "
              f"kdsnn report {r.run} --source both")
    return 0


def _report(a) -> int:
    from .reporting import report
    r = report(a.run, samples=a.samples, source=a.source, profiles=a.profile, html=a.html,
               compare=a.compare, conventions=a.conventions, replace=a.replace,
               device=a.device, progress=not a.no_progress)
    for note in r.notes:
        print(note)
    for profile, blk in r.report.get("energy", {}).items():
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
    for path in r.files:
        print(f"report: {path}")
    return 0


def _ablate(a) -> int:
    from .ablation import ablate
    from .verify import parse_shard
    logging.getLogger("kdsnn").setLevel(logging.INFO)  # train.log of every stage
    ablate(a.out, data=a.data, seeds=a.seeds, variants=a.variants, config=a.config,
           overrides=a.overrides, modes=a.modes, teacher=a.teacher, extra_seeds=a.extra_seeds,
           extra_if_std=a.extra_if_std, reference=a.reference, jobs=a.jobs,
           shard=parse_shard(a.shard) if a.shard else None, merge=a.merge,
           echo=lambda s: print(s, flush=True))
    return 0


def _configs(a) -> int:
    from kd_snn.config import builtin_configs
    from kd_snn.data import list_datasets
    from kd_snn.models import list_models
    print("configs: " + ", ".join(builtin_configs()))
    print("models: " + ", ".join(list_models()))
    print("datasets: " + ", ".join(list_datasets()))
    return 0


COMMANDS = {"teacher": _teacher, "distill": _distill, "eval": _eval, "quantize": _quantize,
            "export": _export, "parity": _parity, "import": _import, "report": _report,
            "ablate": _ablate, "configs": _configs}


def main(argv: Optional[list[str]] = None) -> int:
    command = None
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        command = args.command
        if command is None:  # bare 'kdsnn': the help, as every tool does
            parser.print_help()
            return 0
        logging.getLogger("kdsnn").setLevel(logging.INFO)
        return COMMANDS[command](args)
    except KdsnnError as exc:
        print(f"kdsnn: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # the environment refused (disk, permissions): still one line
        where = f" '{exc.filename}'" if exc.filename else ""
        print(f"kdsnn: error: {exc.strerror or type(exc).__name__}{where}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        hint = ("rerun the same command to resume" if command == "ablate" else
                "checkpoints are kept: --resume continues training")
        print(f"kdsnn: interrupted ({hint})", file=sys.stderr)
        return 130


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
