"""The ``kdsnn`` command line.  Every command takes a run directory first.

    kdsnn teacher --config digits runs/demo
    kdsnn distill runs/demo
    kdsnn eval runs/demo
    kdsnn export runs/demo --target lava
    kdsnn parity runs/demo --samples 50
    kdsnn report runs/demo

Every failure ends with one line ``kdsnn: error: ...`` and exit code 2, and leaves
the run directory as it was (see :mod:`kdsnn.commands`).
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn, Optional

from kd_snn.errors import KdsnnError

from . import commands

EXIT_USAGE = 2


class UsageError(KdsnnError):
    """A command line argparse refused."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one error line (no usage block)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _add_run(p: argparse.ArgumentParser, config: bool = True) -> None:
    p.add_argument("run", help="run directory (created if needed)")
    if config:
        p.add_argument("--config", help="shipped config name or YAML path "
                                         "(default: the run's config.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set student.epochs=5 (repeatable)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: config, 'auto')")
    p.add_argument("--no-progress", action="store_true", help="hide progress output")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="kdsnn", description="Distil spiking students from ANN teachers (SAMD + NLD), "
        "export them to Loihi through NIR and Lava, check parity, measure energy.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=Parser)

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

    p = sub.add_parser("parity", help="float vs integer emulation vs Lava fixed_pt",
                       description="Run the first --samples test samples through the float "
                       "student, the integer emulation and Lava's fixed_pt simulator and "
                       "compare them spike by spike. Split over machines with --shard K/N "
                       "(each writes RUN/parity/shards/K-of-N.json), then --merge.")
    _add_run(p, config=False)
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

    from .import_cmd import add_parser as add_import_parser
    add_import_parser(sub)

    p = sub.add_parser("report", help="energy and sparsity report of the student")
    _add_run(p, config=False)
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
                        "readout; see README 'Energy')")

    commands.add_ablate_parser(sub)

    sub.add_parser("configs", help="list the shipped configs and models")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    command = None
    try:
        args = build_parser().parse_args(argv)
        command = args.command
        logging.getLogger("kdsnn").setLevel(logging.INFO)
        return commands.COMMANDS[command](args)
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
