"""Deterministic, resumable, shardable data loading."""
from __future__ import annotations

import math
from typing import Iterator, List

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from kd_snn.errors import KdsnnError


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """torch.Generator seeded from (seed, epoch) only (numpy SeedSequence mixing)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch)]).generate_state(
        1, np.uint64)[0]
    g = torch.Generator()
    g.manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)
    return g


def epoch_indices(n: int, shuffle: bool, seed: int, epoch: int, rank: int = 0,
                  world_size: int = 1, drop_last: bool = False) -> List[int]:
    """This rank's sample indices for ``epoch``, DistributedSampler-style.

    The (shuffled) order is the same on every rank; it is padded by wrapping around to a
    multiple of ``world_size`` (or truncated when ``drop_last``), then rank r takes
    positions r, r + world_size, ...
    """
    order = (torch.randperm(n, generator=epoch_generator(seed, epoch)).tolist() if shuffle
             else list(range(n)))
    if world_size > 1:
        if drop_last:
            per = n // world_size
            order = order[: per * world_size]
        else:
            per = math.ceil(n / world_size)
            pad = per * world_size - n
            if n:
                order = order + (order * (pad // n + 1))[:pad]
        order = order[rank::world_size]
    return order


class DeterministicBatchSampler(Sampler[List[int]]):
    """Batches of :func:`epoch_indices`, skipping the first ``skip_batches``."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int, epoch: int,
                 drop_last: bool = False, skip_batches: int = 0, rank: int = 0,
                 world_size: int = 1):
        self.indices = epoch_indices(n, shuffle, seed, epoch, rank, world_size, drop_last)
        self.batch_size = int(batch_size)
        self.drop_last = bool(drop_last)
        self.skip_batches = int(skip_batches)

    def _all(self) -> List[List[int]]:
        b, idx = self.batch_size, self.indices
        batches = [idx[i:i + b] for i in range(0, len(idx), b)]
        if self.drop_last and batches and len(batches[-1]) < b:
            batches.pop()
        return batches[self.skip_batches:]

    def __iter__(self) -> Iterator[List[int]]:
        return iter(self._all())

    def __len__(self) -> int:
        full, rest = divmod(len(self.indices), self.batch_size)
        total = full + (1 if rest and not self.drop_last else 0)
        return max(0, total - self.skip_batches)


def make_loader(dataset, batch_size: int, shuffle: bool = False, seed: int = 0,
                epoch: int = 0, num_workers: int = 0, drop_last: bool = False,
                skip_batches: int = 0, rank: int = 0, world_size: int = 1,
                pin_memory: bool = False) -> DataLoader:
    """A DataLoader over ``dataset`` for one epoch, with a reproducible order.

    The permutation of epoch ``e`` comes from a generator seeded with (seed, e), so a resumed
    run sees the same order; ``skip_batches`` drops the first batches (resume mid-epoch).
    ``rank``/``world_size`` shard like DistributedSampler. If the dataset has
    ``set_epoch`` (augmenting data sets), it is called with ``epoch`` so augmentation draws
    depend on (dataset seed, epoch, index) only. Build a new loader each epoch.
    ``num_workers`` defaults to 0 (Lava needs the 'fork' start method; this module never
    touches start methods).
    """
    if batch_size < 1:
        raise KdsnnError(f"batch_size must be >= 1, got {batch_size}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise KdsnnError(f"bad sharding rank={rank} world_size={world_size}")
    if skip_batches < 0:
        raise KdsnnError(f"skip_batches must be >= 0, got {skip_batches}")
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    sampler = DeterministicBatchSampler(len(dataset), batch_size, shuffle, seed, epoch,
                                        drop_last, skip_batches, rank, world_size)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=int(num_workers),
                      pin_memory=pin_memory)
