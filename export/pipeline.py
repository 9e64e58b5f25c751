"""``kdsnn export`` / ``kdsnn quantize``: from a run directory's student to artifacts.

Everything lands in ``RUN/export/`` next to a ``manifest.json`` (source checkpoint
hash, target, versions, shapes, quantization scales, per-file hashes).  Files are
written atomically and exporting twice gives identical bytes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from kd_snn.checkpoint import versions
from kd_snn.config import Config
from kd_snn.errors import KdsnnError
from kd_snn import io as kio
from kd_snn.io import sha256_file, write_json, write_text
from kd_snn.rundir import RunDir

from .graph import DeployGraph, float_logits

TARGETS = ("quant", "nir", "onnx", "lava")
QUANT_NIR_NOTE = ("Loihi fixed-point network: NIR in activation units (integer weights, vth, "
                  "decays du/dv) plus the Loihi fields; Lava is built from it")
SCHEMA = "kdsnn.export/1"


# inputs ------------------------------------------------------------------------------
def sample_inputs(cfg: Config, split: str, n: Optional[int]) -> tuple[torch.Tensor, np.ndarray]:
    """First ``n`` samples of a split as the student sees them: ``(T, N, ...)`` + labels."""
    from kd_snn.run import open_dataset

    ds = open_dataset(cfg, split)
    n = len(ds) if n is None else min(int(n), len(ds))
    if n <= 0:
        raise KdsnnError(f"--samples must be > 0 (got {n})")
    return _student_view(ds, 0, n, cfg, _hardware_kind(cfg))


def input_batches(cfg: Config, split: str, batch: int):
    """``(n, iterator of (x_seq, labels))``: :func:`sample_inputs` of the whole split, a
    batch at a time (memory of one batch, whatever the split's size and T)."""
    from kd_snn.run import open_dataset

    ds = open_dataset(cfg, split)
    kind = _hardware_kind(cfg)
    return len(ds), (_student_view(ds, lo, min(lo + batch, len(ds)), cfg, kind)
                     for lo in range(0, len(ds), batch))


def _hardware_kind(cfg: Config) -> str:
    """The data set's kind, refusing an input encoding the hardware cannot take."""
    from kd_snn.run import data_spec

    kind = data_spec(cfg).kind
    if kind != "event" and cfg.data.encoding != "direct":
        raise KdsnnError(f"hardware export needs direct (analog) or event input; the run "
                         f"uses '{cfg.data.encoding}' encoding")
    return kind


def _student_view(ds, lo: int, hi: int, cfg: Config, kind: str) -> tuple:
    """Samples ``lo:hi`` of ``ds`` exactly as the student saw them in training."""
    from kd_snn.run import student_input

    xs, ys = zip(*(ds[i] for i in range(lo, hi)))
    x = torch.stack([torch.as_tensor(v) for v in xs])
    return (student_input(x, cfg, kind, None).to(torch.float64),
            np.asarray(ys, dtype=np.int64))


# the folded student ------------------------------------------------------------------
def load_student(run: RunDir):
    """(model, checkpoint meta, folded float DeployGraph) of the run's student; an
    imported student (``kdsnn import``) has no torch model: ``(None, meta, its graph)``."""
    from kd_snn.run import load_trained

    from .fold import fold_student

    cfg = run.load_config()
    if run.imported_student_path.is_file():  # trained elsewhere: the graph is the model
        from .imported import load_imported

        path = run.imported_student_path
        return None, {"file_sha256": sha256_file(path)}, load_imported(kio.current_path(path))
    if not run.has_model("student"):
        raise KdsnnError(f"no trained student in '{run.path}': run 'kdsnn distill {run.path}'"
                         f" (or 'kdsnn import MODEL.nir {run.path}')")
    model, meta = load_trained(run.model_path("student"), expect_spiking=True)
    model = model.double().eval()
    graph = fold_student(model, student_input_shape(cfg), cfg.data.time_steps,
                         encoding=student_encoding(cfg))
    return model, meta, graph


def student_input_shape(cfg) -> tuple:
    """What the student reads per step: (C, H, W), or (2, H, W) event frames."""
    from kd_snn.run import data_spec

    spec = data_spec(cfg)
    return ((2,) if spec.kind == "event" else (spec.in_channels,)) + tuple(spec.image_size)


def student_encoding(cfg) -> str:
    from kd_snn.run import data_spec

    return "frames" if data_spec(cfg).kind == "event" else cfg.data.encoding


def quantize_run(run: RunDir, graph: DeployGraph, calib_samples: int = 256, log=None):
    """Balance latency, quantize with calibration data from the training set.

    Sequential graphs are quantized within what netx HDF5 can express exactly, so
    the netx file and the process network run the very same integers.
    """
    from .latency import balance_latency
    from .netx import quantize_for_netx
    from .quantize import quantize

    cfg = run.load_config()
    calib, _ = sample_inputs(cfg, "train", calib_samples)
    balanced = balance_latency(graph)
    try:
        if balanced.is_sequential():
            return balanced, quantize_for_netx(balanced, calib, log=log)
        return balanced, quantize(balanced, calib, log=log)
    except ValueError as exc:  # what Loihi cannot express (e.g. per-neuron thresholds)
        raise KdsnnError(f"cannot quantize the student for Loihi: "
                         f"{str(exc).splitlines()[0]}") from None


def accuracy_batch(qgraph, budget_bytes: int = 1 << 28) -> int:
    """Samples per accuracy batch: large batches keep oneDNN's convolutions of narrow layers
    efficient, bounded so that the widest layer's
    (T, B, neurons) float64 tensor stays within ``budget_bytes``."""
    widest = max(int(np.prod(layer.shape)) for layer in qgraph.layers)
    b = budget_bytes // max(1, 8 * qgraph.time_steps * widest)
    return int(min(256, max(16, b)))


def quantized_accuracy(graph: DeployGraph, qgraph, x_seq: torch.Tensor, labels: np.ndarray,
                       batch: Optional[int] = None, progress: bool = False) -> dict:
    """Test accuracy of the float graph (in float32, as the student runs in PyTorch) and of
    its integer emulation."""
    batch = batch or accuracy_batch(qgraph)
    starts = range(0, x_seq.shape[1], batch)
    return accuracy_over(graph, qgraph, len(labels),
                         ((x_seq[:, a:a + batch], labels[a:a + batch]) for a in starts),
                         progress)


def split_accuracy(graph: DeployGraph, qgraph, cfg: Config, split: str = "test",
                   n: Optional[int] = None, progress: bool = False) -> dict:
    """:func:`quantized_accuracy` over the first ``n`` samples of a split (all: None), read
    a batch at a time (the whole CIFAR test split at T = 4 would be ~1 GB of float64)."""
    batch = accuracy_batch(qgraph)
    if n is not None:
        x, y = sample_inputs(cfg, split, n)
        return quantized_accuracy(graph, qgraph, x, y, batch, progress)
    total, batches = input_batches(cfg, split, batch)
    return accuracy_over(graph, qgraph, total, batches, progress)


def accuracy_over(graph: DeployGraph, qgraph, n: int, batches, progress: bool) -> dict:
    """Accuracy, float and emulation, over ``n`` samples given as ``(x_seq, labels)``
    batches."""
    from kd_snn.progress import progress as make_progress

    from .emulate import emulate
    from .quantize import encode_input

    correct_f = correct_q = agree = 0
    bar = make_progress(desc="accuracy (float + emulation)", unit="sample", total=n,
                        enabled=progress, every=10)
    try:
        for xb, yb in batches:
            pf = float_logits(graph, xb.float()).argmax(1).numpy()
            v, _ = emulate(qgraph, encode_input(xb), record=False)
            pq = np.asarray(v).reshape(len(yb), -1).argmax(1)
            correct_f += int((pf == yb).sum())
            correct_q += int((pq == yb).sum())
            agree += int((pf == pq).sum())
            bar.update(len(yb))
    finally:
        bar.close()
    n = max(1, n)
    return {"float": correct_f / n, "quantized": correct_q / n, "agreement": agree / n,
            "samples": int(n)}


def test_split_size(cfg: Config) -> int:
    from kd_snn.run import open_dataset
    return len(open_dataset(cfg, "test"))


def cached_full_test(run: RunDir, cfg: Config, qgraph) -> tuple:
    """``(accuracy, where)`` of the integer emulation over the whole test split, stored by
    an earlier command for this very quantized graph (same ``QuantGraph.digest``), or
    ``(None, None)``.  Looked up in RUN/export/quantize.json (written by export/quantize)
    and RUN/parity/parity.json."""
    digest, n = qgraph.digest(), test_split_size(cfg)
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


def full_test_accuracy(run: RunDir, cfg: Config, balanced, qgraph, progress: bool = True,
                       log=print) -> dict:
    """The emulation's accuracy over the whole test split: reused when stored for this
    graph, computed (once) otherwise.  The result carries the graph's digest."""
    acc, where = cached_full_test(run, cfg, qgraph)
    if acc is not None:
        log(f"integer emulation on the test split: reused from {where} "
            f"(quantized graph sha256 {qgraph.digest()[:12]})")
    else:
        log("integer emulation on the test split: computing (not stored for this "
            "quantized graph yet)")
        acc = split_accuracy(balanced, qgraph, cfg, "test", None, progress)
    return {**acc, "graph_sha256": qgraph.digest()}


def quant_markdown(qgraph, acc: dict) -> str:
    report = qgraph.metadata.get("report", {})
    lines = ["# Loihi fixed-point quantization", "",
             f"Test accuracy: float {acc['float'] * 100:.2f} %, quantized (integer emulation) "
             f"{acc['quantized'] * 100:.2f} %, prediction agreement {acc['agreement'] * 100:.2f} % "
             f"on {acc['samples']} samples.", "",
             "| layer | scale | vth | du | dv | weight exp | clipped | rel. error | bound |",
             "|---|---|---|---|---|---|---|---|---|"]
    for layer in qgraph.layers:
        r = report.get(layer.name, {})
        conns = r.get("connections", [])
        exps = ",".join(str(c.get("weight_exp")) for c in conns) or "-"
        clipped = max((c.get("clipped_frac", 0.0) for c in conns), default=0.0)
        err = max((c.get("rel_error", 0.0) for c in conns), default=0.0)
        if r.get("relay"):
            lines.append(f"| {layer.name} (relay) | 1 | 0 | 4095 | 4095 | 0 | 0 | 0 | - |")
            continue
        lines.append(f"| {layer.name} | {layer.scale:.4g} | {layer.vth} | {layer.du} | "
                     f"{layer.dv} | {exps} | {clipped:.4f} | {err:.4f} | "
                     f"{r.get('bound', '-')} |")
    return "\n".join(lines) + "\n"


# manifest ----------------------------------------------------------------------------
def read_manifest(out: Path) -> dict:
    """The export manifest (as the open transaction will publish it); {} when none."""
    path = out / "manifest.json"
    return kio.read_json_object(path, "manifest object") if kio.exists(path) else {}


def _update_manifest(out: Path, run: RunDir, graph: DeployGraph, target: str, files: list,
                     extra: dict, source_sha256: str) -> dict:
    path = out / "manifest.json"
    manifest = read_manifest(out)
    src = run.student_source()
    manifest.update({
        "schema": SCHEMA,
        # the hash of the very bytes the export was made from (not of the file afterwards)
        "source": {"checkpoint": str(src.relative_to(run.path)), "sha256": source_sha256},
        "versions": versions(),
        "input_shape": list(graph.input_shape), "time_steps": graph.time_steps,
        "encoding": graph.encoding,
        "layers": [{"name": l.name, "shape": list(l.shape), "spiking": l.spiking,
                    "sources": [c.source for c in l.connections]} for l in graph.layers],
    })
    manifest.setdefault("targets", {})[target] = {
        "files": {Path(f).name: sha256_file(f) for f in files}, **extra}
    write_json(path, manifest)
    return manifest


def _scales(qgraph) -> dict:
    return {l.name: {"scale": float(l.scale), "vth": int(l.vth), "du": int(l.du),
                     "dv": int(l.dv)} for l in qgraph.layers}


def check_targets(targets: list) -> list:
    unknown = [t for t in targets if t not in TARGETS + ("all",)]
    if unknown:
        raise KdsnnError(f"unknown export target '{unknown[0]}' (choose from "
                         f"{', '.join(TARGETS)}, all)")
    return list(TARGETS) if "all" in targets else list(targets)


def export_run(run: RunDir, targets: list, calib_samples: int = 256,
               eval_samples: Optional[int] = None, log=print, progress: bool = True) -> dict:
    """Export the run's student; all files are published together (one transaction)."""
    with kio.transaction():
        return _export_run(run, check_targets(targets), calib_samples, eval_samples, log,
                           progress)


def _export_run(run, targets, calib_samples, eval_samples, log, progress) -> dict:
    model, meta, graph = load_student(run)
    cfg = run.load_config()
    out = run.subdir("export")
    read_manifest(out)  # a corrupt manifest is refused before any work
    source_sha = meta["file_sha256"]
    manifest = {}
    qgraph = balanced = None
    if "quant" in targets or "lava" in targets:
        from .quant_nir import write_quant_nir

        balanced, qgraph = quantize_run(run, graph, calib_samples,
                                        log=log if progress else None)
        acc = split_accuracy(balanced, qgraph, cfg, "test", eval_samples, progress)
        qpath = out / "student.quant.nir"
        write_quant_nir(qpath, qgraph)
        write_json(out / "quantize.json", {"accuracy": acc, "graph_sha256": qgraph.digest(),
                                           "layers": qgraph.metadata.get("report", {})})
        write_text(out / "quantize.md", quant_markdown(qgraph, acc))
        manifest = _update_manifest(out, run, graph, "quant",
                                    [qpath, out / "quantize.json", out / "quantize.md"],
                                    {"accuracy": acc, "scales": _scales(qgraph)}, source_sha)
        run.update_metrics("quantized", acc)
        log(f"quantized: float {acc['float'] * 100:.2f}% -> Loihi fixed point "
            f"{acc['quantized'] * 100:.2f}% on {acc['samples']} test samples  -> {qpath}")
    if "nir" in targets:
        from .nir_io import write_nir

        path = out / "student.nir"
        write_nir(graph, path)
        files, extra = [path], {"dt": 1e-4, "student.nir": "folded float student"}
        if qgraph is not None:  # exported together with quant/lava: the chip's network too
            files.append(out / "student.quant.nir")
            extra["student.quant.nir"] = QUANT_NIR_NOTE
        manifest = _update_manifest(out, run, graph, "nir", files, extra, source_sha)
        log(f"nir: {', '.join(str(f) for f in files)}")
    if "onnx" in targets:
        manifest = _export_onnx(run, graph, out, cfg, log, source_sha)
    if "lava" in targets:
        manifest = _export_lava(run, graph, qgraph, out, log, source_sha)
    return manifest


def _export_onnx(run, graph, out, cfg, log, source_sha) -> dict:
    from kd_snn.run import load_trained

    from .onnx_export import StudentModule, check_onnx, export_onnx_student, export_onnx_teacher

    files, checks = [], {}
    x_seq, _ = sample_inputs(cfg, "test", 8)
    spath = out / "student.onnx"
    static = graph.encoding == "direct"
    export_onnx_student(graph, spath, static_input=static)
    module = StudentModule(graph).eval()
    x_in = x_seq[0].float() if static else x_seq.float()
    with torch.no_grad():
        expected = module(x_in.to(torch.float32) if static else x_in)
    checks["student_max_abs_diff"] = check_onnx(kio.current_path(spath), [x_in.numpy()], expected)
    files.append(spath)
    if run.has_model("teacher"):
        teacher, _ = load_trained(run.model_path("teacher"), expect_spiking=False)
        tpath = out / "teacher.onnx"
        tin = x_seq[0].float() if static else x_seq.float().mean(0)
        export_onnx_teacher(teacher.float(), tuple(tin.shape[1:]), tpath)
        with torch.no_grad():
            texp = teacher.float().eval()(tin)
        checks["teacher_max_abs_diff"] = check_onnx(kio.current_path(tpath), [tin.numpy()], texp)
        files.append(tpath)
    log(f"onnx: {', '.join(str(f) for f in files)} (onnxruntime max abs diff: "
        + ", ".join(f"{k.split('_')[0]} {v:.2e}" for k, v in checks.items()) + ")")
    return _update_manifest(out, run, graph, "onnx", files, {"onnxruntime": checks}, source_sha)


def _export_lava(run, graph, qgraph, out, log, source_sha) -> dict:
    from .netx import netx_problems, write_netx

    files = [out / "student.quant.nir"]
    extra = {"process_network": "student.quant.nir (hardware.lava_sim.run_lava_from_files)",
             "student.quant.nir": QUANT_NIR_NOTE,
             "latency_steps": int(max(qgraph.depths().values()))}
    problems = netx_problems(qgraph)
    if not problems:
        net = out / "student.net"
        write_netx(qgraph, net)
        files.append(net)
        extra["netx"] = "student.net"
    else:
        extra["netx"] = None
        extra["netx_unsupported"] = problems[0]
    manifest = _update_manifest(out, run, graph, "lava", files, extra, source_sha)
    what = "netx HDF5 student.net + " if extra["netx"] else ""
    log(f"lava: {what}process network from student.quant.nir in {out}"
        + ("" if extra["netx"] else f" (netx cannot express it: {problems[0]})"))
    return manifest
