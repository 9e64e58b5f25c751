"""``RUN/export/manifest.json``: what every export target wrote (per-file sha256), from which
source bytes, with which versions, shapes and quantization scales; and ``quantize.md``."""
from __future__ import annotations

from pathlib import Path

from kd_snn import io as kio
from kd_snn.checkpoint import versions
from kd_snn.io import sha256_file, write_json

from .graph import DeployGraph

__all__ = ["SCHEMA", "QUANT_NIR_NOTE", "read_manifest", "update_manifest", "quant_scales",
           "quant_markdown"]

SCHEMA = "kdsnn.export/1"
QUANT_NIR_NOTE = ("Loihi fixed-point network: NIR in activation units (integer weights, vth, "
                  "decays du/dv) plus the Loihi fields; Lava is built from it")


def read_manifest(out: Path) -> dict:
    """The export manifest (as the open transaction will publish it); {} when none."""
    path = out / "manifest.json"
    return kio.read_json_object(path, "manifest object") if kio.exists(path) else {}


def update_manifest(out: Path, source: dict, graph: DeployGraph, target: str, files: list,
                    extra: dict) -> dict:
    """Record ``target``'s ``files`` (hashed now) in ``out/manifest.json``; ``source`` is
    ``{"checkpoint": path relative to the run, "sha256": of the bytes exported}``."""
    manifest = read_manifest(out)
    manifest.update({
        "schema": SCHEMA,
        # the hash of the very bytes the export was made from (not of the file afterwards)
        "source": dict(source),
        "versions": versions(),
        "input_shape": list(graph.input_shape), "time_steps": graph.time_steps,
        "encoding": graph.encoding,
        "layers": [{"name": l.name, "shape": list(l.shape), "spiking": l.spiking,
                    "sources": [c.source for c in l.connections]} for l in graph.layers],
    })
    manifest.setdefault("targets", {})[target] = {
        "files": {Path(f).name: sha256_file(f) for f in files}, **extra}
    write_json(out / "manifest.json", manifest)
    return manifest


def quant_scales(qgraph) -> dict:
    """Per layer: the float-to-integer scale and the Loihi neuron fields."""
    return {l.name: {"scale": float(l.scale), "vth": int(l.vth), "du": int(l.du),
                     "dv": int(l.dv)} for l in qgraph.layers}


def quant_markdown(qgraph, acc: dict) -> str:
    """``quantize.md``: accuracies, then every layer's scale, Loihi fields and error."""
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
