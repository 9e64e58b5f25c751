"""A report among other reports: the ones it compares with and the one it replaces.

``run_entry`` reads another run's ``report.json`` (this schema or the older one) into a
comparison entry, ``scatter_points`` places this run's models among those entries on the
accuracy-vs-energy plot, and ``dropped_by_rerun`` / ``written_files`` read the report in
place before a rerun overwrites it.  Pure: reads the dicts given, no file.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Mapping, Optional, Sequence

from .energy import PROFILE_ALIASES
from .report_accuracy import GROUP_MODELS
from .report_format import MODELS, model_of

__all__ = ["SCHEMA", "READABLE_SCHEMAS", "run_entry", "scatter_points", "written_files",
           "dropped_by_rerun"]

#: the schema ``build_report`` writes
SCHEMA = "kdsnn.report/2"
READABLE_SCHEMAS = ("kdsnn.report/1", SCHEMA)  # run_entry reads older reports too


def run_entry(report: Mapping, name: str, accuracy_key: str = "student") -> dict:
    """A ``runs`` entry (name, accuracy, its n where the report states it, primary student
    energy per profile) from a report dict (e.g. another run's ``report.json``, schema 1 or
    2), for the accuracy-vs-energy plot."""
    if report.get("schema") not in READABLE_SCHEMAS:
        raise ValueError(f"not a kdsnn report (schema {report.get('schema')!r})")
    acc = (report.get("accuracy") or {}).get(accuracy_key)
    if isinstance(acc, Mapping):
        acc = acc.get("value")
    entry = {"name": name, "accuracy": acc,
             "energy_pj": {PROFILE_ALIASES.get(p, p): blk["student"][0]["total_pj"]
                           for p, blk in report["energy"].items()}}
    want = GROUP_MODELS.get(accuracy_key)
    for g in report.get("accuracy_groups") or []:  # the group the flat value came from
        m = next((m for m in g.get("models") or [] if m.get("model") == want
                  and m.get("value") == acc), None)
        if m is not None and m.get("n"):
            entry["n"] = int(m["n"])
            break
    return entry


def scatter_points(rep: dict, groups: List[dict]) -> dict:
    """This run's accuracy-vs-energy points, all from one accuracy group (the full split
    when there is one, else the first), plus the other runs: ``{"group", "points"}``.
    A model's energy is that of the spike record that stands for it (the emulation's,
    else Lava's: the same integer network); the teacher as charged."""
    names = rep["profile_order"]
    by_model = {}
    for i, st in enumerate(rep["student"]):
        by_model.setdefault(model_of(st["label"]), (st["label"], i))
    for a, b in (("emulation", "lava"), ("lava", "emulation")):
        if a not in by_model and b in by_model:
            by_model[a] = by_model[b]
    group = next((g for g in groups if g["key"] == "full_split" and g["models"]),
                 next((g for g in groups if g["models"]), None))
    points = []
    for m in (group["models"] if group else []):
        if m["model"] == "teacher":
            if rep["teacher"] is None:
                continue
            label, energy_pj = "teacher", {p: rep["energy"][p]["teacher"]["total_pj"]
                                           for p in names}
        elif m["model"] in by_model:
            label, i = by_model[m["model"]]
            energy_pj = {p: rep["energy"][p]["student"][i]["total_pj"] for p in names}
        else:
            continue
        points.append({"name": f"{MODELS[m['model']]} (n = {m['n'] or '?'})",
                       "model": m["model"], "accuracy": m["value"], "n": m["n"],
                       "energy_record": label, "energy_pj": energy_pj})
    for r in rep["runs"]:
        points.append({"name": f"run {r['name']}: student", "model": None,
                       "accuracy": r["accuracy"], "n": r.get("n"), "energy_record": None,
                       "energy_pj": dict(r["energy_pj"])})
    return {"group": group["key"] if group else None, "points": points}


def written_files(report: Mapping, out_dir=None) -> List[Path]:
    """Every file ``build_report`` wrote, in a fixed order (``report["files"]["written"]``),
    as paths under ``out_dir`` (relative names when it is None)."""
    names = list((report.get("files") or {}).get("written") or [])
    return [Path(n) if out_dir is None else Path(out_dir) / n for n in names]


#: the ``--source`` that makes a student record of this label
_SOURCE_OF = {"torch": "torch", "float": "torch", "lava": "lava"}


def dropped_by_rerun(old_report: Mapping, new_sources, *, html: Optional[bool] = None,
                     profiles: Optional[Sequence[str]] = None,
                     compare: Optional[Sequence[str]] = None) -> Optional[str]:
    """What rewriting ``old_report`` (the ``report.json`` in place) with the new options
    would silently drop, in one sentence naming the flag that keeps it; None if nothing.

    ``new_sources``: the spike records the rerun makes (``{"torch"}``, ``{"lava"}``,
    ``{"torch", "lava"}``; ``--source`` torch / lava / both).  Optional checks: ``html``
    (False: the rerun removes report.html), ``profiles`` (the rerun's profile names, after
    aliases), ``compare`` (the rerun's ``--compare`` runs).  Pure: reads nothing."""
    if not isinstance(old_report, Mapping) or old_report.get("schema") not in READABLE_SCHEMAS:
        return None
    new_sources = {_SOURCE_OF.get(str(s), str(s)) for s in new_sources}
    old_sources = [_SOURCE_OF[str(st.get("label"))] for st in old_report.get("student") or []
                   if isinstance(st, Mapping) and str(st.get("label")) in _SOURCE_OF]
    lost, flags = [], []
    gone = [s for s in old_sources if s not in new_sources]
    if gone:
        keep = set(new_sources) | set(gone)
        source = "both" if {"torch", "lava"} <= keep else sorted(keep)[0]
        what = " and ".join(f"the {s} spike record" for s in gone)
        lost.append(f"{what} (its energy, SynOps and firing-rate columns"
                    f"{', Lava energy in every profile' if 'lava' in gone else ''})")
        flags.append(f"--source {source}")
    files = old_report.get("files") or {}
    if html is False and files.get("html"):
        lost.append("report.html")
        flags.append("--html")
    if profiles is not None:
        new = {PROFILE_ALIASES.get(p, p) for p in profiles}
        old = [p for p in old_report.get("profile_order") or [] if PROFILE_ALIASES.get(p, p)
               not in new]
        if old:
            lost.append("the energy under profile(s) " + ", ".join(old))
            flags.append("--profile " + " ".join(list(profiles) + old))
    if compare is not None:
        old = [r.get("name") for r in old_report.get("runs") or [] if isinstance(r, Mapping)
               and r.get("name") not in set(map(str, compare))]
        if old:
            lost.append("the comparison with run(s) " + ", ".join(map(str, old)))
            flags.append("--compare " + " ".join(list(map(str, compare)) + list(map(str, old))))
    if not lost:
        return None
    return (f"this rerun would drop {_join(lost)} from the report in place; pass "
            f"{_join(flags)} to keep {'it' if len(lost) == 1 else 'them'}")


def _join(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
