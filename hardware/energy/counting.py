"""Exact fan-out and per-connection counts: SynOps, MACs, padded taps, active updates."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as tF

from export.graph import Connection
from kd_snn.errors import KdsnnError

from .conventions import EVENT_MODES, FANOUT_MODES, Conventions, check_mode

ArrayLike = Union[np.ndarray, torch.Tensor]

def fanout_map(conn: Connection, source_shape: Sequence[int], fanout: str = "nonzero") -> np.ndarray:
    """Exact fan-out of every source element of ``conn`` (an int64 array of ``source_shape``).

    Conv: a transposed convolution of an all-ones output map with the (non-zero) weight
    mask, so each source pixel gets the number of (output neuron, weight) pairs that read
    it, borders, stride and padding included.  Dense: non-zero weights per column
    (``fanout="nonzero"``) or ``N_out`` (``"all"``).  Pooling: 1 inside a window, 0 for
    the pixels the floor division leaves out.
    """
    check_mode(fanout, FANOUT_MODES, "fanout")
    source_shape = tuple(int(s) for s in source_shape)
    out_shape = conn.out_shape(source_shape)
    if conn.kind == "dense":
        w = conn.weight
        col = (w != 0).sum(axis=0) if fanout == "nonzero" else np.full(w.shape[1], w.shape[0])
        return col.astype(np.int64).reshape(source_shape)
    if conn.kind == "conv":
        w = torch.as_tensor(conn.weight, dtype=torch.float64)
        mask = (w != 0).to(torch.float64) if fanout == "nonzero" else torch.ones_like(w)
        co, _, kh, kw = w.shape
        groups = int(getattr(conn, "groups", 1))  # QuantConnection: pools become grouped convs
        dil = tuple(getattr(conn, "dilation", (1, 1)))  # teacher convs (see count_teacher)
        _, h, wd = source_shape
        _, oh, ow = out_shape
        ones = torch.ones(1, co, oh, ow, dtype=torch.float64)
        # conv_transpose2d reads a (C_out, C_in/groups, kh, kw) weight exactly as conv2d
        # stores it, so the transposed conv of ones sends each output's synapses back.
        # Transposed conv size: (o-1)*s - 2p + d(k-1) + 1; the rows a strided conv never
        # reaches (the remainder of the floor division) are restored by output_padding.
        base_h = (oh - 1) * conn.stride[0] - 2 * conn.padding[0] + dil[0] * (kh - 1) + 1
        base_w = (ow - 1) * conn.stride[1] - 2 * conn.padding[1] + dil[1] * (kw - 1) + 1
        fmap = tF.conv_transpose2d(ones, mask, stride=conn.stride, padding=conn.padding,
                                   output_padding=(h - base_h, wd - base_w), groups=groups,
                                   dilation=dil)
        return fmap[0].round().to(torch.int64).numpy()
    # avgpool / sumpool: windows of size kernel, stride kernel, no padding
    kh, kw = conn.kernel
    c, h, wd = source_shape
    fmap = np.zeros(source_shape, dtype=np.int64)
    fmap[:, : (h // kh) * kh, : (wd // kw) * kw] = 1
    return fmap


def as_tensor(x: ArrayLike) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    return torch.as_tensor(np.asarray(x))


def spike_events(x: torch.Tensor, events: str) -> torch.Tensor:
    check_mode(events, EVENT_MODES, "events")
    if events == "nonzero":
        return (x != 0).to(torch.float64)
    return x.to(torch.float64).abs()


def weighted_counts(values: torch.Tensor, fmap: np.ndarray) -> np.ndarray:
    """sum over source elements of ``values * fmap`` for each (t, b): float64 (T, B)."""
    f = torch.as_tensor(fmap, dtype=torch.float64, device=values.device)
    T, B = values.shape[:2]
    return (values.reshape(T, B, -1) @ f.reshape(-1)).cpu().numpy()


def _to_int(counts: np.ndarray) -> np.ndarray:
    rounded = np.rint(counts)
    if np.array_equal(rounded, counts):
        return rounded.astype(np.int64)
    return counts


def synops_per_connection(conn: Connection, src_spikes: ArrayLike, *, fanout: str = "nonzero",
                          events: str = "nonzero",
                          fmap: Optional[np.ndarray] = None) -> np.ndarray:
    """Exact SynOps of ``src_spikes`` ``(T, B, *source_shape)`` through ``conn``.

    Returns an array ``(T, B)``: the synaptic operations of each sample at each time step
    (int64 for binary spikes).  Sum it for totals; ``.sum(0).mean()`` is the per-inference
    count.  ``fmap`` may pass a precomputed :func:`fanout_map`.
    """
    x = as_tensor(src_spikes)
    if x.ndim < 3:
        raise ValueError(f"spikes must be (T, B, *source_shape), got shape {tuple(x.shape)}")
    if fmap is None:
        fmap = fanout_map(conn, tuple(x.shape[2:]), fanout)
    elif tuple(fmap.shape) != tuple(x.shape[2:]):
        raise ValueError(f"fan-out map {fmap.shape} does not match spikes {tuple(x.shape[2:])}")
    return _to_int(weighted_counts(spike_events(x, events), fmap))


def macs_per_connection(conn: Connection, src_values: ArrayLike, *, fanout: str = "all",
                        fmap: Optional[np.ndarray] = None) -> np.ndarray:
    """Exact MACs of a real-valued source ``(T, B, *source_shape)`` through ``conn``.

    Every value, zero or not, is multiplied into each in-bounds weight it meets (every
    weight: ``fanout="all"``), so the count per (t, b) is the sum of the fan-out map (the
    values only supply ``T``, ``B`` and the shape).  Returns an int64 array ``(T, B)``.
    """
    shape = tuple(src_values.shape)
    if len(shape) < 3:
        raise ValueError(f"values must be (T, B, *source_shape), got shape {shape}")
    if fmap is None:
        fmap = fanout_map(conn, shape[2:], fanout)
    return np.full(shape[:2], int(fmap.sum()), dtype=np.int64)


def padded_taps(conn, source_shape: Sequence[int], weights: str = "all") -> int:
    """Every kernel tap of every output, zero padding included (flop_counter's MACs);
    ``weights="nonzero"``: the taps of non-zero weights only."""
    source_shape = tuple(int(s) for s in source_shape)
    if conn.kind == "conv":
        w = np.asarray(conn.weight)
        per_channel = np.count_nonzero(w) if weights == "nonzero" else w.size
        return int(np.prod(conn.out_shape(source_shape)[1:])) * int(per_channel)
    if conn.kind == "dense":
        w = np.asarray(conn.weight)
        return int(np.count_nonzero(w) if weights == "nonzero" else w.size)
    return int(fanout_map(conn, source_shape, "all").sum())  # pools have no padding


def _reached(conn, events: torch.Tensor) -> torch.Tensor:
    """Which target neurons ``(B, *out_shape)`` get at least one event through a non-zero
    synapse; ``events`` is a 0/1 ``(B, *source_shape)``.  The sums count events (at most
    the fan-in, far below 2**24), so float32 products are exact; convolutions run in NHWC
    (oneDNN's fast layout, ``export.layout``)."""
    B = events.shape[0]
    on = dict(dtype=torch.float32, device=events.device)
    if conn.kind == "dense":
        mask = torch.as_tensor(np.asarray(conn.weight) != 0, **on)
        return (events.reshape(B, -1).to(torch.float32) @ mask.T) > 0
    if conn.kind == "conv":
        from export.layout import conv_input
        mask = conv_input(torch.as_tensor(np.asarray(conn.weight) != 0, **on))
        return tF.conv2d(conv_input(events.to(torch.float32)), mask, stride=conn.stride,
                         padding=conn.padding, groups=int(getattr(conn, "groups", 1))) > 0
    return tF.avg_pool2d(events, conn.kernel, conn.kernel) > 0


def _neuron_flags(layer, device=None) -> tuple:
    """Per neuron: non-zero bias, keeps its voltage between steps, keeps its current."""
    shape = tuple(layer.shape)
    if hasattr(layer, "bias_mant"):  # QuantLayer: dv = 4096 (1 - beta), du = 4096 (1 - alpha) - 1
        bias = np.broadcast_to(np.asarray(layer.bias_mant) != 0, shape)
        keeps_v = np.full(shape, layer.dv < 4096)
        keeps_i = np.full(shape, layer.du < 4095)
    else:
        bias = np.broadcast_to(np.asarray(layer.bias) != 0, shape)
        keeps_v = np.broadcast_to(np.asarray(layer.beta) > 0, shape)
        keeps_i = np.broadcast_to(np.asarray(layer.alpha) > 0, shape)
    return tuple(torch.as_tensor(np.array(a, dtype=bool), device=device)
                 for a in (bias, keeps_v, keeps_i))


def active_updates(layer, inputs: Sequence[Tuple[object, torch.Tensor]],
                   spikes: Optional[torch.Tensor]) -> int:
    """Active neuron updates of ``layer`` over ``(T, B)``: a neuron is active in a step when
    an event reaches it through a non-zero synapse, it has a non-zero bias, or it carries
    state from an active previous step (voltage if it did not spike and beta > 0, current
    if alpha > 0).  An upper bound: a voltage that cancels or decays to exactly 0 counts.

    ``inputs``: (connection, source events ``(T, B, *source_shape)`` as 0/1 float64).
    ``spikes``: the layer's own spikes ``(T, B, *shape)`` (``None``: never spikes).
    """
    device = inputs[0][1].device
    bias, keeps_v, keeps_i = _neuron_flags(layer, device)
    T, B = inputs[0][1].shape[:2]
    prev = torch.zeros((B,) + tuple(layer.shape), dtype=torch.bool, device=device)
    fired = torch.zeros_like(prev)
    total = 0
    for t in range(T):
        act = bias | (prev & ((~fired & keeps_v) | keeps_i))
        for conn, ev in inputs:
            act = act | _reached(conn, ev[t]).reshape(act.shape)
        total += int(act.sum())
        prev = act
        if spikes is not None:
            fired = spikes[t] != 0
    return total


RATE_BINS = 20  # firing-rate histogram: 20 bins of 5 % each


def firing_rate_histogram(counts: torch.Tensor, denom: int) -> dict:
    """Distribution of per-neuron firing rates (``counts`` spikes per neuron over N*T)."""
    c = counts.reshape(-1).to(torch.int64).cpu().numpy()
    rates = c / denom
    hist, edges = np.histogram(rates, bins=RATE_BINS, range=(0.0, 1.0))
    return {"edges": [float(e) for e in edges], "counts": [int(h) for h in hist],
            "dead": int((c == 0).sum()), "saturated": int((c == denom).sum()),
            "dead_fraction": float((c == 0).mean()),
            "saturated_fraction": float((c == denom).mean())}


RASTER_NEURONS = 12  # neurons per layer in the spike raster: spiking ones of sample 0


def raster_sample(spk: torch.Tensor) -> dict:
    """Spike steps of :data:`RASTER_NEURONS` neurons of sample 0 (``spk`` ``(T, B, ...)``)
    that spike, spread over their activity: the neurons ranked by spike count (most first,
    ties by lower index) and taken at evenly spaced ranks, so the raster shows the busiest
    and the quietest spiking neurons alike (at ResNet scale evenly spaced indices are
    nearly all silent, and the busiest alone all spike at every step); silent neurons
    only where fewer spike.  ``active``: how many of the layer's neurons spike at all."""
    flat = spk[:, 0].reshape(spk.shape[0], -1)
    n = flat.shape[1]
    counts = (flat != 0).sum(0).to(torch.int64).cpu().numpy()
    ranked = np.lexsort((np.arange(n), -counts))
    active = int((counts > 0).sum())
    k = min(RASTER_NEURONS, n)
    if active > k:
        ranked = ranked[np.linspace(0, active - 1, k).round().astype(int)]
    idx = ranked[:k]
    return {"sample": 0, "selection": "active_by_rank", "active": active,
            "neurons": [int(i) for i in idx],
            "spike_steps": [[int(t) for t in torch.nonzero(flat[:, i]).reshape(-1)]
                            for i in idx]}


def mac_count(c: Mapping, conv: "Conventions", T: int) -> float:
    """MACs per inference of one real-valued connection under ``conv``."""
    once = c["input"] and conv.first_layer == "once" and bool(c["repeats"])
    nzw = "_nzw" if conv.mac_weights == "nonzero" else ""  # zero weights skipped
    if c["input"] and conv.zero_input == "skipped":
        if c["nonzero_steps"] is None:
            raise KdsnnError("zero-input skipping needs the input values: pass x_seq")
        return float(c["nonzero_first" + nzw] if once else c["nonzero_steps" + nzw])
    per_step = c[("padded" if conv.padding == "counted" else "in_bounds") + nzw]
    return float(per_step * (1 if once else T))
