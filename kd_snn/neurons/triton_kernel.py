"""Triton multi-step CUBA/LIF kernel: the fused neuron on CUDA (optional ``triton`` extra).

Same recurrence and the same float32 operations in the same order as
:func:`kd_snn.neurons.functional.cuba_multistep`, so the spikes equal the reference's on
``x.float()`` bit for bit::

    i = alpha * i + x ;  v = (beta * v + i) + bias ;  s = (v - thr) > 0 ;  v = v * (1 - s)

The state is float32 whatever the input: float16 / bfloat16 inputs (autocast) are widened
exactly on load and the spikes are stored in the input's dtype.  Kernels are compiled with
``enable_fp_fusion=False``: a fused multiply-add would round ``beta * v + i`` once
instead of twice and could flip a spike against the eager reference.

Memory: autograd keeps only ``x``.  The backward recomputes the pre-reset membrane of its
block of neurons into the float32 gradient buffer (each program owns its columns), then
walks back in time over it, overwriting each step with its input gradient.  Reset
detached (snntorch's choice) or not (the reference recipe: the gradient also flows
through ``v * (1 - s)``), each surrogate of ``kd_snn.neurons.surrogate``.

Without a GPU the kernels run on CPU tensors in Triton's interpreter (``TRITON_INTERPRET=1``
set before this module is imported): that is how the test suite checks them.
"""
from __future__ import annotations

import triton
import triton.language as tl

import torch

from .surrogate import ATAN, SIGMOID, TRIANGLE

__all__ = ["forward", "backward", "interpreted", "KERNELS"]

_HALF = (torch.float16, torch.bfloat16)


@triton.jit
def _block(al_ptr, be_ptr, th_ptr, bi_ptr, N, P, VEC: tl.constexpr, BIAS: tl.constexpr,
           BLOCK: tl.constexpr):
    """This program's neurons (int64 offsets, mask) and their parameters: per neuron
    (neuron j uses index j % P) or one shared value each."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    if VEC:
        q = offs % P
        a = tl.load(al_ptr + q, mask=mask, other=0.0)
        b = tl.load(be_ptr + q, mask=mask, other=0.0)
        th = tl.load(th_ptr + q, mask=mask, other=0.0)
        c = tl.load(bi_ptr + q, mask=mask, other=0.0) if BIAS else a
    else:
        a = tl.load(al_ptr)
        b = tl.load(be_ptr)
        th = tl.load(th_ptr)
        c = tl.load(bi_ptr) if BIAS else a
    return offs, mask, a, b, th, c


@triton.jit
def _membrane(v, cur, x, a, b, c, PLAIN: tl.constexpr, BIAS: tl.constexpr):
    """Pre-reset membrane of one step, shared by the forward and the backward's recompute
    so both round identically (the backward relies on reproducing the forward)."""
    if PLAIN:
        vv = b * v + x
    else:
        cur = a * cur + x
        vv = b * v + cur
    if BIAS:
        vv = vv + c
    return vv, cur


@triton.jit
def _surrogate(u, c1, c2, KIND: tl.constexpr):
    """d spike / d u, constants as in fused._surrogate_consts (atan, sigmoid, triangle)."""
    if KIND == 0:
        z = c2 * u
        r = c1 / (1.0 + z * z)
    elif KIND == 1:
        sg = 1.0 / (1.0 + tl.exp(-c1 * u))
        r = c1 * sg * (1.0 - sg)
    else:
        r = tl.maximum(1.0 - tl.abs(u) / c1, 0.0) / c1
    return r


@triton.jit
def _run_forward(x_ptr, out_ptr, offs, mask, a, b, th, c, T, N, PLAIN: tl.constexpr,
                 BIAS: tl.constexpr, VPRE: tl.constexpr, BLOCK: tl.constexpr):
    """The forward recurrence of one block; stores the spikes, or (``VPRE``, the backward's
    recompute) the float32 pre-reset membrane.  Returns the offsets of step T."""
    v = tl.zeros([BLOCK], dtype=tl.float32)
    cur = tl.zeros([BLOCK], dtype=tl.float32)
    o = offs                 # int64, advanced by N per step: no int32 overflow of t * N
    for _t in range(T):
        x = tl.load(x_ptr + o, mask=mask, other=0.0).to(tl.float32)
        vv, cur = _membrane(v, cur, x, a, b, c, PLAIN, BIAS)
        s = ((vv - th) > 0.0).to(tl.float32)
        if VPRE:
            tl.store(out_ptr + o, vv, mask=mask)
        else:
            tl.store(out_ptr + o, s.to(out_ptr.dtype.element_ty), mask=mask)
        v = vv * (1.0 - s)
        o += N
    return o


@triton.jit
def _fwd_kernel(x_ptr, s_ptr, al_ptr, be_ptr, th_ptr, bi_ptr, T, N, P,
                PLAIN: tl.constexpr, VEC: tl.constexpr, BIAS: tl.constexpr,
                BLOCK: tl.constexpr):
    offs, mask, a, b, th, c = _block(al_ptr, be_ptr, th_ptr, bi_ptr, N, P, VEC, BIAS, BLOCK)
    _run_forward(x_ptr, s_ptr, offs, mask, a, b, th, c, T, N, PLAIN, BIAS, False, BLOCK)


@triton.jit
def _bwd_kernel(x_ptr, gs_ptr, gx_ptr, gv_ptr, al_ptr, be_ptr, th_ptr, bi_ptr, c1, c2,
                T, N, P, PLAIN: tl.constexpr, VEC: tl.constexpr, BIAS: tl.constexpr,
                KIND: tl.constexpr, DETACH: tl.constexpr, NEED_GV: tl.constexpr,
                BLOCK: tl.constexpr):
    offs, mask, a, b, th, c = _block(al_ptr, be_ptr, th_ptr, bi_ptr, N, P, VEC, BIAS, BLOCK)
    # 1. recompute the pre-reset membrane (bit-identical to the forward) into gx (float32)
    o = _run_forward(x_ptr, gx_ptr, offs, mask, a, b, th, c, T, N, PLAIN, BIAS, True, BLOCK)
    tl.debug_barrier()  # the reverse pass reads what this block just wrote
    # 2. reverse: g = dL/dv_pre[t]; dL/dv_post[t] = beta * g[t+1]; dL/dx[t] = dL/di[t]
    g = tl.zeros([BLOCK], dtype=tl.float32)
    gi = tl.zeros([BLOCK], dtype=tl.float32)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for _t in range(T):
        o -= N
        vv = tl.load(gx_ptr + o, mask=mask, other=0.0)
        u = vv - th
        keep = (u <= 0.0).to(tl.float32)
        gs = tl.load(gs_ptr + o, mask=mask, other=0.0).to(tl.float32)
        sg = _surrogate(u, c1, c2, KIND)
        gpost = b * g
        if DETACH:   # v * (1 - s.detach()):  d v_post / d v_pre = 1 - s
            g = gs * sg + keep * gpost
        else:        # v * (1 - s):  also  - v_pre * surrogate
            g = keep * gpost + (gs - gpost * vv) * sg
        if PLAIN:
            gx = g
        else:
            gi = g + a * gi
            gx = gi
        acc += g
        tl.store(gx_ptr + o, gx, mask=mask)
    if NEED_GV:
        tl.store(gv_ptr + offs, acc, mask=mask)


KERNELS = {"forward": _fwd_kernel, "backward": _bwd_kernel}


def interpreted() -> bool:
    """True when the kernels run in Triton's CPU interpreter (``TRITON_INTERPRET=1``)."""
    return not isinstance(_fwd_kernel, triton.runtime.jit.JITFunction)


def _launch(x: torch.Tensor):
    """(N, BLOCK, grid, launch options): bigger blocks in the interpreter (numpy per op)."""
    T = x.shape[0]
    N = x.numel() // max(T, 1)
    block = 4096 if interpreted() else 1024
    block = min(block, max(128, triton.next_power_of_2(N)))
    return N, block, (triton.cdiv(N, block),), {"num_warps": 4, "enable_fp_fusion": False}


def forward(x, al, be, th, bi, plain, vec, P):
    """Spikes (T, N) in x's dtype; parameters float32 of length P (vec) or 1."""
    T = x.shape[0]
    N, block, grid, opts = _launch(x)
    s = torch.empty_like(x)
    if x.numel():
        _fwd_kernel[grid](x, s, al, be, th, bi if bi is not None else be, T, N, P,
                          PLAIN=bool(plain), VEC=bool(vec), BIAS=bi is not None,
                          BLOCK=block, **opts)
    return s


def backward(x, gs, al, be, th, bi, plain, vec, P, kind, c1, c2, need_gv, detach=True):
    """(dL/dx in x's dtype, sum over t of dL/dv_pre (N,) float32 or None)."""
    assert kind in (ATAN, SIGMOID, TRIANGLE)
    T = x.shape[0]
    N, block, grid, opts = _launch(x)
    gx = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    gv = torch.empty(N, dtype=torch.float32, device=x.device) if need_gv else None
    if x.numel():
        _bwd_kernel[grid](x, gs, gx, gv if gv is not None else gx, al, be, th,
                          bi if bi is not None else be, float(c1), float(c2), T, N, P,
                          PLAIN=bool(plain), VEC=bool(vec), BIAS=bi is not None, KIND=int(kind),
                          DETACH=bool(detach), NEED_GV=gv is not None, BLOCK=block, **opts)
    return (gx.to(x.dtype) if x.dtype in _HALF else gx), gv
