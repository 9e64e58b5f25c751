"""The energy and sparsity report of a run's student against its teacher: per-layer spikes,
firing rates, synaptic operations and energy under each profile, counted on the float
student's spikes (``source="torch"``), on Lava's (``"lava"``), or both side by side.
Writes RUN/report/report.{json,md} (+ .html) and the figures."""
from __future__ import annotations

from typing import Optional, Sequence

from kd_snn import io as kio
from kd_snn.errors import KdsnnError
from kd_snn.rundir import RunDir

from .deploy import quantized_network
from .devices import cpu_step
from .results import ReportResult
from .runs import (QUANT_FILE, RunPath, check_positive, load_student, open_trained_run,
                   parity_spikes, writing)

__all__ = ["report", "SOURCES"]

SOURCES = ("torch", "lava", "both")


def report(run: RunPath, *, samples: Optional[int] = None, source: str = "torch",
           profiles: Optional[Sequence[str]] = None, html: bool = False,
           compare: Sequence[RunPath] = (), conventions: Sequence[str] = (),
           device: Optional[str] = None, progress: bool = True) -> ReportResult:
    """Count the student's activity on the first ``samples`` test samples (default 256; with
    Lava, the samples parity kept when it did) and write the report.

    ``source``: ``torch``, ``lava`` or ``both``; ``profiles``: energy profile names or YAML
    files (default cmos45nm_fp32, cmos45nm_int8, loihi); ``compare``: other runs with a
    report, for the accuracy-vs-energy plot; ``conventions``: how operations are charged (a
    preset ``kdsnn``/``neurobench``/``dense`` and/or ``AXIS=VALUE`` pairs)."""
    from hardware.energy import analyze_graph, count_teacher, load_profile, parse_conventions
    from hardware.report import DEFAULT_PROFILES, build_report
    from kd_snn.run import load_trained, sample_inputs

    check_positive(samples=samples)
    if source not in SOURCES:
        raise KdsnnError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    cpu_step(device, "report")
    conv = parse_conventions(list(conventions))
    if conv.membrane == "changed" and source != "torch":
        raise KdsnnError("--conventions membrane=changed counts the float membrane: "
                         "use --source torch")
    profiles = list(profiles or DEFAULT_PROFILES)
    for name in profiles:  # every option checked before any work
        load_profile(name)
    run, cfg = open_trained_run(run)
    runs = _compare_entries(compare)
    say = (lambda text: print(f"report: {text}", flush=True)) if progress else (lambda t: None)
    notes = []
    with writing(run):
        use_lava, kept = source in ("lava", "both"), None
        if use_lava:
            if not (run.subdir("export") / QUANT_FILE).is_file():  # export builds Lava:
                import lava.proc.lif.process  # noqa: F401  (fork start method first)
            _, _, qgraph = quantized_network(run, progress)
            kept = parity_spikes(run, qgraph)
        n = samples or (kept.samples if kept is not None else 256)
        x, y = sample_inputs(cfg, "test", n)
        _, _, graph = load_student(run)
        stats = {}
        if source in ("torch", "both"):
            say(f"the float student's spikes and operations on {x.shape[1]} samples")
            stats["torch"] = analyze_graph(graph, x, source="torch")
        if use_lava:
            import torch
            readout, spikes, note = _lava_run_or_reuse(kept, qgraph, x, progress)
            notes.append(note)
            say(f"Lava's spikes and operations on {x.shape[1]} samples")
            stats["lava"] = analyze_graph(qgraph, x, spikes=spikes, source="lava")
            lava_acc = float((torch.as_tensor(readout).argmax(1) == torch.as_tensor(y))
                             .double().mean())
        say("the teacher's MACs, energy, tables and plots")
        macs = None
        images = x[0] if cfg.data.encoding == "direct" else None  # zero-input counts
        onnx_teacher = run.stage_dir("teacher") / "model.onnx"  # from 'kdsnn import'
        if run.has_model("teacher"):
            teacher, _ = load_trained(run.model_path("teacher"), expect_spiking=False)
            macs = count_teacher(teacher.float(), tuple(x.shape[2:]), x=images)
        elif onnx_teacher.is_file():
            from hardware.energy.teacher_onnx import count_onnx_teacher
            macs = count_onnx_teacher(onnx_teacher, tuple(x.shape[2:]),
                                      x=None if images is None else images.float())
        accuracy = _accuracies(run.read_metrics(), len(y),
                               lava_acc if "lava" in stats else None)
        try:
            rep = build_report(run.subdir("report"), stats, teacher_macs=macs,
                               profiles=profiles, accuracy=accuracy, runs=runs or None,
                               html=html, meta={"run": run.path.name,
                                                "samples": int(x.shape[1]),
                                                "time_steps": cfg.data.time_steps},
                               conventions=conv)
        except ValueError as exc:
            raise KdsnnError(str(exc).splitlines()[0]) from None
    out = run.subdir("report")
    files = sorted(p for p in out.iterdir() if p.is_file()) if out.is_dir() else []
    return ReportResult(files=tuple(files), report=rep, notes=tuple(notes))


def _accuracies(metrics: dict, n: int, lava: Optional[float]) -> dict:
    """The accuracies the report shows, each with what it was measured on."""
    accuracy = {k: {"value": metrics[k]["test_accuracy"], "note": "test split (metrics)"}
                for k in ("student", "teacher")
                if k in metrics and isinstance(metrics[k].get("test_accuracy"), (int, float))}
    if lava is not None:  # on the very samples whose spikes the report counts
        accuracy["lava"] = {"value": lava, "note": f"the {n} report samples"}
    for key, path in (("quantized", ("quantized", "quantized")),
                      ("lava", ("parity", "accuracy", "lava"))):
        if key in accuracy:
            continue
        value = metrics
        for k in path:
            value = value.get(k) if isinstance(value, dict) else None
        if isinstance(value, (int, float)):
            count = metrics[path[0]].get("samples")
            accuracy[key] = {"value": value, "note": f"{count} test images ({path[0]})"}
    return accuracy


def _compare_entries(names: Sequence[RunPath]) -> list:
    from hardware.report import run_entry

    entries = []
    for other in names:
        path = RunDir(other).subdir("report") / "report.json"
        if not path.is_file():
            raise KdsnnError(f"'{other}' has no report: run 'kdsnn report {other}' first")
        rep = kio.read_json_object(path, "kdsnn report")
        try:
            entries.append(run_entry(rep, str(other)))
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            raise KdsnnError(f"'{path}' is not a kdsnn report") from None
    return entries


def _lava_run_or_reuse(rec, qgraph, x, progress: bool) -> tuple:
    """``(readout, spikes, note)`` of the samples ``x`` (the first of the test split):
    parity's when its record covers them, else a Lava run with the fast synapse models."""
    n = x.shape[1]
    if rec is not None and rec.samples >= n:
        note = (f"Lava spikes: reused from the parity run ({n} of the {rec.samples} samples in "
                f"parity/lava_spikes.npz, quantized graph sha256 {rec.digest[:12]})")
        return (*rec.first(n), note)
    note = (f"Lava spikes: running Lava on {n} samples (no parity run of this quantized graph "
            "kept them)")
    if progress:
        print(note, flush=True)
    import lava.proc.lif.process  # noqa: F401  (fork start method first)

    from export.fixed_point import encode_input
    from hardware.lava_sim import run_lava_batches
    readout, spikes = run_lava_batches(qgraph, encode_input(x), conv_model="fast",
                                       progress=progress, desc="report: Lava")
    return readout, spikes, note
