"""kdsnn's BLAS Conv/Dense models against Lava's stock fixed_pt models, bit for bit.

Arithmetic level: ``hardware.lava_procs.exact_arith`` against the stock code itself
(``lava.proc.conv.utils.conv`` + ``signed_clamp``; ``PyDenseModelBitAcc``'s dot / masked
sum) on random integers at the field limits: 8-bit mantissas (-128, 127) shifted by
exponent 7, 8-bit graded and 24-bit signed inputs, binary spikes, every stride / padding /
group layout kdsnn uses, and sums past 2**24 (float64 path), 2**31 (int32 cast) and 2**53
(stock fallback).  Lava level: the same Conv and Dense processes run with the stock models
and with kdsnn's, side by side, on the same inputs.
"""
import numpy as np
import pytest
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.conv.process import Conv
from lava.proc.dense.process import Dense
from lava.proc.io.sink import RingBuffer as Sink
from lava.proc.io.source import RingBuffer as Source
from lava.utils.weightutils import SignMode, clip_weights, truncate_weights

from hardware.lava_procs.exact_arith import (F32_EXACT, ConvPlan, DensePlan, conv_exact,
                                             conv_stock, dense_exact, exact_dtype)
from hardware.lava_sim import run_config

CONV_CASES = [  # (ci, co, k, stride, padding, groups, W, H)
    (3, 6, 3, (1, 1), (1, 1), 1, 7, 5),
    (4, 8, 3, (2, 2), (1, 1), 1, 8, 8),
    (6, 4, 1, (2, 1), (0, 0), 2, 5, 6),
    (6, 6, 3, (1, 2), (0, 1), 3, 6, 7),
    (8, 8, 2, (2, 2), (0, 0), 8, 4, 4),     # depthwise (pools, relays)
    (64, 64, 3, (1, 1), (1, 1), 1, 4, 4),   # wide fan-in (576)
]


def _weights(rng, co, cig, k, exp):
    m = rng.integers(-128, 128, size=(co, k, k, cig))
    m.flat[0], m.flat[-1] = -128, 127
    return (m << exp).astype(np.int32)


def _input(rng, kind, shape):
    if kind == "binary":
        return rng.random(shape) < 0.3
    if kind == "graded8":
        return rng.integers(0, 256, size=shape).astype(np.int32)
    if kind == "graded24":
        return rng.integers(-2 ** 23, 2 ** 23, size=shape).astype(np.int32)
    return rng.integers(-2 ** 31, 2 ** 31 - 1, size=shape, dtype=np.int64).astype(np.int32)


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("kind,exp", [("binary", 0), ("binary", 7), ("graded8", 0),
                                      ("graded8", 7), ("graded24", 7), ("int32", 3)])
def test_conv_arithmetic_equals_stock(case, kind, exp):
    ci, co, k, stride, padding, groups, W, H = case
    rng = np.random.default_rng(hash((case, kind, exp)) % 2 ** 32)
    weight = _weights(rng, co, ci // groups, k, exp)
    plan = ConvPlan(weight, stride, padding, groups)
    for _ in range(3):
        x = _input(rng, kind, (W, H, ci))
        with np.errstate(invalid="ignore"):  # out-of-int32 casts, as the stock model
            want = conv_stock(x, weight, stride, padding, groups)
            for mode in ("blas", "int64"):
                got = conv_exact(plan, x, mode)
                assert got.dtype == want.dtype and got.shape == want.shape
                np.testing.assert_array_equal(got, want, err_msg=f"{mode} {kind} exp {exp}")


def test_conv_paths_cover_float32_float64_and_stock():
    w = np.full((2, 3, 3, 64), 127 << 7, dtype=np.int32)
    plan = ConvPlan(w, (1, 1), (1, 1), 1)
    assert plan.abs_sum == 576 * (127 << 7) <= F32_EXACT
    assert exact_dtype(plan.abs_sum, 1) == np.float32     # binary spikes, exp 7
    assert exact_dtype(plan.abs_sum, 255) == np.float64   # graded: > 2**24, > 2**31 too
    assert exact_dtype(plan.abs_sum, 2 ** 31) is None     # > 2**53: the stock code runs
    x = np.full((4, 4, 64), 255, dtype=np.int32)
    with np.errstate(invalid="ignore"):
        want = conv_stock(x, w, (1, 1), (1, 1), 1)
        np.testing.assert_array_equal(conv_exact(plan, x), want)


def _stock_dense(weights, s_in, graded):
    return weights.dot(s_in) if graded else weights[:, s_in.astype(bool)].sum(axis=1)


@pytest.mark.parametrize("kind", ["binary", "graded8", "graded24", "int32"])
@pytest.mark.parametrize("n_in", [40, 4608])
def test_dense_arithmetic_equals_stock(kind, n_in):
    rng = np.random.default_rng(n_in + len(kind))
    raw = rng.integers(-300, 300, size=(9, n_in))
    weights = truncate_weights(clip_weights(raw, SignMode.MIXED, 8), SignMode.MIXED, 8)
    plan = DensePlan(weights)
    graded = kind != "binary"
    for _ in range(3):
        s_in = _input(rng, kind, (n_in,))
        if kind == "binary":
            s_in = s_in.astype(np.int32)
        want = _stock_dense(weights, s_in, graded)
        got = dense_exact(plan, s_in, graded)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------------------------------
# Lava level: stock models vs kdsnn's on the same processes and inputs
# ---------------------------------------------------------------------------------------
def _run_both(make_syn, data, out_shape, steps):
    outs = {}
    for model in ("lava", "fast"):
        syn = make_syn()
        src = Source(data=data)
        src.s_out.connect(syn.s_in)
        sink = Sink(shape=out_shape, buffer=steps)
        syn.a_out.connect(sink.a_in)
        try:
            src.run(condition=RunSteps(num_steps=steps), run_cfg=run_config(model))
            outs[model] = sink.data.get().astype(np.int64)
        finally:
            src.stop()
    return outs


@pytest.mark.parametrize("graded,exp", [(True, 7), (False, 2)])
def test_conv_model_equals_stock_in_lava(graded, exp):
    rng = np.random.default_rng(3 + exp)
    ci, co, W, H, steps = 8, 6, 6, 5, 4
    weight = _weights(rng, co, ci, 3, exp)
    x = _input(rng, "graded8" if graded else "binary", (W, H, ci, steps)).astype(np.int32)
    outs = _run_both(lambda: Conv(weight=weight, input_shape=(W, H, ci), padding=(1, 1),
                                  stride=(1, 1), num_message_bits=8 if graded else 0),
                     x, (W, H, co), steps)
    np.testing.assert_array_equal(outs["fast"], outs["lava"])
    assert np.abs(outs["lava"]).max() > 0


@pytest.mark.parametrize("graded", [True, False])
def test_dense_model_equals_stock_in_lava(graded):
    rng = np.random.default_rng(11)
    n_in, n_out, steps = 50, 7, 5
    m = rng.integers(-128, 128, size=(n_out, n_in))
    x = _input(rng, "graded8" if graded else "binary", (n_in, steps)).astype(np.int32)
    outs = _run_both(lambda: Dense(weights=(2 * m).astype(np.int32), weight_exp=-2,
                                   num_weight_bits=8, sign_mode=SignMode.MIXED,
                                   num_message_bits=8 if graded else 0),
                     x, (n_out,), steps)
    np.testing.assert_array_equal(outs["fast"], outs["lava"])
    assert (outs["lava"] != 0).any()
