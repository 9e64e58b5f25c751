"""Synthetic students: trained-looking BatchNorm without training (tests, benchmarks)."""
from __future__ import annotations

import torch
from torch import nn


def randomise_batchnorm(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Give every BatchNorm2d non-trivial statistics and affine parameters, in place.

    Folding, quantization and Lava see per-channel scales and biases as after training,
    which a fresh model (mean 0, var 1, weight 1, bias 0) would hide.
    """
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=generator) * 0.2)
            m.running_var.copy_(torch.rand(c, generator=generator) * 0.5 + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=generator) * 1.5 + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=generator) * 0.2)
    return model
