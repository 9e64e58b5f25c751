"""Lava's fixed_pt LIF over all T steps of a layer in one pass: a small C++ kernel.

Integer arithmetic only (int64), the same operations as ``export.emulate.lif_step`` (which
restates ``lava/proc/lif/models.py``), every wrap always applied: exact by construction, on
any CPU and thread count.  One pass over memory per layer instead of ~30 tensor passes per
step; parallel over neurons (OpenMP).  Built on first use with the host compiler
(``kd_snn.native``); ``available()`` is False without one, and ``export.emulate`` then runs
its torch path.  ``tests/test_emulate_vs_lava.py`` checks kernel == torch path == Lava.
"""
from __future__ import annotations

import threading
from typing import Optional

import torch

_SOURCE = r"""
#include <cstdint>
#include <cstdlib>

static inline int64_t wrap32(int64_t x) { return (int64_t)(int32_t)(uint32_t)(uint64_t)x; }
static inline int64_t trunc0(int64_t p) { return p < 0 ? -((-p) >> 12) : (p >> 12); }

template <typename A>
static void lif(const A* a, const int64_t* bias, uint8_t* spikes, int64_t* v_out,
                int64_t T, int64_t N, int64_t P, int64_t du, int64_t dv, int64_t vth,
                int readout, int64_t* stats, int threads) {
  const int64_t M = (int64_t)1 << 23, I24 = (int64_t)1 << 24;
  const int64_t fu = 4096 - (du + 1), fv = 4096 - dv, th = vth << 6;
  int64_t peak_u = 0, peak_v = 0, overflow = 0;
#pragma omp parallel for num_threads(threads) schedule(static) \
    reduction(max: peak_u, peak_v) reduction(|: overflow)
  for (int64_t n = 0; n < N; ++n) {
    int64_t u = 0, v = 0;
    const int64_t b = bias[n % P];
    for (int64_t t = 0; t < T; ++t) {
      int64_t a_in = wrap32((int64_t)a[t * N + n]);
      int64_t dc = wrap32(trunc0(u * fu) + wrap32(a_in * 64));
      u = dc > M ? dc - I24 : (dc <= -M ? dc + I24 : dc);
      int64_t raw_v = wrap32(trunc0(v * fv) + u + b);
      v = raw_v > M - 1 ? M - 1 : (raw_v < -(M - 1) ? -(M - 1) : raw_v);
      uint8_t s = v > th;
      spikes[t * N + n] = s;
      if (s) v = 0;
      int64_t mu = std::llabs(dc), mv = std::llabs(raw_v);
      if (mu > peak_u) peak_u = mu;
      if (mv > peak_v) peak_v = mv;
      if (mu >= M || mv >= M - 1 || (readout && s)) overflow = 1;
    }
    v_out[n] = v;
  }
  stats[0] = peak_u; stats[1] = peak_v; stats[2] = overflow;
}

extern "C" void kd_lif_layer(int kind, const void* a, const int64_t* bias, uint8_t* spikes,
                             int64_t* v_out, int64_t T, int64_t N, int64_t P, int64_t du,
                             int64_t dv, int64_t vth, int readout, int64_t* stats,
                             int threads) {
  if (kind == 0)
    lif((const int64_t*)a, bias, spikes, v_out, T, N, P, du, dv, vth, readout, stats, threads);
  else if (kind == 1)
    lif((const double*)a, bias, spikes, v_out, T, N, P, du, dv, vth, readout, stats, threads);
  else
    lif((const float*)a, bias, spikes, v_out, T, N, P, du, dv, vth, readout, stats, threads);
}
"""

_KINDS = {torch.int64: 0, torch.float64: 1, torch.float32: 2}
_LIB = None
_ERROR: Optional[str] = None
_LOCK = threading.Lock()


def _load():
    global _LIB, _ERROR
    if _LIB is not None or _ERROR is not None:
        return _LIB
    with _LOCK:
        if _LIB is None and _ERROR is None:
            import ctypes
            import os

            if os.environ.get("KDSNN_NO_EXT", "") not in ("", "0"):
                _ERROR = "disabled by KDSNN_NO_EXT"
                return None
            try:
                from kd_snn.native import build_library
                lib = ctypes.CDLL(build_library("lif_layer", _SOURCE))
                c_p, c_i64, c_int = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
                lib.kd_lif_layer.argtypes = ([c_int] + [c_p] * 4 + [c_i64] * 6
                                             + [c_int, c_p, c_int])
                lib.kd_lif_layer.restype = None
                _LIB = lib
            except Exception as exc:  # noqa: BLE001 (no compiler: the torch path runs)
                _ERROR = f"{type(exc).__name__}: {exc}"
    return _LIB


def available() -> bool:
    return _load() is not None


def lif_layer_native(a: torch.Tensor, du: int, dv: int, bias_eff: torch.Tensor, vth: int,
                     stats: Optional[dict] = None) -> tuple:
    """``export.emulate.lif_layer`` in the kernel: ``a`` (T, B, ...) int64 (or exact
    integers in float64/float32) on the CPU -> ``(spikes bool, v after the last step)``."""
    lib = _load()
    T = a.shape[0]
    shape = a.shape[1:]
    a = a.contiguous()
    N = a[0].numel() if T else 0
    bias = bias_eff.to(torch.int64)
    # per neuron of a sample (the layer's bias, reused for every sample) or per (sample, neuron)
    bias = torch.broadcast_to(bias, shape if bias.dim() >= len(shape) else shape[1:])
    bias = bias.contiguous().reshape(-1)
    P = max(1, bias.numel())
    spikes = torch.empty(a.shape, dtype=torch.uint8)
    v = torch.zeros(shape, dtype=torch.int64)
    out = torch.zeros(3, dtype=torch.int64)
    if T and N:
        lib.kd_lif_layer(_KINDS[a.dtype], a.data_ptr(), bias.data_ptr(), spikes.data_ptr(),
                         v.data_ptr(), T, N, P, int(du), int(dv), int(vth),
                         int(bool(stats and stats.get("readout"))), out.data_ptr(),
                         torch.get_num_threads())
    if stats is not None:
        stats.update(max_u=int(out[0]), max_v=int(out[1]), overflow=bool(out[2]))
    return spikes.view(torch.bool), v
