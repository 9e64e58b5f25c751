"""A spiking network trained elsewhere (a NIR file) becomes a run's student.

Everything is checked before anything is written: the NIR file (``export.nir_io``), its fit
to the data set (input shape, classes), the teacher, and the float forward on the test split
(whose accuracy the run records as the student's). Then, in one transaction under the run's
lock: ``config.yaml``, ``student/model.nir`` (the graph in kdsnn's NIR conventions),
``student/imported.json`` (where it came from), the teacher if one was given, and
``metrics.json``. ``quantize``, ``export``, ``parity`` and ``report`` then work on the run as on
a distilled one.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional, Union

from kd_snn import io as kio
from kd_snn.errors import KdsnnError
from kd_snn.rundir import RunDir

from .devices import step_device
from .results import ImportResult
from .runs import RunPath, as_run, check_positive, writing

__all__ = ["import_nir"]


def import_nir(run: RunPath, model: Union[str, os.PathLike], *, data: str,
               teacher: Optional[str] = None, time_steps: Optional[int] = None,
               dt: Optional[float] = None, force: bool = False,
               device: Optional[str] = None, progress: bool = True) -> ImportResult:
    """Make ``run``'s student from the NIR file ``model``, trained on the data set ``data``
    (a kdsnn data set's name, or a user's ``.npz`` file: ``kd_snn.data.arrays``).

    ``teacher``: an ANN for the report's energy ratio (a kdsnn run or checkpoint, or an ONNX
    file); ``time_steps``: steps per sample (default: the file's metadata, else the data
    set's default); ``dt``: the time step the file's taus are in (default: the file's
    metadata, else 1e-4 as snntorch and spikingjelly write); ``force`` replaces an imported
    student (and drops what was exported from it); ``device``: where the float forward
    over the test split runs (None/``auto``: CUDA when present).
    """
    from export.accuracy import float_accuracy
    from export.imported import MODEL, RECORD, fit_to_data, loihi_problems
    from export.nir_io import nir_to_graph, write_nir
    from kd_snn.data.arrays import is_data_file, read_arrays
    from kd_snn.data.registry import dataset_spec
    from kd_snn.run import student_encoding, student_input_shape

    check_positive(time_steps=time_steps, dt=dt)
    where = step_device(device)
    src = Path(model)
    if not src.is_file():
        raise KdsnnError(f"NIR file not found: {src}")
    user = read_arrays(data) if is_data_file(data) else None
    spec = dataset_spec(data) if user is None else None
    if spec is not None and spec.name == "arrays":
        raise KdsnnError("--data arrays: give the .npz file itself (--data FILE.npz)")
    run = as_run(run)
    run.check_writable()
    if run.has_model("student"):
        raise KdsnnError(f"'{run.path}' already has a distilled student; import into a new run")
    if run.imported_student_path.is_file() and not force:
        raise KdsnnError(f"'{run.path}' already has an imported student (--force replaces it)")
    if teacher is not None and _existing_teacher(run) and \
            not (force and _imported_teacher(run)):
        raise KdsnnError(f"'{run.path}' already has a teacher; import without --teacher (the "
                         "run's teacher is used), or into a new run")
    graph = nir_to_graph(src, dt=dt)
    read = graph.metadata["nir_source"]  # the dt the taus were read with; T if stated
    file_dt, file_steps = read["dt"], read["time_steps"]
    name, options = data, {}
    if user is not None:  # the file's layout and classes, fitted to the network
        name, options, time_steps = _user_data(user, graph, time_steps, teacher, src)
        data = str(user.path)
        spec = dataset_spec(name, **options)
    cfg, new_config = _config(run, name, options, time_steps, file_steps,
                              spec.default_time_steps, src.stem)
    if spec.kind == "event":
        cfg.data.encoding = "frames"
    graph = fit_to_data(graph, student_input_shape(cfg), spec.num_classes, cfg.data.time_steps,
                        student_encoding(cfg), what=f"'{src}'")
    teacher_src = _teacher_source(teacher, name, student_input_shape(cfg), spec.num_classes)
    accuracy = float_accuracy(graph, cfg, progress, device=where)
    source = src.read_bytes()
    with writing(run):
        if new_config:
            run.save_config(cfg)
        if force:  # what was made from the replaced student must not outlive it
            for sub in ("export", "parity", "report"):
                for old in sorted(p for p in run.subdir(sub).rglob("*") if p.is_file()):
                    kio.remove(old)
        stage = run.stage_dir("student")
        write_nir(graph, stage / MODEL)
        kio.write_json(stage / RECORD, {
            "source": str(src), "source_sha256": hashlib.sha256(source).hexdigest(),
            "dt": dt if dt is not None else file_dt,
            "time_steps": cfg.data.time_steps, "data": data,
            "input_shape": list(graph.input_shape), "layers": [l.name for l in graph.layers],
            "readout": graph.metadata.get("added_readout",
                                          "the file's non-spiking output layer"),
            "teacher": None if teacher_src is None else str(teacher_src[1])})
        if teacher_src is not None:
            for old in _existing_teacher(run):  # only an imported one reaches here
                kio.remove(old)
            kind, path = teacher_src
            dst = run.stage_dir("teacher") / ("model.onnx" if kind == "onnx"
                                              else "model.safetensors")
            kio.write_bytes(dst, path.read_bytes())
            if kind == "checkpoint" and path.with_suffix(".json").is_file():
                kio.write_bytes(dst.with_suffix(".json"), path.with_suffix(".json").read_bytes())
        run.update_metrics("student", {"test_accuracy": accuracy["accuracy"],
                                       "test_samples": accuracy["samples"],
                                       "imported_from": str(src)})
    notes = []
    if "added_readout" in graph.metadata:
        notes.append(f"note: the file's last layer spikes; kdsnn reads it by spike counts (a "
                     f"'{graph.layers[-1].name}' readout layer was added)")
    return ImportResult(run=run.path, layers=len(graph.layers),
                        input_shape=tuple(graph.input_shape), time_steps=graph.time_steps,
                        test_accuracy=accuracy["accuracy"], test_samples=accuracy["samples"],
                        teacher=None if teacher_src is None else teacher_src[1],
                        notes=tuple(notes), loihi_problems=tuple(loihi_problems(graph)))


def _teacher_source(arg, data: str, input_shape: tuple, classes: int):
    """``(kind, path)`` of the teacher (``None`` when absent), checked readable and fit for
    the data set: a checkpoint trained on it, an ONNX model taking its input shape, giving
    one score per class and countable (the report's MACs)."""
    if arg is None:
        return None
    path = Path(arg)
    if path.suffix.lower() == ".onnx":
        from hardware.energy.teacher_onnx import check_onnx_teacher
        check_onnx_teacher(path, input_shape, classes)
        return "onnx", path
    from kd_snn.run import load_trained, resolve_checkpoint
    file = resolve_checkpoint(path)
    _, meta = load_trained(file, expect_spiking=False)  # refuses a student or a broken file
    trained_on = meta.get("data")
    if trained_on != data:
        raise KdsnnError(f"teacher '{file}' was trained on '{trained_on}', not '{data}'")
    return "checkpoint", file


def _user_data(user, graph, time_steps, teacher, src: Path) -> tuple:
    """``(data set name, its options, T)`` of a user's file for ``graph``: a sequence's
    steps are the run's T, so a ``--time-steps`` that disagrees is refused."""
    import numpy as np

    from export.graph import INPUT
    from kd_snn.data.arrays import NAME, fit_arrays

    readers = [c.kind for layer in graph.layers for c in layer.connections
               if c.source == INPUT]
    options = fit_arrays(user, graph.input_shape, int(np.prod(graph.output.shape)),
                         all(k == "dense" for k in readers), what=f"'{src}'")
    if options["layout"] == "sequence":
        steps = options["sample_shape"][0]
        if time_steps is not None and time_steps != steps:
            raise KdsnnError(f"--time-steps {time_steps}: the sequences of '{user.path}' "
                             f"have {steps} steps (step t of a sample is x[:, t])")
        if teacher is not None:
            raise KdsnnError("--teacher takes static samples; the data are sequences (an "
                             "ANN teacher of sequences is not supported)")
        time_steps = steps
    return NAME, options, time_steps


def _config(run: RunDir, data: str, options: dict, time_steps, file_steps,
            default_steps: int, stem: str):
    """``(config, new?)``: the run's own config when it has one (a run holding a teacher),
    whose T the student adopts unless ``--time-steps`` says otherwise; else a new config
    with T = ``--time-steps``, else the file's, else the data set's default."""
    from kd_snn import config as C

    if run.config_path.is_file():  # a run with a teacher already: keep its config
        cfg = run.load_config()
        if cfg.data.name != data or (options and
                                     cfg.data.options.get("sha256") != options["sha256"]):
            theirs = cfg.data.options.get("file") or cfg.data.name
            raise KdsnnError(f"'{run.path}' is a run on '{theirs}', not "
                             f"'{options.get('file', data)}'")
        if time_steps is not None and time_steps != cfg.data.time_steps:
            raise KdsnnError(f"'{run.path}' runs T = {cfg.data.time_steps} (its config.yaml), "
                             f"not --time-steps {time_steps}")
        return cfg, False
    cfg = C.Config()
    cfg.name = stem
    cfg.data.name = data
    cfg.data.options = dict(options)
    cfg.data.time_steps = int(time_steps or file_steps or default_steps)
    cfg.data.encoding = "direct"
    cfg.student.model = "imported"
    cfg.teacher.model = "imported"
    return C.validate(cfg), True


def _existing_teacher(run: RunDir) -> list:
    """The teacher files a run holds (a kdsnn-trained one, or one an import brought)."""
    folder = run.stage_dir("teacher")
    return [p for p in (folder / "model.safetensors", folder / "model.json",
                        folder / "model.onnx") if p.is_file()]


def _imported_teacher(run: RunDir) -> bool:
    """Whether the run's teacher came with an earlier ``kdsnn import`` (``--force`` may
    replace it) rather than from ``kdsnn teacher``."""
    record = run.stage_dir("student") / "imported.json"
    if not record.is_file():
        return False
    try:
        return kio.read_json_object(record, "import record").get("teacher") is not None
    except KdsnnError:
        return False
