"""Lava's fixed_pt LIF over all T steps of a layer in one pass: a small C++ kernel.

Integer arithmetic only, the same operations as ``export.emulate.lif_step`` (which restates
``lava/proc/lif/models.py``), every wrap always applied: exact by construction, on any CPU
and thread count.  Every value Lava's LIF keeps fits 32 bits, so the kernel runs in uint32
lanes (arithmetic modulo 2**32 is Lava's wrap32), blocks of neurons at a time, which the
compiler vectorizes (8 lanes with AVX2): 2.75x faster than the int64 scalar loop it
replaced on a ResNet-20 layer (``benchmarks/emulation.py``).
One pass over memory per layer instead of ~30 tensor passes per step; parallel over
neuron blocks (OpenMP).  Built on first use with the host compiler
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

// Every value Lava's LIF keeps is an int32 (u and v are 24-bit, the sums wrap at 32 bits),
// so the kernel computes in 32-bit lanes, where AVX2 holds 8 per register.  uint32
// arithmetic is arithmetic modulo 2**32, i.e. Lava's wrap32 of the same int64 sums.
static inline int32_t wrap32(int64_t x) { return (int32_t)(uint32_t)(uint64_t)x; }
static inline int32_t to_i32(int64_t x) { return wrap32(x); }
static inline int32_t to_i32(double x) {
  return (x > -2147483649.0 && x < 2147483648.0) ? (int32_t)x : wrap32((int64_t)x);
}
static inline int32_t to_i32(float x) {
  return (x > -2147483649.0f && x < 2147483648.0f) ? (int32_t)x : wrap32((int64_t)x);
}
// trunc0(x * f / 4096) modulo 2**32, for |x| <= 2**31, 0 <= f <= 4096: |x| = hi 2**12 + lo,
// so (|x| f) >> 12 = hi f + ((lo f) >> 12) with every term below 2**32 (exact in uint32)
static inline uint32_t decay(int32_t x, uint32_t f) {
  uint32_t m = x < 0 ? 0u - (uint32_t)x : (uint32_t)x;
  uint32_t r = (m >> 12) * f + (((m & 4095u) * f) >> 12);
  return x < 0 ? 0u - r : r;
}

enum { BLK = 256 };

// Block conversion to int32 lanes: a branch-free clamped conversion the compiler vectorizes;
// a block holding a value outside int32 (or NaN) is converted again one by one, exactly.
static inline void convert(const int64_t* at, int32_t* x, int L) {
  for (int i = 0; i < L; ++i) x[i] = wrap32(at[i]);
}
template <typename F>
static inline void convert(const F* at, int32_t* x, int L) {
  const F lo = (F)-2147483648.0, hi = sizeof(F) == 4 ? (F)2147483520.0 : (F)2147483647.0;
  int bad = 0;
  for (int i = 0; i < L; ++i) {
    F xi = at[i];
    F xc = xi >= lo ? (xi <= hi ? xi : hi) : lo;
    bad |= !(xc == xi);
    x[i] = (int32_t)xc;
  }
  if (bad)
    for (int i = 0; i < L; ++i) x[i] = to_i32(at[i]);
}

template <typename A>
static void lif(const A* a, const int64_t* bias, uint8_t* spikes, int64_t* v_out,
                int64_t T, int64_t N, int64_t P, int64_t du, int64_t dv, int64_t vth,
                int readout, int64_t* stats, int threads) {
  const int32_t M = 1 << 23, I24 = 1 << 24;
  const uint32_t fu = (uint32_t)(4096 - (du + 1)), fv = (uint32_t)(4096 - dv);
  // v stays within +-(2**23 - 1): a threshold beyond that range compares the same clamped
  const int64_t th64 = vth << 6;
  const int32_t th = (int32_t)(th64 > M ? M : (th64 < -M ? -M : th64));
  uint32_t peak_u = 0, peak_v = 0;
  int overflow = 0;
#pragma omp parallel for num_threads(threads) schedule(static) \
    reduction(max: peak_u, peak_v) reduction(|: overflow)
  for (int64_t n0 = 0; n0 < N; n0 += BLK) {
    const int L = (int)(N - n0 < BLK ? N - n0 : BLK);
    int32_t u[BLK], v[BLK], b[BLK], x[BLK];
    for (int i = 0; i < L; ++i) {
      u[i] = 0; v[i] = 0; b[i] = wrap32(bias[(n0 + i) % P]);
    }
    uint32_t pu = 0, pv = 0;
    int ovf = 0;
    for (int64_t t = 0; t < T; ++t) {
      const A* at = a + t * N + n0;
      uint8_t* st = spikes + t * N + n0;
      convert(at, x, L);
      for (int i = 0; i < L; ++i) {
        int32_t dc = (int32_t)(decay(u[i], fu) + ((uint32_t)x[i] << 6));
        int32_t ui = dc > M ? dc - I24 : (dc <= -M ? dc + I24 : dc);
        int32_t raw_v = (int32_t)(decay(v[i], fv) + (uint32_t)ui + (uint32_t)b[i]);
        int32_t vi = raw_v > M - 1 ? M - 1 : (raw_v < -(M - 1) ? -(M - 1) : raw_v);
        int32_t s = vi > th;
        st[i] = (uint8_t)s;
        u[i] = ui;
        v[i] = s ? 0 : vi;
        uint32_t mu = dc < 0 ? 0u - (uint32_t)dc : (uint32_t)dc;
        uint32_t mv = raw_v < 0 ? 0u - (uint32_t)raw_v : (uint32_t)raw_v;
        pu = mu > pu ? mu : pu;
        pv = mv > pv ? mv : pv;
        ovf |= (mu >= (uint32_t)M) | (mv >= (uint32_t)(M - 1)) | (readout & s);
      }
    }
    for (int i = 0; i < L; ++i) v_out[n0 + i] = v[i];
    peak_u = pu > peak_u ? pu : peak_u;
    peak_v = pv > peak_v ? pv : peak_v;
    overflow |= ovf;
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
    integers in float64/float32) on the CPU -> ``(spikes bool, v after the last step)``.
    ``du``, ``dv``: Lava's 12-bit decays, 0..4095."""
    if not (0 <= du <= 4095 and 0 <= dv <= 4095):
        raise ValueError(f"du and dv must be within 0..4095, got {du}, {dv}")
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
