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

import torch
import torch.nn.functional as tF

from export.graph import INPUT
from export.quantize import QuantConnection, QuantGraph

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


def _accumulate(conn: QuantConnection, x: torch.Tensor) -> torch.Tensor:
    """Exact integer sum(x * m) (via float64: exact below 2**53)."""
    w = torch.as_tensor(conn.weight, dtype=torch.float64)
    xf = x.to(torch.float64)
    if conn.kind == "dense":
        y = xf.reshape(xf.shape[0], -1) @ w.T
    else:
        y = tF.conv2d(xf, w, stride=conn.stride, padding=conn.padding, groups=conn.groups)
    return torch.round(y).to(torch.int64)


def synapse(conn: QuantConnection, x: torch.Tensor) -> torch.Tensor:
    """Synaptic input produced by ``conn`` from source activity ``x`` (B, *shape)."""
    graded = conn.message_bits > 0
    if conn.kind == "conv":
        return wrap24(_accumulate(conn, x) << conn.weight_exp)
    if not graded:
        x = (x != 0).to(torch.int64)  # Lava: s_in.astype(bool)
    y = 2 * _accumulate(conn, x)
    if graded:
        y = wrap32(y)  # int32 dot product
    return wrap32(shift(y, conn.weight_exp - 1))


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
            stats: Optional[dict] = None):
    """Run ``qgraph`` on graded input ``x_int_seq`` ``(T, B, *input_shape)`` (ints 0..255).

    Returns ``(readout_v, spikes)``: the readout's ``v`` after the last step ``(B, K)``
    int64, and (when ``record``) layer name -> spikes ``(T, B, *shape)`` int64 for every
    spiking layer.  ``stats`` (optional dict) receives per layer ``max_u``, ``max_v``
    (absolute, before wrap/clip) and ``overflow`` (u wrapped, v saturated or reached
    the readout threshold).
    """
    x_seq = torch.as_tensor(x_int_seq).to(torch.int64)
    T, B = x_seq.shape[:2]
    st = {}
    for layer in qgraph.layers:
        z = torch.zeros(B, *layer.shape, dtype=torch.int64)
        st[layer.name] = {
            "u": z, "v": z.clone(),
            "bias": torch.as_tensor(layer.bias_effective(), dtype=torch.int64),
        }
    rec = {l.name: [] for l in qgraph.layers if l.spiking} if record else {}
    peaks = {l.name: [0, 0, False] for l in qgraph.layers}
    for t in range(T):
        out = {INPUT: x_seq[t]}
        for layer in qgraph.layers:
            a = None
            for conn in layer.connections:
                c = synapse(conn, out[conn.source]).reshape(B, *layer.shape)
                a = c if a is None else a + c
            a = wrap32(a)
            s_ = st[layer.name]
            s, u, v, raw_v, raw_u = lif_step(a, s_["u"], s_["v"], layer.du, layer.dv,
                                             s_["bias"], layer.vth)
            s_["u"], s_["v"] = u, v
            if stats is not None:
                pk = peaks[layer.name]
                mu, mv = int(raw_u.abs().max()), int(raw_v.abs().max())
                pk[0], pk[1] = max(pk[0], mu), max(pk[1], mv)
                if mu >= UV_MAX or mv >= UV_MAX - 1 or (not layer.spiking and bool(s.any())):
                    pk[2] = True
            spk = s.to(torch.int64)
            out[layer.name] = spk
            if record and layer.spiking:
                rec[layer.name].append(spk)
    if stats is not None:
        for name, (mu, mv, ov) in peaks.items():
            stats[name] = {"max_u": mu, "max_v": mv, "overflow": ov}
    spikes = {k: torch.stack(v) for k, v in rec.items()} if record else {}
    return st[qgraph.output.name]["v"].clone(), spikes
