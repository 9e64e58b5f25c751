"""The report's accuracies, like with like: groups of figures measured on the same samples.

A teacher's accuracy on the full split and a student's on parity's 60 samples are not
comparable, so the report never puts them side by side: :func:`accuracy_groups` turns a
run's ``metrics.json`` into groups (parity's samples with the teacher on those very
samples, the full split, export's pass when it ran on fewer), and
:func:`normalise_accuracy` checks ``build_report``'s ``accuracy`` argument and gives both
the groups and the flat legacy entries older readers of ``report.json`` use.  Pure: no
file, no model.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

from .report_format import MODELS

__all__ = ["GROUP_LABELS", "GROUP_MODELS", "accuracy_groups", "check_accuracy",
           "normalise_accuracy", "sample_count"]


def check_accuracy(name: str, value) -> Optional[float]:
    """``value`` as a fraction in [0, 1] (None stays None); anything else is refused by
    ``name`` before a file is written."""
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"accuracy '{name}' must be a fraction in [0, 1], got {value!r}") \
            from None
    if not (0.0 <= v <= 1.0):
        raise ValueError(f"accuracy '{name}' must be a fraction in [0, 1], got {value}")
    return v


def _accuracy_entry(name: str, value) -> dict:
    """``{"value", "note"}`` from a fraction or a mapping with those keys."""
    if isinstance(value, Mapping):
        return {"value": check_accuracy(name, value.get("value")),
                "note": str(value.get("note") or "")}
    return {"value": check_accuracy(name, value), "note": ""}


#: accuracy group keys with a meaning of their own (any other key is a group too)
GROUP_LABELS = {"same_samples": "same {n} test samples (parity's)",
                "full_split": "full test split ({n} samples)",
                "export_samples": "first {n} test samples (export's accuracy pass)"}
#: model keys a group may hold (aliases: the legacy labels)
GROUP_MODELS = {"teacher": "teacher", "float": "float", "student": "float",
                "emulation": "emulation", "quantized": "emulation", "lava": "lava"}
_LEGACY_MODEL = {"teacher": "teacher", "student": "float", "quantized": "emulation",
                 "lava": "lava"}


def sample_count(name: str, n) -> Optional[int]:
    """``n`` as a positive whole number of samples (None stays None): a group's or a
    compared run's n, refused by ``name`` otherwise."""
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, (int, float)) or n != int(n) or n < 1:
        raise ValueError(f"accuracy '{name}': n must be a positive whole number of samples, "
                         f"got {n!r}")
    return int(n)


def _is_group(value) -> bool:
    return isinstance(value, Mapping) and "value" not in value


def _group(key: str, g: Mapping) -> dict:
    """One normalised group: ``{"key", "label", "n", "models": [{"model", "value", "n"}],
    "bit_exact"}`` (models in :data:`MODELS` order)."""
    n = sample_count(key, g.get("n"))
    unknown = sorted(str(k) for k in g if k not in GROUP_MODELS and
                     k not in ("n", "label", "bit_exact", "note"))
    if unknown:
        raise ValueError(f"accuracy group '{key}': unknown model(s) {', '.join(unknown)} "
                         f"(known: {', '.join(MODELS)})")
    models = {}
    for k, v in g.items():
        if k not in GROUP_MODELS or v is None:
            continue
        m = GROUP_MODELS[k]
        if isinstance(v, Mapping):
            models[m] = {"model": m, "value": check_accuracy(f"{key}.{k}", v.get("value")),
                         "n": sample_count(f"{key}.{k}", v.get("n", n))}
        else:
            models[m] = {"model": m, "value": check_accuracy(f"{key}.{k}", v), "n": n}
    bit_exact = g.get("bit_exact")
    if bit_exact is not None and not isinstance(bit_exact, bool):
        raise ValueError(f"accuracy group '{key}': bit_exact must be true or false")
    label = g.get("label") or g.get("note")
    if not label:
        label = (GROUP_LABELS[key].format(n=n if n is not None else "?") if key in GROUP_LABELS
                 else key.replace("_", " "))
    return {"key": str(key), "label": str(label), "n": n,
            "models": [models[m] for m in MODELS if m in models], "bit_exact": bit_exact}


def normalise_accuracy(accuracy: Optional[Mapping]) -> tuple:
    """(flat, groups) from ``build_report``'s ``accuracy``: the flat legacy entries
    (label -> ``{"value", "note"}``, what ``run_entry`` and older readers use) and the
    groups of like-with-like values.  Legacy entries are grouped by their note (one group
    per sample set as stated); groups give legacy entries back (full split first)."""
    flat, groups, legacy = {}, [], {}
    for k, v in (accuracy or {}).items():
        if v is None:
            continue
        if _is_group(v):
            groups.append(_group(str(k), v))
        else:
            legacy[str(k)] = _accuracy_entry(str(k), v)
    by_note: Dict[str, dict] = {}
    for k, e in legacy.items():
        flat[k] = e
        if e["value"] is None or k not in _LEGACY_MODEL:
            continue
        g = by_note.setdefault(e["note"], {"label": e["note"] or "sample set not stated"})
        g.setdefault(_LEGACY_MODEL[k], e["value"])
    groups += [_group(f"as_given_{i + 1}", g) for i, g in enumerate(by_note.values())]
    order = sorted(groups, key=lambda g: (g["key"] != "full_split", -(g["n"] or 0)))
    for g in order:  # the flat entries of the groups: largest sample set first
        for m in g["models"]:
            key = {"float": "student", "emulation": "quantized"}.get(m["model"], m["model"])
            if key not in flat and m["value"] is not None:
                flat[key] = {"value": m["value"],
                             "note": g["label"] + (f" (n = {m['n']})" if m["n"] else "")}
    return flat, groups


def accuracy_groups(metrics: Mapping, teacher_same_samples: Optional[float] = None,
                    test_split_size: Optional[int] = None) -> dict:
    """The ``accuracy`` argument of :func:`build_report`, like with like, from a run's
    ``metrics.json`` (pure: no file, no model).

    ``same_samples``: parity's samples (``metrics["parity"]``: ``samples``, ``accuracy``
    {float, emulation, lava}, ``bit_exact``) plus ``teacher_same_samples``, the teacher's
    accuracy on those very samples (the caller computes it: the first
    ``metrics["parity"]["samples"]`` of the test split).  ``full_split``: the teacher's
    ``test_accuracy`` and export's accuracy pass (``metrics["quantized"]``: float and
    emulation on ``samples``).  ``test_split_size``: the split's size; when export's pass
    ran on fewer samples, its figures become a group of their own (``export_samples``) and
    the float student's full-split accuracy is its training ``test_accuracy``.  Without
    it, export's sample count is taken as the split's size."""
    num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    sub = lambda *keys: _dig(metrics, *keys)  # noqa: E731
    out = {}
    par = sub("parity") or {}
    pacc = par.get("accuracy") if isinstance(par.get("accuracy"), Mapping) else {}
    if num(par.get("samples")) and any(num(pacc.get(k)) for k in ("float", "emulation",
                                                                  "lava")):
        g = {"n": int(par["samples"])}
        if teacher_same_samples is not None:
            g["teacher"] = float(teacher_same_samples)
        g.update({k: float(pacc[k]) for k in ("float", "emulation", "lava") if num(pacc.get(k))})
        if isinstance(par.get("bit_exact"), bool):
            g["bit_exact"] = par["bit_exact"]
        out["same_samples"] = g
    q = sub("quantized")
    if not (isinstance(q, Mapping) and num(q.get("samples"))):
        q = par.get("emulation_full_test")
    q = q if isinstance(q, Mapping) and num(q.get("samples")) else None
    n = int(test_split_size) if test_split_size else (int(q["samples"]) if q else None)
    full = {"n": n} if n else {}
    if num(sub("teacher", "test_accuracy")):
        full["teacher"] = float(sub("teacher", "test_accuracy"))
    if q is not None and int(q["samples"]) == n:
        full.update({k: float(q[src]) for k, src in (("float", "float"),
                                                     ("emulation", "quantized"))
                     if num(q.get(src))})
    else:
        if num(sub("student", "test_accuracy")):
            full["float"] = float(sub("student", "test_accuracy"))
        if q is not None:
            out["export_samples"] = {"n": int(q["samples"]), **{
                k: float(q[src]) for k, src in (("float", "float"), ("emulation", "quantized"))
                if num(q.get(src))}}
    if set(full) - {"n"}:
        out["full_split"] = full
    return out


def _dig(d, *keys):
    for k in keys:
        d = d.get(k) if isinstance(d, Mapping) else None
    return d
