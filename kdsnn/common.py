"""What every ``kdsnn`` command after training shares: argument checks, the run's writer
lock and transaction, the run's config, and its quantized network."""
from __future__ import annotations

import contextlib
import os

from kd_snn import io as kio
from kd_snn.errors import KdsnnError
from kd_snn.rundir import RunDir


def _is_main_process() -> bool:
    """torchrun starts one process per rank on the same run directory: rank 0 writes."""
    return int(os.environ.get("RANK", "0")) == 0


@contextlib.contextmanager
def writing(run: RunDir, transactional: bool = True):
    """The run's writer lock, and (for file-producing commands) one transaction."""
    lock = run.lock() if _is_main_process() else contextlib.nullcontext()
    with lock, (kio.transaction() if transactional else contextlib.nullcontext()):
        yield


def _positive(**values) -> None:
    for name, value in values.items():
        if value is not None and value <= 0:
            raise KdsnnError(f"--{name.replace('_', '-')} must be > 0, got {value}")


def _run_for_export(args) -> tuple:
    """``(run, its config)`` for the commands after training; config and metrics checked."""
    run = RunDir(args.run)
    run.check_usable()
    if not run.config_path.is_file():
        raise KdsnnError(f"'{run.path}' is not a kdsnn run directory (no config.yaml)")
    if args.overrides:
        raise KdsnnError("--set is only for training commands; the run's config is used as is")
    cfg = run.load_config()  # a broken config.yaml is refused first
    run.read_metrics()
    return run, cfg


QUANT_FILE = "student.quant.nir"


def _load_quant_or_make(run: RunDir, progress: bool):
    """The exported QuantGraph, read back from RUN/export/student.quant.nir (the NIR file
    Lava is built from), made if missing."""
    from export.latency import balance_latency
    from export.pipeline import export_run, load_student, read_manifest
    from export.quant_nir import read_quant_nir

    qpath = run.subdir("export") / QUANT_FILE
    if not qpath.is_file():
        export_run(run, ["quant"], progress=progress)  # joins the command's transaction
    _, meta, graph = load_student(run)
    made_from = read_manifest(run.subdir("export")).get("source", {})
    if isinstance(made_from, dict) and made_from.get("sha256") not in (None,
                                                                      meta["file_sha256"]):
        raise KdsnnError(f"'{qpath}' was made from another student than the run's "
                         f"'{run.student_source().relative_to(run.path)}' (its sha256 "
                         f"differs); re-run 'kdsnn export {run.path} --target lava'")
    try:
        qgraph = read_quant_nir(kio.current_path(qpath))
    except KdsnnError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise KdsnnError(f"'{qpath}' is corrupt ({reason}); re-run 'kdsnn export "
                         f"{run.path} --target lava'") from None
    balanced = balance_latency(graph)
    if [l.name for l in balanced.layers] != [l.name for l in qgraph.layers]:
        raise KdsnnError(f"'{qpath}' does not match the run's student; re-run "
                         f"'kdsnn export {run.path} --target lava'")
    return graph, balanced, qgraph


def quant_source(run: RunDir, qgraph) -> dict:
    """Which file the process network was built from, and what it holds (for results)."""
    import hashlib

    qpath = kio.current_path(run.subdir("export") / QUANT_FILE)
    return {"file": f"export/{QUANT_FILE}",
            "file_sha256": hashlib.sha256(qpath.read_bytes()).hexdigest(),
            "graph_sha256": qgraph.digest()}
