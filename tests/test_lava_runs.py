"""Lava really runs: source -> Dense -> LIF in fixed_pt, checked against a hand computation.

The expected values are computed here, step by step, from the Loihi CUBA formulas as
they appear in ``lava/proc/lif/models.py`` and ``lava/proc/dense/models.py`` (not from
``export.emulate``):

* Dense (fixed_pt) sends at step t the accumulation of the spikes it received at step
  t-1 (one step of synaptic latency; 0 at step 1).  Mixed-sign weights are clipped to
  [-256, 255] and their least significant bit is dropped (``(w >> 1) << 1``): with
  ``num_weight_bits=8`` a mixed-sign synapse holds 8 bits of mantissa *including* the
  sign, i.e. even values only.  The accumulation is then shifted by ``weight_exp``.
* LIF (fixed_pt):  u <- trunc0(u * (4096 - (du + 1)) / 4096) + (a_in << 6)
                   v <- trunc0(v * (4096 - dv) / 4096) + u + (bias_mant << bias_exp)
                   spike when v > vth << 6, then v <- 0.
"""
import numpy as np

from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.dense.process import Dense
from lava.proc.io.source import RingBuffer
from lava.proc.lif.process import LIF
from lava.proc.monitor.process import Monitor

STEPS = 10


def trunc0_decay(x: int, factor: int) -> int:
    """sign(x * factor) * (|x * factor| >> 12): decay with truncation toward zero."""
    p = x * factor
    return int(np.sign(p)) * (abs(p) >> 12)


def test_dense_lif_fixed_pt_matches_hand_computation():
    rng = np.random.default_rng(7)
    spikes_in = (rng.random((3, STEPS)) < 0.6).astype(np.int32)
    weights = np.array([[10, -3, 7], [5, 5, -2]], dtype=np.int32)  # odd ones get truncated
    du, dv, vth = 1024, 512, 20
    bias_mant, bias_exp = np.array([3, -2]), np.array([4, 4])

    src = RingBuffer(data=spikes_in)
    dense = Dense(weights=weights)
    lif = LIF(shape=(2,), du=du, dv=dv, vth=vth, bias_mant=bias_mant, bias_exp=bias_exp)
    src.s_out.connect(dense.s_in)
    dense.a_out.connect(lif.a_in)
    mon_u, mon_v, mon_s = Monitor(), Monitor(), Monitor()
    mon_u.probe(lif.u, STEPS)
    mon_v.probe(lif.v, STEPS)
    mon_s.probe(lif.s_out, STEPS)
    try:
        lif.run(condition=RunSteps(num_steps=STEPS),
                run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        got_u = mon_u.get_data()[lif.name]["u"].astype(np.int64)  # (STEPS, 2)
        got_v = mon_v.get_data()[lif.name]["v"].astype(np.int64)
        got_s = mon_s.get_data()[lif.name]["s_out"].astype(np.int64)
    finally:
        lif.stop()

    # ---- hand computation -------------------------------------------------------
    w_eff = (weights >> 1) << 1                     # mixed sign: LSB dropped
    assert w_eff.tolist() == [[10, -4, 6], [4, 4, -2]]
    bias = bias_mant << bias_exp                    # (48, -32), added to v unshifted
    u = [0, 0]
    v = [0, 0]
    exp_u, exp_v, exp_s = [], [], []
    for t in range(1, STEPS + 1):
        # Dense latency: input spikes of step t-1 (none at step 1)
        a_in = w_eff @ spikes_in[:, t - 2] if t >= 2 else np.zeros(2, dtype=np.int64)
        row_u, row_v, row_s = [], [], []
        for n in range(2):
            u[n] = trunc0_decay(u[n], 4096 - (du + 1)) + (int(a_in[n]) << 6)
            v[n] = trunc0_decay(v[n], 4096 - dv) + u[n] + int(bias[n])
            s = int(v[n] > (vth << 6))
            if s:
                v[n] = 0
            row_u.append(u[n])
            row_v.append(v[n])
            row_s.append(s)
        exp_u.append(row_u)
        exp_v.append(row_v)
        exp_s.append(row_s)

    np.testing.assert_array_equal(got_u, np.array(exp_u))
    np.testing.assert_array_equal(got_v, np.array(exp_v))
    np.testing.assert_array_equal(got_s, np.array(exp_s))
    assert np.array(exp_s).sum() > 0, "test should exercise spikes"
    assert (np.array(exp_u) < 0).any(), "test should exercise negative currents"
