"""Lava fixed_pt equals kdsnn's integer emulation bit for bit on a residual student."""
import numpy as np
import pytest
import torch

from export.fold import fold_student
from export.latency import balance_latency
from export.quantize import quantize
from hardware import parity
from kd_snn.data import build_dataset
from kd_snn.data.encoding import encode
from kd_snn.models import create_model
from kd_snn.models.synthetic import randomise_batchnorm


@pytest.fixture(scope="module")
def residual_student():
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=10, in_channels=1, spiking=True, width=0.5)
    randomise_batchnorm(model, gen)
    model = model.double().eval()
    graph = fold_student(model, (1, 8, 8), time_steps=4)
    ds = build_dataset("digits", "test")
    x = torch.stack([ds[i][0] for i in range(40)])
    y = np.array([ds[i][1] for i in range(40)])
    x_seq = encode(x, 4, "direct").to(torch.float64)
    balanced = balance_latency(graph)
    q = quantize(balanced, x_seq[:, 20:])
    return model, graph, balanced, q, x_seq[:, :20], y[:20]


def test_residual_graph_has_fan_in_and_relays(residual_student):
    _, graph, balanced, _, _, _ = residual_student
    assert not graph.is_sequential()
    assert any(len(l.connections) == 2 for l in graph.layers)
    assert balanced.metadata["relays"], "the shortcut paths need relays to match Lava latency"


def test_lava_equals_emulation_bit_for_bit_on_20_samples(residual_student):
    model, graph, balanced, q, x, y = residual_student
    result = parity.run_parity(balanced, q, x, y, jobs=1, batch=10, progress=False).result
    assert result["samples"] == 20
    assert result["bit_exact_emulation_vs_lava"]
    for layer in result["layers"]:
        assert layer["agreement"]["emulation_vs_lava"] == [1.0] * 4, layer["name"]
        assert sum(layer["spikes"]["lava"]) == sum(layer["spikes"]["emulation"])
    assert sum(sum(l["spikes"]["lava"]) for l in result["layers"]) > 0
    assert result["prediction_agreement"]["emulation_vs_lava"] == 1.0
    # the float student and Lava mostly agree (quantization changes a few spikes)
    assert np.mean([np.mean(l["agreement"]["float_vs_lava"]) for l in result["layers"]]) > 0.9
    md = parity.markdown(result)
    assert "bit for bit" in md and "| stem |" in md


def test_parallel_jobs_give_the_same_tallies(residual_student):
    _, _, balanced, q, x, y = residual_student
    one = parity.run_parity(balanced, q, x[:, :6], y[:6], jobs=1, batch=6, progress=False).result
    two = parity.run_parity(balanced, q, x[:, :6], y[:6], jobs=2, batch=3, progress=False).result
    for a, b in zip(one["layers"], two["layers"]):
        assert a["spikes"] == b["spikes"] and a["agreement"] == b["agreement"]
    assert one["accuracy"] == two["accuracy"]
