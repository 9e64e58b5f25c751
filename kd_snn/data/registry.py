"""Data-set registry: names -> (DataSpec, builder)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Dict, Optional, Tuple

from kd_snn.errors import KdsnnError

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about a data set.

    ``kind`` is ``"static"`` (items ``(x (C,H,W) float32 in [0,1], y)``), ``"event"``
    (items ``(frames (T,2,H,W) float32 event counts, y)``) or ``"sequence"`` (items
    ``(x (T, *input_shape) float32 in [0,1], y)``: step t is ``x[t]``, analog, as a user's
    recordings are). ``image_size`` is ``(H, W)``. ``input_shape``: what the student reads
    per step when that is not an image ``(in_channels, *image_size)`` (a user's ``(F,)``
    features or sequence steps); :attr:`step_shape` is the one to read.
    """

    name: str
    num_classes: int
    in_channels: int
    image_size: Tuple[int, int]
    kind: str = "static"
    default_time_steps: int = 4
    input_shape: Optional[Tuple[int, ...]] = None

    @property
    def step_shape(self) -> Tuple[int, ...]:
        """What the student reads per time step."""
        if self.input_shape is not None:
            return tuple(self.input_shape)
        return ((2,) if self.kind == "event" else (self.in_channels,)) + tuple(self.image_size)


_REGISTRY: Dict[str, Tuple[DataSpec, Callable, Optional[Callable]]] = {}


def register(spec: DataSpec, builder: Callable, spec_of: Optional[Callable] = None) -> None:
    """Register ``builder(split, root, download, **opts) -> Dataset`` under ``spec.name``;
    ``spec_of(**opts) -> DataSpec``, when given, is the spec under a run's options (a data
    set whose shapes and classes its options name, such as a user's file)."""
    _REGISTRY[spec.name] = (spec, builder, spec_of)


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
    spec, _, spec_of = _lookup(name)
    if spec_of is not None:
        return spec_of(**opts)
    size = opts.get("size")
    if size is not None and spec.kind == "event":
        hw = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
        spec = replace(spec, image_size=hw)
    if opts.get("time_steps") is not None:
        spec = replace(spec, default_time_steps=int(opts["time_steps"]))
    return spec


def build_dataset(name: str, split: str, root: Optional[str] = None, download: bool = False,
                  **opts):
    """Build the ``split`` (``"train"`` or ``"test"``) of data set ``name``.

    ``root`` is where the files are looked for (and cached); ``download=True`` lets the
    loaders that know an official source fetch it. Extra options are per data set (see
    ``kd_snn.data`` docs); unknown options raise :class:`KdsnnError`.
    """
    _, builder, _ = _lookup(name)
    if split not in SPLITS:
        raise KdsnnError(f"unknown split {split!r} for data set {name!r}; choices: train, test")
    return builder(split=split, root=root, download=download, **opts)

