"""Bit-exact integer emulation of a ``QuantGraph`` (PyTorch, int64, batched).

Synchronous: every layer sees its inputs of the same step (no hardware latency); Lava's
result for a layer at depth d is this result shifted by d steps (``hardware.lava_sim``
aligns it).  Each operation reproduces Lava 0.10's bit-accurate ProcessModels
(``Loihi2SimCfg(select_tag='fixed_pt')``), including the integer widths of their numpy
arrays:

Conv (``lava/proc/conv/models.py`` PyConvModelFixed)
    a = signed_clamp_24(sum(x * (m << e)))     -- wraps modulo 2**24; weight_exp itself
    is ignored by Lava's Conv, so the exponent is folded into the weight (e >= 0).
Dense (``lava/proc/dense/models.py`` PyDenseModelBitAcc), deployed as weights ``2 m``,
``weight_exp = e - 1``, sign mode MIXED (drops the LSB, exact on even weights):
    y = sum(x * 2m)  (int64 for binary spikes; int32-wrapped dot for graded spikes)
    a = wrap32(y << (e - 1))  or  wrap32(y >> (1 - e))  (arithmetic shift = floor)
    == shift(sum(x m), e) whenever nothing overflows.
LIF (``lava/proc/lif/models.py`` PyLifModelBitAcc / PyLifResetModelBitAcc)
    a_in = wrap32(sum of connections)
    u' = trunc0(u * (4096 - (du + 1)) / 4096) + wrap32(a_in << 6)   (int32 add)
    u  = u' - 2**24 if u' > 2**23; u' + 2**24 if u' <= -2**23; else u'   (one wrap)
    v  = clip(trunc0(v * (4096 - dv) / 4096) + u + (bias_mant << bias_exp),
              -(2**23 - 1), 2**23 - 1)                      (saturates, does not wrap)
    s  = v > (vth << 6);  v <- 0 where s
    trunc0(p / 4096) = sign(p) * (|p| >> 12).
The readout (spiking=False) is the same LIF with du = 4095, dv = 0, vth = 2**17 - 1.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as tF

from export.graph import INPUT
from export.fixed_point import QuantConnection, QuantGraph

_I32 = 1 << 32
_I24 = 1 << 24
UV_MAX = 1 << 23


def wrap32(x: torch.Tensor) -> torch.Tensor:
    return torch.remainder(x + (1 << 31), _I32) - (1 << 31)


def wrap24(x: torch.Tensor) -> torch.Tensor:
    return torch.remainder(x + (1 << 23), _I24) - (1 << 23)


def shift(x: torch.Tensor, e: int) -> torch.Tensor:
    """``x << e`` for e >= 0, arithmetic ``x >> -e`` (floor) for e < 0."""
    return x << e if e >= 0 else x >> (-e)


def trunc0_decay(x: torch.Tensor, factor: int) -> torch.Tensor:
    p = x * factor
    return torch.sign(p) * (p.abs() >> 12)


#: float32 sums integers exactly while every partial sum stays within 2**24
FLOAT32_EXACT = 1 << 24
FLOAT64_EXACT = 1 << 53


def accumulation_bound(conn: QuantConnection) -> int:
    """Largest |partial sum| of ``sum(x * m)`` over one output: sum of |mantissas| x max input.

    Any partial sum of integer terms is bounded by the sum of their magnitudes, so a
    float accumulator that represents every integer up to this bound is exact whatever
    order a BLAS/oneDNN kernel adds in.
    """
    w = np.abs(np.asarray(conn.weight, dtype=np.int64)).reshape(len(conn.weight), -1)
    max_in = (1 << 8) - 1 if conn.message_bits > 0 else 1
    return int(w.sum(axis=1).max(initial=0)) * max_in


def accumulation_dtype(conn: QuantConnection) -> torch.dtype:
    """float32 where :func:`accumulation_bound` proves it exact, else float64."""
    bound = accumulation_bound(conn)
    if bound <= FLOAT32_EXACT:
        return torch.float32
    if bound <= FLOAT64_EXACT:
        return torch.float64
    raise ValueError(f"connection from '{conn.source}': integer sums up to {bound} exceed "
                     "float64's exact range")


class _Synapse:
    """A connection ready to run: weight converted once, exact accumulation dtype chosen."""

    def __init__(self, conn: QuantConnection, device):
        self.conn = conn
        self.dtype = accumulation_dtype(conn)
        self.weight = torch.as_tensor(conn.weight).to(device=device, dtype=self.dtype)

    def accumulate(self, x: torch.Tensor) -> torch.Tensor:
        """Exact integer ``sum(x * m)`` for source activity ``x`` (N, *source shape)."""
        c = self.conn
        xf = x.to(self.dtype)
        if c.kind == "dense":
            y = xf.reshape(xf.shape[0], -1) @ self.weight.T
        else:
            y = tF.conv2d(xf, self.weight, stride=c.stride, padding=c.padding, groups=c.groups)
        return torch.round(y).to(torch.int64)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Synaptic input produced from source activity ``x`` (N, *source shape)."""
        c = self.conn
        graded = c.message_bits > 0
        if c.kind == "conv":
            return wrap24(self.accumulate(x) << c.weight_exp)
        if not graded:
            x = x != 0  # Lava: s_in.astype(bool)
        y = 2 * self.accumulate(x)
        if graded:
            y = wrap32(y)  # int32 dot product
        return wrap32(shift(y, c.weight_exp - 1))


def synapse(conn: QuantConnection, x: torch.Tensor) -> torch.Tensor:
    """Synaptic input produced by ``conn`` from source activity ``x`` (B, *shape)."""
    return _Synapse(conn, x.device)(x)


def lif_step(a_in, u, v, du: int, dv: int, bias_eff, vth: int):
    """One fixed_pt LIF step; returns (spikes bool, u, v, pre-clip v, pre-wrap u)."""
    dc = wrap32(trunc0_decay(u, 4096 - (du + 1)) + wrap32(a_in << 6))
    u = torch.where(dc > UV_MAX, dc - _I24, torch.where(dc <= -UV_MAX, dc + _I24, dc))
    raw_v = wrap32(trunc0_decay(v, 4096 - dv) + u + bias_eff)
    v = raw_v.clamp(-(UV_MAX - 1), UV_MAX - 1)
    s = v > (vth << 6)
    v = torch.where(s, torch.zeros_like(v), v)
    return s, u, v, raw_v, dc


def emulate(qgraph: QuantGraph, x_int_seq, record: bool = True,
            stats: Optional[dict] = None, device=None):
    """Run ``qgraph`` on graded input ``x_int_seq`` ``(T, B, *input_shape)`` (ints 0..255).

    Returns ``(readout_v, spikes)``: the readout's ``v`` after the last step ``(B, K)``
    int64, and (when ``record``) layer name -> spikes ``(T, B, *shape)`` int64 for every
    spiking layer.  ``stats`` (optional dict) receives per layer ``max_u``, ``max_v``
    (absolute, before wrap/clip) and ``overflow`` (u wrapped, v saturated or reached
    the readout threshold).  ``device``: where to compute (e.g. ``"cuda"``); results
    come back on the CPU.

    Layer by layer: the graph has no recurrence between layers, so a layer's synaptic
    input for all T steps is one batched convolution over the T x B spikes of its
    sources, and only the neuron update loops over time.  Sources are dropped once
    their last reader ran.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    x_seq = torch.as_tensor(x_int_seq).to(device=device, dtype=torch.int64)
    T, B = x_seq.shape[:2]
    last_use = {}
    for i, layer in enumerate(qgraph.layers):
        for conn in layer.connections:
            last_use[conn.source] = i
    acts = {INPUT: x_seq}
    rec = {}
    for i, layer in enumerate(qgraph.layers):
        a = None
        for conn in layer.connections:
            src = acts[conn.source]
            c = _Synapse(conn, device)(src.reshape((T * B,) + src.shape[2:]))
            c = c.reshape((T, B) + tuple(layer.shape))
            a = c if a is None else a + c
        a = wrap32(a)
        bias = torch.as_tensor(layer.bias_effective(), dtype=torch.int64, device=device)
        u = torch.zeros((B,) + tuple(layer.shape), dtype=torch.int64, device=device)
        v = torch.zeros_like(u)
        spikes = torch.empty((T, B) + tuple(layer.shape), dtype=torch.bool, device=device)
        peak_u = peak_v = 0
        overflow = False
        for t in range(T):
            s, u, v, raw_v, raw_u = lif_step(a[t], u, v, layer.du, layer.dv, bias, layer.vth)
            spikes[t] = s
            if stats is not None:
                mu, mv = int(raw_u.abs().max()), int(raw_v.abs().max())
                peak_u, peak_v = max(peak_u, mu), max(peak_v, mv)
                if mu >= UV_MAX or mv >= UV_MAX - 1 or (not layer.spiking and bool(s.any())):
                    overflow = True
        del a
        if stats is not None:
            stats[layer.name] = {"max_u": peak_u, "max_v": peak_v, "overflow": overflow}
        acts[layer.name] = spikes
        if record and layer.spiking:
            rec[layer.name] = spikes.to(torch.int64).cpu()
        for name in [n for n, j in last_use.items() if j == i and n in acts]:
            del acts[name]
    return v.cpu().clone(), rec
