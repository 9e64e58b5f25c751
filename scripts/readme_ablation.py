"""Rewrite the docs' ablation and claims blocks from the ablations' result files.

    .venv/bin/python scripts/readme_ablation.py [--results FILE ...] [--page PAGE ...]

Every result file ``benchmarks/results/ablation_NAME.json`` that ``benchmarks/ablation.py
--ablation NAME --save`` (``kdsnn ablate``) writes has its block between
``<!-- ablation_NAME:begin -->`` and ``<!-- ablation_NAME:end -->`` (the converged one:
``<!-- ablation:begin -->`` / ``<!-- ablation:end -->``) in docs/results/ablation.md, and the
claims table (``<!-- claims:begin -->``) is in docs/results/claims.md: each block goes to the
one page given (``--page``, repeatable; default: those two) that holds its markers.  By default
every committed one of :data:`NAMES` is regenerated, and no page is written unless all succeed.  A block holds
one table per student mode with mean ± std over seeds, the difference to no KD, twice its
standard error and whether the difference exceeds it, the paired difference by seed with its
95 % t interval and sign count (and against the ablation's reference variant), the runs not
finished yet, the learning curve that shows the budget is converged, and a sentence that only
restates what the table says.  Run it again after every ablation run.  Standard library only.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from readme_results import (ResultsError, replace_in_pages,  # noqa: E402  (the demo's twin)
                            write_pages)

BEGIN, END = "<!-- ablation:begin -->", "<!-- ablation:end -->"
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT = RESULTS / "ablation_converged.json"
#: the docs pages that hold the blocks by default
PAGES = (ROOT / "docs" / "results" / "ablation.md", ROOT / "docs" / "results" / "claims.md")
#: the ablations whose committed result files the docs show, in page order
NAMES = ("converged", "scaling", "spikformer", "events")
#: table order (the ablation's own); JSON objects come back with sorted keys
ORDER = ("teacher", "none", "logit_kd", "nld", "samd", "samd_nld", "samd_nld_zscore",
         "samd_nld_l2", "camcam")
MODE_TITLE = {"spiking": "fully spiking student (kdsnn default: spiking last block)",
              "reference": "reference-mode student (ReLU last block, fc-fc head)"}


CLAIMS_BEGIN, CLAIMS_END = "<!-- claims:begin -->", "<!-- claims:end -->"
#: The paper's claims that kdsnn can test (figures as FIELD-NOTES §4 records them from the
#: paper and the authors' code): (claim, paper's figure, result file NAME, group, winner,
#: loser). A claim holds here where the 95 % paired interval of winner - loser lies above 0.
CLAIMS = (
    ("SAMD + NLD distils a better spiking student than no KD",
     "CIFAR-100, ResNet-19: 79.62 % (the no-KD figure is not in our notes)", "converged",
     "fashion_mnist", "samd_nld", "none"),
    ("NLD adds to SAMD (SAMD + NLD > SAMD alone)", "CIFAR-100, ResNet-19: 79.62 vs 78.95 %",
     "converged", "fashion_mnist", "samd_nld", "samd"),
    ("SAMD adds to NLD (SAMD + NLD > NLD alone)", "CIFAR-100, ResNet-19: 79.62 vs 77.58 %",
     "converged", "fashion_mnist", "samd_nld", "nld"),
    ("the student's SAM beats its CAM as the distilled map (SAMD > CAM-CAM)",
     "83.07 vs 77.23 % (CAM-SAM vs CATKD's CAM-CAM)", "converged", "fashion_mnist", "samd",
     "camcam"),
    ("NLD adds to SAMD, reference-code student", "as above: 79.62 vs 78.95 %", "converged",
     "fashion_mnist/reference", "samd_nld", "samd"),
    ("SAMD adds to NLD, reference-code student", "as above: 79.62 vs 77.58 %", "converged",
     "fashion_mnist/reference", "samd_nld", "nld"),
    ("SAMD > CAM-CAM, reference-code student", "as above: 83.07 vs 77.23 %", "converged",
     "fashion_mnist/reference", "samd", "camcam"),
    ("softmax scaling of the maps beats z-score", "CIFAR-100: 79.11 vs 76.48 %", "scaling",
     "fashion_mnist", "samd_nld", "samd_nld_zscore"),
    ("z-score scaling beats L2-norm", "CIFAR-100: 76.48 vs 75.56 %", "scaling",
     "fashion_mnist", "samd_nld_zscore", "samd_nld_l2"),
    ("softmax scaling beats L2-norm", "CIFAR-100: 79.11 vs 75.56 %", "scaling",
     "fashion_mnist", "samd_nld", "samd_nld_l2"),
    ("distillation helps a Spikformer student (SAMD + NLD > no KD)",
     "Spikformer-4-384 distilled (the paper's figure is not in our notes)", "spikformer",
     "fashion_mnist", "samd_nld", "none"),
    ("SAMD + NLD helps on event data (> no KD)", "CIFAR10-DVS: 81.55 % (vs EnOF-SNN 80.50 %)",
     "events", "fashion_mnist_events", "samd_nld", "none"),
)
#: where a claim's budget differs from the static converged ablation's: how and why
BUDGET_NOTES = {
    "events": "students 10 epochs and the teacher 10 (the static ablation: 20 and 20), so that "
              "the event grid at T = 10 fits one working session on 2 cores",
}
#: claims that no data set here can test: (claim, paper's figure, why not)
NOT_TESTABLE = (
    ("absolute accuracy of ResNet-19 + SAMD + NLD", "CIFAR-100: 79.62 %",
     "no CIFAR-100 files offline (the loader exists, tested on files in its format), and a "
     "400-epoch GPU budget"),
    ("new state of the art on CIFAR10-DVS", "81.55 % vs EnOF-SNN 80.50 %",
     "no CIFAR10-DVS data offline; the saccade-event Fashion-MNIST row above is the event "
     "proxy"),
)


class AblationError(ResultsError):
    """A missing or malformed result file, or a page without the marker pair."""


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _ms(s: dict) -> str:
    if not s.get("n"):
        return "–"
    return _pct(s["mean"]) + (f" ± {_pct(s['std'])}" if s.get("std") is not None else "")


def _curve(curve: list) -> str:
    if None in curve:  # evaluated every few epochs: name the epochs
        return " → ".join(f"{i + 1}: {100 * a:.1f}" for i, a in enumerate(curve)
                          if a is not None)
    return " → ".join(f"{100 * a:.1f}" for a in curve)


def markers(results: Path) -> tuple[str, str]:
    """The marker pair of a result file (the converged one keeps its historic pair)."""
    if results.stem == "ablation_converged":
        return BEGIN, END
    return f"<!-- {results.stem}:begin -->", f"<!-- {results.stem}:end -->"


def paired_cells(pr) -> tuple[str, str]:
    """('+0.78 [+0.21, +1.35]', '3 / 0 / 0'); blanks without pairs."""
    if not pr or not pr.get("n"):
        return "", ""
    text = f"{100 * pr['mean']:+.2f}"
    if pr.get("ci95") is not None:
        text += f" [{100 * pr['ci95'][0]:+.2f}, {100 * pr['ci95'][1]:+.2f}]"
    return text, f"{pr['wins']} / {pr['losses']} / {pr['ties']}"


def paired_reading(paired: dict, ref: str) -> str:
    """Which variants' 95 % paired interval against ``ref`` lies above / below zero."""
    groups = {"above": [], "below": [], "includes": []}
    for v in sorted(paired, key=lambda v: (ORDER + (v,)).index(v)):
        ci = paired[v].get("ci95")
        if ci is None:
            continue
        key = "above" if ci[0] > 0 else "below" if ci[1] < 0 else "includes"
        groups[key].append(f"`{v}` ({100 * paired[v]['mean']:+.2f}, "
                           f"{paired[v]['wins']}/{paired[v]['n']} seeds above)")
    words = {"above": f"paired 95 % interval above `{ref}`",
             "below": f"paired 95 % interval below `{ref}`",
             "includes": f"paired 95 % interval includes `{ref}`"}
    return "; ".join(f"{words[k]}: {', '.join(vs)}" for k, vs in groups.items() if vs)


def reading(summary: dict) -> str:
    """What the table says, mechanically: which variants differ from no KD beyond 2 SE."""
    better = [v for v, s in summary.items() if s.get("exceeds_2se") and s["delta"] > 0]
    worse = [v for v, s in summary.items() if s.get("exceeds_2se") and s["delta"] < 0]
    same = [v for v, s in summary.items() if "exceeds_2se" in s and not s["exceeds_2se"]]

    def names(vs):
        return ", ".join(f"`{v}` ({100 * summary[v]['delta']:+.2f})" for v in vs)
    parts = []
    if better:
        parts.append(f"better than no KD beyond 2 SE: {names(better)}")
    if worse:
        parts.append(f"worse than no KD beyond 2 SE: {names(worse)}")
    if same:
        parts.append(f"within 2 SE of no KD: {names(same)}")
    return "; ".join(parts) + " (pp)." if parts else ""


def _title(det: dict, name: str) -> str:
    """'fully spiking student ...' for the cnn, the model and its size otherwise."""
    kwargs = det.get("model_kwargs") or {}
    if det.get("model", "cnn") != "cnn" or kwargs:
        size = ", ".join(f"{k} {v}" for k, v in kwargs.items())
        return f"fully spiking `{det['model']}` student" + (f" ({size})" if size else "")
    return MODE_TITLE.get(det.get("mode", "spiking"), name)


def block(obj: dict, source: str) -> str:
    try:
        groups = obj["datasets_detail"]
        teacher = obj.get("teacher") or {}
        extra_seeds = obj.get("extra_seeds") or []
        ref = obj.get("reference")
        lines = [f"Generated by `scripts/readme_ablation.py` from `{source}` "
                 f"({obj['finished_runs']}/{obj['total_runs']} runs"
                 + ("" if obj["complete"] else ", incomplete") + f"; seeds "
                 f"{' '.join(map(str, obj['seeds']))}"
                 + (f", + {' '.join(map(str, extra_seeds))} where the spread asked"
                    if extra_seeds else "") + f"; {obj['jobs']} job(s) x "
                 f"{obj['threads_per_job']} thread(s) on the CPU). Accuracies are "
                 "this machine's: another CPU kind or thread count rounds differently, which "
                 "over 20 epochs moves single runs by about the seed spread; times depend on "
                 "the machine. `|Δ| > 2 SE` is a screening rule, not a significance test: with "
                 "3–5 seeds it is weaker than p < 0.05, and it is not corrected for the several "
                 "variants compared. Paired Δ: the mean over seeds of the per-seed difference "
                 "to no KD (a seed fixes teacher, initialisation and data order), with its 95 % "
                 "t interval (n − 1 degrees of freedom, not corrected for the several variants "
                 "either); + / − / = counts the seeds above / below / equal.", ""]
        if teacher:
            n = teacher.get("train_samples", "all")
            lines += [f"Teacher (shared by every student): `{teacher['model']}` width "
                      f"{teacher['width']} ANN"
                      + (f" on `{teacher['data']}`" if teacher.get("data") and
                         teacher["data"] != "fashion_mnist" else "") + ", "
                      + ("the full training split" if n == "all" else f"{n} training images")
                      + f", {teacher['epochs']} "
                      f"epochs, test accuracy {_pct(teacher['test_accuracy'])} % "
                      f"(curve by epoch: {_curve(teacher.get('curve', []))}).", ""]
        for name, det in groups.items():
            b = det["budget"]
            summary = {v: det["summary"][v] for v in
                       sorted(det["summary"], key=lambda v: (ORDER + (v,)).index(v))}
            paired = det.get("paired") or {}
            extra = det.get("extra_seeds") or {}
            seeds = max((s["n"] for s in summary.values()), default=0)
            seeds_text = f"{seeds} seeds"
            if extra.get("ran") is not None:
                seeds_text += (f" (largest std over the first {len(obj['seeds'])}: "
                               f"{extra['base_spread_pp']:.2f} pp, "
                               + ("> " if extra["ran"] else "<= ")
                               + f"{extra['threshold_pp']:g} pp)")
            lines += [f"**{_title(det, name)}, T = "
                      f"{det['time_steps']}** (`{name}`) — "
                      f"first {b['train_samples']} training images, {b['student']['epochs']} "
                      f"epochs, batch {b['batch_size']}, {b['student']['optimizer']} lr "
                      f"{b['student']['lr']:g}, {b['student']['scheduler']}; the full test "
                      f"split; {seeds_text}", "",
                      "| variant | test acc. % (mean ± std) | n | best epoch % | Δ vs none (pp) "
                      "| 2 SE (pp) | \\|Δ\\| > 2 SE | paired Δ (pp) [95 % CI] | + / − / = |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for v, s in summary.items():
                if v == "teacher":
                    continue
                delta = f"{100 * s['delta']:+.2f}" if "delta" in s else ""
                se2 = f"{200 * s['se_delta']:.2f}" if "se_delta" in s else ""
                sig = ("yes" if s["exceeds_2se"] else "no") if "exceeds_2se" in s else ""
                pd, signs = paired_cells(paired.get("none", {}).get(v))
                lines.append(f"| {v} | {_ms(s)} | {s['n']} | {_ms(s.get('best', {}))} | "
                             f"{delta} | {se2} | {sig} | {pd} | {signs} |")
            lines.append("")
            if ref and ref != "none" and paired.get(ref):
                lines += [f"Paired against `{ref}`:", "",
                          f"| variant | pairs | paired Δ vs {ref} (pp) [95 % CI] | + / − / = |",
                          "|---|---|---|---|"]
                for v in sorted(paired[ref], key=lambda v: (ORDER + (v,)).index(v)):
                    cells = " | ".join(paired_cells(paired[ref][v]))
                    lines.append(f"| {v} | {paired[ref][v]['n']} | {cells} |")
                lines.append("")
            tag = " (extra, if the spread asks)"
            missing = [m for m in det.get("missing", []) if not m.endswith(tag)]
            extras = len(det.get("missing", [])) - len(missing)
            if missing:
                lines += [f"Not finished yet ({len(missing)} runs): " + ", ".join(missing)
                          + "." + (f" Undecided: {extras} extra-seed runs (they run only if "
                                   "the spread asks)." if extras else ""), ""]
            curves = det.get("curves", {})
            if "none" in curves:
                curve = curves["none"]
                if None in curve:  # evaluated every few epochs: the last two evaluations
                    tail = [a for a in curve if a is not None][-2:]
                    span = f"its last {len(tail)} evaluations lie"
                else:
                    tail = curve[-max(1, len(curve) // 5):]
                    span = f"its last {len(tail)} epochs lie"
                lines += [f"No-KD learning curve (mean test acc. % by epoch): "
                          f"{_curve(curve)}; {span} within "
                          f"{100 * (max(tail) - min(tail)):.1f} pp.", ""]
            texts = [reading(summary)]
            texts += [paired_reading(paired[r], r) for r in dict.fromkeys(["none", ref])
                      if r and paired.get(r)]
            text = "; ".join(t.removesuffix(" (pp).") for t in texts if t)
            if text:
                lines += [f"In numbers (pp): {text}.", ""]
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise AblationError(f"{source} is not a kdsnn ablation result (missing {exc})") from None
    return "\n".join(lines)


def verdict(pr) -> str:
    """holds / does not hold / not shown, from the 95 % paired interval of winner - loser."""
    if not pr or pr.get("ci95") is None:
        return "not decided (fewer than 2 paired seeds)"
    lo, hi = pr["ci95"]
    return "holds" if lo > 0 else "does not hold (reversed)" if hi < 0 else \
        "not shown (interval includes 0)"


def claims_block(results: dict) -> str:
    """The claims table: one row per claim, our figure from the result files by NAME."""
    lines = ["Generated by `scripts/readme_ablation.py` from the result files named in each "
             "row. Our figure: mean final test accuracy of the two variants, their paired "
             "difference by seed with its 95 % t interval and the seeds where the claimed "
             "winner is ahead. A claim holds here where that interval lies above 0; `not "
             "shown` where it includes 0 (no evidence either way at this many seeds).", "",
             "| claim | paper | our data (result file) | our figure | here |",
             "|---|---|---|---|---|"]
    try:
        for claim, paper, name, group, win, lose in CLAIMS:
            obj = results.get(name)
            det = (obj or {}).get("datasets_detail", {}).get(group)
            where = f"`{group}` (`ablation_{name}`)" + (
                f"; {BUDGET_NOTES[name]}" if name in BUDGET_NOTES else "")
            pr = ((det or {}).get("paired") or {}).get(lose, {}).get(win)
            if det is None or not pr or not pr.get("n"):
                lines.append(f"| {claim} | {paper} | {where} | – | not run yet |")
                continue
            s = det["summary"]
            fig = (f"{_pct(s[win]['mean'])} vs {_pct(s[lose]['mean'])} %: "
                   + paired_cells(pr)[0] + f" pp, {pr['wins']}/{pr['n']} seeds")
            if not obj.get("complete"):
                fig += f" ({obj['finished_runs']}/{obj['total_runs']} runs finished)"
            lines.append(f"| {claim} | {paper} | {where} | {fig} | {verdict(pr)} |")
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise AblationError(f"a result file is not a kdsnn ablation result (missing {exc})") \
            from None
    for claim, paper, why in NOT_TESTABLE:
        lines.append(f"| {claim} | {paper} | – | – | not testable here: {why} |")
    return "\n".join(lines) + "\n"


def _source(results: Path) -> str:
    try:
        return str(results.resolve().relative_to(ROOT))
    except ValueError:
        return results.name


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, action="append",
                   help="a result file (repeatable; default: every committed "
                        "benchmarks/results/ablation_{" + ",".join(NAMES) + "}.json)")
    p.add_argument("--page", "--readme", dest="pages", type=Path, action="append",
                   help="a page holding blocks (repeatable; default: docs/results/ablation.md "
                        "and docs/results/claims.md)")
    args = p.parse_args(argv)
    pages_in = args.pages or list(PAGES)
    files = args.results or [f for f in (RESULTS / f"ablation_{n}.json" for n in NAMES)
                             if f.is_file()]
    try:
        before = {}
        for page in pages_in:
            try:
                before[page] = page.read_text()
            except OSError as exc:
                raise AblationError(f"cannot read {page}: {exc}") from None
        pages, loaded, written = dict(before), {}, []
        for results in files:
            try:
                obj = json.loads(results.read_text())
            except (OSError, ValueError) as exc:
                raise AblationError(f"cannot read {results}: {exc}") from None
            begin, end = markers(results)
            pages = replace_in_pages(pages, block(obj, _source(results)), begin, end)
            written.append((next(q for q in pages if begin in pages[q]), begin, _source(results)))
            loaded[results.stem.removeprefix("ablation_")] = obj
        if not args.results:  # the claims read every committed result file
            pages = replace_in_pages(pages, claims_block(loaded), CLAIMS_BEGIN, CLAIMS_END)
            written.append((next(q for q in pages if CLAIMS_BEGIN in pages[q]), CLAIMS_BEGIN,
                            None))
    except ResultsError as exc:
        print(f"readme_ablation: error: {exc}", file=sys.stderr)
        return 2
    write_pages(pages, before)
    for page, begin, source in written:
        print(f"{page}: {begin} block rewritten" + (f" from {source}" if source else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
