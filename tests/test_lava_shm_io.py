"""kdsnn's shared-memory I/O processes carry exactly what Lava's stock RingBuffers carry.

The neurons and synapses are Lava's stock fixed_pt models in both runs; only the way
samples reach the network and spikes come back differs.  Bit-for-bit equality of the
two, plus the emulation == Lava tests (which use the shared-memory path), keep the
parity claim "against Lava's own models".
"""
import os

import torch

from export.latency import balance_latency
from export.quantize import encode_input, quantize
from hardware.lava_sim import LavaRunner
from tests.test_emulate_vs_lava import residual_graph


def test_shm_io_equals_stock_ring_buffers_bit_for_bit():
    graph = balance_latency(residual_graph())
    x = torch.rand((graph.time_steps, 6) + tuple(graph.input_shape),
                   generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    q = quantize(graph, x)
    xi = encode_input(x)
    results = {}
    for io in ("vars", "shm"):
        with LavaRunner(q, chunk_samples=2, record=True, io=io) as runner:  # several segments
            first = runner.run(xi[:, :3])
            second = runner.run(xi[:, 3:])
        results[io] = (torch.cat([first[0], second[0]]),
                       {k: torch.cat([first[1][k], second[1][k]], 1) for k in first[1]})
    (v_stock, s_stock), (v_shm, s_shm) = results["vars"], results["shm"]
    assert torch.equal(v_stock, v_shm)
    assert s_stock.keys() == s_shm.keys() and s_stock
    for name in s_stock:
        assert torch.equal(s_stock[name], s_shm[name]), name
    assert sum(int(s.sum()) for s in s_shm.values()) > 0


def test_shm_runner_removes_its_files():
    graph = balance_latency(residual_graph())
    q = quantize(graph)
    runner = LavaRunner(q, chunk_samples=1, record=True)
    tmp = runner._tmp
    assert tmp is not None and os.listdir(tmp)
    runner.close()
    assert not os.path.exists(tmp)
