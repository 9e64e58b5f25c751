"""What an ablation runs: variants, student modes, seeds, data sets and their checks, and
the plan of run directories (one ``Task`` each) at one fixed budget."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .. import config as C
from ..errors import KdsnnError
from ..rundir import RunDir


FORMAT = 1


WORKER = "_worker"


FAIL_ENV = "KDSNN_FAIL_AT_STEP"  # test hook (as in the CLI): crash after a checkpoint


BOTH = ("fashion_mnist", "fashion_mnist_events")


DEFAULT_SEEDS = (0, 1, 2)


BASE_STATIC, BASE_EVENT = "ablation_fmnist", "ablation_fmnist_events"


#: variant -> (description, config keys it sets). ``teacher`` is the ANN teacher stage.
VARIANTS: dict[str, tuple[str, dict]] = {
    "teacher": ("ANN teacher (CE)", {}),
    "none": ("SNN, no KD (CE only)", {"loss.preset": "none"}),
    "logit_kd": ("CE + logit KD (Hinton)", {"loss.preset": "logit_kd"}),
    "nld": ("CE + NLD only", {"loss.preset": "nld"}),
    "samd": ("CE + SAMD only (softmax)", {"loss.preset": "samd", "loss.samd_scaling": "softmax"}),
    "samd_nld": ("CE + SAMD + NLD (paper; softmax)",
                 {"loss.preset": "samd_nld", "loss.samd_scaling": "softmax"}),
    "samd_nld_zscore": ("CE + SAMD (z-score scaling) + NLD",
                        {"loss.preset": "samd_nld", "loss.samd_scaling": "zscore"}),
    "samd_nld_l2": ("CE + SAMD (L2-norm scaling) + NLD",
                    {"loss.preset": "samd_nld", "loss.samd_scaling": "l2"}),
    "camcam": ("CE + CAM-CAM", {"loss.preset": "camcam"}),
}


#: student mode -> (description, config keys it sets after ``--set``). ``reference`` is
#: the authors' student (SinoLeu/CKDSNN): analog (ReLU) last block, fc-fc head, T = 1, hard
#: reset with gradient, triangle surrogate, batch-global SAMD normalisation, teacher
#: BatchNorm in train mode, CAM-CAM on the detached student classifier.
MODES: dict[str, tuple[str, dict]] = {
    "spiking": ("fully spiking student (kdsnn default)", {}),
    "reference": ("reference-code student (ReLU last block, T = 1)", {
        "student.last_block": "relu", "student.head": "reference", "data.time_steps": 1,
        "neuron.detach_reset": False, "neuron.surrogate": "triangle", "neuron.width": 1,
        "loss.samd_norm": "batch", "loss.teacher_mode": "train", "loss.camcam_detach": True}),
}


DEFAULT_MODES = ("spiking",)


#: keys the runner sets itself; ``--set`` may not touch them
RESERVED = ("seed", "name", "data.name", "loss.preset", "loss.samd_scaling")


@dataclass(eq=False)
class Task:
    data: str
    variant: str
    seed: int
    path: Path
    cfg: C.Config
    teacher: Optional["Task"] = None
    mode: str = "spiking"
    external_teacher: Optional[Path] = None  # --teacher: one trained teacher for all
    status: str = "pending"  # pending, running, done, failed, blocked; conditional ->
    #                          pending or not_needed (an extra seed, see Runner._decide)
    resumed: bool = False
    result: dict = field(default_factory=dict)
    error: Optional[str] = None

    @property
    def stage(self) -> str:
        return "teacher" if self.variant == "teacher" else "student"

    @property
    def group(self) -> str:
        """Runs compared in one table: a data set, and the student mode unless default."""
        return group_name(self.data, self.mode)

    @property
    def key(self) -> str:
        return f"{self.group}/{self.variant}/seed{self.seed}"

    @property
    def run(self) -> RunDir:
        return RunDir(self.path)

    @property
    def teacher_path(self) -> Optional[Path]:
        if self.external_teacher is not None:
            return self.external_teacher
        return None if self.teacher is None else self.teacher.run.model_path("teacher")


def group_name(data: str, mode: str) -> str:
    return data if mode == "spiking" else f"{data}/{mode}"


def check_datasets(names: list[str]) -> list[str]:
    from ..data import list_datasets
    known = list_datasets()
    out: list[str] = []
    for name in names:
        for n in (BOTH if name == "both" else (name,)):
            key = str(n).strip().lower().replace("-", "_")
            if key not in known:
                raise KdsnnError(f"--data: unknown data set {n!r} (choose both, "
                                 f"{', '.join(known)})")
            if key not in out:
                out.append(key)
    return out


def check_variants(names: Optional[list[str]], external_teacher: bool = False) -> list[str]:
    """The variants to run; ``teacher`` joins them unless ``--teacher`` brings one."""
    if not names:
        names = list(VARIANTS)
    for n in names:
        if n not in VARIANTS:
            raise KdsnnError(f"--variants: unknown variant {n!r} (choose from "
                             f"{', '.join(VARIANTS)})")
    if external_teacher:
        students = [v for v in VARIANTS if v in names and v != "teacher"]
        if not students:
            raise KdsnnError("--teacher gives the students a trained teacher: name at least "
                             "one student variant")
        return students
    wanted = set(names) | {"teacher"}  # students need their teacher
    return [v for v in VARIANTS if v in wanted]


def check_modes(names: Optional[list[str]]) -> list[str]:
    names = list(DEFAULT_MODES if not names else names)
    for n in names:
        if n not in MODES:
            raise KdsnnError(f"--modes: unknown student mode {n!r} (choose from "
                             f"{', '.join(MODES)})")
    if len(set(names)) != len(names):
        raise KdsnnError(f"--modes has duplicates: {names}")
    return names


def check_teacher_fits(info: dict, datasets: list[str]) -> None:
    """--teacher must have been trained for every data set's classes and channels."""
    from ..data import dataset_spec
    for data in datasets:
        spec = dataset_spec(data)
        if (info.get("num_classes"), info.get("in_channels")) != \
                (spec.num_classes, spec.in_channels):
            raise KdsnnError(f"--teacher '{info['path']}' was trained for "
                             f"{info.get('num_classes')} classes / {info.get('in_channels')} "
                             f"channels ({info.get('data')}); data set '{data}' has "
                             f"{spec.num_classes} / {spec.in_channels}")


def check_seeds(seeds: Optional[list[int]]) -> list[int]:
    seeds = list(DEFAULT_SEEDS if seeds is None else seeds)
    if not seeds:
        raise KdsnnError("--seeds: give at least one seed")
    if any(s < 0 for s in seeds):
        raise KdsnnError(f"--seeds must be >= 0, got {seeds}")
    if len(set(seeds)) != len(seeds):
        raise KdsnnError(f"--seeds has duplicates: {seeds}")
    return seeds


def check_overrides(overrides: list[str]) -> None:
    for item in overrides:
        if "=" not in item:
            raise KdsnnError(f"--set '{item}' must look like key.sub=value")
        key = item.split("=", 1)[0].strip()
        if key in RESERVED or any(key.startswith(r + ".") for r in RESERVED):
            raise KdsnnError(f"--set {key} is set by the ablation itself (use --data, "
                             f"--seeds, --variants)")


def base_config(data: str, config: Optional[str], overrides: list[str]) -> dict:
    """The raw config every run of ``data`` starts from (seed and loss not yet set)."""
    from ..data import dataset_spec
    if config is None:
        config = BASE_EVENT if dataset_spec(data).kind == "event" else BASE_STATIC
    raw = C.apply_overrides(C.load_yaml(config), overrides)
    raw = C.apply_overrides(raw, [f"data.name={data}"])
    C.from_dict(raw)  # validate once, with a one-line error
    return raw


def shard_keys(tasks: list[Task], shard: int, shards: int) -> set:
    """The keys of the runs the ``shard``-th of ``shards`` parts runs: the plan cut into units
    that a machine can run alone (a seed's teacher with all its students; with ``--teacher``
    each student on its own), dealt out in plan order."""
    units: dict = {}
    for t in tasks:
        unit = (t.data, t.seed) if t.external_teacher is None else t.key
        units.setdefault(unit, []).append(t)
    return {t.key for i, unit in enumerate(units.values()) if i % shards == shard - 1
            for t in unit}


def train_samples(limit) -> object:
    """A ``data.options.limit`` as the result files state it: an int, or "all"."""
    return int(limit) if limit is not None else "all"


def set_args(sets: dict) -> list[str]:
    return [f"{k}={'true' if v is True else 'false' if v is False else v}"
            for k, v in sets.items()]


def plan(out: Path, datasets: list[str], seeds: list[int], variants: list[str],
         config: Optional[str], overrides: list[str], modes: Optional[list[str]] = None,
         external_teacher: Optional[Path] = None) -> list[Task]:
    """Every run, teachers first: a seed's teacher is shared by all its students' modes."""
    tasks: list[Task] = []
    modes = list(modes or DEFAULT_MODES)
    for data in datasets:
        raw = base_config(data, config, overrides)
        for seed in seeds:
            teacher = None
            for mode in modes:
                mode_raw = C.apply_overrides(raw, set_args(MODES[mode][1]))
                for variant in variants:
                    if variant == "teacher" and teacher is not None:
                        continue  # one teacher per seed, whatever the modes
                    # the teacher is the ANN of the base config: no mode touches it
                    task_mode = "spiking" if variant == "teacher" else mode
                    group = group_name(data, task_mode)
                    name = "-".join(["ablation", *group.split("/"), variant, f"seed{seed}"])
                    sets = {"seed": seed, "name": name, **VARIANTS[variant][1]}
                    cfg = C.from_dict(C.apply_overrides(
                        raw if variant == "teacher" else mode_raw, set_args(sets)))
                    task = Task(data, variant, seed, out / group / variant / f"seed{seed}",
                                cfg, teacher=teacher, mode=task_mode,
                                external_teacher=external_teacher)
                    if variant == "teacher":
                        teacher = task
                    tasks.append(task)
    return tasks
