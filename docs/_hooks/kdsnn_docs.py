"""MkDocs hooks of the kdsnn docs (``hooks:`` in mkdocs.yml).

- The benchmark plots in ``benchmarks/results/*.png`` are published as ``results/img/*.png``
  (one copy in the repository: the one the benchmarks write).
- ``<!-- generated: cli -->`` in a page becomes the command-line reference, rendered from
  ``kdsnn.cli.build_parser()`` (so it cannot drift from the parser).
- ``<!-- generated: config -->`` becomes the table of config keys, rendered from the
  dataclasses of ``kd_snn.config`` (type, default, allowed values, the comment beside the field).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import typing
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
HELP_WIDTH = "88"  # what a code block of the theme shows without scrolling
#: what a key means, for the fields without a comment beside them in kd_snn/config.py
NOTES = {
    "name": "the run's name (reports and plots use it)",
    "seed": "every random draw of a step is seeded from (seed, stage, epoch, step)",
    "device": "auto (CUDA when available), cpu, cuda, cuda:1, ... (`--device` overrides it)",
    "amp": "mixed precision on CUDA (ignored on CPU)",
    "data.name": "the data set (`kdsnn configs` lists them)",
    "data.root": "where its files are (data sets that are not embedded)",
    "data.download": "allow downloading (off: nothing is downloaded unless asked)",
    "data.time_steps": "T, time steps per sample",
    "data.encoding": "direct (the image repeated at every step), poisson, or frames (events)",
    "data.batch_size": "the global training batch (split over the ranks under torchrun)",
    "data.eval_batch_size": "the batch for evaluation",
    "data.num_workers": "DataLoader worker processes",
    "model": "`cnn`, `resnet19`, `resnet20`, `spikformer`, ... (`kdsnn configs` lists them)",
    "width": "channel multiplier of the model",
    "epochs": "training epochs",
    "optimizer": "the optimizer",
    "lr": "learning rate",
    "momentum": "SGD momentum",
    "weight_decay": "weight decay",
    "scheduler": "learning-rate schedule (cosine to zero, or constant)",
    "warmup_epochs": "linear warm-up epochs",
    "label_smoothing": "cross-entropy label smoothing",
    "model_kwargs": "extra keyword arguments of the model's constructor",
    "neuron.alpha": "current decay α of the CUBA neuron (0: plain LIF); Loihi du = 4096(1-α) - 1",
    "neuron.beta": "voltage decay β; Loihi dv = 4096(1-β)",
    "neuron.threshold": "spike when v > threshold, then v = 0",
    "neuron.surrogate": "surrogate gradient of the spike",
    "neuron.width": "width of the surrogate",
    "loss.preset": "the objective: {presets}",
    "loss.weights": "per-term weights over the preset's, e.g. {samd: 0.5}",
    "loss.tau_nld": "NLD temperature τ",
    "loss.w_nld": "NLD's weight w of the clean branch (1 - w: the noisy branch)",
    "loss.tau_samd": "SAMD's softmax temperature over the map",
    "loss.samd_scaling": "how SAMD scales the maps: softmax (the paper's), zscore, l2",
    "loss.tau_kd": "logit-KD temperature (preset logit_kd)",
}


def on_files(files, config):
    for png in sorted(RESULTS.glob("*.png")):
        files.append(File.generated(config, f"results/img/{png.name}", abs_src_path=str(png)))
    return files


def on_page_markdown(markdown, page, config, files):
    if "<!-- generated: cli -->" in markdown:
        markdown = markdown.replace("<!-- generated: cli -->", cli_reference())
    if "<!-- generated: config -->" in markdown:
        markdown = markdown.replace("<!-- generated: config -->", config_reference())
    return markdown


# --- the command line ---------------------------------------------------------------------

def _help(parser: argparse.ArgumentParser) -> str:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH  # argparse wraps at the terminal's width
    try:
        return parser.format_help().rstrip()
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def _subcommands(parser: argparse.ArgumentParser):
    """(name, one-line help, parser) of every subcommand, in the parser's order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name) or "", sub


def cli_reference() -> str:
    from kdsnn.cli import build_parser

    parser = build_parser()
    subs = list(_subcommands(parser))
    out = ["| command | what it does |", "|---|---|"]
    out += [f"| [`kdsnn {name}`](#kdsnn-{name}) | {text} |" for name, text, _ in subs]
    out += ["", "## `kdsnn`", "", "```text", _help(parser), "```", ""]
    for name, _, sub in subs:
        out += [f"## `kdsnn {name}` {{#kdsnn-{name}}}", "", "```text", _help(sub), "```", ""]
    return "\n".join(out)


# --- config keys --------------------------------------------------------------------------

def _comments(cls) -> dict:
    """The ``# comment`` beside each field of a dataclass, read from its source."""
    import inspect

    notes = {}
    for line in inspect.getsource(cls).splitlines():
        found = re.match(r"\s+(\w+)\s*:[^#]*#\s*(.+)$", line)
        if found:
            notes[found.group(1)] = found.group(2).strip()
    return notes


def _type_name(typ) -> str:
    if isinstance(typ, str):
        return typ
    if typing.get_origin(typ) is typing.Union:
        return " or ".join(_type_name(a) for a in typing.get_args(typ))
    return "null" if typ is type(None) else getattr(typ, "__name__", str(typ))


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return ""
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def config_reference() -> str:
    from kd_snn import config as cfg

    hints = typing.get_type_hints(cfg.Config)
    sections = [("", cfg.Config)] + [
        (f.name, hints[f.name]) for f in dataclasses.fields(cfg.Config)
        if dataclasses.is_dataclass(hints[f.name])]
    out = []
    for prefix, cls in sections:
        title = f"`{prefix}`" if prefix else "top level"
        if prefix in ("teacher", "student"):
            title = "`teacher.*` and `student.*` (one training stage each; `*` is either)"
        elif prefix:
            title += f" ({cls.__name__})"
        if prefix == "student":
            continue  # the same dataclass as teacher: one table for both
        out += [f"### {title}", "", "| key | type | default | allowed | note |",
                "|---|---|---|---|---|"]
        types, notes = typing.get_type_hints(cls), _comments(cls)
        doc = (cls.__doc__ or "").strip()
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(types[f.name]):
                continue
            key = f"{prefix}.{f.name}" if prefix else f.name
            if prefix == "teacher":
                key = f"*.{f.name}"
            choices = (cfg.CHOICES.get(f"{prefix}.{f.name}")
                       or cfg.CHOICES.get(f"student.{f.name}" if prefix == "teacher" else ""))
            allowed = ", ".join(f"`{c}`" for c in choices) if choices else ""
            positive = f"{prefix}.{f.name}" in cfg.POSITIVE or (
                prefix == "teacher" and f"student.{f.name}" in cfg.POSITIVE)
            if positive and not allowed:
                allowed = "> 0"
            note = notes.get(f.name) or NOTES.get(f"{prefix}.{f.name}" if prefix and
                                                  prefix != "teacher" else f.name, "")
            if prefix == "loss" and f.name == "preset":
                from kd_snn.losses import PRESETS
                note = note.format(presets=", ".join(f"`{k}`" for k in PRESETS))
            note = (note.replace("|", "\\|").replace("{", "&#123;").replace("}", "&#125;")
                    if "`" not in note else note.replace("|", "\\|"))
            out.append(f"| `{key}` | {_type_name(types[f.name])} | {_default(f)} | {allowed} "
                       f"| {note} |")
        if doc and not doc.startswith(cls.__name__ + "("):
            out += ["", doc]
        out.append("")
    return "\n".join(out)
