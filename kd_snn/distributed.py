"""Data-parallel training through PyTorch's own engine (``torchrun`` + DDP).

``torchrun --nproc_per_node N -m kd_snn distill RUN`` (and the multi-node flags
``--nnodes/--node_rank/--master_addr``) run the same command in N processes:
NCCL on GPUs, gloo on CPU.  The global batch (``data.batch_size``) is split over
the ranks, gradients are averaged by DDP, batch-norm statistics are reduced over
the whole global batch (so the result matches a single process with the same
global batch), metrics are summed across ranks and only rank 0 writes files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


import torch
import torch.distributed as dist
from torch import nn

from .errors import KdsnnError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_name: str) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local)
    return DistInfo(rank, world, local)


def teardown(info: DistInfo, sync: bool = False) -> None:
    """Destroy the process group; ``sync``: after a barrier, so that no rank tears down
    while another still uses the group (only on success: a failed rank would hang it)."""
    if info.enabled and dist.is_initialized():
        if sync:
            dist.barrier()
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_sum(info: DistInfo, values: list) -> list:
    """Sum numbers over ranks (float64 on CPU: exact for counts)."""
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return t.cpu().tolist()


class GlobalBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose training statistics cover the global batch on any backend.

    torch's SyncBatchNorm only runs on GPUs; this one reduces sum, sum of squares and
    count with the differentiable ``all_reduce`` of ``torch.distributed.nn``, so it
    also works with gloo on CPU.  Eval mode is plain BatchNorm.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = [d for d in range(x.dim()) if d != 1]
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        stats = torch.cat([x.sum(dims), (x * x).sum(dims), count])
        stats = all_reduce(stats)
        c = x.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = stats[c:2 * c] / n - mean * mean
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            m = self.momentum if self.momentum is not None else \
                1.0 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - m).add_(m * mean.detach())
            self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1))
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_batchnorm(module: nn.Module, use_cuda: bool) -> nn.Module:
    """Global-batch statistics for every BatchNorm2d (torch's SyncBatchNorm on CUDA)."""
    if use_cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            new = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                  child.track_running_stats)
            new.load_state_dict(child.state_dict())
            setattr(module, name, new)
        else:
            convert_batchnorm(child, use_cuda)
    return module


class FeatureForward(nn.Module):
    """DDP only hooks ``forward``: route ``forward_features`` through it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_features(x)


def local_batch(info: DistInfo, global_batch: int) -> int:
    if global_batch % info.world_size:
        raise KdsnnError(f"data.batch_size {global_batch} is not divisible by the "
                         f"{info.world_size} processes")
    return global_batch // info.world_size
