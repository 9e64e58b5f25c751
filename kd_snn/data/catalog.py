"""The shipped data sets, registered when ``kd_snn.data`` is imported."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Optional

import numpy as np

from kd_snn.errors import KdsnnError
from kd_snn.data.common import cache_dir, check_opts
from kd_snn.data.events import (CIFAR10DVS_CLASSES, CIFAR10DVS_SENSOR, NMNIST_SENSOR,
                                FramedEvents, cifar10dvs_split, find_cifar10dvs, find_nmnist,
                                read_cifar10dvs, read_nmnist)
from kd_snn.data.registry import DataSpec, build_dataset, register
from kd_snn.data.saccade import EventVersion, default_amplitude
from kd_snn.data.static import ArrayDataset, cifar_arrays, digits_arrays, idx_arrays

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = CIFAR10DVS_CLASSES


def _limit(n: Optional[int], *arrays):
    if n is None:
        return arrays
    n = int(n)
    if n < 1:
        raise KdsnnError(f"option limit must be >= 1, got {n}")
    return tuple(a[:n] for a in arrays)


def _aug(opts, default: bool) -> bool:
    """``augment`` option; None (or absent) means the data set's default."""
    v = opts.get("augment")
    return default if v is None else bool(v)


def _with_spec(ds, spec: DataSpec):
    ds.spec = spec
    return ds


# --------------------------------------------------------------------------- static

SPECS = {
    "digits": DataSpec("digits", 10, 1, (8, 8), "static", 4),
    "mnist": DataSpec("mnist", 10, 1, (28, 28), "static", 4),
    "fashion_mnist": DataSpec("fashion_mnist", 10, 1, (28, 28), "static", 4),
    "cifar10": DataSpec("cifar10", 10, 3, (32, 32), "static", 4),
    "cifar100": DataSpec("cifar100", 100, 3, (32, 32), "static", 4),
    "nmnist": DataSpec("nmnist", 10, 2, (34, 34), "event", 10),
    "cifar10dvs": DataSpec("cifar10dvs", 10, 2, (48, 48), "event", 10),
    "digits_events": DataSpec("digits_events", 10, 2, (8 + default_amplitude(8),) * 2,
                              "event", 10),
    "fashion_mnist_events": DataSpec("fashion_mnist_events", 10, 2,
                                     (28 + default_amplitude(28),) * 2, "event", 10),
}
STATIC_OPTS = ("augment", "seed", "limit")


def build_digits(split, root=None, download=False, **opts):
    check_opts("digits", opts, STATIC_OPTS)
    x, y = _limit(opts.get("limit"), *digits_arrays(split))
    ds = ArrayDataset(x, y, augment=_aug(opts, False), pad=1, flip=False,
                      seed=opts.get("seed", 0), scale=1.0)
    return _with_spec(ds, SPECS["digits"])


def _build_idx(name):
    def build(split, root=None, download=False, **opts):
        check_opts(name, opts, STATIC_OPTS)
        x, y = _limit(opts.get("limit"), *idx_arrays(name, split, root, download))
        ds = ArrayDataset(x, y, augment=_aug(opts, False), pad=2, flip=False,
                          seed=opts.get("seed", 0),
                          classes=FASHION_CLASSES if name == "fashion_mnist" else None)
        return _with_spec(ds, SPECS[name])
    return build


def _build_cifar(name):
    def build(split, root=None, download=False, **opts):
        check_opts(name, opts, STATIC_OPTS)
        x, y = _limit(opts.get("limit"), *cifar_arrays(name, split, root, download))
        ds = ArrayDataset(x, y, augment=_aug(opts, split == "train"), pad=4,
                          flip=True, seed=opts.get("seed", 0),
                          classes=CIFAR10_CLASSES if name == "cifar10" else None)
        return _with_spec(ds, SPECS[name])
    return build


# --------------------------------------------------------------------------- event (files)

def _no_download(name, download):
    if download:
        raise KdsnnError(f"data set {name!r} cannot be downloaded by kdsnn; place the "
                         f"official files under root (see the not-found message)")


def build_nmnist(split, root=None, download=False, **opts):
    check_opts("nmnist", opts, ("time_steps", "first_saccade_only", "augment", "roll", "seed",
                                "limit"))
    _no_download("nmnist", download)
    files, labels = find_nmnist(split, root)
    files, labels = _limit(opts.get("limit"), files, labels)
    reader = read_nmnist
    if opts.get("first_saccade_only"):
        def reader(path):
            ev = read_nmnist(path)
            return ev[ev["t"] < 100_000]
    T = int(opts.get("time_steps") or SPECS["nmnist"].default_time_steps)
    ds = FramedEvents(files, labels, reader, NMNIST_SENSOR, T, augment=_aug(opts, False),
                      roll=int(opts.get("roll", 2)), seed=opts.get("seed", 0), flip=False)
    return _with_spec(ds, replace(SPECS["nmnist"], default_time_steps=T))


def build_cifar10dvs(split, root=None, download=False, **opts):
    check_opts("cifar10dvs", opts, ("time_steps", "size", "augment", "roll", "cutout", "seed",
                                    "train_fraction", "limit"))
    _no_download("cifar10dvs", download)
    per_class, _ = find_cifar10dvs(root)
    files, labels = cifar10dvs_split(per_class, split, float(opts.get("train_fraction", 0.9)))
    files, labels = _limit(opts.get("limit"), files, labels)
    size = opts.get("size", 48)
    hw = (int(size), int(size)) if np.isscalar(size) else tuple(int(s) for s in size)
    T = int(opts.get("time_steps") or SPECS["cifar10dvs"].default_time_steps)
    roll = opts.get("roll", int(round(5 * hw[1] / 48)))
    cutout = opts.get("cutout", hw[1] // 4)
    ds = FramedEvents(files, labels, read_cifar10dvs, CIFAR10DVS_SENSOR, T, size=hw,
                      augment=_aug(opts, split == "train"), roll=roll, cutout=cutout,
                      seed=opts.get("seed", 0), classes=CIFAR10DVS_CLASSES)
    return _with_spec(ds, replace(SPECS["cifar10dvs"], image_size=hw, default_time_steps=T))


# --------------------------------------------------------------------------- event versions

EVENT_OPTS = ("time_steps", "amplitude", "steps_per_saccade", "threshold", "eps", "cache",
              "cache_dir", "limit", "augment", "roll", "seed")


def event_cache_dir(root: Optional[str], explicit=None) -> Path:
    """``cache_dir`` option, else ``root`` when writable, else $KDSNN_CACHE_DIR or
    ``~/.cache/kdsnn``."""
    if explicit is not None:
        return Path(explicit).expanduser()
    if root is not None:
        r = Path(root).expanduser()
        if (r.is_dir() and os.access(r, os.W_OK)) or (not r.exists() and
                                                     os.access(r.parent, os.W_OK)):
            return r
    return cache_dir(None)


def _build_events(name, static_name):
    def build(split, root=None, download=False, **opts):
        check_opts(name, opts, EVENT_OPTS)
        base = build_dataset(static_name, split, root=root, download=download,
                             **({"limit": opts["limit"]} if opts.get("limit") else {}))
        T = int(opts.get("time_steps") or SPECS[name].default_time_steps)
        gen = {k: opts[k] for k in ("amplitude", "steps_per_saccade", "threshold", "eps")
               if opts.get(k) is not None}
        cdir = event_cache_dir(root, opts.get("cache_dir")) if opts.get("cache", True) else None
        ds = EventVersion(base, time_steps=T, cache_dir=cdir, cache_key=f"{name}-{split}",
                          augment=_aug(opts, False), roll=int(opts.get("roll", 2)),
                          seed=opts.get("seed", 0), **gen)
        return _with_spec(ds, replace(SPECS[name], image_size=ds.image_size,
                                      default_time_steps=T))
    return build


register(SPECS["digits"], build_digits)
register(SPECS["mnist"], _build_idx("mnist"))
register(SPECS["fashion_mnist"], _build_idx("fashion_mnist"))
register(SPECS["cifar10"], _build_cifar("cifar10"))
register(SPECS["cifar100"], _build_cifar("cifar100"))
register(SPECS["nmnist"], build_nmnist)
register(SPECS["cifar10dvs"], build_cifar10dvs)
register(SPECS["digits_events"], _build_events("digits_events", "digits"))
register(SPECS["fashion_mnist_events"], _build_events("fashion_mnist_events", "fashion_mnist"))
