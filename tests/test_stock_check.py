"""The synapse-by-synapse stock re-check (``hardware.stock_check``).

1. Its harness is Lava: a stock process model stepped by the harness gives what the same
   process gives when Lava's runtime runs it (Source -> Conv/Dense -> Sink), every step.
2. On a quantized residual graph with the spike trains of a Lava run, every synapse of the
   fast models agrees with the stock models.
3. A fast model that is off by one on one layer kind is caught, and named.
"""
import numpy as np
import pytest
import torch
from lava.magma.core.run_conditions import RunSteps
from lava.proc.conv.models import PyConvModelFixed
from lava.proc.conv.process import Conv
from lava.proc.dense.models import PyDenseModelBitAcc
from lava.proc.dense.process import Dense
from lava.proc.io.sink import RingBuffer as Sink
from lava.proc.io.source import RingBuffer as Source
from lava.utils.weightutils import SignMode

from export.emulate import emulate
from export.latency import balance_latency
from export.quantize import encode_input, quantize
from hardware.lava_sim import LavaRunner, run_config
from hardware.stock_check import _step_all, check_synapses, instantiate
from test_emulate_vs_lava import residual_graph


def _in_lava(process, data: np.ndarray, out_shape: tuple) -> np.ndarray:
    """``data`` (steps, *in) through ``process`` in Lava (stock models) -> (steps, *out)."""
    steps = data.shape[0]
    src = Source(data=np.moveaxis(data, 0, -1).astype(np.int32))
    src.s_out.connect(process.s_in)
    sink = Sink(shape=out_shape, buffer=steps)
    process.a_out.connect(sink.a_in)
    try:
        src.run(condition=RunSteps(num_steps=steps), run_cfg=run_config("lava"))
        return np.moveaxis(sink.data.get(), -1, 0).astype(np.int64)
    finally:
        src.stop()


@pytest.mark.parametrize("graded", [True, False])
def test_harness_steps_a_stock_model_as_lavas_runtime_does(graded):
    rng = np.random.default_rng(7 + graded)
    steps = 6
    weight = (rng.integers(-128, 128, size=(5, 3, 3, 4)) << 3).astype(np.int32)
    data = (rng.integers(0, 256, size=(steps, 6, 5, 4)) if graded
            else rng.random((steps, 6, 5, 4)) < 0.3).astype(np.int32)  # as the senders send
    data[-1] = 0  # the harness's extra step feeds zeros: so does this run's last step
    conv = dict(weight=weight, input_shape=(6, 5, 4), padding=(1, 0), stride=(2, 1),
                num_message_bits=8 if graded else 0)
    want = _in_lava(Conv(**conv), data, (3, 3, 5))
    got = _step_all(instantiate(PyConvModelFixed, Conv(**conv)), data[:-1])
    np.testing.assert_array_equal(got, want[1:])
    assert np.abs(want).max() > 0

    dense = dict(weights=rng.integers(-100, 100, size=(7, 20)).astype(np.int32),
                 weight_exp=-2, num_weight_bits=8, sign_mode=SignMode.MIXED,
                 num_message_bits=8 if graded else 0)
    flat = data.reshape(steps, -1)[:, :20]
    want = _in_lava(Dense(**dense), flat, (7,))
    got = _step_all(instantiate(PyDenseModelBitAcc, Dense(**dense)), flat[:-1])
    np.testing.assert_array_equal(got, want[1:])
    assert np.abs(want).max() > 0


@pytest.fixture(scope="module")
def lava_run():
    graph = balance_latency(residual_graph(5))
    x = torch.rand(4, 3, *graph.input_shape, generator=torch.Generator().manual_seed(3),
                   dtype=torch.float64)
    q = quantize(graph, x)
    xi = encode_input(x)
    with LavaRunner(q, chunk_samples=3, conv_model="fast") as runner:
        _, spikes = runner.run(xi)
    _, s_emu = emulate(q, xi)
    assert all(torch.equal(spikes[k], s_emu[k]) for k in s_emu)
    return q, xi, spikes


def test_every_synapse_of_the_fast_models_agrees_with_the_stock_models(lava_run):
    q, xi, spikes = lava_run
    res = check_synapses(q, xi[:, :2], spikes, "fast")
    assert res == {"samples": 2, "steps": 8, "synapses": sum(len(l.connections)
                                                              for l in q.layers),
                   "bit_exact": True, "mismatches": []}


def test_a_fast_model_off_by_one_is_caught(lava_run, monkeypatch):
    from hardware.lava_procs import blas_synapses
    q, xi, spikes = lava_run
    exact = blas_synapses.conv_exact
    monkeypatch.setattr(blas_synapses, "conv_exact", lambda *a, **k: exact(*a, **k) + 1)
    res = check_synapses(q, xi[:, :2], spikes, "fast")
    convs = [l for l in q.layers for c in l.connections if c.kind == "conv"]
    assert res["bit_exact"] is False and len(res["mismatches"]) == min(5, len(convs))
    assert res["mismatches"][0] == "stem <- input"
