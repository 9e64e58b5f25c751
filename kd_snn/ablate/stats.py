"""Statistics over seeds: mean and std, Welch's 2-SE screening column, and the paired
analysis by seed (mean paired difference, 95 % t interval, sign count)."""
from __future__ import annotations

import math
import statistics



def stats(values: list) -> dict:
    vals = [float(v) for v in values if v is not None]
    n = len(vals)
    mean = statistics.fmean(vals) if n else None
    std = statistics.stdev(vals) if n > 1 else None
    return {"mean": mean, "std": std, "n": n, "values": vals}


def compare(summary: dict, base: str = "none") -> dict:
    """Add, to every student variant, its difference of means to ``base`` and whether
    it exceeds two standard errors of that difference (Welch: sqrt(s1^2/n1 + s0^2/n0))."""
    ref = summary.get(base)
    for v, s in summary.items():
        if v in (base, "teacher") or ref is None or not s["n"] or not ref["n"]:
            continue
        s["delta"] = s["mean"] - ref["mean"]
        if s["std"] is not None and ref["std"] is not None:
            se = math.sqrt(s["std"] ** 2 / s["n"] + ref["std"] ** 2 / ref["n"])
            s["se_delta"] = se
            s["exceeds_2se"] = abs(s["delta"]) > 2 * se
    return summary


def paired(values: dict, base: dict) -> dict:
    """Paired comparison of two variants over the seeds both finished.

    A seed fixes the teacher, the initialisation and the data order of every variant, so the
    per-seed differences d = variant - base are paired: their mean, the 95 % t interval
    mean +- t(0.975, n-1) * sd(d) / sqrt(n), the two-sided p of the paired t test, and the
    sign count (wins / losses / ties of the variant).  Fewer than two pairs: no interval.
    """
    seeds = sorted(set(values) & set(base))
    # accuracies are counts / test size: rounding drops float noise (equal gaps, exact ties)
    diffs = [round(float(values[k]) - float(base[k]), 12) for k in seeds]
    n = len(diffs)
    out = {"n": n, "seeds": seeds, "differences": diffs,
           "mean": statistics.fmean(diffs) if n else None, "sd": None, "ci95": None,
           "p_value": None, "wins": sum(d > 0 for d in diffs),
           "losses": sum(d < 0 for d in diffs), "ties": sum(d == 0 for d in diffs)}
    if n >= 2:
        from scipy.stats import t as student_t
        sd = statistics.stdev(diffs)
        half = float(student_t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
        if sd > 0:
            p = 2 * float(student_t.sf(abs(out["mean"]) / (sd / math.sqrt(n)), n - 1))
        else:
            p = 1.0 if out["mean"] == 0 else 0.0
        out.update(sd=sd, ci95=[out["mean"] - half, out["mean"] + half], p_value=p)
    return out


def counted_seeds(obj: dict, group: str) -> set:
    """The seeds a group's statistics use: the base seeds, and the extra seeds unless the
    spread rule decided they were not needed (then finished extras stay out)."""
    extra = (obj["datasets_detail"][group].get("extra_seeds") or {}).get("ran")
    return set(obj["seeds"]) | (set() if extra is False else set(obj.get("extra_seeds") or []))


def paired_analysis(obj: dict, group: str) -> dict:
    """``{base: {variant: paired(...)}}`` for a group, from the finished runs of a result
    object, for every pair of student variants (the tables show ``none`` and the ablation's
    ``reference``; the README's claims table reads the others)."""
    seeds = counted_seeds(obj, group)
    per_seed: dict = {}
    for r in obj["runs"]:
        if r.get("group", r["data"]) == group and r["variant"] != "teacher" and \
                r["status"] == "done" and r["seed"] in seeds:
            per_seed.setdefault(r["variant"], {})[r["seed"]] = r["test_accuracy"]
    return {ref: {v: paired(vals, per_seed[ref]) for v, vals in per_seed.items() if v != ref}
            for ref in per_seed}


def refresh(obj: dict) -> dict:
    """Recompute the derived paired analysis of a result object from its runs (for result
    files written before it existed; the runs themselves are not touched)."""
    for g in obj["datasets_detail"]:
        obj["datasets_detail"][g]["paired"] = paired_analysis(obj, g)
    return obj
