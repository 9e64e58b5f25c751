"""Rewrite the demo's result block (docs/results/demo.md) from a finished ``make demo`` run.

    .venv/bin/python scripts/readme_results.py [--run runs/demo] [--page docs/results/demo.md]

The block between ``<!-- results:begin -->`` and ``<!-- results:end -->`` is generated from
RUN/metrics.json, RUN/parity/parity.json and RUN/report/report.json (what
``scripts/demo.sh`` writes), so the docs show what the run measured and nothing else;
run this again after every demo run.  The README quotes a few of its figures
(tests/test_readme_results.py checks that each one is in the block).  Standard library only.

:func:`replace_block` and :func:`replace_in_pages` are shared by every script that writes a
generated block into the docs (scripts/readme_ablation.py, benchmarks/_common.py).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path
from statistics import mean

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "results" / "demo.md"
sys.path.insert(0, str(ROOT))
from hardware.report_format import stock_words  # noqa: E402
RUN_FILES = ("metrics.json", "parity/parity.json", "report/report.json")
WIDTH = 95  # line width of the generated Markdown


class ResultsError(Exception):
    """A missing or incomplete run, or a page without the marker pair."""


def load_run(run: Path) -> dict:
    """The run's three JSON files by name; a clear error if the demo has not produced them."""
    missing = [name for name in RUN_FILES if not (run / name).is_file()]
    if missing:
        raise ResultsError(f"{run} has no {', '.join(missing)}: run `make demo` first "
                           f"(or pass --run DIR of a finished demo run)")
    return {name: json.loads((run / name).read_text()) for name in RUN_FILES}


def _field(data: dict, source: str, *keys):
    """``data[k1][k2]...``, or an error naming the file and the missing key."""
    value = data
    for key in keys:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            path = "".join(f"[{k!r}]" for k in keys)
            raise ResultsError(f"{source} has no {path}: the run is incomplete, "
                               "run `make demo` again") from None
    return value


def _pct(fraction: float) -> str:
    return f"{fraction * 100:.2f} %"


def _amount(n: float) -> str:
    """0.37 M, 62 k, 512."""
    if n >= 1e5:
        return f"{n / 1e6:.2f} M"
    if n >= 1e3:
        return f"{n / 1e3:.0f} k"
    return f"{n:.0f}"


def _uj(pj: float) -> str:
    return f"{pj / 1e6:.3g} µJ"


def this_machine() -> str:
    """CPU model and core count of the machine running this script (the demo's, normally)."""
    from kd_snn.machine import cpu_model
    cpu = cpu_model()
    threads = os.environ.get("OMP_NUM_THREADS")
    return f"{cpu}, {os.cpu_count()} cores" + (f", OMP_NUM_THREADS={threads}" if threads else "")


def _energy(name: str, block: dict, ratio_range=None) -> str:
    """One profile's energy per inference, student vs teacher (and the ratio's range)."""
    student = block["student"][0]
    text = f"`{name}` student {_uj(student['total_pj'])}"
    if block.get("teacher"):
        text += (f" vs teacher {_uj(block['teacher']['total_pj'])} (teacher / student "
                 f"{student['teacher_over_student']:.2f}×")
        if ratio_range:
            text += f"; {ratio_range[0]:.2f}× – {ratio_range[1]:.2f}× over the conventions"
        text += ")"
    return text


def results_block(data: dict, run_label: str, machine: str) -> str:
    """The Markdown between the markers (markers excluded)."""
    metrics, parity, report = (data[name] for name in RUN_FILES)
    m = lambda *keys: _field(metrics, "metrics.json", *keys)  # noqa: E731
    p = lambda *keys: _field(parity, "parity/parity.json", *keys)  # noqa: E731
    r = lambda *keys: _field(report, "report/report.json", *keys)  # noqa: E731

    lava_n, bit_exact = m("parity", "samples"), m("parity", "bit_exact")
    lava_note = ("equal to the integer emulation bit for bit at every layer and step"
                 if bit_exact else "**not** bit-exact with the integer emulation "
                 "(see parity/parity.md)")
    rows = [  # training evaluates on the whole test split
        ("ANN teacher (`{}`)".format(m("teacher", "model")), "all",
         _pct(m("teacher", "test_accuracy"))),
        ("spiking student (`{}`), loss `{}`".format(m("student", "model"), m("student", "loss")),
         "all", _pct(m("student", "test_accuracy"))),
        ("Loihi fixed point (integer emulation)", m("quantized", "samples"),
         _pct(m("quantized", "quantized"))),
        ("Lava `Loihi2SimCfg(select_tag='fixed_pt')`", lava_n,
         f"{_pct(m('parity', 'accuracy', 'lava'))} — {lava_note}"),
    ]
    acc = m("parity", "accuracy")
    layers = p("layers")
    agreement = " / ".join(f"{mean(layer['agreement']['float_vs_lava']) * 100:.1f}"
                           for layer in layers)
    names = " / ".join(layer["name"] for layer in layers)

    student = r("student", 0)
    totals = student["totals"]
    ranges = report.get("ratio_range") or {}
    energy = [_energy(name, r("energy", name), ranges.get(name)) for name in r("profile_order")]
    applied = (report.get("conventions") or {}).get("applied") or {}
    conventions = ", ".join(f"{k} `{v}`" for k, v in applied.items())
    teacher_macs = (f"; the teacher needs {_amount(report['teacher']['macs'])} MACs"
                    if report.get("teacher") else "")

    table = "\n".join(["| | test images | accuracy |", "|---|---|---|",
                        *(f"| {name} | {n} | {value} |" for name, n, value in rows)])
    paragraphs = [
        f"Measured by `make demo` (`{run_label}`, seed {m('student', 'seed')}, "
        f"`{m('student', 'data')}`, T = {m('student', 'time_steps')}) on {machine}:",
        table,
        f"On the {lava_n} images run in Lava: float {_pct(acc['float'])}, emulation "
        f"{_pct(acc['emulation'])}, Lava {_pct(acc['lava'])}; the float and Lava predictions "
        f"agree on {_pct(p('prediction_agreement', 'float_vs_lava'))}; spike agreement "
        f"float / Lava per layer ({names}): {agreement} %.",
        f"Energy (`{run_label}/report`, {r('meta', 'samples')} test images, spikes of the "
        f"`{student['label']}` run): the student needs {_amount(totals['synops'])} SynOps and "
        f"{_amount(totals['macs'])} MACs (input layer, analog) per inference at a mean "
        f"firing rate of {_pct(totals['firing_rate'])}{teacher_macs}"
        + (f" (conventions: {conventions})" if conventions else "") + ". Per inference: "
        + "; ".join(energy) + ".",
        f"Time: teacher training {m('teacher', 'train_seconds'):.0f} s, student training "
        f"{m('student', 'train_seconds'):.0f} s; Lava {m('parity', 'lava_samples_per_s')} "
        f"samples/s with `--jobs {metrics['parity'].get('jobs') or parity.get('jobs')}` "
        f"(synapse models `{parity.get('conv_model', 'lava')}`"
        + (f"; Lava's stock Conv/Dense models {stock_words(parity['stock_conv_check'])}: "
           f"bit-exact {'yes' if parity['stock_conv_check']['bit_exact'] else 'NO'}"
           if parity.get("stock_conv_check") else "") + ").",
        "Which figures depend on the machine: training is floating point, so the trained "
        "weights, and with them every accuracy, spike and energy figure above, depend on the "
        "CPU kind and the thread count (`OMP_NUM_THREADS`); the times also depend on the "
        "machine's load. What does not: the integer emulation equals Lava bit for bit on "
        "every machine (integer arithmetic), and a rerun on the same CPU kind with the same "
        "thread count reproduces every figure except the times exactly.",
    ]
    note = (f"<!-- written by scripts/readme_results.py from {run_label}: "
            "run it again after `make demo`, do not edit by hand -->")
    return note + "\n" + "\n\n".join(
        part if part is table else textwrap.fill(part, WIDTH, break_long_words=False,
                                                 break_on_hyphens=False)
        for part in paragraphs) + "\n"


def replace_block(text: str, block: str, readme_label: str, begin: str = BEGIN,
                  end: str = END) -> str:
    """``text`` with the marked block replaced; exactly one marker pair must be there."""
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ResultsError(f"{readme_label} needs exactly one '{begin}' ... '{end}' pair")
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    return f"{head}{begin}\n{block}{end}{tail}"


def replace_in_pages(pages: dict, block: str, begin: str, end: str) -> dict:
    """``pages`` ({path: text}) with the marked block replaced in the one page that holds
    ``begin``; an error when no page or more than one holds it."""
    holders = [path for path, text in pages.items() if begin in text]
    if len(holders) != 1:
        where = ", ".join(str(p) for p in pages)
        raise ResultsError(f"exactly one of {where} must hold '{begin}' ... '{end}' "
                           f"({len(holders)} do)")
    path = holders[0]
    return {**pages, path: replace_block(pages[path], block, str(path), begin, end)}


def write_pages(pages: dict, before: dict) -> None:
    """Write each page whose text changed, each through a temp file (never a half page)."""
    for path, text in pages.items():
        if text != before.get(path):
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(text)
            os.replace(tmp, path)


def _label(path: Path) -> str:
    """``path`` as the page should name it: relative to the repository when inside it."""
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def _error(message: str) -> int:
    print(f"readme_results: error: {message}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "demo",
                        help="finished demo run directory (default: runs/demo)")
    parser.add_argument("--page", "--readme", dest="page", type=Path, default=PAGE,
                        help="the page holding the block (default: docs/results/demo.md)")
    parser.add_argument("--machine", default=None,
                        help="where the run was made (default: this machine)")
    args = parser.parse_args(argv)
    try:
        data = load_run(args.run)
        block = results_block(data, _label(args.run), args.machine or this_machine())
        text = replace_block(args.page.read_text(), block, str(args.page))
        tmp = args.page.with_name(f".{args.page.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, args.page)  # never a half-written page
    except (KeyError, IndexError, TypeError) as exc:  # a field below the ones _field checks
        return _error(f"a file in {args.run} lacks {exc}: the run is incomplete, "
                      "run `make demo` again")
    except (ResultsError, OSError, ValueError) as exc:
        return _error(str(exc))
    print(f"{args.page}: result block rewritten from {args.run}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
