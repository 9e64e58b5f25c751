"""Shared by the peer workers (runs in every peer's own venv: stdlib + numpy only).

A worker is called as ``python <peer>_worker.py MANIFEST OUT_DIR``.  MANIFEST (json) lists
the graphs: ``{"graphs": [{"name", "nir", "inputs": {"b1": npz, "b4": npz}, "record":
[node names of spiking layers]}], "T": int}``; each inputs npz holds ``x`` of shape
``(T, B, *input_shape)`` (float64).  For each graph and batch the worker writes
``OUT_DIR/<graph>.<batch>.npz`` with ``out`` (the Output stream, ``(T, B, *out_shape)``)
and ``spk__<node>`` (spikes of recorded nodes, same layout) where it could record them,
and one line per case in ``OUT_DIR/result.json``: ``status`` ok / import_error /
run_error, the exception (type, message) and where it was raised (the innermost frame
inside the peer's package, and the innermost frame overall), plus the dtype it ran in.
"""
from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

import numpy as np


def _rel(filename: str) -> str:
    """``.../site-packages/pkg/mod.py`` -> ``pkg/mod.py``."""
    parts = Path(filename).parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] in ("site-packages", "dist-packages"):
            return "/".join(parts[i + 1:])
    return filename


def where(exc: BaseException, packages: tuple) -> dict:
    frames = traceback.extract_tb(exc.__traceback__)
    inner = frames[-1] if frames else None
    peer = None
    for fr in frames:
        rel = _rel(fr.filename)
        if rel.split("/")[0] in packages:
            peer = fr
    fmt = (lambda fr: None if fr is None else
           f"{_rel(fr.filename)}:{fr.lineno} {fr.name}")
    return {"type": type(exc).__name__, "message": str(exc).strip().splitlines()[0][:300]
            if str(exc).strip() else "", "peer_frame": fmt(peer), "innermost_frame": fmt(inner)}


def main(run_case, packages: tuple, dtype: str) -> int:
    """``run_case(nir_path, x: np.ndarray (T,B,...), record: list) -> (out, spikes dict)``
    raising ``ImportStageError`` (wrapping the cause) when the import itself failed."""
    manifest = json.loads(Path(sys.argv[1]).read_text())
    out_dir = Path(sys.argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for g in manifest["graphs"]:
        for batch, npz in sorted(g["inputs"].items()):
            x = np.load(npz)["x"]
            rec = {"graph": g["name"], "batch": batch, "dtype": dtype}
            try:
                out, spikes = run_case(g["nir"], x, g["record"])
            except ImportStageError as wrapped:
                rec.update(status="import_error", **where(wrapped.cause, packages))
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                rec.update(status="run_error", **where(exc, packages))
            else:
                arrays = {"out": np.asarray(out, dtype=np.float64)}
                arrays.update({f"spk__{k}": np.asarray(v, dtype=np.float64)
                               for k, v in spikes.items()})
                path = out_dir / f"{g['name']}.{batch}.npz"
                np.savez(path, **arrays)
                rec.update(status="ok", file=str(path), out_shape=list(arrays["out"].shape),
                           recorded=sorted(spikes))
            results.append(rec)
            print(json.dumps(rec), flush=True)
    (out_dir / "result.json").write_text(json.dumps(results, indent=1) + "\n")
    return 0


class ImportStageError(Exception):
    def __init__(self, cause: BaseException):
        super().__init__(str(cause))
        self.cause = cause


def imported(fn, *args, **kwargs):
    """Call the peer's import function; failures become ImportStageError."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001
        raise ImportStageError(exc) from exc


def quiet():
    """Silence a peer's prints (snntorch prints every w_scale array) on fd 1."""
    import contextlib
    import io
    return contextlib.redirect_stdout(io.StringIO())


os.environ.setdefault("PYTHONWARNINGS", "ignore")
