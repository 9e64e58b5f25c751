"""Fused multi-step CUBA/LIF neuron: one forward loop, one reverse loop for BPTT.

Same semantics as :func:`kd_snn.neurons.functional.cuba_multistep` (zero initial
state), bit for bit in the forward pass::

    i = alpha * i + x ;  v = (beta * v + i) + bias ;  s = (v - thr) > 0 ;  v = v * (1 - s)

with the reset detached and the surrogate gradient of ``kd_snn.neurons.surrogate``.

Memory: the autograd node saves only the input ``x`` (which usually exists anyway:
it is the output of the preceding conv/BN) and recomputes the membrane trajectory
in the backward pass, block by block in cache, so no per-step state tensor is
written or kept.

Backends
--------
``cpp``    (CPU, float32/float64): a small C++ kernel built once with the host compiler
           (g++; ~2 s the first time, then cached in ``KDSNN_EXT_DIR`` or
           ``~/.cache/kdsnn``).  Compiled with ``-ffp-contract=off`` so that
           no multiply-add is fused and every rounding matches the eager reference.
           Forward and backward each make a single pass over memory, parallel over
           neurons (OpenMP), vectorised over neighbouring neurons.
``triton`` (CUDA; float32, float16, bfloat16 inputs, float32 state): the same kernel in
           Triton (``kd_snn.neurons.triton_kernel``, optional ``triton`` package), also
           for the non-detached reset.  Its spikes equal the reference's on ``x.float()``.
           CPU tensors only in Triton's interpreter (``TRITON_INTERPRET=1``, tests).
``torch``  (any device; any float dtype): the same Function written with
           torch ops; the recurrence is a Python loop over T, everything that is not
           the recurrence (surrogate, spike masks, bias reduction) is vectorised over T.
``auto``   ``cpp`` when the input is on the CPU in float32/float64 and the extension
           is available; ``triton`` for a float32/16-bit CUDA tensor when triton imports
           (else ``torch``, with one warning per process); else ``torch``.
           Set ``KDSNN_NO_EXT=1`` to never build the C++ kernel.

Gradients are returned for ``x`` and for a tensor ``bias``; if ``alpha``, ``beta``
or ``threshold`` require grad, or the reset is not detached (``detach_reset=False``,
the reference code's neuron) on a backend other than ``triton``, the step-by-step
reference implementation is used instead.
"""
from __future__ import annotations

import math
import os
import threading
import warnings
from typing import Optional

import torch

from .functional import cuba_multistep
from .surrogate import ATAN, SIGMOID, SURROGATES, TRIANGLE, get_surrogate, surrogate_grad

Tensor = torch.Tensor

__all__ = ["cuba_multistep_fused", "extension_available", "load_extension", "load_triton"]

# --------------------------------------------------------------------------- C++ kernel
# Plain C++ (no torch headers: builds in ~2 s with g++), called through ctypes, which
# releases the GIL.  OpenMP over blocks of neurons; the inner loops over neighbouring
# neurons are branch-free so that the compiler vectorises them.
_CPP_SOURCE = r"""
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr int64_t BLK = 512;  // neurons per work item: T*BLK membrane values stay in L1/L2

// exp(x) for the sigmoid surrogate, written so that the compiler vectorises it
// (libm expf is not vectorised without -ffast-math); relative error ~1e-7.
inline float vexp(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  float n = std::floor(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  p = p * r * r + r + 1.0f;
  int32_t e = ((int32_t)n + 127) << 23;
  float scale;
  std::memcpy(&scale, &e, 4);
  return p * scale;
}
inline double vexp(double x) { return std::exp(x); }

template <typename S, int KIND>
inline S surr(S u, S c1, S c2) {
  if constexpr (KIND == 0) {         // atan: c1 / (1 + (c2 u)^2), c1 = a/2, c2 = pi/2 a
    S z = c2 * u;
    return c1 / (S(1) + z * z);
  } else if constexpr (KIND == 1) {  // sigmoid: k sg (1 - sg), c1 = k
    S sg = S(1) / (S(1) + vexp(-c1 * u));
    return c1 * sg * (S(1) - sg);
  } else {                           // triangle: max(0, 1 - |u|/w) / w, c1 = w
    return std::max(S(1) - std::abs(u) / c1, S(0)) / c1;
  }
}

// Pre-reset membrane of one step; the forward and the backward's recompute share it, so
// both round identically (the backward relies on reproducing the forward bit for bit).
template <typename S, bool PLAIN, bool BIAS>
inline S membrane(S v, S& cur, S x, S a, S b, S c) {
  S vv;
  if constexpr (PLAIN) {
    vv = b * v + x;
  } else {
    cur = a * cur + x;
    vv = b * v + cur;
  }
  if constexpr (BIAS) vv = vv + c;
  return vv;
}

// Parameters are single values (VEC = false) or arrays of length P (VEC = true): neuron j
// of a time step (N per step) uses index j % P.  Work item w = (o, block of q), j = o*P + q.
template <typename S, bool PLAIN, bool VEC, bool BIAS>
void fwd_impl(const S* __restrict x, S* __restrict s, const S* __restrict al,
              const S* __restrict be, const S* __restrict th, const S* __restrict bi,
              int64_t T, int64_t N, int64_t P, int nthreads) {
  if (!VEC) P = N;
  const int64_t nb = (P + BLK - 1) / BLK, nwork = (N / P) * nb;
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t w = 0; w < nwork; ++w) {
    alignas(64) S v[BLK];
    alignas(64) S cur[BLK];
    const int64_t o = w / nb, q0 = (w % nb) * BLK, len = std::min(BLK, P - q0);
    const int64_t base = o * P + q0;
    const S* a_ = VEC ? al + q0 : al;
    const S* b_ = VEC ? be + q0 : be;
    const S* t_ = VEC ? th + q0 : th;
    const S* c_ = VEC ? bi + q0 : bi;
    for (int64_t k = 0; k < len; ++k) { v[k] = 0; cur[k] = 0; }
    for (int64_t t = 0; t < T; ++t) {
      const S* __restrict xt = x + t * N + base;
      S* __restrict st = s + t * N + base;
      for (int64_t k = 0; k < len; ++k) {
        const int64_t p = VEC ? k : 0;
        const S vv = membrane<S, PLAIN, BIAS>(v[k], cur[k], xt[k], a_[p], b_[p], c_[p]);
        const S sp = (S)((vv - t_[p]) > S(0));
        st[k] = sp;
        v[k] = vv * (S(1) - sp);
      }
    }
  }
}

// Backward: recompute the pre-reset membrane of a block (bit-identical to the forward),
// then one reverse loop.  g = dL/dv_pre[t] = gs*surr(u) + (1-s) * beta * g[t+1];
// dL/dx[t] = dL/di[t] = g + alpha * dL/di[t+1];  gvsum = sum_t g (for the bias).
template <typename S, bool PLAIN, bool VEC, bool BIAS, int KIND>
void bwd_impl(const S* __restrict x, const S* __restrict gs, S* __restrict gx,
              S* __restrict gvsum, const S* __restrict al, const S* __restrict be,
              const S* __restrict th, const S* __restrict bi, S c1, S c2,
              int64_t T, int64_t N, int64_t P, int nthreads) {
  if (!VEC) P = N;
  const int64_t nb = (P + BLK - 1) / BLK, nwork = (N / P) * nb;
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<S> ubuf(T * BLK);
    S* __restrict ub = ubuf.data();
    alignas(64) S v[BLK];
    alignas(64) S cur[BLK];
    alignas(64) S acc[BLK];
#pragma omp for schedule(static)
    for (int64_t w = 0; w < nwork; ++w) {
      const int64_t o = w / nb, q0 = (w % nb) * BLK, len = std::min(BLK, P - q0);
      const int64_t base = o * P + q0;
      const S* a_ = VEC ? al + q0 : al;
      const S* b_ = VEC ? be + q0 : be;
      const S* t_ = VEC ? th + q0 : th;
      const S* c_ = VEC ? bi + q0 : bi;
      for (int64_t k = 0; k < len; ++k) { v[k] = 0; cur[k] = 0; }
      for (int64_t t = 0; t < T; ++t) {
        const S* __restrict xt = x + t * N + base;
        S* __restrict ut = ub + t * BLK;
        for (int64_t k = 0; k < len; ++k) {
          const int64_t p = VEC ? k : 0;
          const S vv = membrane<S, PLAIN, BIAS>(v[k], cur[k], xt[k], a_[p], b_[p], c_[p]);
          const S u = vv - t_[p];
          ut[k] = u;
          v[k] = vv * (S(1) - (S)(u > S(0)));
        }
      }
      for (int64_t k = 0; k < len; ++k) { v[k] = 0; cur[k] = 0; acc[k] = 0; }
      for (int64_t t = T - 1; t >= 0; --t) {
        const S* __restrict gst = gs + t * N + base;
        S* __restrict gxt = gx + t * N + base;
        const S* __restrict ut = ub + t * BLK;
        for (int64_t k = 0; k < len; ++k) {
          const int64_t p = VEC ? k : 0;
          const S u = ut[k];
          const S keep = (S)(u <= S(0));
          const S g = gst[k] * surr<S, KIND>(u, c1, c2) + keep * (b_[p] * v[k]);
          v[k] = g;
          if constexpr (PLAIN) {
            gxt[k] = g;
          } else {
            const S gi = g + a_[p] * cur[k];
            cur[k] = gi;
            gxt[k] = gi;
            acc[k] += g;
          }
        }
      }
      if (!PLAIN && gvsum != nullptr)
        for (int64_t k = 0; k < len; ++k) gvsum[base + k] = acc[k];
    }
  }
}

template <typename S>
void fwd(const S* x, S* s, const S* al, const S* be, const S* th, const S* bi, int64_t T,
         int64_t N, int64_t P, int plain, int vec, int has_bias, int nt) {
#define KD_F(PL, VE, BI) if (plain == PL && vec == VE && has_bias == BI) \
    return fwd_impl<S, PL, VE, BI>(x, s, al, be, th, bi, T, N, P, nt);
  KD_F(1, 1, 1) KD_F(1, 1, 0) KD_F(1, 0, 1) KD_F(1, 0, 0)
  KD_F(0, 1, 1) KD_F(0, 1, 0) KD_F(0, 0, 1) KD_F(0, 0, 0)
#undef KD_F
}

template <typename S, int KIND>
void bwd_k(const S* x, const S* gs, S* gx, S* gv, const S* al, const S* be, const S* th,
           const S* bi, S c1, S c2, int64_t T, int64_t N, int64_t P, int plain, int vec,
           int has_bias, int nt) {
#define KD_B(PL, VE, BI) if (plain == PL && vec == VE && has_bias == BI) \
    return bwd_impl<S, PL, VE, BI, KIND>(x, gs, gx, gv, al, be, th, bi, c1, c2, T, N, P, nt);
  KD_B(1, 1, 1) KD_B(1, 1, 0) KD_B(1, 0, 1) KD_B(1, 0, 0)
  KD_B(0, 1, 1) KD_B(0, 1, 0) KD_B(0, 0, 1) KD_B(0, 0, 0)
#undef KD_B
}

template <typename S>
void bwd(const S* x, const S* gs, S* gx, S* gv, const S* al, const S* be, const S* th,
         const S* bi, double c1, double c2, int64_t T, int64_t N, int64_t P, int plain,
         int vec, int has_bias, int kind, int nt) {
  if (kind == 0) bwd_k<S, 0>(x, gs, gx, gv, al, be, th, bi, (S)c1, (S)c2, T, N, P, plain, vec, has_bias, nt);
  else if (kind == 1) bwd_k<S, 1>(x, gs, gx, gv, al, be, th, bi, (S)c1, (S)c2, T, N, P, plain, vec, has_bias, nt);
  else bwd_k<S, 2>(x, gs, gx, gv, al, be, th, bi, (S)c1, (S)c2, T, N, P, plain, vec, has_bias, nt);
}

}  // namespace

extern "C" {
// dtype: 0 = float32, 1 = float64.  All arrays contiguous; x, s, gs, gx: (T, N);
// al/be/th/bi: length P (vec) or 1; gv: length N or NULL.
void kd_cuba_fwd(int dtype, const void* x, void* s, const void* al, const void* be,
                 const void* th, const void* bi, int64_t T, int64_t N, int64_t P, int plain,
                 int vec, int has_bias, int nt) {
  if (dtype == 0)
    fwd<float>((const float*)x, (float*)s, (const float*)al, (const float*)be,
               (const float*)th, (const float*)bi, T, N, P, plain, vec, has_bias, nt);
  else
    fwd<double>((const double*)x, (double*)s, (const double*)al, (const double*)be,
                (const double*)th, (const double*)bi, T, N, P, plain, vec, has_bias, nt);
}

void kd_cuba_bwd(int dtype, const void* x, const void* gs, void* gx, void* gv,
                 const void* al, const void* be, const void* th, const void* bi, double c1,
                 double c2, int64_t T, int64_t N, int64_t P, int plain, int vec,
                 int has_bias, int kind, int nt) {
  if (dtype == 0)
    bwd<float>((const float*)x, (const float*)gs, (float*)gx, (float*)gv, (const float*)al,
               (const float*)be, (const float*)th, (const float*)bi, c1, c2, T, N, P, plain,
               vec, has_bias, kind, nt);
  else
    bwd<double>((const double*)x, (const double*)gs, (double*)gx, (double*)gv,
                (const double*)al, (const double*)be, (const double*)th, (const double*)bi,
                c1, c2, T, N, P, plain, vec, has_bias, kind, nt);
}
}
"""

# -ffp-contract=off: no fused multiply-add, so every rounding matches eager torch exactly;
# -fno-trapping-math lets the compiler if-convert (vectorise) the spike/reset selects
# without changing any IEEE result.  SIMD width follows the host (AVX2 when present).
_CFLAGS = ["-O3", "-std=c++17", "-fPIC", "-shared", "-fopenmp", "-ffp-contract=off",
           "-fno-trapping-math", "-fno-math-errno"]


class _Ext:
    """ctypes wrapper of the compiled kernel."""

    def __init__(self, path: str):
        import ctypes
        lib = ctypes.CDLL(path)
        c_p, c_i64, c_int, c_d = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
        lib.kd_cuba_fwd.argtypes = [c_int] + [c_p] * 6 + [c_i64] * 3 + [c_int] * 4
        lib.kd_cuba_fwd.restype = None
        lib.kd_cuba_bwd.argtypes = [c_int] + [c_p] * 8 + [c_d, c_d] + [c_i64] * 3 + [c_int] * 5
        lib.kd_cuba_bwd.restype = None
        self.lib, self.path = lib, path

    @staticmethod
    def _dt(x: Tensor) -> int:
        return 0 if x.dtype == torch.float32 else 1

    def forward(self, x, al, be, th, bi, plain, vec, P):
        T = x.shape[0]
        N = x.numel() // max(T, 1)
        s = torch.empty_like(x)
        if x.numel():
            self.lib.kd_cuba_fwd(self._dt(x), x.data_ptr(), s.data_ptr(), al.data_ptr(),
                                 be.data_ptr(), th.data_ptr(),
                                 bi.data_ptr() if bi is not None else be.data_ptr(),
                                 T, N, P, int(plain), int(vec), int(bi is not None),
                                 torch.get_num_threads())
        return s

    def backward(self, x, gs, al, be, th, bi, plain, vec, P, kind, c1, c2, need_gv,
                 detach=True):
        if not detach:
            raise ValueError("the C++ kernel has the detached reset only")
        T = x.shape[0]
        N = x.numel() // max(T, 1)
        gx = torch.empty_like(x)
        gv = torch.empty(N, dtype=x.dtype) if (need_gv and not plain) else None
        if x.numel():
            self.lib.kd_cuba_bwd(self._dt(x), x.data_ptr(), gs.data_ptr(), gx.data_ptr(),
                                 gv.data_ptr() if gv is not None else None,
                                 al.data_ptr(), be.data_ptr(), th.data_ptr(),
                                 bi.data_ptr() if bi is not None else be.data_ptr(),
                                 c1, c2, T, N, P, int(plain), int(vec), int(bi is not None),
                                 kind, torch.get_num_threads())
        return gx, gv


_EXT: Optional[_Ext] = None
_EXT_ERROR: Optional[str] = None
_EXT_LOCK = threading.Lock()


def _build(verbose: bool = False) -> str:
    from kd_snn.native import build_library
    return build_library("fused_cuba", _CPP_SOURCE, _CFLAGS, verbose)


def load_extension(verbose: bool = False) -> Optional[_Ext]:
    """Build (first time, a few seconds) and return the C++ kernel, or None."""
    global _EXT, _EXT_ERROR
    if _EXT is not None or _EXT_ERROR is not None:
        return _EXT
    with _EXT_LOCK:
        if _EXT is not None or _EXT_ERROR is not None:
            return _EXT
        if os.environ.get("KDSNN_NO_EXT", "") not in ("", "0"):
            _EXT_ERROR = "disabled by KDSNN_NO_EXT"
            return None
        try:
            _EXT = _Ext(_build(verbose))
        except Exception as exc:  # no compiler: fall back to the torch backend
            _EXT_ERROR = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"kdsnn fused neuron: C++ kernel unavailable, using the torch "
                          f"backend ({_EXT_ERROR.splitlines()[0][:200]})", RuntimeWarning)
    return _EXT


def extension_available() -> bool:
    return load_extension() is not None


_TRITON = None
_TRITON_ERROR: Optional[str] = None
_TRITON_WARNED = False
_TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
TRITON_INSTALL = ("pip install -c scripts/constraints.txt -r scripts/requirements-gpu-kernel.txt"
                  " (or make test-gpu-kernel)")


def load_triton():
    """The Triton kernel module, or None when the optional ``triton`` is missing/broken.

    Imported only on first use: ``import triton`` costs ~1 s, and whether the kernels are
    interpreted is fixed by ``TRITON_INTERPRET`` at that moment.
    """
    global _TRITON, _TRITON_ERROR
    if _TRITON is None and _TRITON_ERROR is None:
        with _EXT_LOCK:
            if _TRITON is None and _TRITON_ERROR is None:
                try:
                    from . import triton_kernel
                    _TRITON = triton_kernel
                except Exception as exc:  # noqa: BLE001 (missing, or a broken install)
                    _TRITON_ERROR = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    return _TRITON


def _warn_no_triton() -> None:
    """The one warning of ``auto`` on CUDA without Triton (per process, not per call)."""
    global _TRITON_WARNED
    if not _TRITON_WARNED:
        _TRITON_WARNED = True
        warnings.warn(f"kdsnn fused neuron: Triton unavailable ({_TRITON_ERROR}); CUDA tensors "
                      f"use the torch backend (a Python loop over T). Install: {TRITON_INSTALL}",
                      RuntimeWarning, stacklevel=3)


def _select(dev: str, dt: torch.dtype, backend: str) -> str:
    """The kernel for a tensor on device type ``dev`` of dtype ``dt``: ``cpp``, ``triton``
    or ``torch`` (see module doc)."""
    if backend == "torch":
        return "torch"
    if backend == "triton":
        if dt not in _TRITON_DTYPES:
            raise RuntimeError(f"the triton backend needs float32/float16/bfloat16, got {dt}")
        if load_triton() is None:
            raise RuntimeError(f"the triton backend needs the optional triton package "
                               f"({_TRITON_ERROR}); install: {TRITON_INSTALL}")
        if dev != "cuda" and not (dev == "cpu" and _TRITON.interpreted()):
            raise RuntimeError("the triton backend needs a CUDA tensor (CPU tensors only in "
                               "Triton's interpreter: TRITON_INTERPRET=1 before import)")
        return "triton"
    if dev == "cpu" and dt in (torch.float32, torch.float64):
        if load_extension() is not None:
            return "cpp"
        if backend == "cpp":
            raise RuntimeError(f"kdsnn C++ extension unavailable: {_EXT_ERROR}")
        return "torch"
    if backend == "cpp":
        raise RuntimeError("the cpp backend needs a float32/float64 CPU tensor")
    if dev == "cuda" and dt in _TRITON_DTYPES:
        if load_triton() is not None:
            return "triton"
        _warn_no_triton()
    return "torch"


# --------------------------------------------------------------------------- parameters
def _surrogate_consts(kind: int, width: float) -> tuple[float, float]:
    if kind == ATAN:
        a = 2.0 / width
        return a / 2, math.pi / 2 * a
    if kind == SIGMOID:
        return 4.0 / width, 0.0
    return float(width), 0.0


def _prepare(x: Tensor, params: dict, dtype: Optional[torch.dtype] = None):
    """Flatten the parameters to scalars or length-P arrays of the state ``dtype``
    (default ``x``'s; the Triton kernel keeps float32 state for 16-bit inputs).

    Returns None when a parameter cannot be handled (broadcasting over T, dtype
    promotion beyond the state dtype); the caller then uses the reference path.
    """
    dtype = x.dtype if dtype is None else dtype
    probe = x if dtype == x.dtype else torch.empty(1, dtype=dtype)  # x.dim() >= 1 too
    S = tuple(x.shape[1:])
    prepared, vec_start = {}, len(S)
    for name, p in params.items():
        if p is None:
            continue
        if not torch.is_tensor(p):
            prepared[name] = ("scalar", torch.tensor([float(p)], dtype=dtype, device=x.device))
            continue
        if p.dtype != dtype and torch.result_type(probe, p) != dtype:
            return None
        shape = list(p.shape)
        while shape and shape[0] == 1:
            shape.pop(0)
        if len(shape) > len(S):
            return None
        if math.prod(shape) == 1:
            prepared[name] = ("scalar", p.reshape(1).to(dtype))
            continue
        k = len(S) - len(shape)
        if any(a != 1 and a != b for a, b in zip(shape, S[k:])):
            return None
        prepared[name] = ("vec", p.reshape(shape))
        vec_start = min(vec_start, k)
    vec = vec_start < len(S)
    suffix = S[vec_start:]
    P = math.prod(suffix) if vec else 1
    out = {}
    for name, (kind, t) in prepared.items():
        t = t.to(device=x.device, dtype=dtype)
        if vec:
            t = t.expand(suffix).contiguous().reshape(P) if kind == "vec" else t.expand(P).contiguous()
        out[name] = t.contiguous()
    return out, vec, P


# --------------------------------------------------------------------------- autograd
class _FusedCuba(torch.autograd.Function):
    """Inputs: x (T, N); params of length P (vec) or 1. Output: spikes (T, N).

    ``impl``: ``cpp`` / ``triton`` (a kernel module: save x, recompute in backward) or
    ``torch`` (saves u = v_pre - thr).
    """

    @staticmethod
    def forward(ctx, x, bias, alpha, beta, thr, plain, vec, P, kind, width, impl, detach):
        has_bias = bias is not None
        ctx.meta = (plain, vec, P, kind, width, impl, has_bias, detach)
        if impl != "torch":
            s = _KERNELS[impl]().forward(x, alpha, beta, thr, bias, plain, vec, P)
            ctx.save_for_backward(x, bias, alpha, beta, thr)
            return s
        s, u = _torch_forward(x, bias, alpha, beta, thr, plain, vec, P)
        # torch backend: keep u = v_pre - thr (one tensor); spikes are u > 0
        ctx.save_for_backward(u, bias, alpha, beta, thr)
        return s

    @staticmethod
    def backward(ctx, gs):
        plain, vec, P, kind, width, impl, has_bias, detach = ctx.meta
        saved, bias, alpha, beta, thr = ctx.saved_tensors
        need_gb = has_bias and ctx.needs_input_grad[1]
        gs = gs.contiguous()
        if impl != "torch":
            c1, c2 = _surrogate_consts(kind, width)
            gx, gv = _KERNELS[impl]().backward(saved, gs, alpha, beta, thr, bias, plain, vec, P,
                                               kind, c1, c2, need_gb, detach)
            gvsum = (gx.sum(0) if gv is None else gv) if need_gb else None
        else:
            gx, gvsum = _torch_backward(saved, gs, alpha, beta, plain, vec, P, kind, width,
                                        need_gb)
        gb = None
        if need_gb:
            gb = gvsum.reshape(-1, P).sum(0) if vec else gvsum.sum().reshape(1)
        return gx, gb, None, None, None, None, None, None, None, None, None, None


_KERNELS = {"cpp": lambda: _EXT, "triton": lambda: _TRITON}


def _view_param(t: Tensor, vec: bool, P: int) -> Tensor:
    return t if not vec else t.view(P)


def _torch_forward(x, bias, alpha, beta, thr, plain, vec, P):
    T, N = x.shape
    shp = (-1, P) if vec else (N,)
    xs = x.view(T, *shp)
    u = torch.empty_like(xs)
    v = torch.zeros_like(xs[0])
    cur = torch.zeros_like(xs[0])
    a, b, th = (alpha, beta, thr) if vec else (alpha[0], beta[0], thr[0])
    c = None if bias is None else (bias if vec else bias[0])
    for t in range(T):
        if plain:
            vv = b * v + xs[t]
        else:
            cur = a * cur + xs[t]
            vv = b * v + cur
        if c is not None:
            vv = vv + c
        torch.sub(vv, th, out=u[t])
        v = vv * (u[t] <= 0)
    s = (u > 0).to(x.dtype)
    return s.view(T, N), u.view(T, N)


def _torch_backward(u, gs, alpha, beta, plain, vec, P, kind, width, need_gb):
    """One reverse loop over T with per-step torch ops (cache-sized temporaries)."""
    T, N = u.shape
    shp = (T, -1, P) if vec else (T, N)
    u, gs = u.view(shp), gs.view(shp)
    a, b = (alpha, beta) if vec else (alpha[0], beta[0])
    gx = torch.empty_like(u)
    gv = torch.empty_like(u) if (need_gb and not plain) else None
    g = gi = None
    for t in range(T - 1, -1, -1):
        g_new = surrogate_grad(u[t], kind, width).mul_(gs[t])       # dL/ds * ds/dv
        if g is not None:                                            # + (1-s) * beta * g[t+1]
            g_new.add_((b * g).mul_(u[t] <= 0))
        g = g_new
        if plain:
            gx[t] = g
        else:
            gi = g if gi is None else g + a * gi
            gx[t] = gi
            if gv is not None:
                gv[t] = g
    gvsum = None
    if need_gb:
        gvsum = (gx if plain else gv).sum(0).reshape(N)
    return gx.view(T, N), gvsum


# --------------------------------------------------------------------------- public API
def _is_zero(alpha) -> bool:
    if torch.is_tensor(alpha):
        return not alpha.requires_grad and bool((alpha == 0).all())
    return float(alpha) == 0.0


def cuba_multistep_fused(x_seq: Tensor, alpha=0.0, beta=0.5, threshold=1.0, bias=None,
                         surrogate: str = "atan", width: float = 1.0,
                         backend: str = "auto", detach_reset: bool = True) -> Tensor:
    """Spikes ``(T, ...)`` of the CUBA/LIF neuron from zero state (see module doc).

    ``alpha``/``beta``/``threshold``/``bias``: Python numbers or tensors broadcasting
    against one step ``x_seq[0]``.  ``backend``: ``auto`` | ``cpp`` | ``triton`` | ``torch``.
    ``detach_reset=False`` (the reset's gradient flows; same spikes) runs in the Triton
    kernel, elsewhere in the reference implementation, whatever ``backend`` says.
    """
    if surrogate not in SURROGATES:
        raise ValueError(f"unknown surrogate '{surrogate}' (choose from {', '.join(SURROGATES)})")
    if not width > 0:
        raise ValueError(f"surrogate width must be > 0, got {width}")
    if backend not in ("auto", "cpp", "triton", "torch"):
        raise ValueError(f"unknown backend '{backend}' (auto, cpp, triton, torch)")
    kind = SURROGATES[surrogate]

    def reference():
        return cuba_multistep(x_seq, alpha, beta, threshold, bias,
                              get_surrogate(surrogate, width), detach_reset=detach_reset)[0]

    if (not x_seq.is_floating_point() or x_seq.dim() < 1
            or any(torch.is_tensor(p) and p.requires_grad for p in (alpha, beta, threshold))):
        return reference()
    impl = _select(x_seq.device.type, x_seq.dtype, backend)
    if not detach_reset and impl != "triton":
        return reference()
    prep = _prepare(x_seq, {"alpha": alpha, "beta": beta, "threshold": threshold, "bias": bias},
                    torch.float32 if impl == "triton" else None)
    if prep is None:
        return reference()
    params, vec, P = prep
    T = x_seq.shape[0]
    x2 = x_seq.contiguous().view(T, -1)
    s = _FusedCuba.apply(x2, params.get("bias"), params["alpha"], params["beta"],
                         params["threshold"], _is_zero(alpha), vec, P, kind, float(width), impl,
                         bool(detach_reset))
    return s.view(x_seq.shape)
