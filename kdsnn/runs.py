"""The run layer of the commands after training: a trained run opened and checked, its
writer lock and transaction, its student as a folded graph, its quantized network (read
back from the NIR file Lava is built from), and what earlier commands stored for it.

A run directory is the unit users pass around; every step of :mod:`kdsnn` takes one.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from typing import Union

from export.targets import QUANT_FILE
from kd_snn import io as kio
from kd_snn.errors import KdsnnError
from kd_snn.rundir import RunDir

__all__ = ["RunPath", "as_run", "writing", "check_positive", "open_trained_run",
           "load_student", "quant_source", "cached_full_test",
           "full_test_accuracy", "parity_spikes", "QUANT_FILE"]

RunPath = Union[str, os.PathLike, RunDir]


def as_run(run: RunPath) -> RunDir:
    return run if isinstance(run, RunDir) else RunDir(run)


def is_main_process() -> bool:
    """torchrun starts one process per rank on the same run directory: rank 0 writes."""
    return int(os.environ.get("RANK", "0")) == 0


@contextlib.contextmanager
def writing(run: RunDir, transactional: bool = True):
    """The run's writer lock, and (for file-producing steps) one transaction."""
    lock = run.lock() if is_main_process() else contextlib.nullcontext()
    with lock, (kio.transaction() if transactional else contextlib.nullcontext()):
        yield


def check_positive(**values) -> None:
    """Refuse a count or size that is not > 0, named as its command-line flag."""
    for name, value in values.items():
        if value is not None and value <= 0:
            raise KdsnnError(f"--{name.replace('_', '-')} must be > 0, got {value}")


def open_trained_run(path: RunPath) -> tuple:
    """``(run, its config)`` for the steps after training; config and metrics checked."""
    run = as_run(path)
    run.check_usable()
    if not run.config_path.is_file():
        raise KdsnnError(f"'{run.path}' is not a kdsnn run directory (no config.yaml)")
    cfg = run.load_config()  # a broken config.yaml is refused first
    run.read_metrics()
    return run, cfg


def load_student(run: RunDir) -> tuple:
    """(model, checkpoint meta, folded float DeployGraph) of the run's student; an
    imported student (``kdsnn import``) has no torch model: ``(None, meta, its graph)``."""
    from export.fold import fold_student
    from kd_snn.run import load_trained, student_encoding, student_input_shape

    cfg = run.load_config()
    if run.imported_student_path.is_file():  # trained elsewhere: the graph is the model
        from export.imported import load_imported

        path = run.imported_student_path
        return None, {"file_sha256": kio.sha256_file(path)}, load_imported(kio.current_path(path))
    if not run.has_model("student"):
        raise KdsnnError(f"no trained student in '{run.path}': run 'kdsnn distill {run.path}'"
                         f" (or 'kdsnn import MODEL.nir {run.path}')")
    model, meta = load_trained(run.model_path("student"), expect_spiking=True)
    model = model.double().eval()
    graph = fold_student(model, student_input_shape(cfg), cfg.data.time_steps,
                         encoding=student_encoding(cfg))
    return model, meta, graph


def quant_source(run: RunDir, qgraph) -> dict:
    """Which file the process network was built from, and what it holds (for results)."""
    qpath = kio.current_path(run.subdir("export") / QUANT_FILE)
    return {"file": f"export/{QUANT_FILE}",
            "file_sha256": hashlib.sha256(qpath.read_bytes()).hexdigest(),
            "graph_sha256": qgraph.digest()}


def cached_full_test(run: RunDir, cfg, qgraph) -> tuple:
    """``(accuracy, where)`` of the integer emulation over the whole test split, stored by
    an earlier command for this very quantized graph (same ``QuantGraph.digest``), or
    ``(None, None)``.  Looked up in RUN/export/quantize.json (written by export/quantize)
    and RUN/parity/parity.json."""
    from kd_snn.run import split_size

    digest, n = qgraph.digest(), split_size(cfg, "test")
    for rel, keys in (("export/quantize.json", ("accuracy",)),
                      ("parity/parity.json", ("emulation_full_test",))):
        path = run.path / rel
        if not kio.exists(path):
            continue
        try:
            record = kio.read_json_object(path, rel)
        except KdsnnError:
            continue  # a broken file is only a cache miss here
        acc = record
        for k in keys:
            acc = acc.get(k) if isinstance(acc, dict) else None
        sha = record.get("graph_sha256") if rel.startswith("export") else (acc or {}).get(
            "graph_sha256")
        if isinstance(acc, dict) and sha == digest and acc.get("samples") == n and all(
                isinstance(acc.get(k), (int, float)) for k in ("float", "quantized", "agreement")):
            return {k: acc[k] for k in ("float", "quantized", "agreement", "samples")}, rel
    return None, None


def full_test_accuracy(run: RunDir, cfg, balanced, qgraph, progress: bool = True,
                       log=print, device=None) -> dict:
    """The emulation's accuracy over the whole test split: reused when stored for this
    graph, computed (once, on ``device``) otherwise.  The result carries the graph's
    digest."""
    from export.accuracy import split_accuracy

    acc, where = cached_full_test(run, cfg, qgraph)
    if acc is not None:
        log(f"integer emulation on the test split: reused from {where} "
            f"(quantized graph sha256 {qgraph.digest()[:12]})")
    else:
        log("integer emulation on the test split: computing (not stored for this "
            "quantized graph yet)")
        acc = split_accuracy(balanced, qgraph, cfg, "test", None, progress, device)
    return {**acc, "graph_sha256": qgraph.digest()}


def parity_spikes(run: RunDir, qgraph):
    """The Lava spikes the last parity run kept (RUN/parity/lava_spikes.npz) when they are
    of this very quantized graph (``QuantGraph.digest``); else None."""
    from hardware.spike_record import SpikeRecord

    path = run.subdir("parity") / "lava_spikes.npz"
    if not kio.exists(path):
        return None
    try:
        rec = SpikeRecord.from_bytes(kio.read_bytes(path))
    except (OSError, ValueError):
        return None  # a broken cache is only a miss
    return rec if rec.digest == qgraph.digest() and rec.samples else None
