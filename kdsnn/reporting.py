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
from .devices import lava_note, step_device
from .results import ReportResult
from .runs import (QUANT_FILE, RunPath, check_positive, load_student, open_trained_run,
                   parity_spikes, writing)

__all__ = ["report", "SOURCES"]

SOURCES = ("torch", "lava", "both")


def report(run: RunPath, *, samples: Optional[int] = None, source: str = "torch",
           profiles: Optional[Sequence[str]] = None, html: bool = False,
           compare: Sequence[RunPath] = (), conventions: Sequence[str] = (),
           replace: bool = False, device: Optional[str] = None,
           progress: bool = True) -> ReportResult:
    """Count the student's activity on the first ``samples`` test samples (default 256; with
    Lava, the samples parity kept when it did) and write the report.

    ``source``: ``torch``, ``lava`` or ``both``; ``profiles``: energy profile names or YAML
    files (default cmos45nm_fp32, cmos45nm_int8, loihi); ``compare``: other runs with a
    report, for the accuracy-vs-energy plot; ``conventions``: how operations are charged (a
    preset ``kdsnn``/``neurobench``/``dense`` and/or ``AXIS=VALUE`` pairs); ``device``:
    where the float pass and the counting compute (None/``auto``: CUDA when present; a Lava
    run for ``source="lava"`` is CPU code).

    A rerun keeps what it can recompute (report.html when the last report had one) and
    refuses, before any work, to drop what it cannot (another spike source, profile or
    compared run than the report in place holds) unless ``replace``. Accuracies are shown
    like with like: teacher, float student, emulation and Lava on parity's samples, and the
    full-split figures as their own group."""
    from hardware.energy import analyze_graph, count_teacher, load_profile, parse_conventions
    from hardware.report import (DEFAULT_PROFILES, accuracy_groups, build_report,
                                 dropped_by_rerun, written_files)
    from kd_snn.run import load_trained, sample_inputs, split_size

    check_positive(samples=samples)
    if source not in SOURCES:
        raise KdsnnError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    where = step_device(device)
    conv = parse_conventions(list(conventions))
    if conv.membrane == "changed" and source != "torch":
        raise KdsnnError("--conventions membrane=changed counts the float membrane: "
                         "use --source torch")
    profiles = list(profiles or DEFAULT_PROFILES)
    for name in profiles:  # every option checked before any work
        load_profile(name)
    run, cfg = open_trained_run(run)
    runs = _compare_entries(compare)
    old = _report_in_place(run)
    if old is not None and not replace:
        lost = dropped_by_rerun(old, {"torch", "lava"} if source == "both" else {source},
                                profiles=[load_profile(q).name for q in profiles],
                                compare=[str(c) for c in compare])
        if lost:
            raise KdsnnError(f"{lost} (or --replace to rewrite the report anyway)")
    html = html or bool(old is not None and (old.get("files") or {}).get("html"))
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
            stats["torch"] = analyze_graph(graph, x, source="torch", device=where)
        if use_lava:
            import torch
            readout, spikes, note = _lava_run_or_reuse(kept, qgraph, x, progress)
            notes.append(note)
            if lava_note(where):
                notes.append(lava_note(where, "the float pass and the counting"))
            say(f"Lava's spikes and operations on {x.shape[1]} samples")
            stats["lava"] = analyze_graph(qgraph, x, spikes=spikes, source="lava",
                                          device=where)
            lava_acc = float((torch.as_tensor(readout).argmax(1) == torch.as_tensor(y))
                             .double().mean())
        say("the teacher's MACs, energy, tables and plots")
        macs = None
        images = x[0] if cfg.data.encoding == "direct" else None  # zero-input counts
        onnx_teacher = run.stage_dir("teacher") / "model.onnx"  # from 'kdsnn import'
        if run.has_model("teacher"):
            teacher, _ = load_trained(run.model_path("teacher"), expect_spiking=False)
            macs = count_teacher(teacher.float().to(where), tuple(x.shape[2:]), x=images)
        elif onnx_teacher.is_file():
            from hardware.energy.teacher_onnx import count_onnx_teacher
            macs = count_onnx_teacher(onnx_teacher, tuple(x.shape[2:]),
                                      x=None if images is None else images.float())
        metrics = run.read_metrics()
        accuracy = accuracy_groups(metrics, _teacher_on_parity_samples(run, cfg, metrics,
                                                                       where),
                                   test_split_size=split_size(cfg, "test"))
        n_parity = (metrics.get("parity") or {}).get("samples")
        if "lava" in stats and len(y) != n_parity:  # Lava ran on the report's own samples
            accuracy["report_samples"] = {"n": len(y), "lava": lava_acc,
                                          "label": f"the {len(y)} report samples"}
        try:
            rep = build_report(run.subdir("report"), stats, teacher_macs=macs,
                               profiles=profiles, accuracy=accuracy, runs=runs or None,
                               html=html, meta={"run": run.path.name,
                                                "samples": int(x.shape[1]),
                                                "time_steps": cfg.data.time_steps},
                               conventions=conv)
        except ValueError as exc:
            raise KdsnnError(str(exc).splitlines()[0]) from None
    files = written_files(rep, run.subdir("report"))
    return ReportResult(files=tuple(files), report=rep, notes=tuple(notes))


def _report_in_place(run) -> Optional[dict]:
    """The run's current report.json (None when absent or unreadable: nothing to keep)."""
    path = run.subdir("report") / "report.json"
    if not path.is_file():
        return None
    try:
        return kio.read_json_object(path, "kdsnn report")
    except KdsnnError:
        return None


def _teacher_on_parity_samples(run, cfg, metrics: dict, device) -> Optional[float]:
    """The teacher's accuracy on parity's samples (the first N of the test split), so that
    the report compares all four models on the same images; None without both."""
    import torch
    from torch.utils.data import Subset

    from kd_snn.run import evaluate, load_trained, open_dataset

    n = (metrics.get("parity") or {}).get("samples")
    if not isinstance(n, int) or n <= 0 or not run.has_model("teacher"):
        return None
    teacher, _ = load_trained(run.model_path("teacher"), expect_spiking=False)
    test = open_dataset(cfg, "test")
    subset = Subset(test, range(min(n, len(test))))
    return evaluate(teacher.float().to(device), subset, cfg, "teacher",
                    torch.device(device))["accuracy"]


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
