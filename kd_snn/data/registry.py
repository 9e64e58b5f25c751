"""Data-set registry: names -> (DataSpec, builder)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

from kd_snn.errors import KdsnnError

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about a data set.

    ``kind`` is ``"static"`` (items ``(x (C,H,W) float32 in [0,1], y)``) or ``"event"``
    (items ``(frames (T,2,H,W) float32 event counts, y)``). ``image_size`` is ``(H, W)``.
    """

    name: str
    num_classes: int
    in_channels: int
    image_size: Tuple[int, int]
    kind: str = "static"
    default_time_steps: int = 4


_REGISTRY: Dict[str, Tuple[DataSpec, Callable]] = {}


def register(spec: DataSpec, builder: Callable) -> None:
    """Register ``builder(split, root, download, **opts) -> Dataset`` under ``spec.name``."""
    _REGISTRY[spec.name] = (spec, builder)


def list_datasets() -> Tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def _lookup(name: str):
    key = str(name).strip().lower().replace("-", "_")
    if key not in _REGISTRY:
        raise KdsnnError(
            f"unknown data set {name!r}; choices: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]


def dataset_spec(name: str, **opts) -> DataSpec:
    """The :class:`DataSpec` of ``name``.

    Options that change the shape (``size`` for ``cifar10dvs``, ``time_steps`` for event sets)
    may be passed and are reflected in the returned spec.
    """
    spec, _ = _lookup(name)
    size = opts.get("size")
    if size is not None and spec.kind == "event":
        hw = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
        spec = DataSpec(spec.name, spec.num_classes, spec.in_channels, hw, spec.kind,
                        spec.default_time_steps)
    if opts.get("time_steps") is not None:
        spec = DataSpec(spec.name, spec.num_classes, spec.in_channels, spec.image_size,
                        spec.kind, int(opts["time_steps"]))
    return spec


def build_dataset(name: str, split: str, root: Optional[str] = None, download: bool = False,
                  **opts):
    """Build the ``split`` (``"train"`` or ``"test"``) of data set ``name``.

    ``root`` is where the files are looked for (and cached); ``download=True`` lets the
    loaders that know an official source fetch it. Extra options are per data set (see
    ``kd_snn.data`` docs); unknown options raise :class:`KdsnnError`.
    """
    _, builder = _lookup(name)
    if split not in SPLITS:
        raise KdsnnError(f"unknown split {split!r} for data set {name!r}; choices: train, test")
    return builder(split=split, root=root, download=download, **opts)

