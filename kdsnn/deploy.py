"""Quantize and export a run's student: ``RUN/export/`` gets the Loihi fixed-point network
(``student.quant.nir``, the file Lava is built from), NIR, ONNX and netx files, beside a
``manifest.json`` (source hash, versions, shapes, scales, per-file sha256). Files are written
atomically, all together, and exporting twice gives identical bytes."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

from export.accuracy import split_accuracy
from export.latency import balance_latency
from export.manifest import read_manifest, update_manifest
from export.quant_nir import read_quant_nir
from export.targets import (QUANT_FILE, check_targets, quantize_for_loihi, write_float_nir,
                            write_lava, write_onnx, write_quant)
from kd_snn import io as kio
from kd_snn.errors import KdsnnError
from kd_snn.run import load_trained, sample_inputs
from kd_snn.rundir import RunDir

from .devices import step_device
from .results import ExportResult
from .runs import RunPath, check_positive, load_student, open_trained_run, writing

__all__ = ["quantize", "export", "export_run", "quantized_network"]


def quantize(run: RunPath, *, calib: int = 256, samples: Optional[int] = None,
             device: Optional[str] = None, progress: bool = True) -> ExportResult:
    """Quantize the run's student to Loihi fixed point (``calib`` training samples set the
    scales) and measure float vs integer-emulation accuracy on the first ``samples`` test
    samples (all: None). Writes RUN/export/student.quant.nir, quantize.{json,md}."""
    return export(run, targets=["quant"], calib=calib, samples=samples, device=device,
                  progress=progress)


def export(run: RunPath, *, targets: Sequence[str] = ("all",), calib: int = 256,
           samples: Optional[int] = None, device: Optional[str] = None,
           progress: bool = True) -> ExportResult:
    """Export the run's student to ``targets`` (``quant``, ``nir``, ``onnx``, ``lava`` or
    ``all``), every file published together under the run's lock."""
    check_positive(calib=calib, samples=samples)
    targets = check_targets(list(targets))
    where = step_device(device)
    run, _ = open_trained_run(run)
    with writing(run):
        return export_run(run, targets, calib, samples, log=None, progress=progress,
                          device=where)


def export_run(run, targets: list, calib_samples: int = 256,
               eval_samples: Optional[int] = None,
               log: Optional[Callable[[str], None]] = print,
               progress: bool = True, device=None) -> ExportResult:
    """Export inside one transaction (joins the caller's, if one is open); ``log`` gets one
    line per target as it is written (None: only in the result's ``lines``); ``device``:
    where calibration, the float pass and the emulation compute (the CPU: None)."""
    with kio.transaction():
        return _export(run, check_targets(targets), calib_samples, eval_samples, log,
                       progress, device)


def _export(run, targets, calib_samples, eval_samples, log, progress,
            device) -> ExportResult:
    model, meta, graph = load_student(run)
    cfg = run.load_config()
    out = run.subdir("export")
    read_manifest(out)  # a corrupt manifest is refused before any work
    source = {"checkpoint": str(run.student_source().relative_to(run.path)),
              "sha256": meta["file_sha256"]}
    manifest, qgraph, accuracy, files, lines = {}, None, None, [], []

    def record(target, made):
        nonlocal manifest
        paths, extra, line = made
        manifest = update_manifest(out, source, graph, target, paths, extra)
        files.extend(p for p in paths if p not in files)
        lines.append(line)
        if log is not None:
            log(line)

    if "quant" in targets or "lava" in targets:
        if device is not None and device.type != "cpu":
            lines.append(f"calibration, float pass and integer emulation on {device}")
            if log is not None:
                log(lines[-1])
        calib, _ = sample_inputs(cfg, "train", calib_samples)
        balanced, qgraph = quantize_for_loihi(graph, calib, log=print if progress else None,
                                              device=device)
        accuracy = split_accuracy(balanced, qgraph, cfg, "test", eval_samples, progress,
                                  device)
        record("quant", write_quant(out, qgraph, accuracy))
        run.update_metrics("quantized", accuracy)
    if "nir" in targets:
        record("nir", write_float_nir(out, graph, with_quant=qgraph is not None))
    if "onnx" in targets:
        x_seq, _ = sample_inputs(cfg, "test", 8)
        teacher = (load_trained(run.model_path("teacher"), expect_spiking=False)[0]
                   if run.has_model("teacher") else None)
        record("onnx", write_onnx(out, graph, x_seq, teacher))
    if "lava" in targets:
        record("lava", write_lava(out, qgraph))
    return ExportResult(targets=tuple(targets), files=tuple(files),
                        manifest_path=out / "manifest.json", manifest=manifest,
                        quantized_accuracy=accuracy, lines=tuple(lines))


def quantized_network(run: RunDir, progress: bool = True) -> tuple:
    """``(folded graph, latency-balanced graph, QuantGraph)`` of the run: the QuantGraph read
    back from RUN/export/student.quant.nir (the NIR file Lava is built from), exported first
    if missing (inside the caller's transaction), refused if made from another student."""
    qpath = run.subdir("export") / QUANT_FILE
    if not qpath.is_file():
        export_run(run, ["quant"], progress=progress)
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
