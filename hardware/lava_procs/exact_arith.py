"""The integer arithmetic of Lava's fixed_pt Conv and Dense models, computed with BLAS.

Lava 0.10's stock models are the reference:

* ``PyConvModelFixed`` (``lava.proc.conv.utils.conv_scipy``): one ``convolve2d`` per
  (output, input) channel pair, accumulated in a float64 array, cast ``.astype(int32)``,
  then wrapped to signed 24 bits (``signed_clamp``).
* ``PyDenseModelBitAcc``: graded input ``weights.dot(s_in)`` in int32 (wraps modulo
  2**32); binary input ``weights[:, s_in].sum(axis=1)`` (int64), then shifted by
  ``weight_exp``.

Every value involved is an integer, so a floating-point matrix product gives the exact
same integers whenever every partial sum is representable: float32 while
``max_o sum_i |w[o, i]| * max |x| <= 2**24``, float64 while it is ``<= 2**53`` (products
and partial sums of exact integers below the bound are exact whatever order BLAS adds them
in).  The bound is checked on every call from the weights (once) and the input (per call);
above 2**53 the stock function itself runs.  The cast to int32 is numpy's cast of the same
float64 value the stock model casts, so even out-of-int32-range sums agree.
``tests/test_exact_synapses.py`` checks all of this against the stock code.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

F32_EXACT = 2 ** 24
F64_EXACT = 2 ** 53


def exact_dtype(weight_abs_sum: float, x_abs_max: float):
    """float32 / float64 when a product with these bounds is exact, else None."""
    bound = float(weight_abs_sum) * float(x_abs_max)
    if bound <= F32_EXACT:
        return np.float32
    if bound <= F64_EXACT:
        return np.float64
    return None


class ConvPlan:
    """A Lava Conv's weights laid out once for im2col products.

    ``weight``: Lava layout (Co, kw, kh, Ci/groups), convolution (not correlation).
    """

    def __init__(self, weight: np.ndarray, stride, padding, groups: int):
        self.weight = np.asarray(weight)
        co, self.kw, self.kh, self.cig = self.weight.shape
        self.stride = (int(stride[0]), int(stride[1]))
        self.padding = (int(padding[0]), int(padding[1]))
        self.groups = int(groups)
        self.per_out = co // self.groups
        corr = self.weight[:, ::-1, ::-1, :].astype(np.int64)  # convolution -> correlation
        # per group: (cig * kw * kh, per_out), rows in (c, i, j) order = the window layout
        mats = [corr[g * self.per_out:(g + 1) * self.per_out].transpose(3, 1, 2, 0)
                .reshape(self.cig * self.kw * self.kh, self.per_out)
                for g in range(self.groups)]
        self.mats = {np.float32: [m.astype(np.float32) for m in mats],
                     np.float64: [m.astype(np.float64) for m in mats]}
        self.abs_sum = float(np.abs(corr).reshape(co, -1).sum(axis=1).max(initial=0))

    def windows(self, x: np.ndarray) -> np.ndarray:
        """(W, H, Ci) -> strided windows (X, Y, Ci, kw, kh) (a view of the padded input)."""
        px, py = self.padding
        xp = np.pad(x, ((px, px), (py, py), (0, 0)))
        win = sliding_window_view(xp, (self.kw, self.kh), axis=(0, 1))
        return win[::self.stride[0], ::self.stride[1]]

    def accumulate(self, x: np.ndarray, dtype) -> np.ndarray:
        """Exact float ``dtype`` accumulation (X, Y, Co) of input ``x`` (W, H, Ci)."""
        win = self.windows(x.astype(dtype, copy=False))
        X, Y = win.shape[:2]
        outs = []
        for g, mat in enumerate(self.mats[dtype]):
            cols = win[:, :, g * self.cig:(g + 1) * self.cig].reshape(X * Y, -1)
            outs.append((cols @ mat).reshape(X, Y, self.per_out))
        return outs[0] if len(outs) == 1 else np.concatenate(outs, axis=-1)

    def accumulate_int64(self, x: np.ndarray) -> np.ndarray:
        """The same sums with an int64 ``einsum`` (no BLAS): the earlier fast model."""
        if not hasattr(self, "_w64"):
            self._w64 = self.weight[:, ::-1, ::-1, :].astype(np.int64)  # (Co, kw, kh, cig)
        win = self.windows(x.astype(np.int64))  # (X, Y, Ci, kw, kh)
        outs = []
        for g in range(self.groups):
            xs = win[:, :, g * self.cig:(g + 1) * self.cig]
            ws = self._w64[g * self.per_out:(g + 1) * self.per_out]
            outs.append(np.einsum("xycij,oijc->xyo", xs, ws, optimize=True))
        return outs[0] if len(outs) == 1 else np.concatenate(outs, axis=-1)


def signed_wrap(x: np.ndarray, bits: int = 24) -> np.ndarray:
    """``lava.proc.conv.utils.signed_clamp``: wrap to a signed ``bits``-bit value."""
    base = 1 << bits
    return (x + base // 2) % base - base // 2


def conv_stock(x: np.ndarray, weight: np.ndarray, stride, padding, groups: int,
               dilation=(1, 1)) -> np.ndarray:
    """Lava's own fixed_pt conv arithmetic (slow): ``utils.conv`` then the 24-bit wrap."""
    from lava.proc.conv import utils
    kernel = weight.shape[1:3]
    out = utils.conv(x, weight, kernel, stride, padding, dilation, groups)
    return utils.signed_clamp(out, bits=24)


def conv_exact(plan: ConvPlan, x: np.ndarray, mode: str = "blas") -> np.ndarray:
    """What ``PyConvModelFixed`` puts in ``a_buf`` for input ``x`` (W, H, Ci), bit for bit.

    ``mode``: ``blas`` (float32/float64 products where exact, stock code above 2**53) or
    ``int64`` (integer products without BLAS, as the earlier fast model).
    """
    if mode == "int64":
        total = plan.accumulate_int64(x).astype(np.float64)
        if np.abs(total).max(initial=0) > F64_EXACT:  # the stock float64 sums would round
            return conv_stock(x, plan.weight, plan.stride, plan.padding, plan.groups)
    else:
        x_max = float(np.abs(x).max(initial=0)) if x.dtype != bool else 1.0
        dtype = exact_dtype(plan.abs_sum, x_max)
        if dtype is None:
            return conv_stock(x, plan.weight, plan.stride, plan.padding, plan.groups)
        total = plan.accumulate(x, dtype)
    # the stock model casts its float64 sums with astype(int32), then wraps to 24 bits
    return signed_wrap(total.astype(np.float64).astype(np.int32), 24)


class DensePlan:
    """A Lava Dense's (clipped, truncated) int32 weights laid out for exact products."""

    def __init__(self, weights: np.ndarray):
        self.weights = np.asarray(weights, dtype=np.int32)
        self.abs_sum = float(np.abs(self.weights.astype(np.int64)).sum(axis=1).max(initial=0))
        self._f = {}

    def matrix(self, dtype) -> np.ndarray:
        if dtype not in self._f:
            self._f[dtype] = self.weights.T.astype(dtype)  # (N_in, N_out) for x @ W
        return self._f[dtype]


def dense_exact(plan: DensePlan, s_in: np.ndarray, graded: bool) -> np.ndarray:
    """``PyDenseModelBitAcc``'s accumulation (before the ``weight_exp`` shift), same dtype.

    Graded: ``weights.dot(s_in)`` (numpy integer dot: wraps like the int32 result).
    Binary: ``weights[:, s_in].sum(axis=1)`` (int64).
    """
    if graded:
        x = np.asarray(s_in)
        x_max = float(np.abs(x.astype(np.int64)).max(initial=0))
        dtype = exact_dtype(plan.abs_sum, x_max)
        if dtype is None or x.dtype.kind not in "iub":
            return plan.weights.dot(s_in)
        total = x.astype(dtype) @ plan.matrix(dtype)
        result_dtype = np.result_type(plan.weights.dtype, x.dtype)
        # exact integer in float64 -> int64 exactly -> wrap to the stock dot's dtype
        return total.astype(np.float64).astype(np.int64).astype(result_dtype)
    mask = np.asarray(s_in).astype(bool)
    dtype = exact_dtype(plan.abs_sum, 1.0) or None
    if dtype is None:
        return plan.weights[:, mask].sum(axis=1)
    total = mask.astype(dtype) @ plan.matrix(dtype)
    return total.astype(np.float64).astype(np.int64)
