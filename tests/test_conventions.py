"""The convention axes NeuroBench needs, on hand-counted tiny networks, and their parsing."""
import numpy as np
import pytest
import torch

from export.graph import Connection, DeployGraph, NeuronLayer
from hardware.energy import (CONVENTION_PRESETS, DEFAULT_CONVENTIONS, Conventions,
                             analyze_graph, energy, load_profile, parse_conventions)
from kd_snn.errors import KdsnnError


def layer(name, shape, conns, bias=0.0, alpha=0.0, beta=1.0, threshold=10.0, spiking=True):
    return NeuronLayer(name, shape, tuple(conns), np.full(shape, bias), np.full(shape, alpha),
                       np.full(shape, beta), np.full(shape, threshold), spiking)


def test_zero_weights_skipped_dense_by_hand():
    # 2 inputs -> 2 neurons, weights [[1, 0], [2, 3]]: 3 non-zero of 4; input [0.5, 0], T = 2
    g = DeployGraph((2,), (layer("a", (2,), [Connection("input", "dense",
                                                        np.array([[1.0, 0.0], [2.0, 3.0]]))]),),
                    time_steps=2)
    x = torch.tensor([0.5, 0.0], dtype=torch.float64).repeat(2, 1, 1)  # (T, B=1, 2)
    s = analyze_graph(g, x)
    macs = lambda **kw: s.under(Conventions(**kw))["a"].macs_in  # noqa: E731
    assert macs(first_layer="per_step") == 8  # 4 weights x 2 steps
    assert macs(first_layer="per_step", mac_weights="nonzero") == 6
    # input 0 (0.5) meets its 2 non-zero weights, input 1 is zero: 2 per step
    assert macs(first_layer="per_step", mac_weights="nonzero", zero_input="skipped") == 4
    assert macs(mac_weights="nonzero", zero_input="skipped") == 2  # first layer once
    assert macs(zero_input="skipped", first_layer="per_step") == 4  # 0.5 x both weights


def test_zero_weights_skipped_conv_padding_by_hand():
    # 3x3 kernel with a zero centre on a 3x3 image, padding 1: 3x3 outputs
    w = np.ones((1, 1, 3, 3))
    w[0, 0, 1, 1] = 0.0
    conn = Connection("input", "conv", w, (1, 1), (1, 1))
    g = DeployGraph((1, 3, 3), (layer("c", (1, 3, 3), [conn]),), time_steps=1)
    s = analyze_graph(g, torch.ones(1, 1, 1, 3, 3, dtype=torch.float64))
    macs = lambda **kw: s.under(Conventions(**kw))["c"].macs_in  # noqa: E731
    assert macs(padding="counted") == 81  # 9 outputs x 9 taps
    assert macs(padding="counted", mac_weights="nonzero") == 72  # 9 x 8
    assert macs() == 49  # in-bounds taps: 4 corners x 4 + 4 edges x 6 + centre 9
    assert macs(mac_weights="nonzero") == 40  # the centre tap is always in bounds: 49 - 9


def test_membrane_changed_by_hand():
    # neuron A: input 1, 0, 0, 2 (beta = 1, no reset): v = 1, 1, 1, 3 -> changes at 0, 3;
    # neuron B: bias 0.1: v = .1, .2, .3, .4 -> 4; neuron C: input 1 then 0, threshold 0.5:
    # v = 0 after its spike at step 0 and stays 0 -> 1 (the first step only)
    conn = Connection("input", "dense", np.eye(3))
    g = DeployGraph((3,), (layer("n", (3,), [conn], bias=0.0),
                           layer("out", (1,), [Connection("n", "dense", np.ones((1, 3)))],
                                 spiking=False)), time_steps=4)
    g = DeployGraph((3,), (NeuronLayer("n", (3,), (conn,), np.array([0.0, 0.1, 0.0]),
                                       np.zeros(3), np.ones(3), np.array([10.0, 10.0, 0.5])),
                           g.layers[1]), time_steps=4)
    x = torch.zeros(4, 1, 3, dtype=torch.float64)
    x[0, 0, 0], x[3, 0, 0], x[0, 0, 2] = 1.0, 2.0, 1.0
    s = analyze_graph(g, x)
    assert s["n"].membrane_changes == 2 + 4 + 1
    assert s["n"].neuron_updates == 12 and s["out"].neuron_updates == 4
    prof = load_profile("loihi")
    changed = energy(s, prof, Conventions(membrane="changed"))["layers"][0]
    assert changed["neuron_active_pj"] == pytest.approx(7 * prof.e_neuron_pj)
    assert changed["neuron_inactive_pj"] == pytest.approx(5 * prof.e_neuron_inactive_pj)
    out = lambda conv: energy(s, prof, conv)["layers"][1]["neuron_pj"]  # noqa: E731
    assert out(Conventions(readout="excluded")) == 0.0 and out(DEFAULT_CONVENTIONS) > 0


def test_membrane_changes_recomputed_from_records():
    conn = Connection("input", "dense", np.eye(2))
    g = DeployGraph((2,), (layer("n", (2,), [conn]),), time_steps=2)
    x = torch.ones(2, 1, 2, dtype=torch.float64)
    rec = {"n": torch.zeros(2, 1, 2)}
    s = analyze_graph(g, x, spikes=rec, source="lava")
    assert s["n"].membrane_changes is not None  # a float graph: recomputed from the records
    bare = analyze_graph(g, None, spikes={**rec, "input": x}, source="lava")
    assert bare["n"].membrane_changes is not None


def test_parse_conventions_presets_and_pairs():
    assert parse_conventions([]) == DEFAULT_CONVENTIONS
    assert parse_conventions(["kdsnn"]) == DEFAULT_CONVENTIONS
    nb = parse_conventions(["neurobench"])
    assert nb.to_dict() == {**DEFAULT_CONVENTIONS.to_dict(), **CONVENTION_PRESETS["neurobench"]}
    assert parse_conventions(["neurobench", "padding=counted"]).padding == "counted"
    assert parse_conventions(["zero_input=skipped", "first_layer=per_step"]) == Conventions(
        zero_input="skipped", first_layer="per_step")
    for bad, match in ((["nope"], "preset"), (["size=big"], "unknown convention"),
                       (["padding=maybe"], "padding must be one of")):
        with pytest.raises(KdsnnError, match=match):
            parse_conventions(bad)
