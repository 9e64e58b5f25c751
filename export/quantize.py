"""Loihi fixed-point quantization of a float ``DeployGraph`` into a ``QuantGraph``.

Integer semantics (what ``export.emulate`` and Lava's ``fixed_pt`` models compute)
---------------------------------------------------------------------------------
* Units.  Each neuron layer has one float scale ``s`` (float activation units ->
  integer *synaptic* units).  Its synaptic input ``a_in`` is ``~ s * x`` (x = the float
  input current); Loihi left-shifts it by 6, so ``u ~ 64 s i`` and ``v ~ 64 s v_float``;
  the threshold compares ``v > vth << 6`` with ``vth = round(s * threshold)`` (17-bit
  unsigned).  The bias is added to ``v`` unshifted: ``bias_mant << bias_exp ~ 64 s b``
  (13-bit signed mantissa, 3-bit exponent 0..7, per neuron).
* Decays.  ``dv = round(4096 (1 - beta))``, ``du = round(4096 (1 - alpha)) - 1``, both
  clipped to 0..4095 (``kd_snn.neurons.functional.loihi_decays``); alpha = 1 and
  beta = 0 are therefore only approximated (factor 4095/4096 and 1/4096).
* Weights.  Per connection an 8-bit signed mantissa ``m`` in [-128, 127] and an exponent
  ``e``; the synaptic input is ``shift(sum_j m_ij x_j, e)`` with ``shift(y, e) = y << e``
  for e >= 0 and ``y >> -e`` (arithmetic, i.e. floor) for e < 0.  Lava's fixed_pt Conv
  ignores ``weight_exp``, so conv connections are restricted to e >= 0 and deployed
  with the weight ``m << e``.  Pools become depthwise convs (``groups = C``).
* Input.  Analog input x in [0, 1] is sent as graded 8-bit spikes ``round(x * 255)``
  (``encode_input``); the scale of a connection reading ``"input"`` is ``s / 255``.
* Readout.  The non-spiking output layer is an integrator (``du = 4095, dv = 0,
  vth = 2**17 - 1``): ``v`` accumulates ``(a_in << 6) + bias`` each step, so after T
  steps ``logits ~ v / (64 s T)`` (``QuantGraph.logits``).  ``v`` saturates at
  +-(2**23 - 1) (it is clipped, not wrapped) and ``u`` wraps at 24 bits; the scale is
  chosen so neither happens on the calibration data.

Choosing ``s``
--------------
``s`` is the largest value that keeps every integer inside its field: ``vth`` within
17 bits, ``|u|, |v|`` (and the readout's running sum) within ``headroom * 2**23`` for
the calibration statistics (or a worst-case bound without calibration data), weights
within ``127 * 2**max_exp`` and biases within ``4095 * 2**7``.  With calibration data
the choice is then checked by integer emulation: any layer whose ``u``/``v`` reaches
the 24-bit limit has its scale halved and the graph is re-quantized (a bounded search).
Per-layer results (scale, the bound that decided it, exponents, clipped fraction and
relative error of the weights, spike agreement with the float graph) are stored in
``QuantGraph.metadata["report"]``.
"""
from __future__ import annotations

import json
import math
from typing import Optional

import numpy as np
import torch

from export.emulate import emulate
from export.fixed_point import (BIAS_EXP_MAX, BIAS_MANT_MAX, DEFAULT_EXP_RANGE,
                                INPUT_LEVELS, INPUT_MESSAGE_BITS, MANT_MAX, MANT_MIN, META_KEY,
                                UV_LIMIT, VTH_MAX, QuantConnection, QuantGraph, QuantLayer,
                                json_default, encode_input, load_quant, save_quant)
from export.graph import CLOCK, INPUT, Connection, DeployGraph, clock_activity
from kd_snn.neurons.functional import loihi_decays

#: the quantizer's own API, and the fixed-point vocabulary it returns (defined in
#: ``export.fixed_point``, re-exported so ``from export.quantize import QuantGraph`` works)
__all__ = ["quantize", "quant_to_deploy", "float_stats", "QuantConnection", "QuantGraph",
           "QuantLayer", "encode_input", "load_quant", "save_quant", "META_KEY", "VTH_MAX",
           "UV_LIMIT", "MANT_MIN", "MANT_MAX", "BIAS_MANT_MAX", "BIAS_EXP_MAX", "INPUT_LEVELS",
           "INPUT_MESSAGE_BITS", "DEFAULT_EXP_RANGE"]

# --------------------------------------------------------------------------------------
# quantization
# --------------------------------------------------------------------------------------
def _pool_as_conv(conn: Connection, channels: int) -> Connection:
    """avgpool / sumpool -> depthwise conv weight (C, 1, kh, kw), stride = kernel."""
    kh, kw = conn.kernel
    val = 1.0 / (kh * kw) if conn.kind == "avgpool" else 1.0
    return Connection(conn.source, "conv", np.full((channels, 1, kh, kw), val),
                      stride=conn.kernel, padding=(0, 0))


def _uniform(layer, key: str) -> float:
    arr = getattr(layer, key)
    if not np.allclose(arr, arr.flat[0], rtol=0, atol=1e-12):
        raise ValueError(f"layer '{layer.name}': {key} must be uniform per layer for Loihi "
                         "(du, dv and vth are per population)")
    return float(arr.flat[0])


def _float_conns(graph: DeployGraph, layer) -> list:
    """(connection as conv/dense, groups) with pools rewritten as depthwise convs."""
    out = []
    for conn in layer.connections:
        if conn.kind in ("avgpool", "sumpool"):
            c = graph.source_shape(conn.source)[0]
            out.append((_pool_as_conv(conn, c), c, conn.kind))
        else:
            out.append((conn, 1, conn.kind))
    return out


def _apply(conn: Connection, groups: int, x: torch.Tensor) -> torch.Tensor:
    w = torch.as_tensor(conn.weight, dtype=x.dtype, device=x.device)
    if conn.kind == "dense":
        return x.reshape(x.shape[0], -1) @ w.T
    return torch.nn.functional.conv2d(x, w,
                                      stride=conn.stride, padding=conn.padding, groups=groups)


def calib_chunk(graph: DeployGraph, budget_bytes: int = 1 << 30) -> int:
    """Calibration samples per chunk: the float pass keeps i, v and the output of every
    layer at once (ResNet-19 w8: 1.4 M neurons, ~35 MB per sample), so 256 samples in one
    piece would need ~10 GB; chunks give the same maxima."""
    neurons = sum(int(np.prod(layer.shape)) for layer in graph.layers)
    return int(min(256, max(4, budget_bytes // max(1, 24 * neurons))))


def float_stats_chunked(graph: DeployGraph, x_seq, chunk: int,
                        keep_spikes: bool = False, on_chunk=None, device=None) -> dict:
    """:func:`float_stats` over chunks of samples: the same maxima (a maximum of maxima),
    the logits concatenated; with ``keep_spikes`` the spikes of each chunk, bit-packed
    (``spike_chunks``: the quantizer compares them with the emulation's afterwards).
    ``on_chunk(n)`` is called with the sample count of each finished chunk (progress);
    ``device``: where each chunk computes (the input stays where it is)."""
    x_seq = torch.as_tensor(x_seq, dtype=torch.float64)
    merged, logits, kept = None, [], []
    for a in range(0, x_seq.shape[1], chunk):
        part = float_stats(graph, x_seq[:, a:a + chunk].to(device or x_seq.device),
                           keep_spikes=keep_spikes)
        if keep_spikes:
            kept.append({name: _PackedSpikes(spk) for name, spk in part["spikes"].items()})
        logits.append(part["logits"].cpu())
        if on_chunk is not None:
            on_chunk(part["logits"].shape[0])
        if merged is None:
            merged = part["stats"]
        else:
            for name, st in part["stats"].items():
                for key, value in st.items():
                    merged[name][key] = max(merged[name][key], value)
    return {"stats": merged, "spikes": {}, "logits": torch.cat(logits),
            "spike_chunks": kept if keep_spikes else None}


class _PackedSpikes:
    """A 0/1 spike tensor kept at one bit per value (numpy ``packbits``)."""

    def __init__(self, spikes: torch.Tensor):
        self.shape = tuple(spikes.shape)
        self.bits = np.packbits(spikes.cpu().numpy() != 0)

    def unpack(self) -> torch.Tensor:
        n = int(np.prod(self.shape))
        return torch.from_numpy(np.unpackbits(self.bits, count=n).reshape(self.shape))


def _keep_calib_spikes(graph: DeployGraph, samples: int,
                       budget_bytes: int = 1 << 29) -> bool:
    """Whether the calibration's float spikes fit ``budget_bytes`` at one bit each (then
    the spike comparison reuses them instead of running the float pass again)."""
    neurons = sum(int(np.prod(l.shape)) for l in graph.layers if l.spiking)
    return neurons * graph.time_steps * samples // 8 <= budget_bytes


def float_stats(graph: DeployGraph, x_seq, keep_spikes: bool = True) -> dict:
    """Per layer maxima over the calibration run of |x| (synaptic input), |i|, |v| (before
    reset) and, for the readout, the running sum |sum_t (x + b)|; plus float spikes.
    Computes on ``x_seq``'s device."""
    x_seq = torch.as_tensor(x_seq, dtype=torch.float64)
    T, B = x_seq.shape[:2]
    f64 = dict(dtype=torch.float64, device=x_seq.device)
    st = {l.name: {"x": 0.0, "i": 0.0, "v": 0.0, "cum": 0.0} for l in graph.layers}
    state = {l.name: (torch.zeros(B, *l.shape, **f64),) * 2 for l in graph.layers}
    cum = torch.zeros(B, *graph.output.shape, **f64)
    conns = {l.name: _float_conns(graph, l) for l in graph.layers}
    spikes = {l.name: [] for l in graph.layers if l.spiking}
    prev = {l.name: torch.zeros(B, *l.shape, **f64) for l in graph.layers
            if any(c.source == l.name for c in l.connections)}  # recurrent layers
    for t in range(T):
        out = {INPUT: x_seq[t], CLOCK: clock_activity(B, device=x_seq.device)}
        for layer in graph.layers:
            x = sum(_apply(c, g, prev[layer.name] if c.source == layer.name else out[c.source])
                    .reshape(B, *layer.shape) for c, g, _ in conns[layer.name])
            bias = torch.as_tensor(layer.bias, **f64)
            s = st[layer.name]
            s["x"] = max(s["x"], float(x.abs().max()))
            if not layer.spiking:
                cum = cum + x + bias
                s["cum"] = max(s["cum"], float(cum.abs().max()))
                out[layer.name] = x
                continue
            i, v = state[layer.name]
            i = torch.as_tensor(layer.alpha, **f64) * i + x
            v = torch.as_tensor(layer.beta, **f64) * v + i + bias
            s["i"] = max(s["i"], float(i.abs().max()))
            s["v"] = max(s["v"], float(v.abs().max()))
            spk = (v > torch.as_tensor(layer.threshold, **f64)).to(torch.float64)
            v = v * (1 - spk)
            state[layer.name] = (i, v)
            out[layer.name] = spk
            if layer.name in prev:
                prev[layer.name] = spk
            if keep_spikes:
                spikes[layer.name].append(spk)
    return {"stats": st, "spikes": {k: torch.stack(v) for k, v in spikes.items() if v},
            "logits": cum / T}


def _worst_case_stats(graph: DeployGraph) -> dict:
    """Bounds without data: binary spikes / input in [0, 1] driving every synapse."""
    st = {}
    for layer in graph.layers:
        xmax = 0.0
        for conn, groups, _ in _float_conns(graph, layer):
            w = np.abs(conn.weight)
            per_out = w.reshape(w.shape[0], -1).sum(1)
            xmax += float(per_out.max())
        b = float(np.abs(layer.bias).max())
        T = graph.time_steps
        alpha = float(np.max(layer.alpha))
        beta = float(np.max(layer.beta))
        imax = xmax * min(T, 1.0 / (1.0 - alpha) if alpha < 1 else T)
        vmax = (imax + b) * min(T, 1.0 / (1.0 - beta) if beta < 1 else T)
        st[layer.name] = {"x": xmax, "i": imax, "v": vmax, "cum": T * (xmax + b)}
    return st


def _quantize_weight(w: np.ndarray, exp_range: tuple) -> tuple:
    """Mantissas/exponent for float integer-unit weights ``w``: smallest exponent in
    range with ``max |w| / 2**e <= 127`` (finest resolution); clips beyond the range."""
    lo, hi = exp_range
    amax = float(np.abs(w).max()) if w.size else 0.0
    if amax == 0.0:
        e = max(lo, 0) if lo <= 0 <= hi else lo
    else:
        e = int(math.ceil(math.log2(amax / MANT_MAX)))
        # guard float edge cases in log2
        while amax / 2.0 ** e > MANT_MAX + 0.5 - 1e-9 and e < hi:
            e += 1
        e = min(max(e, lo), hi)
    q = np.round(w / 2.0 ** e)
    clipped = float(np.mean((q < MANT_MIN) | (q > MANT_MAX))) if w.size else 0.0
    m = np.clip(q, MANT_MIN, MANT_MAX).astype(np.int64)
    norm = float(np.linalg.norm(w))
    err = float(np.linalg.norm(m * 2.0 ** e - w) / norm) if norm > 0 else 0.0
    return m, e, clipped, err


def _quantize_bias(bv: np.ndarray, exp_min: int) -> tuple:
    """Per neuron mantissa/exponent for the bias in v units (``bv = 64 s b``)."""
    a = np.abs(bv)
    exp = np.zeros(bv.shape, dtype=np.int64) + exp_min
    with np.errstate(divide="ignore"):
        need = np.ceil(np.log2(np.maximum(a, 1e-300) / (BIAS_MANT_MAX + 0.5)))
    exp = np.clip(np.maximum(exp, need), exp_min, BIAS_EXP_MAX).astype(np.int64)
    q = np.round(bv / 2.0 ** exp)
    clipped = float(np.mean(np.abs(q) > BIAS_MANT_MAX)) if bv.size else 0.0
    mant = np.clip(q, -BIAS_MANT_MAX, BIAS_MANT_MAX).astype(np.int64)
    return mant, exp, clipped


def _quantize_layer(graph, layer, s: float, exp_range, conv_exp_min, dense_exp_range,
                    bias_exp_min):
    rep = {"scale": s}
    conns, rep_conns = [], []
    for conn, groups, origin in _float_conns(graph, layer):
        graded = conn.source == INPUT
        cscale = s / INPUT_LEVELS if graded else s
        if conn.kind == "conv":
            rng = (max(exp_range[0], conv_exp_min), exp_range[1])
        else:
            rng = dense_exp_range or exp_range
        m, e, clipped, err = _quantize_weight(conn.weight * cscale, rng)
        conns.append(QuantConnection(conn.source, conn.kind, m, e, conn.stride, conn.padding,
                                     groups, INPUT_MESSAGE_BITS if graded else 0, cscale,
                                     origin))
        rep_conns.append({"source": conn.source, "weight_exp": e, "clipped_frac": clipped,
                          "rel_error": err})
    rep["connections"] = rep_conns
    if layer.spiking:
        alpha, beta = _uniform(layer, "alpha"), _uniform(layer, "beta")
        du, dv = loihi_decays(alpha, beta)
        thr = _uniform(layer, "threshold")
        vth = int(min(max(round(thr * s), 0), VTH_MAX))
        rep["vth_rel_error"] = abs(vth - thr * s) / (thr * s) if thr > 0 else 0.0
    else:
        du, dv, vth = 4095, 0, VTH_MAX
    mant, bexp, bclip = _quantize_bias(layer.bias * 64.0 * s, bias_exp_min)
    rep["bias_clipped_frac"] = bclip
    rep.update(du=du, dv=dv, vth=vth)
    return QuantLayer(layer.name, layer.shape, tuple(conns), vth, du, dv, mant, bexp,
                      layer.spiking, s), rep


def _scale_bounds(graph, layer, st: dict, headroom: float, exp_hi: int,
                  dense_exp_hi: int) -> dict:
    """Upper bounds on s from each field (the minimum wins)."""
    lim = headroom * UV_LIMIT / 64.0  # in synaptic units
    b = {}
    if layer.spiking:
        thr = _uniform(layer, "threshold")
        if thr > 0:
            b["vth"] = VTH_MAX / thr
        peak = max(st["x"], st["i"], st["v"])
    else:
        peak = max(st["x"], st["cum"])
    if peak > 0:
        b["overflow"] = lim / peak
    for conn, _, _ in _float_conns(graph, layer):
        w = float(np.abs(conn.weight).max()) if conn.weight.size else 0.0
        if conn.source == INPUT:
            w /= INPUT_LEVELS
        hi = exp_hi if conn.kind == "conv" else dense_exp_hi
        if w > 0:
            b["weights"] = min(b.get("weights", math.inf), MANT_MAX * 2.0 ** hi / w)
    bmax = float(np.abs(layer.bias).max())
    if bmax > 0:
        b["bias"] = BIAS_MANT_MAX * 2.0 ** BIAS_EXP_MAX / (64.0 * bmax)
    return b


def quantize(graph: DeployGraph, calib_x: Optional[torch.Tensor] = None, *,
             headroom: float = 0.5, weight_exp_range: tuple = DEFAULT_EXP_RANGE,
             conv_exp_min: int = 0, dense_exp_range: Optional[tuple] = None,
             bias_exp_min: int = 0, max_halvings: int = 8,
             relays: Optional[set] = None, log=None, device=None) -> QuantGraph:
    """Quantize ``graph`` for Loihi (see module docstring).

    ``calib_x``: optional float input ``(T, B, *input_shape)`` in [0, 1] for statistics
    and the overflow check.  ``headroom``: fraction of the 24-bit range the calibration
    maxima may use.  ``dense_exp_range``/``bias_exp_min`` let a backend restrict the
    encoding (netx: dense exponents 0..1, bias a multiple of 64 i.e. ``bias_exp_min=6``).
    Relay layers (``graph.metadata["relays"]`` or ``relays``) get the exact Loihi relay:
    weight 1, du = dv = 4095, vth = 0.  ``device``: where the calibration's float pass and
    the emulation compute (the quantized graph does not depend on it but through the last
    bits of float64 maxima; the emulation is bit-identical everywhere, ``export.devices``).
    """
    from kd_snn.progress import progress as make_progress

    relays = set(relays or ()) | set(graph.metadata.get("relays", ()))
    show = log is not None
    log = log or (lambda text: None)
    chunk = calib_chunk(graph)
    calib = None
    if calib_x is not None:
        log(f"quantize: calibration statistics on {calib_x.shape[1]} samples")
        bar = make_progress(total=calib_x.shape[1], unit="sample", every=10,
                            desc="quantize: calibration", enabled=show)
        try:  # a line per chunk: ResNet-19 w8's float64 calibration takes minutes
            calib = float_stats_chunked(graph, calib_x, chunk,
                                        keep_spikes=_keep_calib_spikes(graph,
                                                                       calib_x.shape[1]),
                                        on_chunk=bar.update, device=device)
        finally:
            bar.close()
    stats = calib["stats"] if calib else _worst_case_stats(graph)
    scales, bounds = {}, {}
    for layer in graph.layers:
        if layer.name in relays:
            continue
        bd = _scale_bounds(graph, layer, stats[layer.name], headroom, weight_exp_range[1],
                           (dense_exp_range or weight_exp_range)[1])
        bounds[layer.name] = bd
        scales[layer.name] = min(bd.values()) if bd else 1.0
    halvings = {name: 0 for name in scales}

    def build():
        layers, report = [], {}
        for layer in graph.layers:
            if layer.name in relays:
                ql = _relay_layer(graph, layer)
                layers.append(ql)
                report[layer.name] = {"relay": True, "scale": 1.0}
                continue
            ql, rep = _quantize_layer(graph, layer, scales[layer.name], weight_exp_range,
                                      conv_exp_min, dense_exp_range, bias_exp_min)
            bd = bounds[layer.name]
            rep["bound"] = min(bd, key=bd.get) if bd else "none"
            rep["halvings"] = halvings[layer.name]
            layers.append(ql)
            report[layer.name] = rep
        return layers, report

    layers, report = build()
    qg = QuantGraph(graph.input_shape, tuple(layers), graph.time_steps, INPUT_LEVELS,
                    {"report": report})
    if calib is not None:
        x_int = encode_input(calib_x)
        for attempt in range(max_halvings + 1):
            # stats and the spike agreement in one emulation pass: the last pass (no
            # overflow left) is the final graph's, so nothing is emulated twice
            emu_stats, same, total, v_out = _emulated_pass(qg, x_int, chunk, graph,
                                                           calib_x, calib["spike_chunks"],
                                                           device)
            bad = [n for n, s in emu_stats.items()
                   if n in scales and s["overflow"] and halvings[n] < max_halvings]
            log(f"quantize: scale search pass {attempt + 1}/{max_halvings + 1}: "
                + (f"halving {len(bad)} overflowing layer(s)" if bad else "no overflow"))
            if not bad:
                break
            for n in bad:
                scales[n] /= 2.0
                halvings[n] += 1
            layers, report = build()
            qg = QuantGraph(graph.input_shape, tuple(layers), graph.time_steps,
                            INPUT_LEVELS, {"report": report})
        else:  # the halvings ran out: the figures below are those of the graph returned
            emu_stats, same, total, v_out = _emulated_pass(qg, x_int, chunk, graph,
                                                           calib_x, calib["spike_chunks"],
                                                           device)
        for name in same:  # spiking layers (relays included), as in one piece
            report[name]["spike_agreement"] = same[name] / max(1, total[name])
            report[name]["overflow"] = bool(emu_stats[name]["overflow"])
        logits_q = torch.as_tensor(qg.logits(torch.cat(v_out).numpy()))
        ref = calib["logits"]
        report["_readout"] = {
            "argmax_agreement": float((logits_q.argmax(-1) == ref.argmax(-1)).double().mean()),
            "rel_error": float((logits_q - ref).norm() / max(float(ref.norm()), 1e-12))}
    meta = dict(graph.metadata) if graph.metadata else {}
    meta = {k: v for k, v in meta.items() if _jsonable(v)}
    meta["report"] = report
    meta["calibrated"] = calib is not None
    return qg.replace(metadata=meta)


def _emulated_pass(qg: QuantGraph, x_int: torch.Tensor, chunk: int, graph: DeployGraph,
                   calib_x, float_chunks, device=None) -> tuple:
    """One emulation over the calibration samples, in chunks: ``(stats, same, total,
    readout_v)``: per-layer maxima and overflow, the count of spikes equal to the float
    pass's (kept bit-packed in ``float_chunks``, else the float pass runs again per chunk)
    and of spikes compared, and the readout's v."""
    merged, same, total, v_out = {}, {}, {}, []
    for k, a in enumerate(range(0, x_int.shape[1], chunk)):
        part: dict = {}
        v, spikes = emulate(qg, x_int[:, a:a + chunk], record=True, stats=part,
                            device=device)
        v_out.append(v)
        for name, st in part.items():
            m = merged.setdefault(name, {"max_u": 0, "max_v": 0, "overflow": False})
            m["max_u"] = max(m["max_u"], st["max_u"])
            m["max_v"] = max(m["max_v"], st["max_v"])
            m["overflow"] = m["overflow"] or st["overflow"]
        if float_chunks is not None:
            ref = {name: packed.unpack() for name, packed in float_chunks[k].items()}
        else:
            ref = {name: spk.cpu() for name, spk in float_stats(
                graph, calib_x[:, a:a + chunk].to(device or calib_x.device))["spikes"].items()}
        for name, spk in ref.items():
            if name in spikes:
                same[name] = same.get(name, 0) + int((spikes[name] == spk.to(
                    spikes[name].dtype)).sum())
                total[name] = total.get(name, 0) + spk.numel()
    return merged, same, total, v_out


def _jsonable(v) -> bool:
    try:
        json.dumps(v, default=json_default)
        return True
    except TypeError:
        return False


def _relay_layer(graph: DeployGraph, layer) -> QuantLayer:
    """Exact Loihi relay: identity weight 1 (e = 0), du = dv = 4095, vth = 0.

    A spike gives a_in = 1, u = 64, v = 64 > 0 -> spike, v <- 0; no spike leaves u = v = 0.
    """
    if len(layer.connections) != 1:
        raise ValueError(f"relay '{layer.name}' must have one connection")
    conn = layer.connections[0]
    if conn.source == INPUT:
        raise ValueError(f"relay '{layer.name}' cannot relay graded input spikes")
    convs = _float_conns(graph, layer)
    fc, groups, origin = convs[0]
    w = np.round(fc.weight).astype(np.int64)
    if not np.array_equal(w, fc.weight):
        raise ValueError(f"relay '{layer.name}' needs an identity (0/1) weight")
    qc = QuantConnection(conn.source, fc.kind, w, 0, fc.stride, fc.padding, groups, 0, 1.0,
                         origin)
    zeros = np.zeros(layer.shape, dtype=np.int64)
    return QuantLayer(layer.name, layer.shape, (qc,), 0, 4095, 4095, zeros, zeros, True, 1.0)


# --------------------------------------------------------------------------------------
# back to float: the quantized network in floating point (for NIR)
# --------------------------------------------------------------------------------------
def quant_to_deploy(q: QuantGraph) -> DeployGraph:
    """The quantized network as a float ``DeployGraph`` in Loihi activation units.

    Weights are the deployed integers (``m * 2**e``; graded input connections take
    the input in [0, 1] and include the factor 255), thresholds ``vth``, biases
    ``bias_mant << bias_exp`` / 64, decays ``(4096 - du - 1) / 4096`` and
    ``(4096 - dv) / 4096``.  It follows the integer emulation except for Loihi's
    truncation toward zero and the 24-bit limits, so it lets any NIR backend run
    what the chip runs, to that precision.
    """
    from export.graph import NeuronLayer

    layers = []
    for ql in q.layers:
        conns = []
        for c in ql.connections:
            w = c.weight.astype(np.float64) * 2.0 ** c.weight_exp
            if c.message_bits > 0:
                w = w * q.input_levels
            if c.kind == "conv" and c.groups > 1:  # depthwise/grouped -> full weight
                co, cig, kh, kw = w.shape
                full = np.zeros((co, cig * c.groups, kh, kw))
                per = co // c.groups
                for g in range(c.groups):
                    full[g * per:(g + 1) * per, g * cig:(g + 1) * cig] = w[g * per:(g + 1) * per]
                w = full
            conns.append(Connection(c.source, c.kind, w, stride=c.stride, padding=c.padding))
        alpha = (4096 - ql.du - 1) / 4096 if ql.spiking else 0.0
        beta = (4096 - ql.dv) / 4096 if ql.spiking else 1.0
        layers.append(NeuronLayer(ql.name, ql.shape, tuple(conns),
                                  bias=ql.bias_effective() / 64.0, alpha=alpha, beta=beta,
                                  threshold=float(ql.vth) if ql.spiking else 1.0,
                                  spiking=ql.spiking))
    meta = {k: v for k, v in q.metadata.items() if k != "report"}
    meta["quantized"] = True
    return DeployGraph(q.input_shape, tuple(layers), q.time_steps, "direct", meta)
