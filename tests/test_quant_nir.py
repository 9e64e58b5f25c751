"""student.quant.nir: the integer network as NIR, the file Lava is built from."""
import sys
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_emulate_vs_lava import residual_graph, sequential_graph  # noqa: E402

from export.latency import balance_latency  # noqa: E402
from export.nir_io import graph_to_nir, nir_to_graph, write_nir  # noqa: E402
from export.quant_nir import quant_to_nir, read_quant_nir, write_quant_nir  # noqa: E402
from export.quantize import quant_to_deploy, quantize  # noqa: E402
from kd_snn.errors import KdsnnError  # noqa: E402


def _quantized(make, seed=2):
    graph = balance_latency(make(seed))
    x = torch.rand(graph.time_steps, 6, *graph.input_shape, dtype=torch.float64,
                   generator=torch.Generator().manual_seed(seed))
    return quantize(graph, x)


@pytest.mark.parametrize("make", [sequential_graph, residual_graph])
def test_round_trip_is_the_same_integer_graph(tmp_path, make):
    q = _quantized(make)
    path = write_quant_nir(tmp_path / "a.nir", q)
    back = read_quant_nir(path)
    assert back.digest() == q.digest()
    for la, lb in zip(q.layers, back.layers):
        assert np.array_equal(la.bias_mant, lb.bias_mant)
        assert np.array_equal(la.bias_exp, lb.bias_exp)
        for ca, cb in zip(la.connections, lb.connections):
            assert np.array_equal(ca.weight, cb.weight) and ca.weight_exp == cb.weight_exp
    # byte-deterministic, and a plain NIR graph any reader takes (nir.read + kdsnn's reader)
    again = write_quant_nir(tmp_path / "b.nir", back)
    assert path.read_bytes() == again.read_bytes()
    plain = nir_to_graph(nir.read(str(path)))
    ref = quant_to_deploy(q)
    assert [l.name for l in plain.layers] == [l.name for l in ref.layers]


def test_grouped_conv_weights_come_back_grouped(tmp_path):
    from export.fixed_point import QuantConnection, QuantGraph, QuantLayer
    w = np.arange(-8, 8).reshape(4, 1, 2, 2)  # depthwise: 4 groups of 1 channel
    conv = QuantConnection("input", "conv", w, 0, (1, 1), (0, 0), 4, 8, 1.0, "c")
    z = np.zeros((4, 2, 2), dtype=np.int64)
    l1 = QuantLayer("dw", (4, 2, 2), (conv,), 100, 4095, 100, z + 3, z + 1)
    d = QuantConnection("dw", "dense", np.ones((3, 16), dtype=np.int64), 1, (1, 1), (0, 0),
                        1, 0, 1.0, "fc")
    l2 = QuantLayer("fc", (3,), (d,), 0, 0, 0, np.zeros(3, np.int64), np.zeros(3, np.int64),
                    spiking=False)
    q = QuantGraph((4, 3, 3), (l1, l2), 4)
    back = read_quant_nir(write_quant_nir(tmp_path / "g.nir", q))
    assert back.digest() == q.digest()
    assert back.layers[0].connections[0].groups == 4


@pytest.mark.parametrize("groups", [0, 3, -4])
def test_edited_groups_that_do_not_divide_the_channels_are_refused(tmp_path, groups):
    import json
    from export.fixed_point import QuantConnection, QuantGraph, QuantLayer
    w = np.arange(-8, 8).reshape(4, 1, 2, 2)
    conv = QuantConnection("input", "conv", w, 0, (1, 1), (0, 0), 4, 8, 1.0, "c")
    z = np.zeros((4, 2, 2), dtype=np.int64)
    q = QuantGraph((4, 3, 3), (QuantLayer("dw", (4, 2, 2), (conv,), 100, 4095, 100, z + 3,
                                          z + 1),), 4)
    path = write_quant_nir(tmp_path / "g.nir", q)

    def edit(g):
        desc = json.loads(g.metadata["kdsnn_quantgraph"])
        desc["layers"][0]["connections"][0]["groups"] = groups
        g.metadata["kdsnn_quantgraph"] = json.dumps(desc)

    with pytest.raises(KdsnnError, match="groups do not divide"):
        read_quant_nir(_edit(path, tmp_path / "e.nir", edit))


def _edit(path: Path, out: Path, change) -> Path:
    g = nir.read(str(path))
    change(g)
    write_nir(g, out)
    return out


def test_an_edited_weight_is_what_lava_runs_or_refused(tmp_path):
    q = _quantized(sequential_graph)
    path = write_quant_nir(tmp_path / "q.nir", q)
    conv = next(k for k, n in nir.read(str(path)).nodes.items() if isinstance(n, nir.Conv2d)
                and k.startswith("c2"))

    def plus_one_step(g):  # one more integer step on one tap: a valid, different network
        e = q.layer("c2").connections[0].weight_exp
        g.nodes[conv].weight[0, 0, 0, 0] += 2.0 ** e

    edited = read_quant_nir(_edit(path, tmp_path / "e1.nir", plus_one_step))
    assert edited.digest() != q.digest()
    assert edited.layer("c2").connections[0].weight[0, 0, 0, 0] == \
        q.layer("c2").connections[0].weight[0, 0, 0, 0] + 1

    def half_step(g):
        g.nodes[conv].weight[0, 0, 0, 0] += 0.5

    with pytest.raises(KdsnnError, match="not the integers"):
        read_quant_nir(_edit(path, tmp_path / "e2.nir", half_step))


def test_an_edited_threshold_is_refused(tmp_path):
    q = _quantized(sequential_graph)
    path = write_quant_nir(tmp_path / "q.nir", q)

    def thr(g):
        node = g.nodes["d1"]
        node.v_threshold = node.v_threshold * 1.5
        node.metadata["kdsnn_threshold"] = node.metadata["kdsnn_threshold"] * 1.5

    with pytest.raises(KdsnnError, match="disagrees with its Loihi fields"):
        read_quant_nir(_edit(path, tmp_path / "t.nir", thr))


def test_a_float_nir_file_is_not_a_process_network(tmp_path):
    path = write_nir(graph_to_nir(sequential_graph(1)), tmp_path / "student.nir")
    with pytest.raises(KdsnnError, match="kdsnn import"):
        read_quant_nir(path)


def test_the_loihi_fields_sit_in_metadata_beside_plain_nir_nodes():
    q = _quantized(residual_graph)
    g = quant_to_nir(q)
    assert g.metadata["format_quant"] == "kdsnn-quant-nir/1"
    kinds = {type(n).__name__ for n in g.nodes.values()}
    assert {"Input", "Output", "Conv2d"} <= kinds and kinds <= {
        "Input", "Output", "Conv2d", "Affine", "Linear", "Flatten", "SumPool2d", "Scale",
        "LIF", "CubaLIF", "IF"}
