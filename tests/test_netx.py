"""netx HDF5 export: lava-dl's ``netx.hdf5.Network`` runs it bit-exactly like ``emulate``."""
import h5py
import numpy as np
import pytest
import torch

from export.emulate import emulate
from export.graph import Connection, DeployGraph, NeuronLayer
from export.netx import netx_problems, quantize_for_netx, write_netx
from export.quantize import encode_input, quantize
from hardware.lava_sim import run_netx
from tests.test_emulate_vs_lava import residual_graph


def conv_conv_dense(seed=0, T=3):
    rng = np.random.default_rng(seed)
    c1 = Connection("input", "conv", rng.normal(0, 0.6, (4, 2, 3, 3)), (1, 1), (1, 1))
    l1 = NeuronLayer("c1", (4, 6, 5), (c1,), rng.normal(0, 0.1, (4, 1, 1)), 0.0, 0.75, 1.0)
    c2 = Connection("c1", "conv", rng.normal(0, 0.4, (3, 4, 3, 3)), (2, 1), (0, 1))
    l2 = NeuronLayer("c2", (3, 2, 5), (c2,), 0.05, 0.0, 0.5, 0.8)
    c3 = Connection("c2", "dense", rng.normal(0, 0.5, (5, 30)))
    l3 = NeuronLayer("fc", (5,), (c3,), rng.normal(0, 0.1, 5), 0.0, 1.0, 1.0, spiking=False)
    return DeployGraph((2, 6, 5), (l1, l2, l3), T)


def test_netx_network_equals_emulate(tmp_path):
    graph = conv_conv_dense(1)
    x = torch.rand(graph.time_steps, 5, *graph.input_shape, dtype=torch.float64,
                   generator=torch.Generator().manual_seed(1))
    q = quantize_for_netx(graph, x)
    assert netx_problems(q) == []
    path = write_netx(q, tmp_path / "student.net")
    with h5py.File(path, "r") as f:
        kinds = [f[f"layer/{i}/type"][()].decode() for i in range(len(f["layer"]))]
    assert kinds == ["input", "conv", "conv", "flatten", "dense"]
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temp file
    xi = encode_input(x)
    v_emu, s_emu = emulate(q, xi)
    v_netx, s_netx = run_netx(path, xi)
    assert torch.equal(v_emu, v_netx)
    assert torch.equal(s_emu["c1"], s_netx["layer1"])
    assert torch.equal(s_emu["c2"], s_netx["layer2"])
    assert int(s_emu["c1"].sum()) > 0 and int(s_emu["c2"].sum()) > 0


def test_netx_refuses_what_it_cannot_express(tmp_path):
    graph = conv_conv_dense(2)
    q = quantize(graph)  # default encoding: bias not a multiple of 64, dense e up to 7
    assert netx_problems(q)
    with pytest.raises(ValueError, match="cannot write netx"):
        write_netx(q, tmp_path / "x.net")
    assert not (tmp_path / "x.net").exists()
    from export.latency import balance_latency
    qr = quantize_for_netx(balance_latency(residual_graph(1)))
    assert any("sequential" in p for p in netx_problems(qr))
