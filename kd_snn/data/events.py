"""Neuromorphic (event) data sets read from local files through tonic's readers, offline.

- N-MNIST: tonic layout ``<root>/NMNIST/{Train,Test}/<digit>/*.bin`` (also
  ``<root>/{Train,Test}``), read with ``tonic.io.read_mnist_file`` (40-bit events: x, y, p|t[22:16], t[15:8], t[7:0]).
- CIFAR10-DVS: ``<root>/CIFAR10DVS/<class>/*.aedat`` (the original AER-DAT 2.0 recordings,
  read with tonic.io's AER-DAT readers, decoded as ``read_dvs_128``) or ``*.aedat4`` (tonic
  1.7's converted release; needs the ``aedat`` package). No split exists: the first 9/10 of each class (natural file order) are
  ``train``, the rest ``test``.

Only tonic's readers and ``ToFrame`` are used, never its download/integrity machinery.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from kd_snn.errors import KdsnnError
from kd_snn.data.common import EpochMixin, item_generator, rand, randint, search_roots

#: events as handed around in kd_snn: tonic-style structured array, t in microseconds
EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])


def make_events(x, y, t, p) -> np.ndarray:
    ev = np.empty(len(t), dtype=EVENT_DTYPE)
    ev["x"], ev["y"], ev["t"], ev["p"] = x, y, t, p
    return ev


def to_frames(events: np.ndarray, sensor_size: Tuple[int, int, int], time_steps: int
              ) -> np.ndarray:
    """Events -> float32 frames ``(T, 2, H, W)`` of event counts with
    ``tonic.transforms.ToFrame(sensor_size=(W, H, 2), n_time_bins=T)``.

    Empty recordings give zeros; recordings shorter than T microseconds (where tonic's bins
    would all be empty) put event i in bin ``floor(i * T / n)``.
    """
    from tonic.transforms import ToFrame
    W, H, P = sensor_size
    T = int(time_steps)
    out = np.zeros((T, P, H, W), dtype=np.float32)
    n = len(events)
    if n == 0:
        return out
    if np.any(np.diff(events["t"]) < 0):
        events = events[np.argsort(events["t"], kind="stable")]
    if int(events["t"][-1]) - int(events["t"][0]) < T:
        b = (np.arange(n) * T) // n
        np.add.at(out, (b, events["p"].astype(np.int64), events["y"].astype(np.int64),
                        events["x"].astype(np.int64)), 1.0)
        return out
    frames = ToFrame(sensor_size=(W, H, P), n_time_bins=T)(events)
    out[: frames.shape[0]] = frames
    return out


class FramedEvents(EpochMixin, Dataset):
    """A list of event recordings (loaded lazily by ``reader(path)``) framed to
    ``(T, 2, H, W)`` float32, optionally resized (``size``) and augmented.

    Augmentation (train): random horizontal flip (if ``flip``), random roll by up to ``roll``
    pixels in x and
    y, and a Cutout square of side ``cutout`` (probability 0.5), all drawn from a generator
    seeded by (seed, epoch, index).
    """

    def __init__(self, files: Sequence, labels: Sequence[int], reader: Callable,
                 sensor_size: Tuple[int, int, int], time_steps: int,
                 size: Optional[Tuple[int, int]] = None, augment: bool = False, roll: int = 0,
                 cutout: int = 0, seed: int = 0, classes: Optional[Sequence[str]] = None,
                 flip: bool = True):
        self.files = list(files)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.targets = self.labels
        self.reader = reader
        self.sensor_size = tuple(int(s) for s in sensor_size)
        self.time_steps = int(time_steps)
        self.size = tuple(size) if size is not None else None
        self.augment = bool(augment)
        self.roll = int(roll)
        self.cutout = int(cutout)
        self.flip = bool(flip)
        self.seed = int(seed)
        self.epoch = 0
        self.classes = list(classes) if classes is not None else None

    def __len__(self) -> int:
        return len(self.files)

    def events(self, index: int) -> np.ndarray:
        return self.reader(self.files[index])

    def __getitem__(self, index: int):
        fr = torch.from_numpy(to_frames(self.events(index), self.sensor_size, self.time_steps))
        if self.size is not None and tuple(fr.shape[-2:]) != self.size:
            fr = F.interpolate(fr, size=self.size, mode="area")
        if self.augment:
            fr = augment_frames(fr, item_generator(self.seed, self.epoch, index), self.roll,
                                self.cutout, self.flip)
        return fr.contiguous(), int(self.labels[index])


def augment_frames(fr: torch.Tensor, g: torch.Generator, roll: int, cutout: int,
                   flip: bool = True) -> torch.Tensor:
    """Flip / roll / Cutout on frames ``(T, P, H, W)``, same for every time step."""
    if flip and rand(g) < 0.5:
        fr = torch.flip(fr, dims=(-1,))
    if roll > 0:
        dy, dx = randint(g, -roll, roll), randint(g, -roll, roll)
        fr = torch.roll(fr, shifts=(dy, dx), dims=(-2, -1))
    if cutout > 0 and rand(g) < 0.5:
        H, W = fr.shape[-2:]
        cy, cx = randint(g, 0, H - 1), randint(g, 0, W - 1)
        y0, y1 = max(0, cy - cutout // 2), min(H, cy + cutout - cutout // 2)
        x0, x1 = max(0, cx - cutout // 2), min(W, cx + cutout - cutout // 2)
        fr = fr.clone()
        fr[..., y0:y1, x0:x1] = 0
    return fr


def _natural_key(p: Path):
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", p.name)]


# --------------------------------------------------------------------------- N-MNIST

NMNIST_SENSOR = (34, 34, 2)


def read_nmnist(path) -> np.ndarray:
    """One N-MNIST ``.bin`` file via ``tonic.io.read_mnist_file``; refuses a size that is not
    a multiple of 5 bytes or coordinates outside 34x34."""
    from tonic.io import read_mnist_file
    path = Path(path)
    size = path.stat().st_size
    if size % 5:
        raise KdsnnError(f"corrupt N-MNIST file {path}: {size} bytes is not a multiple of 5")
    ev = read_mnist_file(str(path), dtype=np.dtype([("x", int), ("y", int), ("t", int),
                                                    ("p", int)]))
    if len(ev) and (ev["x"].max() >= 34 or ev["y"].max() >= 34):
        raise KdsnnError(f"corrupt N-MNIST file {path}: event outside the 34x34 sensor")
    return make_events(ev["x"], ev["y"], ev["t"], ev["p"])


def find_nmnist(split: str, root: Optional[str]) -> Tuple[List[Path], List[int]]:
    folder = "Train" if split == "train" else "Test"
    dirs = [d / folder for d in search_roots(root, ("NMNIST", "nmnist", "N-MNIST"))]
    for d in dirs:
        if not d.is_dir():
            continue
        files, labels = [], []
        for sub in sorted(p for p in d.iterdir() if p.is_dir() and p.name[-1:].isdigit()):
            for f in sorted(sub.glob("*.bin"), key=_natural_key):
                files.append(f)
                labels.append(int(sub.name[-1]))
        if files:
            return files, labels
    raise KdsnnError(
        f"N-MNIST {split} files (<digit>/*.bin) not found in {', '.join(map(str, dirs))}; get "
        f"them: unzip the official Train.zip/Test.zip (Orchard et al. 2015) into <root>/NMNIST/")


# --------------------------------------------------------------------------- CIFAR10-DVS

CIFAR10DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                      "horse", "ship", "truck")
CIFAR10DVS_SENSOR = (128, 128, 2)


def read_cifar10dvs(path) -> np.ndarray:
    """One CIFAR10-DVS recording, upright, with ON = 1.

    ``.aedat`` (AER-DAT 2.0, big-endian address/timestamp pairs, DVS128 addresses) is read with
    tonic's ``read_aedat_header_from_file`` + ``get_aer_events_from_file`` and decoded as
    ``tonic.io.read_dvs_128`` does (x = addr>>8 & 127, y = addr>>1 & 127, p = addr & 1; that
    function itself is broken in tonic 1.7: it unpacks the 3-tuple header into 2 names); the raw
    (x, y, p) are then turned 180 degrees and the polarity inverted (x = 127 - x,
    y = 127 - y, p = 1 - p), the orientation spikingjelly uses.
    ``.aedat4`` is read with ``tonic.io.read_aedat4`` as is. Times start at 0.
    """
    path = Path(path)
    if path.suffix == ".aedat4":
        try:
            import aedat  # noqa: F401
        except ImportError:
            raise KdsnnError(f"reading {path} needs the 'aedat' package (pip install aedat), "
                             f"or use the original .aedat files") from None
        from tonic.io import read_aedat4
        try:
            ev = read_aedat4(str(path))
        except Exception as e:  # noqa: BLE001  (reader raises bare Exceptions)
            raise KdsnnError(f"corrupt CIFAR10-DVS file {path}: {e}") from None
        x, y, t, p = ev["x"], ev["y"], ev["t"].astype(np.int64), ev["p"].astype(np.int8)
    else:
        from tonic.io import get_aer_events_from_file, read_aedat_header_from_file
        try:
            version, start, _ = read_aedat_header_from_file(str(path))
        except Exception:  # noqa: BLE001  (no '#!AER-DAT' line: name unbound / bad bytes)
            raise KdsnnError(f"corrupt CIFAR10-DVS file {path}: no '#!AER-DAT' header") from None
        if not 2 <= version < 3:
            raise KdsnnError(f"unsupported AER-DAT version {version} in {path} (expected 2.x)")
        nbytes = path.stat().st_size - start
        if nbytes % 8:
            raise KdsnnError(f"corrupt CIFAR10-DVS file {path}: {nbytes} data bytes is not a "
                             f"multiple of 8")
        raw = get_aer_events_from_file(str(path), version, start)
        addr = raw["address"].astype(np.int64)
        x = 127 - ((addr >> 8) & 0x7F)
        y = 127 - ((addr >> 1) & 0x7F)
        p = (1 - (addr & 1)).astype(np.int8)
        t = raw["timeStamp"].astype(np.int64)
    if len(t):
        order = np.argsort(t, kind="stable")
        x, y, t, p = x[order], y[order], t[order] - t[order][0], p[order]
    return make_events(x, y, t, p)


def find_cifar10dvs(root: Optional[str]) -> Tuple[List[List[Path]], Path]:
    dirs = search_roots(root, ("CIFAR10DVS", "cifar10dvs", "CIFAR10-DVS", "cifar10-dvs"))
    for d in dirs:
        per_class = []
        for c in CIFAR10DVS_CLASSES:
            sub = d / c
            files = sorted((f for f in sub.glob("*") if f.suffix in (".aedat", ".aedat4")),
                           key=_natural_key) if sub.is_dir() else []
            per_class.append(files)
        if any(per_class):
            return per_class, d
    raise KdsnnError(
        f"CIFAR10-DVS files (<class>/*.aedat) not found in {', '.join(map(str, dirs))}; get "
        f"them: extract the official per-class archives (airplane.zip ... truck.zip) into "
        f"<root>/CIFAR10DVS/")


def cifar10dvs_split(per_class: List[List[Path]], split: str, train_fraction: float = 0.9
                     ) -> Tuple[List[Path], List[int]]:
    files, labels = [], []
    for label, fs in enumerate(per_class):
        k = int(round(train_fraction * len(fs)))
        part = fs[:k] if split == "train" else fs[k:]
        files.extend(part)
        labels.extend([label] * len(part))
    return files, labels
