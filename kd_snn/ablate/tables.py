"""The result files people read: ablation.md (tables, budget, curves) and ablation.png."""
from __future__ import annotations

import statistics
from typing import Optional

from .plan import VARIANTS


def fmt_stat(s: dict, short: bool = False) -> str:
    if not s["n"]:
        return "–"
    m = 100 * s["mean"]
    if s["std"] is None:
        return f"{m:.1f}" if short else f"{m:.2f} ± –"
    return f"{m:.1f}±{100 * s['std']:.1f}" if short else f"{m:.2f} ± {100 * s['std']:.2f}"


def budget_text(b: dict) -> str:
    def st(s):
        return (f"{s['epochs']} epoch{'s' if s['epochs'] != 1 else ''}, {s['optimizer']} "
                f"lr {s['lr']:g} wd {s['weight_decay']:g}, {s['scheduler']}")
    n = b["train_samples"]
    train = "full train split" if n == "all" else f"first {n} training samples"
    teacher = b["teacher"]
    if "external" in teacher:
        t = teacher["external"]
        tn = t["train_samples"]
        teacher_text = (f"one shared teacher `{t['path']}` (trained beforehand on "
                        f"{'the full train split' if tn == 'all' else f'{tn} samples'}, "
                        f"{t['epochs']} epochs, test acc. {pct(t['test_accuracy'])})")
    else:
        teacher_text = f"teacher {st(teacher)}"
    return (f"{train}, batch {b['batch_size']}, augment {'on' if b['augment'] else 'off'}; "
            f"student {st(b['student'])}; {teacher_text}; evaluated on the full test split")


def pct(x) -> str:
    return "–" if x is None else f"{100 * x:.2f} %"


def variant_order(variant: str) -> int:
    return list(VARIANTS).index(variant) if variant in VARIANTS else len(VARIANTS)


def paired_cells(pr: Optional[dict]) -> tuple[str, str]:
    """('+0.78 [+0.21, +1.35]', '3 / 0 / 0') in points; blanks without pairs."""
    if not pr or not pr["n"]:
        return "", ""
    text = f"{100 * pr['mean']:+.2f}"
    if pr["ci95"] is not None:
        text += f" [{100 * pr['ci95'][0]:+.2f}, {100 * pr['ci95'][1]:+.2f}]"
    return text, f"{pr['wins']} / {pr['losses']} / {pr['ties']}"


def mean_of(runs: list, key: str) -> str:
    vals = [r[key] for r in runs if r.get(key)]
    return f"{statistics.fmean(vals):.0f}" if vals else ""


def curve_text(curve: list) -> str:
    """'1: 70.1, 2: 75.3, ...' (percent, one decimal; epochs not evaluated left out)."""
    return ", ".join(f"{i + 1}: {100 * a:.1f}" for i, a in enumerate(curve) if a is not None)


def plateau(curve: list) -> Optional[dict]:
    """How much the last third of the epochs still added (a converged curve adds ~0); with
    epochs not evaluated (None), from the last evaluated epoch at least a third back."""
    if len(curve) < 3 or curve[-1] is None:
        return None
    k = max(1, len(curve) // 3)
    back = [i for i in range(len(curve) - 1 - k, -1, -1) if curve[i] is not None]
    if not back:
        return None
    evaluated = [i for i, a in enumerate(curve) if a is not None]
    return {"epochs": len(curve) - 1 - back[0], "gain": curve[-1] - curve[back[0]],
            "best_epoch": max(evaluated, key=lambda i: curve[i]) + 1}


def markdown(obj: dict) -> str:
    lines = ["# kdsnn ablation: SAMD + NLD (arXiv 2511.06902) and baselines", "",
             f"Command: `{obj['command']}`  ",
             f"Runs finished: {obj['finished_runs']}/{obj['total_runs']}"
             + ("" if obj["complete"] else " (in progress or incomplete)")
             + f"; seeds {' '.join(map(str, obj['seeds']))}"
             + (f" (+ {' '.join(map(str, obj['extra_seeds']))} for a student mode whose base "
                f"seeds spread more than {obj['extra_if_std']:g} pp)"
                if obj.get("extra_seeds") else "") + f"; {obj['jobs']} job(s) x "
             f"{obj['threads_per_job']} thread(s).  ",
             "Metric: top-1 accuracy on the full test split after the last epoch (best "
             "epoch beside it); mean ± sample std over seeds (n runs); Δ = difference of "
             "means to `none`; 2 SE = twice the standard error of that difference "
             "(sqrt(s²/n + s₀²/n₀)); `yes` where |Δ| exceeds it — a screening rule, not a "
             "test: with 3–5 seeds it is weaker than p < 0.05 and not corrected for the "
             "several variants compared. Paired Δ = mean over the seeds both finished of the "
             "per-seed difference (a seed fixes teacher, initialisation and data order), "
             "with its 95 % t interval (n − 1 degrees of freedom); + / − / = counts the "
             "seeds where the variant is above / below / equal.  ",
             f"Compute: {sum(r.get('cpu_seconds') or 0 for r in obj['runs']):.0f} CPU s over "
             f"all runs; the last invocation took {obj['elapsed_seconds_this_invocation']:.0f} "
             f"s wall.", ""]
    by_key = {}
    for r in obj["runs"]:
        by_key.setdefault((r.get("group", r["data"]), r["variant"]), []).append(r)
        if r["variant"] == "teacher":  # a seed's teacher serves every mode of its data
            for g in obj["datasets_detail"]:
                if g != r["data"] and g.split("/")[0] == r["data"]:
                    by_key.setdefault((g, "teacher"), []).append(r)
    for g, det in obj["datasets_detail"].items():
        ext_teacher = det["budget"]["teacher"].get("external")
        lines += [f"## {g}", "",
                  f"- data: `{det.get('data', g)}`, encoding {det['encoding']}, "
                  f"T = {det['time_steps']}",
                  f"- model: `{det['model']}` width {det['width']}"
                  + "".join(f", {k} {v}" for k, v in (det.get("model_kwargs") or {}).items())
                  + (f" (spiking student; teacher: `{ext_teacher['model']}` width "
                     f"{ext_teacher['width']} ANN)" if ext_teacher else
                     " (spiking student)" if det.get("model_kwargs")
                     else " (ANN teacher and spiking student)")]
        if det.get("mode", "spiking") != "spiking":
            sets = ", ".join(f"{k}={v}" for k, v in det.get("mode_sets", {}).items())
            lines.append(f"- student mode `{det['mode']}`: {det['mode_described']} ({sets})")
        extra = det.get("extra_seeds")
        if extra and extra["ran"] is not None:
            lines.append(f"- largest std over the variants on the base seeds: "
                         f"{extra['base_spread_pp']:.2f} pp, so the extra seeds "
                         + ("ran" if extra["ran"] else "were not needed")
                         + f" (threshold {extra['threshold_pp']:g} pp)")
        lines += [f"- budget (identical for every student variant): "
                  f"{budget_text(det['budget'])}", "",
                  "| variant | objective | test acc. % (mean ± std) | n | best epoch % "
                  "| Δ vs none (pp) | 2 SE (pp) | \\|Δ\\| > 2 SE | paired Δ (pp) [95 % CI] "
                  "| + / − / = | wall s / run | CPU s / run |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        vs_none = det.get("paired", {}).get("none", {})
        for v in [v for v in VARIANTS if v in det["summary"]]:  # JSON keys come sorted
            s = det["summary"][v]
            delta = f"{100 * s['delta']:+.2f}" if "delta" in s else ""
            se2 = f"{200 * s['se_delta']:.2f}" if "se_delta" in s else ""
            sig = ("yes" if s["exceeds_2se"] else "no") if "exceeds_2se" in s else ""
            best = fmt_stat(s["best"]) if s.get("best") else ""
            done = [r for r in by_key.get((g, v), []) if r["status"] == "done"]
            secs = [mean_of(done, k) for k in ("wall_seconds", "cpu_seconds")]
            pd, signs = paired_cells(vs_none.get(v))
            lines.append(f"| {v} | {VARIANTS[v][0]} | {fmt_stat(s)} | {s['n']} | {best} | "
                         f"{delta} | {se2} | {sig} | {pd} | {signs} | {secs[0]} | {secs[1]} |")
        ref = obj.get("reference")
        if ref and ref != "none" and det.get("paired", {}).get(ref):
            lines += ["", f"Paired against `{ref}` ({VARIANTS[ref][0]}):", "",
                      f"| variant | pairs | paired Δ vs {ref} (pp) [95 % CI] | + / − / = |",
                      "|---|---|---|---|"]
            for v, pr in sorted(det["paired"][ref].items(), key=lambda i: variant_order(i[0])):
                lines.append(f"| {v} | {pr['n']} | " + " | ".join(paired_cells(pr)) + " |")
        if det.get("missing"):
            lines.append(f"\nNot finished yet ({len(det['missing'])}): "
                         + ", ".join(det["missing"]) + ".")
        failed = [r for r in obj["runs"] if r.get("group", r["data"]) == g
                  and r["status"] != "done"]
        for r in failed:
            lines.append(f"\n{r['variant']} seed {r['seed']}: {r['status']} ({r['error']})")
        curves = det.get("curves", {})
        notes = []
        ext = det["budget"]["teacher"].get("external")
        if ext and ext.get("curve"):
            notes.append(f"teacher learning curve (test acc. % by epoch): "
                         f"{curve_text(ext['curve'])}")
        for v in ("none", "samd_nld"):
            if v in curves:
                pl = plateau(curves[v])
                tail = "" if pl is None else (
                    f" — the last {pl['epochs']} epoch(s) added {100 * pl['gain']:+.2f} pp; "
                    f"best at epoch {pl['best_epoch']}")
                notes.append(f"`{v}` learning curve (mean over seeds, test acc. % by epoch): "
                             f"{curve_text(curves[v])}{tail}")
        if notes:
            lines += [""] + [f"- {n}" for n in notes]
        lines.append("")
    return "\n".join(lines)


def plot(obj: dict) -> bytes:
    """PNG: per group, accuracy per variant (mean ± std, every seed a dot, no-KD dashed)
    beside the mean learning curves."""
    import io
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
    groups = list(obj["datasets_detail"].items())
    fig = Figure(figsize=(11, 3.6 * max(1, len(groups))), dpi=100)
    for row, (g, det) in enumerate(groups):
        summary = {v: s for v, s in det["summary"].items() if v != "teacher" and s["n"]}
        ax = fig.add_subplot(len(groups), 2, 2 * row + 1)
        names = [v for v in VARIANTS if v in summary]
        for i, v in enumerate(names):
            s = summary[v]
            colour = "tab:green" if s.get("exceeds_2se") and s["delta"] > 0 else \
                "tab:red" if s.get("exceeds_2se") else "tab:gray" if v != "none" else "tab:blue"
            ax.bar(i, 100 * s["mean"], yerr=100 * (s["std"] or 0), color=colour, alpha=0.6,
                   capsize=3)
            ax.plot([i] * len(s["values"]), [100 * x for x in s["values"]], "k.", ms=4)
        if "none" in summary:
            ax.axhline(100 * summary["none"]["mean"], color="tab:blue", ls="--", lw=1)
        vals = [100 * x for s in summary.values() for x in s["values"]]
        if vals:
            span = max(vals) - min(vals)
            ax.set_ylim(min(vals) - max(1.0, span), max(vals) + max(1.0, 0.5 * span))
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=20, fontsize=8)
        ax.set_ylabel("test accuracy %")
        ax.set_title(f"{g}: final test accuracy (green/red: |Δ| > 2 SE)", fontsize=9)
        ax = fig.add_subplot(len(groups), 2, 2 * row + 2)
        curves = {v: c for v, c in det.get("curves", {}).items() if v != "teacher"}
        for v, curve in curves.items():
            pts = [(i + 1, 100 * a) for i, a in enumerate(curve) if a is not None]
            ax.plot([e for e, _ in pts], [a for _, a in pts], label=v,
                    lw=2 if v in ("none", "samd_nld") else 1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy %")
        ax.set_title(f"{g}: mean learning curves", fontsize=9)
        if curves:
            ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
