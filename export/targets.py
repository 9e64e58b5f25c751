"""The export targets, each a function of a folded graph and an output folder: the Loihi
fixed-point network (``quant``), NIR, ONNX and Lava. Each writes its files (through
``kd_snn.io``, so inside the caller's transaction) and returns ``(files, manifest extra,
one line for the user)``; which run they belong to is the caller's business."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch

from kd_snn import io as kio
from kd_snn.errors import KdsnnError
from kd_snn.io import write_json, write_text

from .graph import DeployGraph
from .latency import balance_latency
from .manifest import QUANT_NIR_NOTE, quant_markdown

__all__ = ["TARGETS", "QUANT_FILE", "check_targets", "quantize_for_loihi", "write_quant",
           "write_float_nir", "write_onnx", "write_lava"]

TARGETS = ("quant", "nir", "onnx", "lava")
QUANT_FILE = "student.quant.nir"


def check_targets(targets: list) -> list:
    """The targets named (``all``: every one), refusing an unknown name."""
    unknown = [t for t in targets if t not in TARGETS + ("all",)]
    if unknown:
        raise KdsnnError(f"unknown export target '{unknown[0]}' (choose from "
                         f"{', '.join(TARGETS)}, all)")
    return list(TARGETS) if "all" in targets else list(targets)


def quantize_for_loihi(graph: DeployGraph, calib: torch.Tensor,
                       log: Optional[Callable[[str], None]] = None, device=None) -> tuple:
    """``(balanced float graph, QuantGraph)``: latency balanced, then quantized with the
    calibration inputs ``calib`` (T, N, ...). Sequential graphs are quantized within what
    netx HDF5 can express exactly, so the netx file and the process network run the very
    same integers. ``device``: where the calibration computes."""
    from .netx import quantize_for_netx
    from .quantize import quantize

    balanced = balance_latency(graph)
    try:
        if balanced.is_sequential():
            return balanced, quantize_for_netx(balanced, calib, log=log, device=device)
        return balanced, quantize(balanced, calib, log=log, device=device)
    except ValueError as exc:  # what Loihi cannot express (e.g. per-neuron thresholds)
        raise KdsnnError(f"cannot quantize the student for Loihi: "
                         f"{str(exc).splitlines()[0]}") from None


def write_quant(out: Path, qgraph, accuracy: dict) -> tuple:
    """``student.quant.nir`` (the network Lava is built from), ``quantize.json/.md``."""
    from .manifest import quant_scales
    from .quant_nir import write_quant_nir

    qpath = out / QUANT_FILE
    write_quant_nir(qpath, qgraph)
    write_json(out / "quantize.json", {"accuracy": accuracy, "graph_sha256": qgraph.digest(),
                                       "layers": qgraph.metadata.get("report", {})})
    write_text(out / "quantize.md", quant_markdown(qgraph, accuracy))
    line = (f"quantized: float {accuracy['float'] * 100:.2f}% -> Loihi fixed point "
            f"{accuracy['quantized'] * 100:.2f}% on {accuracy['samples']} test samples  -> "
            f"{qpath}")
    return ([qpath, out / "quantize.json", out / "quantize.md"],
            {"accuracy": accuracy, "scales": quant_scales(qgraph)}, line)


def write_float_nir(out: Path, graph: DeployGraph, with_quant: bool) -> tuple:
    """``student.nir``: the folded float student (dt = 1e-4); with the quantized network
    written in the same export, ``student.quant.nir`` is listed too."""
    from .nir_io import write_nir

    path = out / "student.nir"
    write_nir(graph, path)
    files, extra = [path], {"dt": 1e-4, "student.nir": "folded float student"}
    if with_quant:
        files.append(out / QUANT_FILE)
        extra[QUANT_FILE] = QUANT_NIR_NOTE
    return files, extra, f"nir: {', '.join(str(f) for f in files)}"


def write_onnx(out: Path, graph: DeployGraph, x_seq: torch.Tensor,
               teacher: Optional[torch.nn.Module] = None) -> tuple:
    """``student.onnx`` (and ``teacher.onnx``), each run back by onnxruntime on ``x_seq``
    and compared with the PyTorch forward."""
    from .onnx_export import StudentModule, check_onnx, export_onnx_student, export_onnx_teacher

    files, checks = [], {}
    spath = out / "student.onnx"
    static = graph.encoding == "direct"
    export_onnx_student(graph, spath, static_input=static)
    module = StudentModule(graph).eval()
    x_in = x_seq[0].float() if static else x_seq.float()
    with torch.no_grad():
        expected = module(x_in.to(torch.float32) if static else x_in)
    checks["student_max_abs_diff"] = check_onnx(kio.current_path(spath), [x_in.numpy()], expected)
    files.append(spath)
    if teacher is not None:
        tpath = out / "teacher.onnx"
        tin = x_seq[0].float() if static else x_seq.float().mean(0)
        export_onnx_teacher(teacher.float(), tuple(tin.shape[1:]), tpath)
        with torch.no_grad():
            texp = teacher.float().eval()(tin)
        checks["teacher_max_abs_diff"] = check_onnx(kio.current_path(tpath), [tin.numpy()], texp)
        files.append(tpath)
    line = (f"onnx: {', '.join(str(f) for f in files)} (onnxruntime max abs diff: "
            + ", ".join(f"{k.split('_')[0]} {v:.2e}" for k, v in checks.items()) + ")")
    return files, {"onnxruntime": checks}, line


def write_lava(out: Path, qgraph) -> tuple:
    """Lava's inputs: the process network is built from ``student.quant.nir``; a netx HDF5
    ``student.net`` is written too where netx can express the network."""
    from .netx import netx_problems, write_netx

    files = [out / QUANT_FILE]
    extra = {"process_network": f"{QUANT_FILE} (hardware.lava_sim.run_lava_from_files)",
             QUANT_FILE: QUANT_NIR_NOTE,
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
    what = "netx HDF5 student.net + " if extra["netx"] else ""
    line = (f"lava: {what}process network from {QUANT_FILE} in {out}"
            + ("" if extra["netx"] else f" (netx cannot express it: {problems[0]})"))
    return files, extra, line
