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

from export import layout
from export.devices import as_device, exact_on_device
from export.graph import CLOCK, INPUT, clock_activity
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
        if conn.kind == "conv":  # NHWC convolutions (export.layout)
            self.weight = layout.conv_input(self.weight)
        # largest |output|: below these, Lava's 24-bit (conv) / 32-bit (dense) wraps are
        # no-ops and the output is an exact float64 integer (``exact_float``)
        self.out_bound = accumulation_bound(conn) << max(0, conn.weight_exp)
        self.float_ok = self.out_bound < (UV_MAX if conn.kind == "conv" else 1 << 30)
        w = self.weight
        self.depthwise_1x1 = (conn.kind == "conv" and tuple(w.shape[1:]) == (1, 1, 1)
                              and conn.groups == w.shape[0] and tuple(conn.stride) == (1, 1)
                              and tuple(conn.padding) == (0, 0))
        # conv: 2**e folded into the weights for ``exact_float`` (a power of two scales every
        # partial sum exactly, so the sums stay exact and one pass over the output is saved)
        e = conn.weight_exp if conn.kind == "conv" else 0
        self.scaled_weight = self.weight * float(1 << e) if e else self.weight

    def exact_float(self, x: torch.Tensor, out_dtype=torch.float64) -> torch.Tensor:
        """``self(x)`` as exact float integers of ``out_dtype``, without wraps (only when
        ``float_ok``; float32 only when the caller's bound keeps every sum below 2**24)."""
        c = self.conn
        if c.kind != "conv" and c.message_bits <= 0:
            x = x != 0
        xf = x.to(self.dtype)
        if c.kind == "dense":
            y = (xf.reshape(xf.shape[0], -1) @ self.weight.T).to(out_dtype)
            e = c.weight_exp  # 2 y shifted by e - 1
            return y * float(1 << e) if e >= 0 else torch.floor(y / float(1 << -e))
        return self._conv(xf, scaled=True).to(out_dtype)

    def _conv(self, xf: torch.Tensor, scaled: bool = False) -> torch.Tensor:
        """The convolution (``scaled``: with the weights times 2**e); a per-channel scale
        (depthwise 1x1, stride 1: the relays of latency balancing) as one product per
        output, which is what the convolution sums."""
        c = self.conn
        w = self.scaled_weight if scaled else self.weight
        if self.depthwise_1x1:
            return xf * w.reshape(1, -1, 1, 1)
        return tF.conv2d(layout.conv_input(xf), w, stride=c.stride, padding=c.padding,
                         groups=c.groups)

    def accumulate(self, x: torch.Tensor) -> torch.Tensor:
        """Exact integer ``sum(x * m)`` for source activity ``x`` (N, *source shape)."""
        c = self.conn
        xf = x.to(self.dtype)
        if c.kind == "dense":
            y = xf.reshape(xf.shape[0], -1) @ self.weight.T
        else:
            y = self._conv(xf)
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


def _decay_factor(d: int) -> float:
    """``(4096 - d) / 4096``: exact in binary, so ``trunc(x * f)`` in float64 is
    ``trunc0(x * (4096 - d) / 4096)`` exactly for |x| < 2**40 (|x * f| keeps <= 52 bits)."""
    return (4096 - int(d)) / 4096.0


def lif_layer(a: torch.Tensor, du: int, dv: int, bias_eff: torch.Tensor, vth: int,
              stats: Optional[dict] = None) -> tuple:
    """All T steps of one layer: ``(spikes (T, B, ...) bool, v after the last step int64)``.

    On the CPU the C++ kernel ``export.lif_kernel`` runs (integer arithmetic, one pass);
    elsewhere, or without a compiler, the torch path below.

    Bit-identical to looping :func:`lif_step` (tested), with far fewer passes over memory:
    u and v are kept as float64 integers (exact below 2**53; the decays are exact, see
    :func:`_decay_factor`), and Lava's 24-bit wrap of u is applied only in steps where
    some |u'| reaches 2**23; the int32 wraps cannot occur under the bounds checked once per
    layer (max|a| < 2**17, max|bias| < 2**30).  Otherwise :func:`lif_step` runs.

    Why the bounds suffice: with max|a| < 2**17, |a << 6| < 2**23; if |u| <= 2**23 then
    |u'| = |decay(u) + (a << 6)| < 2**24, and Lava's one-period wrap brings it back to
    |u| <= 2**23 (by induction from u = 0), so no int32 carry happens in u'; then
    |decay(v) + u + bias| < 2**23 + 2**23 + 2**30 < 2**31.  ``stats`` receives max_u, max_v (before
    wrap / clip) and overflow, as :func:`emulate` documents.
    """
    if layout.is_channels_last(a) and bias_eff.dim() <= 3:  # elementwise: run on (T,B,H,W,C)
        s, v = lif_layer(layout.to_hwc(a), du, dv, layout.param_hwc(bias_eff, a.shape[2:]),
                         vth, stats)
        return layout.from_hwc(s), v.permute(0, 3, 1, 2)
    if (a.device.type == "cpu" and a.dtype in (torch.int64, torch.float64, torch.float32)
            and 0 <= du <= 4095 and 0 <= dv <= 4095):  # Lava's 12-bit decays: the kernel's range
        from export import lif_kernel
        if lif_kernel.available():  # one pass in C++, exact integer arithmetic
            return lif_kernel.lif_layer_native(a, du, dv, bias_eff, vth, stats)
    T = a.shape[0]
    a_max = int(a.abs().max()) if a.numel() else 0
    b_max = int(bias_eff.abs().max()) if bias_eff.numel() else 0
    fast = a_max < (1 << 17) and b_max < (1 << 30)
    if not fast:
        return _lif_layer_steps(a.to(torch.int64), du, dv, bias_eff, vth, stats)
    cu, cv = _decay_factor(du + 1), _decay_factor(dv)
    a6 = a.to(torch.float64) * 64.0  # exact: |a << 6| < 2**23
    bias = bias_eff.to(torch.float64)
    u = torch.zeros_like(a6[0])
    v = torch.zeros_like(a6[0])
    th = float(vth << 6)
    lim = float(UV_MAX - 1)
    spikes = torch.empty(a.shape, dtype=torch.bool, device=a.device)
    peak_u = peak_v = 0.0
    overflow = False
    for t in range(T):
        if cu == 0.0:  # no current memory (du = 4095): u' = a << 6, |u'| < 2**23
            raw_u = a6[t]
            peak = float(a_max << 6) if stats is not None else 0.0
        else:
            raw_u = torch.trunc(u * cu) + a6[t]
            peak = float(raw_u.abs().max()) if raw_u.numel() else 0.0
        if peak > UV_MAX - 1:  # some u' leaves (-2**23, 2**23]: the 24-bit wrap of Lava
            u = torch.where(raw_u > UV_MAX, raw_u - _I24,
                            torch.where(raw_u <= -UV_MAX, raw_u + _I24, raw_u))
        else:
            u = raw_u
        raw_v = torch.trunc(v * cv) + u + bias
        v = raw_v.clamp(-lim, lim)
        s = v > th
        spikes[t] = s
        v = v.masked_fill(s, 0.0)
        if stats is not None:
            mv = float(raw_v.abs().max()) if raw_v.numel() else 0.0
            peak_u, peak_v = max(peak_u, peak), max(peak_v, mv)
            if peak >= UV_MAX or mv >= UV_MAX - 1 or (stats.get("readout") and bool(s.any())):
                overflow = True
    if stats is not None:
        stats.update(max_u=int(peak_u), max_v=int(peak_v), overflow=overflow)
    return spikes, v.to(torch.int64)


def lif_layer_recurrent(a, recurrent: list, du: int, dv: int, bias_eff, vth: int,
                        stats: Optional[dict] = None) -> tuple:
    """:func:`lif_layer` of a layer with recurrent connections (``_Synapse`` objects whose
    source is the layer): at step t its input is ``a[t]`` plus what they make of its spikes
    of step t - 1 (nothing at t = 0), summed in int32 as Lava's ``a_in`` port sums its
    messages; then :func:`lif_step`.  Lava: the recurrent Dense delivers one step after
    the spike, the same delay (``hardware.lava_sim``)."""
    a = a.to(torch.int64)
    u = torch.zeros_like(a[0])
    v = torch.zeros_like(u)
    prev = torch.zeros(a.shape[1:], dtype=torch.bool, device=a.device)
    spikes = torch.empty(a.shape, dtype=torch.bool, device=a.device)
    peak_u = peak_v = 0
    overflow = False
    for t in range(a.shape[0]):
        a_t = a[t]
        if t > 0:
            for sy in recurrent:
                a_t = wrap32(a_t + sy(prev).reshape(a_t.shape))
        s, u, v, raw_v, raw_u = lif_step(a_t, u, v, du, dv, bias_eff, vth)
        spikes[t] = s
        prev = s
        if stats is not None:
            mu, mv = int(raw_u.abs().max()), int(raw_v.abs().max())
            peak_u, peak_v = max(peak_u, mu), max(peak_v, mv)
            if mu >= UV_MAX or mv >= UV_MAX - 1 or (stats.get("readout") and bool(s.any())):
                overflow = True
    if stats is not None:
        stats.update(max_u=peak_u, max_v=peak_v, overflow=overflow)
    return spikes, v


def _lif_layer_steps(a, du, dv, bias_eff, vth, stats) -> tuple:
    """:func:`lif_layer` step by step in int64 (any input, the wraps always applied): the
    recurrent step loop with no recurrent connection."""
    return lif_layer_recurrent(a, [], du, dv, bias_eff, vth, stats)


@exact_on_device
def emulate(qgraph: QuantGraph, x_int_seq, record: bool = True,
            stats: Optional[dict] = None, device=None):
    """Run ``qgraph`` on graded input ``x_int_seq`` ``(T, B, *input_shape)`` (ints 0..255).

    Returns ``(readout_v, spikes)``: the readout's ``v`` after the last step ``(B, K)``
    int64, and (when ``record``) layer name -> spikes ``(T, B, *shape)`` int64 for every
    spiking layer.  ``stats`` (optional dict) receives per layer ``max_u``, ``max_v``
    (absolute, before wrap/clip) and ``overflow`` (u wrapped, v saturated or reached
    the readout threshold).  ``device``: where to compute (e.g. ``"cuda"``; bit-identical
    on every device, see ``export.devices``); results come back on the CPU.

    Layer by layer: the graph has no recurrence between layers, so a layer's synaptic
    input for all T steps is one batched convolution over the T x B spikes of its
    sources, and only the neuron update loops over time (a layer recurrent onto itself
    adds its recurrent synapses' output of the previous step's spikes in that loop).
    Sources are dropped once their last reader ran.  A synaptic bias (a connection from
    ``export.graph.CLOCK``) reads a source spiking at every step: its weights join the
    synaptic input each step, as the bias axon does on Loihi.
    """
    device = as_device(device)
    x_seq = torch.as_tensor(x_int_seq).to(device=device, dtype=torch.int64)
    T, B = x_seq.shape[:2]
    last_use = qgraph.last_readers()
    acts = {INPUT: x_seq, CLOCK: clock_activity(T, B, dtype=torch.int64, device=device)}
    rec = {}
    for i, layer in enumerate(qgraph.layers):
        syns = [_Synapse(conn, device) for conn in layer.connections
                if conn.source != layer.name]
        recurrent = [_Synapse(conn, device) for conn in layer.connections
                     if conn.source == layer.name]
        bound = sum(sy.out_bound for sy in syns)
        exact = all(sy.float_ok for sy in syns) and bound < 1 << 31
        out_dtype = torch.float32 if bound <= FLOAT32_EXACT else torch.float64
        a = None
        for sy in syns:
            src = acts[sy.conn.source]
            src = src.reshape((T * B,) + src.shape[2:])
            c = sy.exact_float(src, out_dtype) if exact else sy(src)
            c = c.reshape((T, B) + tuple(layer.shape))
            a = c if a is None else a + c
        if not exact:
            a = wrap32(a)
        bias = torch.as_tensor(layer.bias_effective(), dtype=torch.int64, device=device)
        layer_stats = {"readout": not layer.spiking} if stats is not None else None
        if recurrent:  # its input at step t needs its own spikes of step t - 1
            spikes, v = lif_layer_recurrent(a, recurrent, layer.du, layer.dv, bias,
                                            layer.vth, layer_stats)
        else:
            spikes, v = lif_layer(a, layer.du, layer.dv, bias, layer.vth, layer_stats)
        del a
        if stats is not None:
            stats[layer.name] = {k: layer_stats[k] for k in ("max_u", "max_v", "overflow")}
        acts[layer.name] = spikes
        if record and layer.spiking:
            rec[layer.name] = spikes.to(torch.int64).cpu()
        for name in [n for n, j in last_use.items() if j == i and n in acts]:
            del acts[name]
    return v.cpu().clone(), rec
