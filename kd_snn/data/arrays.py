"""A user's own data set, given as arrays in an ``.npz`` file (``kdsnn import ... --data
my.npz``): a network trained on keyword spotting, Braille or a lab's recordings is
quantized and checked on the data it was trained on.

The file holds ``x_train, y_train, x_test, y_test`` (and optionally ``num_classes``): the
train split calibrates the quantizer, the test split measures accuracy and parity.  Samples
are static ``(N, *input_shape)`` (repeated over the T steps, as direct encoding does) or
sequences ``(N, T, *input_shape)`` whose step t is ``x[:, t]``.  Values are Loihi's graded
input: float in [0, 1], or uint8 read as k/255 like the shipped data sets.

Everything is checked when the file is read, in sentences about the file: the file is
opened with ``allow_pickle=False`` and object arrays are refused from their header, before
any byte of them is read.  The run's ``config.yaml`` records the file's absolute path and
sha256 (``data.options``); a later command refuses a file that changed or vanished.
"""
from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from kd_snn.data.common import EpochMixin, check_opts
from kd_snn.data.registry import DataSpec, list_datasets, register
from kd_snn.errors import KdsnnError

_CACHE: dict = {}  # (path, size, mtime, inode) -> UserArrays, the last file read

__all__ = ["NAME", "KEYS", "UserArrays", "is_data_file", "read_arrays", "fit_arrays",
           "ArraysDataset", "MAX_BYTES"]

NAME = "arrays"
KEYS = ("x_train", "y_train", "x_test", "y_test")
#: what a run's config.yaml records under data.options (and the split options)
OPTIONS = ("file", "sha256", "layout", "sample_shape", "num_classes", "limit", "augment",
           "seed")
#: arrays are read into memory: a bound, so that a huge or hostile file is refused first
MAX_BYTES = 8 << 30
BASE = DataSpec(NAME, 1, 1, (1, 1), "static", 4)


@dataclass(frozen=True)
class UserArrays:
    """The checked arrays of a user's file (x as stored: uint8 is scaled when read)."""

    path: Path
    sha256: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: Optional[int]

    @property
    def sample_shape(self) -> tuple:
        return tuple(int(s) for s in self.x_train.shape[1:])

    def max_label(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max()))


def is_data_file(data: str) -> bool:
    """Whether ``--data`` names a file rather than a kdsnn data set (a data set's name
    wins over a file of that name in the working directory)."""
    text = str(data)
    if text.lower().endswith(".npz") or "/" in text or "\\" in text:
        return True
    return text.strip().lower().replace("-", "_") not in list_datasets() and Path(text).is_file()


def _stat_key(path: Path) -> tuple:
    st = path.stat()
    return str(path), st.st_size, st.st_mtime_ns, st.st_ino


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _headers(path: Path, where: str) -> dict:
    """``key -> (shape, dtype)`` from the .npy headers inside the archive, read without the
    data: an object array is refused here, before numpy could be asked to unpickle it."""
    out = {}
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise KdsnnError(f"{where} is not an .npz archive, or is truncated (save it with "
                         f"numpy.savez)") from None
    try:
        with zf:
            names = set(zf.namelist())
            for key in KEYS + ("num_classes",):
                if f"{key}.npy" not in names:
                    continue
                with zf.open(f"{key}.npy") as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                    elif version == (2, 0):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                    else:
                        continue  # (3, 0): numpy's own loader checks it below
                if dtype.hasobject:
                    raise KdsnnError(f"{where}: '{key}' holds Python objects (dtype object);"
                                     f" kdsnn never unpickles: save plain numeric arrays")
                out[key] = (tuple(shape), dtype)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise KdsnnError(f"{where} is corrupt (an array header cannot be read)") from None
    return out


def read_arrays(data) -> UserArrays:
    """The file's arrays, every check that needs no network done (one sentence each)."""
    path = Path(data).expanduser()
    where = f"data file '{data}'"
    if not path.is_file():
        raise KdsnnError(f"{where} not found" + (" (a directory)" if path.is_dir() else ""))
    path = path.resolve()
    headers = _headers(path, where)
    missing = [k for k in KEYS if k not in headers]
    if missing:
        raise KdsnnError(f"{where} has no {', '.join(repr(k) for k in missing)}; it needs "
                         f"the arrays {', '.join(KEYS)} (and may give num_classes)")
    size = sum(int(np.prod(s)) * d.itemsize for s, d in headers.values())
    if size > MAX_BYTES:
        raise KdsnnError(f"{where} holds {size / 2**30:.1f} GiB of arrays; kdsnn reads them "
                         f"into memory and takes at most {MAX_BYTES / 2**30:.0f} GiB")
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for key in KEYS + (("num_classes",) if "num_classes" in npz.files else ()):
                arrays[key] = np.asarray(npz[key])
    except ValueError as exc:
        why = "it holds pickled objects, which kdsnn never loads" if "pickle" in str(exc) \
            else "an array cannot be read"
        raise KdsnnError(f"{where} is corrupt or unsafe ({why})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError):
        raise KdsnnError(f"{where} is corrupt (an array cannot be read)") from None
    for split in ("train", "test"):
        _check_x(arrays[f"x_{split}"], f"{where}: 'x_{split}'")
        _check_y(arrays[f"y_{split}"], len(arrays[f"x_{split}"]), f"{where}: 'y_{split}'")
    tr, te = arrays["x_train"].shape[1:], arrays["x_test"].shape[1:]
    if tr != te:
        raise KdsnnError(f"{where}: x_train's samples are {tuple(tr)} but x_test's are "
                         f"{tuple(te)}; both splits need the same sample shape")
    classes = _num_classes(arrays.get("num_classes"), where)
    data = UserArrays(path, _sha256(path), arrays["x_train"], arrays["y_train"],
                      arrays["x_test"], arrays["y_test"], classes)
    _CACHE.clear()  # the commands after it read the same file again: one read, one file
    _CACHE[_stat_key(path)] = data
    return data


def _check_x(x: np.ndarray, what: str) -> None:
    if x.dtype.kind not in "biuf":
        kind = "complex" if x.dtype.kind == "c" else f"dtype {x.dtype}"
        raise KdsnnError(f"{what} is {kind}; inputs must be real numbers (float in [0, 1], "
                         f"or uint8 0..255)")
    if x.ndim < 2 or x.shape[0] == 0 or x.size == 0:
        raise KdsnnError(f"{what} has shape {x.shape}; it needs at least one sample of at "
                         f"least one value, (N, ...)")
    if x.dtype.kind == "f":
        if not np.isfinite(x).all():
            raise KdsnnError(f"{what} holds NaN or infinite values")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            raise KdsnnError(f"{what} holds values from {lo:.6g} to {hi:.6g}; Loihi's graded "
                             f"input takes [0, 1]: scale to [0, 1] or give uint8 0..255")
    elif x.dtype.kind in "iu" and x.dtype != np.uint8:
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 1:
            raise KdsnnError(f"{what} is {x.dtype} from {lo} to {hi}; integer inputs other "
                             f"than uint8 (read as k/255) must be 0 or 1: scale to [0, 1] "
                             f"or give uint8 0..255")


def _check_y(y: np.ndarray, n: int, what: str) -> None:
    if y.dtype.kind not in "iu":
        raise KdsnnError(f"{what} is {y.dtype}; labels must be integers (class indices)")
    if y.ndim != 1 or len(y) != n:
        raise KdsnnError(f"{what} has shape {y.shape}; it needs one label per sample, ({n},)")
    if y.min() < 0:
        raise KdsnnError(f"{what} holds the negative label {int(y.min())}; labels are class "
                         f"indices 0..classes-1")


def _num_classes(value, where: str) -> Optional[int]:
    if value is None:
        return None
    if value.shape != () or value.dtype.kind not in "iu" or int(value) < 1:
        raise KdsnnError(f"{where}: 'num_classes' must be one positive integer, got "
                         f"{value.dtype} of shape {value.shape}")
    return int(value)


def fit_arrays(data: UserArrays, input_shape: tuple, classes: int, flat_ok: bool,
               what: str = "the network") -> dict:
    """The ``data.options`` a run records for ``data`` fed to a network that reads
    ``input_shape`` per step and scores ``classes`` classes: static when a sample is one
    input (``x.shape[1:]``), a sequence when each of its steps is (``x.shape[2:]``); with a
    dense first layer (``flat_ok``) a sample or step with the same element count fits too."""
    where = f"data file '{data.path}'"
    shape, want = data.sample_shape, tuple(int(s) for s in input_shape)
    size = int(np.prod(want))
    if shape == want:
        layout = "static"
    elif shape[1:] == want:
        layout = "sequence"
    elif flat_ok and int(np.prod(shape)) == size:
        layout = "static"
    elif flat_ok and len(shape) > 1 and int(np.prod(shape[1:])) == size:
        layout = "sequence"
    else:
        flat = f" (or any shape of {size} values, the first layer being dense)" if flat_ok \
            else ""
        raise KdsnnError(f"{where}: samples of shape {shape} fit neither way {what} reads "
                         f"its input {want}: give x as (N, {', '.join(map(str, want))}) for "
                         f"static samples or (N, T, {', '.join(map(str, want))}) for "
                         f"sequences{flat}")
    if data.num_classes is not None and data.num_classes != classes:
        raise KdsnnError(f"{where} states num_classes = {data.num_classes}; {what} has "
                         f"{classes} outputs (one per class)")
    if data.max_label() >= classes:
        raise KdsnnError(f"{where} holds the label {data.max_label()}; {what} has {classes}"
                         f" outputs, so labels must be 0..{classes - 1}")
    return {"file": str(data.path), "sha256": data.sha256, "layout": layout,
            "sample_shape": list(shape), "num_classes": int(classes)}


# --------------------------------------------------------------------------- the data set

class ArraysDataset(EpochMixin, Dataset):
    """Items ``(x float32 in [0, 1], label)``: uint8 scaled by 1/255, the rest as stored."""

    def __init__(self, x: np.ndarray, y: np.ndarray, spec: DataSpec):
        self.x, self.labels, self.spec = x, np.asarray(y, dtype=np.int64), spec
        self.scale = 255.0 if x.dtype == np.uint8 else 1.0
        self.targets, self.classes = self.labels, None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        x = np.asarray(self.x[index], dtype=np.float32) / np.float32(self.scale)
        return torch.from_numpy(x), int(self.labels[index])


def _recorded(opts: dict) -> tuple:
    """``(path, layout, sample_shape)`` the run's options name, or a one-line error."""
    if not opts.get("file") or not opts.get("sha256"):
        raise KdsnnError(f"data set '{NAME}' is a user's file: pass '--data FILE.npz' to "
                         f"'kdsnn import' (config key data.options needs file and sha256)")
    layout, shape = opts.get("layout", "static"), tuple(int(s) for s in
                                                        opts.get("sample_shape") or ())
    if layout not in ("static", "sequence") or not shape or \
            (layout == "sequence" and len(shape) < 2):
        raise KdsnnError(f"config key data.options: layout {layout!r} with sample_shape "
                         f"{list(shape)} is not a static or sequence layout")
    return Path(opts["file"]), layout, shape


def spec_of(**opts) -> DataSpec:
    """The spec a run's ``data.options`` describe (no file read: it is cheap)."""
    if not opts.get("file"):
        return BASE
    _, layout, shape = _recorded(opts)
    step = shape[1:] if layout == "sequence" else shape
    image = len(step) == 3
    return DataSpec(NAME, int(opts.get("num_classes") or 1), step[0] if image else 1,
                    tuple(step[1:]) if image else (1, int(np.prod(step))), layout,
                    shape[0] if layout == "sequence" else 4, tuple(step))




def build_arrays(split, root=None, download=False, **opts):
    """A split of the run's file, refused when the file vanished, changed, or no longer
    gives what the run recorded."""
    check_opts(NAME, opts, OPTIONS)
    path, layout, shape = _recorded(opts)
    if not path.is_file():
        raise KdsnnError(f"data file '{path}' (config.yaml data.options.file) is missing; "
                         f"restore it, or import into a new run")
    data = _CACHE.get(_stat_key(path))
    if data is None:
        if _sha256(path) != opts["sha256"]:
            raise KdsnnError(f"data file '{path}' changed since the run was made (its sha256 "
                             f"is not the one config.yaml records); restore it, or import "
                             f"into a new run")
        data = read_arrays(path)
    if data.sha256 != opts["sha256"] or data.sample_shape != shape:
        raise KdsnnError(f"data file '{path}' changed since the run was made; restore it, "
                         f"or import into a new run")
    x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
    if opts.get("limit") is not None:
        x, y = x[:int(opts["limit"])], y[:int(opts["limit"])]
    return ArraysDataset(x, y, spec_of(**opts))


register(BASE, build_arrays, spec_of)
