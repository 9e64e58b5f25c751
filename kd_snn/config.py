"""Experiment configuration: typed dataclasses, YAML files, command-line overrides.

A config is validated field by field when it is built, so a typo in a YAML file
or an override (``--set student.epochs=5``) fails at once with a one-line error
naming the key, before any file is written.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import yaml

from .errors import KdsnnError


@dataclass
class DataConfig:
    name: str = "digits"
    root: Optional[str] = None
    download: bool = False
    time_steps: int = 4
    encoding: str = "direct"
    batch_size: int = 64
    eval_batch_size: int = 256
    augment: bool = False  # per image: random crop (zero padding) + horizontal flip
    autoaugment: str = "none"  # on batches (kornia): none | cifar10 (the CIFAR-10 policy)
    erasing: float = 0.0  # on batches (kornia): RandomErasing probability (0: off)
    erasing_scale: list = field(default_factory=lambda: [0.02, 0.33])  # erased area fraction
    normalize: str = "none"  # none | cifar10: per-channel mean/std, the models' first stage
    num_workers: int = 0
    options: dict = field(default_factory=dict)  # extra data-set options, e.g. {limit: 10000}


@dataclass
class NeuronConfig:
    alpha: float = 0.0
    beta: float = 0.5
    threshold: float = 1.0
    surrogate: str = "atan"
    width: float = 1.0
    detach_reset: bool = True  # false: the reset's gradient flows (the reference code)


@dataclass
class TrainConfig:
    """One training stage (teacher or student)."""

    model: str = "cnn"
    width: int = 1
    head: str = "spiking"  # spiking | reference (fc-fc, the reference code) | mlp (fc-ReLU-fc)
    last_block: str = "spiking"  # spiking | relu (the reference code's analog last unit)
    epochs: int = 10
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True  # SGD only; takes effect when momentum > 0
    weight_decay: float = 5e-4
    scheduler: str = "cosine"
    lr_interval: str = "step"  # step | epoch: how often the schedule moves the lr
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    checkpoint_every: int = 0  # extra mid-epoch checkpoints every N steps (0: epoch ends only)
    eval_every: int = 1  # test-split evaluation every N epochs (the last epoch always)
    model_kwargs: dict = field(default_factory=dict)


@dataclass
class LossConfig:
    """Distillation objective: a preset plus per-term overrides (see kd_snn.losses)."""

    preset: str = "samd_nld"
    weights: dict = field(default_factory=dict)
    tau_nld: float = 2.0
    w_nld: float = 0.9
    tau_samd: float = 2.0
    samd_scaling: str = "softmax"
    samd_norm: str = "sample"  # sample | batch (the reference: min/max of the whole batch)
    camcam_detach: bool = False  # true: the student classifier weight without gradient
    teacher_mode: str = "eval"  # eval | train (the reference: BatchNorm batch statistics)
    tau_kd: float = 4.0


@dataclass
class Config:
    name: str = "experiment"
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TrainConfig = field(default_factory=TrainConfig)
    student: TrainConfig = field(default_factory=TrainConfig)
    neuron: NeuronConfig = field(default_factory=NeuronConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


CHOICES = {
    "data.encoding": ("direct", "poisson", "frames"),
    "teacher.optimizer": ("sgd", "adamw"),
    "student.optimizer": ("sgd", "adamw"),
    "teacher.scheduler": ("cosine", "constant"),
    "student.scheduler": ("cosine", "constant"),
    "teacher.lr_interval": ("step", "epoch"),
    "student.lr_interval": ("step", "epoch"),
    "student.head": ("spiking", "reference", "mlp"),
    "student.last_block": ("spiking", "relu"),
    "data.autoaugment": ("none", "cifar10"),
    "data.normalize": ("none", "cifar10"),
    "neuron.surrogate": ("atan", "sigmoid", "triangle"),
    "loss.samd_scaling": ("softmax", "zscore", "l2"),
    "loss.samd_norm": ("sample", "batch"),
    "loss.teacher_mode": ("eval", "train"),
}
#: a bound on T, so that an absurd value is refused before tensors of T x batch are made
MAX_TIME_STEPS = 10_000
POSITIVE = ("data.time_steps", "data.batch_size", "data.eval_batch_size", "teacher.epochs",
            "student.epochs", "teacher.eval_every", "student.eval_every", "teacher.lr",
            "student.lr", "teacher.width", "student.width", "neuron.width", "neuron.threshold",
            "loss.tau_nld", "loss.tau_samd", "loss.tau_kd")


def _coerce(value: Any, typ: Any, key: str) -> Any:
    origin = typing.get_origin(typ)
    if origin is typing.Union:  # Optional[X]
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        return None if value is None else _coerce(value, args[0], key)
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise KdsnnError(f"config key '{key}' must be true or false, got {value!r}")
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise KdsnnError(f"config key '{key}' must be an integer, got {value!r}")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise KdsnnError(f"config key '{key}' must be a number, got {value!r}")
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise KdsnnError(f"config key '{key}' must be a string, got {value!r}")
        return value
    if typ is list or origin is list:
        if not isinstance(value, (list, tuple)):
            raise KdsnnError(f"config key '{key}' must be a list, got {value!r}")
        return list(value)
    if typ is dict or origin is dict:
        if not isinstance(value, dict):
            raise KdsnnError(f"config key '{key}' must be a mapping, got {value!r}")
        return dict(value)
    return value


def _build(cls, raw: dict, prefix: str = ""):
    if not isinstance(raw, dict):
        raise KdsnnError(f"config section '{prefix.rstrip('.') or '<root>'}' must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            raise KdsnnError(f"unknown config key '{prefix}{key}' "
                             f"(valid: {', '.join(sorted(names))})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in raw:
            continue
        typ, value = hints[f.name], raw[f.name]
        if dataclasses.is_dataclass(typ):
            kwargs[f.name] = _build(typ, value or {}, f"{prefix}{f.name}.")
        else:
            kwargs[f.name] = _coerce(value, typ, f"{prefix}{f.name}")
    return cls(**kwargs)


def validate(cfg: Config) -> Config:
    flat = _flatten(cfg.to_dict())
    for key, allowed in CHOICES.items():
        if flat[key] not in allowed:
            raise KdsnnError(f"config key '{key}' must be one of {', '.join(allowed)}, "
                             f"got {flat[key]!r}")
    for key in POSITIVE:
        if not flat[key] > 0:
            raise KdsnnError(f"config key '{key}' must be > 0, got {flat[key]!r}")
    if cfg.data.time_steps > MAX_TIME_STEPS:
        raise KdsnnError(f"config key 'data.time_steps' must be <= {MAX_TIME_STEPS}, got "
                         f"{cfg.data.time_steps}")
    for key in ("neuron.alpha", "neuron.beta"):
        if not 0 <= flat[key] <= 1:
            raise KdsnnError(f"config key '{key}' must lie in [0, 1], got {flat[key]!r}")
    if not 0 <= cfg.loss.w_nld <= 1:
        raise KdsnnError(f"config key 'loss.w_nld' must lie in [0, 1], got {cfg.loss.w_nld!r}")
    _validate_augmentation(cfg.data)
    _validate_loss(cfg)
    return cfg


def _validate_augmentation(data: DataConfig) -> None:
    """Batch augmentation and normalisation need analog images: checked at load."""
    if not 0 <= data.erasing <= 1:
        raise KdsnnError(f"config key 'data.erasing' must lie in [0, 1], got {data.erasing!r}")
    scale = data.erasing_scale
    if len(scale) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                  for v in scale) or not 0 < scale[0] <= scale[1] <= 1:
        raise KdsnnError("config key 'data.erasing_scale' must be [low, high] with "
                         f"0 < low <= high <= 1, got {scale!r}")
    data.erasing_scale = [float(v) for v in scale]
    if data.encoding != "direct":
        for key in ("autoaugment", "normalize"):
            if getattr(data, key) != "none":
                raise KdsnnError(f"config key 'data.{key}' needs data.encoding 'direct' "
                                 f"(analog images), got {data.encoding!r}")


def loss_options(cfg: Config, student_channels: Optional[int] = None,
                 teacher_channels: Optional[int] = None) -> dict:
    """The loss block as :func:`kd_snn.losses.resolve_config` reads it (one place for both)."""
    return {"preset": cfg.loss.preset, **cfg.loss.weights,
            "label_smoothing": cfg.student.label_smoothing, "tau_nld": cfg.loss.tau_nld,
            "w_nld": cfg.loss.w_nld, "tau_samd": cfg.loss.tau_samd,
            "samd_scaling": cfg.loss.samd_scaling, "samd_norm": cfg.loss.samd_norm,
            "camcam_detach": cfg.loss.camcam_detach, "tau_kd": cfg.loss.tau_kd,
            "student_channels": student_channels, "teacher_channels": teacher_channels}


def _validate_loss(cfg: Config) -> None:
    """Every loss key is checked when the config is read, not later by ``distill``.

    Channel counts are only known once the models exist; placeholders stand in here.
    """
    from .losses import resolve_config as resolve_loss
    try:
        resolve_loss(loss_options(cfg, 1, 1))
    except KdsnnError as exc:
        raise KdsnnError(f"config key 'loss': {str(exc).removeprefix('loss config: ')}") from None


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k not in ("weights", "model_kwargs", "options"):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def from_dict(raw: dict) -> Config:
    return validate(_build(Config, raw or {}))


def builtin_configs() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("kd_snn.configs").iterdir()
                  if p.name.endswith(".yaml"))


def load_yaml(path_or_name: str) -> dict:
    """Read a config by file path or by the name of a shipped config."""
    path = Path(path_or_name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise KdsnnError(f"config file '{path}' not found")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise KdsnnError(f"config '{path}' is not a YAML file (not UTF-8 text)") from None
        except OSError as exc:
            raise KdsnnError(f"cannot read config '{path}': {exc.strerror}") from None
    else:
        res = resources.files("kd_snn.configs") / f"{path_or_name}.yaml"
        if not res.is_file():
            raise KdsnnError(f"unknown config '{path_or_name}' "
                             f"(shipped: {', '.join(builtin_configs())}; or a .yaml path)")
        text = res.read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KdsnnError(f"config '{path_or_name}' is not valid YAML: "
                         f"{str(exc).splitlines()[0]}") from None
    return raw or {}


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``key.sub=value`` overrides (values parsed as YAML scalars)."""
    raw = yaml.safe_load(yaml.safe_dump(raw or {}))  # deep copy
    for item in overrides or []:
        if "=" not in item:
            raise KdsnnError(f"override '{item}' must look like key.sub=value")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise KdsnnError(f"override '{key}': '{part}' is not a section")
        node[parts[-1]] = value
    return raw


def load_config(path_or_name: str, overrides: Optional[list[str]] = None) -> Config:
    return from_dict(apply_overrides(load_yaml(path_or_name), overrides or []))
