"""Shared helpers: search paths, option checking, deterministic per-item randomness."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

import numpy as np
import torch

from kd_snn.errors import KdsnnError

ENV_ROOT = "KDSNN_DATA_ROOT"
ENV_CACHE = "KDSNN_CACHE_DIR"


def cache_dir(root: Optional[str] = None) -> Path:
    """Where derived data (event versions) is cached: ``root``, else ``$KDSNN_CACHE_DIR``,
    else ``~/.cache/kdsnn``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path("~/.cache/kdsnn").expanduser()


def search_roots(root: Optional[str], subdirs: Sequence[str],
                 extra: Iterable[str] = ()) -> List[Path]:
    """Candidate folders: ``root`` (and ``root/<sub>``), ``$KDSNN_DATA_ROOT``(/sub),
    ``~/.cache/kdsnn/<sub>``, then ``extra`` system folders. Without duplicates, in order."""
    bases: List[Path] = []
    if root is not None:
        bases.append(Path(root).expanduser())
    env = os.environ.get(ENV_ROOT)
    if env:
        bases.append(Path(env).expanduser())
    out: List[Path] = []
    for b in bases:
        out.append(b)
        out.extend(b / s for s in subdirs)
    cache = cache_dir(None)
    out.extend(cache / s for s in subdirs)
    out.extend(Path(e) for e in extra)
    seen, uniq = set(), []
    for p in out:
        if p not in seen:
            seen.add(p)
            uniq.append(p)
    return uniq


def check_opts(name: str, opts: dict, allowed: Iterable[str]) -> None:
    allowed = set(allowed)
    bad = sorted(set(opts) - allowed)
    if bad:
        raise KdsnnError(f"unknown option(s) {', '.join(bad)} for data set {name!r}; "
                         f"allowed: {', '.join(sorted(allowed)) or 'none'}")


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A torch.Generator that depends only on (seed, epoch, index).

    Augmentations draw from it, so an item looks the same whatever the batch order, the
    number of workers, or whether the run was resumed.
    """
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(index)])
    g = torch.Generator()
    g.manual_seed(int(state.generate_state(1, np.uint64)[0]) & 0x7FFF_FFFF_FFFF_FFFF)
    return g


def randint(g: torch.Generator, low: int, high: int) -> int:
    """Uniform integer in [low, high] (inclusive)."""
    return int(torch.randint(low, high + 1, (1,), generator=g).item())


def rand(g: torch.Generator) -> float:
    return float(torch.rand((1,), generator=g).item())


class EpochMixin:
    """Datasets with random augmentation: ``set_epoch(e)`` changes the draws of epoch e."""

    seed: int = 0
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
