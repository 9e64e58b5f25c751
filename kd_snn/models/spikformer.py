"""Spikformer student (Zhou et al., ICLR 2023): spiking patch splitting, spiking
self-attention without softmax, spiking MLP.  Not deployable (spike-spike matrix
products have no Loihi synapse); its teachers are the ResNets/CNN.

Tokens stay in the conv layout ``(T, B, D, H, W)`` throughout, so every
projection is a 1x1 conv-BN-LIF (the shared ``ConvBNAct``) and the last-stage
map is already what SAMD reads.  Its values are spike counts, not 0/1: the
residual stream adds spike maps, as in the original.
"""
from __future__ import annotations

import torch
from torch import nn

from kd_snn.errors import KdsnnError
from kd_snn.neurons import CubaLIF

from .layers import ConvBNAct, LinearHead, Network, over_time
from .registry import register_model


class SpikingPatchSplitting(nn.Module):
    """conv-BN-LIF x4 (D/8, D/4, D/2, D), maxpool after the last ``pools`` convs,
    then a conv-BN-LIF relative position embedding added to its input."""

    def __init__(self, cin: int, dim: int, pools: int, neuron: dict):
        super().__init__()
        chans = [cin, dim // 8, dim // 4, dim // 2, dim]
        self.convs = nn.ModuleList(ConvBNAct(a, b, 3, spiking=True, neuron=neuron)
                                   for a, b in zip(chans[:-1], chans[1:]))
        self.pool_from = len(self.convs) - pools
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.rpe = ConvBNAct(dim, dim, 3, spiking=True, neuron=neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i >= self.pool_from:
                x = over_time(self.pool, x)
        return x + self.rpe(x)


class SpikingSelfAttention(nn.Module):
    """Q, K, V as spikes; ``LIF(Q K^T V * scale)`` (no softmax), then a projection."""

    def __init__(self, dim: int, heads: int, neuron: dict, scale: float = 0.125,
                 attn_threshold: float = 0.5):
        super().__init__()
        self.heads, self.scale = heads, scale
        self.q, self.k, self.v = (ConvBNAct(dim, dim, 1, spiking=True, neuron=neuron)
                                  for _ in range(3))
        self.attn_act = CubaLIF(**{**neuron, "threshold": attn_threshold})
        self.proj = ConvBNAct(dim, dim, 1, spiking=True, neuron=neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, D, H, W = x.shape

        def split(t):  # (T, B, D, H, W) -> (T, B, heads, N, D/heads)
            return t.reshape(T, B, self.heads, D // self.heads, H * W).transpose(-1, -2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        # No softmax, so the product is associative: take the cheaper order.
        if H * W > D // self.heads:
            y = q @ (k.transpose(-2, -1) @ v)
        else:
            y = (q @ k.transpose(-2, -1)) @ v
        y = (y * self.scale).transpose(-1, -2).reshape(T, B, D, H, W)
        return self.proj(self.attn_act(y))


class SpikformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, neuron: dict, **attn):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.attn = SpikingSelfAttention(dim, heads, neuron, **attn)
        self.fc1 = ConvBNAct(dim, hidden, 1, spiking=True, neuron=neuron)
        self.fc2 = ConvBNAct(hidden, dim, 1, spiking=True, neuron=neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.fc2(self.fc1(x))


@register_model
def spikformer(*, num_classes, in_channels, spiking, width, neuron, head,
               last_block: str = "spiking", depth: int = 4,
               dim: int = 384, heads: int | None = None, mlp_ratio: float = 4.0,
               pools: int = 2, scale: float = 0.125, attn_threshold: float = 0.5):
    """Spikformer-``depth``-``dim`` (default 4-384, 12 heads); ``width`` scales ``dim``.

    ``heads`` defaults to ``dim // 32`` (at least 1); ``pools`` sets the patch
    downsampling (2: 32x32 -> 8x8 tokens, 8x8 -> 2x2).
    """
    if not spiking:
        raise KdsnnError("model 'spikformer' has no ANN twin; use a resnet or cnn teacher")
    if head != "spiking":
        raise KdsnnError(f"model 'spikformer' has only the spiking head, not '{head}'")
    if last_block != "spiking":
        raise KdsnnError(f"model 'spikformer' has only spiking blocks, not '{last_block}'")
    dim = int(round(dim * width))
    heads = heads or max(1, dim // 32)
    if dim % 8 or dim % heads:
        raise KdsnnError(f"spikformer dim {dim} must be a multiple of 8 and of heads ({heads})")
    if not 0 <= pools <= 4:
        raise KdsnnError(f"spikformer pools must lie in 0..4, got {pools}")
    blocks = nn.Sequential(*(SpikformerBlock(dim, heads, mlp_ratio, neuron, scale=scale,
                                             attn_threshold=attn_threshold)
                             for _ in range(depth)))
    stages = [("sps", SpikingPatchSplitting(in_channels, dim, pools, neuron)),
              ("blocks", blocks)]
    return Network(stages, LinearHead(dim, num_classes, spiking=True), spiking=True,
                   deployable=False)
