"""SynOps / MACs / energy counts checked against hand counts and brute-force loops."""
import itertools

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from export.graph import Connection, DeployGraph, NeuronLayer, run_float
from hardware.energy import (DEFAULT_CONVENTIONS, Conventions, analyze_graph, convention_grid,
                             count_teacher, energy, energy_ratio, fanout_map, list_profiles,
                             load_profile, macs_per_connection, synops_per_connection,
                             teacher_energy, teacher_macs)
from kd_snn.errors import KdsnnError


def brute_conv_fanout(w, in_shape, stride, padding, nonzero=True):
    """Loop over every synapse (output neuron, kernel tap) and credit its source pixel."""
    co, ci, kh, kw = w.shape
    _, h, wd = in_shape
    oh = (h + 2 * padding[0] - kh) // stride[0] + 1
    ow = (wd + 2 * padding[1] - kw) // stride[1] + 1
    fan = np.zeros(in_shape, dtype=np.int64)
    for o, oy, ox, c, ky, kx in itertools.product(range(co), range(oh), range(ow), range(ci),
                                                  range(kh), range(kw)):
        iy, ix = oy * stride[0] - padding[0] + ky, ox * stride[1] - padding[1] + kx
        if 0 <= iy < h and 0 <= ix < wd and (not nonzero or w[o, c, ky, kx] != 0):
            fan[c, iy, ix] += 1
    return fan


def layer(name, shape, conns, spiking=True, thr=0.5):
    return NeuronLayer(name, shape, tuple(conns), bias=0.0, alpha=0.0, beta=0.5,
                       threshold=thr, spiking=spiking)


# --------------------------------------------------------------------------- dense


def test_dense_synops_hand_count():
    w = np.array([[1.0, 0.0, 2.0, 0.0],
                  [0.5, 0.0, 0.0, 0.0],
                  [-1.0, 3.0, 1.0, 0.0]])  # column fan-outs (nonzero): 3, 1, 2, 0
    conn = Connection("a", "dense", w)
    assert fanout_map(conn, (4,)).tolist() == [3, 1, 2, 0]
    assert fanout_map(conn, (4,), "all").tolist() == [3, 3, 3, 3]
    spikes = torch.tensor([[[1, 0, 1, 1], [0, 0, 0, 0]],
                           [[0, 1, 1, 0], [1, 1, 1, 1]]], dtype=torch.float32)  # (T=2, B=2, 4)
    syn = synops_per_connection(conn, spikes)
    assert syn.dtype == np.int64
    assert syn.tolist() == [[3 + 2 + 0, 0], [1 + 2, 3 + 1 + 2 + 0]]
    syn_all = synops_per_connection(conn, spikes, fanout="all")
    assert syn_all.tolist() == [[9, 0], [6, 12]]


def test_events_nonzero_vs_magnitude():
    conn = Connection("a", "dense", np.ones((2, 3)))
    counts = torch.tensor([[[2.0, 0.0, 1.0]]])  # event frame with a count of 2
    assert synops_per_connection(conn, counts).tolist() == [[4]]  # 2 events x fan-out 2
    assert synops_per_connection(conn, counts, events="magnitude").tolist() == [[6]]


# --------------------------------------------------------------------------- conv


@pytest.mark.parametrize("in_shape,k,stride,padding", [
    ((2, 7, 7), 3, (2, 2), (1, 1)),   # the task's case: 3x3, stride 2, padding 1
    ((2, 6, 7), 3, (2, 2), (1, 1)),   # even size: transposed conv needs output_padding
    ((1, 7, 8), 3, (3, 2), (0, 1)),   # last row never reached (fan-out 0)
    ((3, 5, 5), 3, (1, 1), (1, 1)),
    ((2, 9, 9), 5, (2, 2), (2, 2)),
])
def test_conv_fanout_matches_brute_force(in_shape, k, stride, padding):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, in_shape[0], k, k))
    w[rng.random(w.shape) < 0.3] = 0.0  # some pruned synapses
    conn = Connection("a", "conv", w, stride, padding)
    np.testing.assert_array_equal(fanout_map(conn, in_shape, "all"),
                                  brute_conv_fanout(w, in_shape, stride, padding, False))
    np.testing.assert_array_equal(fanout_map(conn, in_shape, "nonzero"),
                                  brute_conv_fanout(w, in_shape, stride, padding, True))


def test_conv_3x3_pad1_stride2_synops_by_hand():
    w = np.ones((2, 1, 3, 3))
    conn = Connection("a", "conv", w, (2, 2), (1, 1))
    fan = fanout_map(conn, (1, 5, 5))
    # 5x5 -> 3x3 output. Per axis, row y is read by output rows oy with 2*oy - 1 + ky = y, ky in 0..2, oy in 0..2:
    # y=0: (oy=0,ky=1) -> 1; y=1: (0,2),(1,0) -> 2; y=2: (1,1) -> 1; y=3: 2; y=4: 1.
    per_axis = np.array([1, 2, 1, 2, 1])
    np.testing.assert_array_equal(fan[0], 2 * np.outer(per_axis, per_axis))
    assert fan[0, 0, 0] == 2 and fan[0, 1, 1] == 8  # border vs interior: not C_out*k*k = 18
    spikes = torch.zeros(1, 1, 1, 5, 5)
    spikes[0, 0, 0, 0, 0] = 1  # corner: 2 synops
    spikes[0, 0, 0, 1, 1] = 1  # interior odd: 8
    spikes[0, 0, 0, 2, 3] = 1  # 2 * 1 * 2 = 4
    assert synops_per_connection(conn, spikes).tolist() == [[2 + 8 + 4]]
    # independent check: each synaptic event is one term of the conv with a ones mask
    mask = torch.ones(2, 1, 3, 3)
    terms = torch.nn.functional.conv2d(spikes[0], mask, stride=2, padding=1).sum()
    assert terms.item() == 14


def test_conv_synops_random_equals_conv_of_mask():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(3, 2, 3, 3))
    w[0, 1] = 0.0
    conn = Connection("a", "conv", w, (2, 2), (1, 1))
    spikes = torch.as_tensor(rng.random((4, 3, 2, 8, 8)) < 0.3, dtype=torch.float64)
    mask = torch.as_tensor(w != 0, dtype=torch.float64)
    want = torch.nn.functional.conv2d(spikes.flatten(0, 1), mask, stride=2, padding=1)
    want = want.reshape(4, 3, -1).sum(-1).numpy()
    np.testing.assert_array_equal(synops_per_connection(conn, spikes), want)


# --------------------------------------------------------------------------- pooling


@pytest.mark.parametrize("kind", ["avgpool", "sumpool"])
def test_pool_fanout_one_inside_windows(kind):
    conn = Connection("a", kind, kernel=(2, 2))
    fan = fanout_map(conn, (2, 5, 5))
    assert fan[:, :4, :4].min() == 1 and fan[:, 4, :].max() == 0 and fan[:, :, 4].max() == 0
    spikes = torch.zeros(1, 1, 2, 5, 5)
    spikes[0, 0, 0, 0, 0] = 1
    spikes[0, 0, 1, 3, 2] = 1
    spikes[0, 0, 1, 4, 4] = 1  # dropped by the floor division: no synapse
    assert synops_per_connection(conn, spikes).tolist() == [[2]]


# --------------------------------------------------------------------------- graphs


def residual_graph(encoding="direct"):
    rng = np.random.default_rng(2)
    w0 = rng.normal(size=(3, 2, 3, 3))
    w1 = rng.normal(size=(3, 3, 3, 3)) * 0.8
    w1[:, :, 0, 0] = 0.0
    wskip = np.zeros((3, 3, 1, 1))
    wskip[[0, 1, 2], [0, 1, 2]] = 1.0  # identity shortcut as a 1x1 conv
    wd = rng.normal(size=(4, 3 * 3 * 3))
    a = layer("a", (3, 6, 6), [Connection("input", "conv", w0, (1, 1), (1, 1))])
    b = layer("b", (3, 6, 6), [Connection("a", "conv", w1, (1, 1), (1, 1))])
    c = layer("c", (3, 6, 6), [Connection("b", "conv", w1 * 0.5, (1, 1), (1, 1)),
                               Connection("a", "conv", wskip)])
    p = layer("p", (3, 3, 3), [Connection("c", "avgpool", kernel=(2, 2))])
    out = layer("out", (4,), [Connection("p", "dense", wd)], spiking=False)
    return DeployGraph((2, 6, 6), (a, b, c, p, out), time_steps=3, encoding=encoding)


def test_residual_synops_add_and_input_macs():
    g = residual_graph()
    torch.manual_seed(0)
    x = torch.rand(3, 5, 2, 6, 6, dtype=torch.float64)
    x[:, :, 0, :2] = 0.0  # zeros still cost MACs
    stats = analyze_graph(g, x, batch_size=2)
    _, rec = run_float(g, x, record=True)
    c = g.layer("c")
    e_main = synops_per_connection(c.connections[0], rec["b"]).sum() / 5
    e_skip = synops_per_connection(c.connections[1], rec["a"]).sum() / 5
    assert e_skip == rec["a"].sum().item() / 5  # identity 1x1: fan-out 1
    sc = stats["c"]
    assert sc.synops_by_source == {"b": e_main, "a": e_skip}
    assert sc.synops_in == pytest.approx(e_main + e_skip, abs=0)
    # input layer: MACs = T x every input value x its fan-out, no SynOps
    sa = stats["a"]
    fan = brute_conv_fanout(g.layer("a").connections[0].weight, (2, 6, 6), (1, 1), (1, 1))
    assert sa.synops_in == 0 and sa.macs_in == 3 * fan.sum()
    assert macs_per_connection(g.layer("a").connections[0], x).tolist() == [[fan.sum()] * 5] * 3
    # spikes and rates
    for name in ("a", "b", "c", "p"):
        s = stats[name]
        assert s.spikes == pytest.approx(rec[name].sum().item() / 5)
        assert s.firing_rate == pytest.approx(s.spikes / (s.neurons * 3))
        assert s.spikes_per_step == pytest.approx(s.spikes / 3)
    assert stats["out"].firing_rate is None and stats["out"].neuron_updates == 4 * 3
    assert stats["p"].synops_in == pytest.approx(
        rec["c"][:, :, :, :6, :6].sum().item() / 5)
    tot = stats.totals
    assert tot["synops"] == pytest.approx(sum(s.synops_in for s in stats))
    assert tot["macs"] == sa.macs_in
    assert tot["neuron_updates"] == 3 * (108 * 3 + 27 + 4)


def test_batching_and_precomputed_records_agree():
    g = residual_graph()
    torch.manual_seed(1)
    x = torch.rand(1, 7, 2, 6, 6, dtype=torch.float64).repeat(3, 1, 1, 1, 1)  # direct encoding
    ref = analyze_graph(g, x, batch_size=64)
    chunked = analyze_graph(g, x, batch_size=3)
    _, rec = run_float(g, x, record=True)
    lava = analyze_graph(g, x, spikes={k: v.numpy() for k, v in rec.items()}, source="lava",
                         batch_size=4)
    no_x = analyze_graph(g, spikes=rec, source="lava")  # direct input: shape from records
    assert lava.source == "lava"
    for other in (chunked, lava, no_x):
        for s0, s1 in zip(ref, other):
            assert s0.spikes == pytest.approx(s1.spikes)
            assert s0.synops_in == pytest.approx(s1.synops_in)
            assert s0.macs_in == s1.macs_in


def test_records_validation():
    g = residual_graph()
    x = torch.rand(3, 2, 2, 6, 6, dtype=torch.float64)
    _, rec = run_float(g, x, record=True)
    missing = {k: v for k, v in rec.items() if k != "b"}
    with pytest.raises(KdsnnError, match="'b'"):
        analyze_graph(g, x, spikes=missing)
    bad = dict(rec, b=rec["b"].permute(0, 1, 3, 4, 2))
    with pytest.raises(KdsnnError, match="shape"):
        analyze_graph(g, x, spikes=bad)
    with pytest.raises(KdsnnError, match="encoding"):
        analyze_graph(residual_graph("mystery"), x)
    with pytest.raises(KdsnnError, match="input is spiking"):
        analyze_graph(residual_graph("poisson"), spikes=rec)


def test_spiking_input_counts_synops():
    g = residual_graph("poisson")
    torch.manual_seed(2)
    x = (torch.rand(3, 4, 2, 6, 6) < 0.2).to(torch.float64)
    stats = analyze_graph(g, x)
    conn = g.layer("a").connections[0]
    assert stats["a"].macs_in == 0
    assert stats["a"].synops_in == synops_per_connection(conn, x).sum() / 4
    forced = analyze_graph(g, x, input_mode="macs")
    assert forced["a"].synops_in == 0 and forced["a"].macs_in > 0


def test_dense_input_macs_count_every_value():
    w = np.ones((3, 4))
    w[0, 0] = 0.0  # a MAC array multiplies zero weights too: MACs count every weight
    g = DeployGraph((4,), (layer("o", (3,), [Connection("input", "dense", w)], spiking=False),),
                    time_steps=2)
    x = torch.zeros(2, 5, 4, dtype=torch.float64)  # repeats over T: charged once by default
    assert analyze_graph(g, x, fanout="all")["o"].macs_in == 4 * 3
    assert analyze_graph(g, x)["o"].macs_in == 4 * 3
    per_step = Conventions(first_layer="per_step")
    assert analyze_graph(g, x, conventions=per_step)["o"].macs_in == 2 * 4 * 3
    assert analyze_graph(g, x, conventions=Conventions(zero_input="skipped"))["o"].macs_in == 0


# --------------------------------------------------------------------------- conventions
# One 3x3 conv, padding 1, 1 -> 2 channels, on a 4x4 image.  Per axis the outputs 0..3 read
# 2, 3, 3, 2 in-bounds rows, so in-bounds taps = 2 * (2+3+3+2)**2 = 200 per step; with the
# padding taps every output reads 9: 2 * 16 * 9 = 288.  A pixel's fan-out is 2 * (its
# row's readers) * (its column's readers) with readers 2, 3, 3, 2 per axis: the corner
# (0, 0) has 2 * 2 * 2 = 8, the inner (1, 1) 2 * 3 * 3 = 18.


def first_layer_graph(T=3):
    w = np.ones((2, 1, 3, 3))
    conv = layer("c", (2, 4, 4), [Connection("input", "conv", w, (1, 1), (1, 1))], thr=100.0)
    return DeployGraph((1, 4, 4), (conv,), time_steps=T, encoding="direct")


def hand_images():
    img = torch.ones(2, 1, 4, 4, dtype=torch.float64)  # two samples, the same image
    img[:, 0, 0, 0] = 0.0  # corner: fan-out 8
    img[:, 0, 1, 1] = 0.0  # inner: fan-out 18
    return img


def test_padding_taps_on_off_by_hand():
    g = first_layer_graph()
    x = hand_images().unsqueeze(0).repeat(3, 1, 1, 1, 1)
    counts = analyze_graph(g, x)["c"].mac_counts["input"]
    assert (counts["in_bounds"], counts["padded"]) == (200, 288)
    assert analyze_graph(g, x)["c"].macs_in == 200
    assert analyze_graph(g, x, conventions=Conventions(padding="counted"))["c"].macs_in == 288


def test_first_layer_once_vs_per_step_by_hand():
    g = first_layer_graph(T=3)
    x = hand_images().unsqueeze(0).repeat(3, 1, 1, 1, 1)  # direct encoding: repeats
    stats = analyze_graph(g, x)
    assert stats["c"].macs_in == 200  # once
    assert stats.under(Conventions(first_layer="per_step"))["c"].macs_in == 3 * 200
    assert stats.under(Conventions(first_layer="per_step", padding="counted"))[
        "c"].macs_in == 3 * 288
    varying = x.clone()
    varying[1] = 0.5  # the input changes over time: charged at every step either way
    assert analyze_graph(g, varying)["c"].macs_in == 3 * 200


def test_zero_input_skipping_by_hand():
    g = first_layer_graph(T=3)
    x = hand_images().unsqueeze(0).repeat(3, 1, 1, 1, 1)
    skip = Conventions(zero_input="skipped")
    assert analyze_graph(g, x, conventions=skip)["c"].macs_in == 200 - 8 - 18
    assert analyze_graph(g, x, conventions=replace_conv(skip, first_layer="per_step"))[
        "c"].macs_in == 3 * (200 - 8 - 18)
    # padding taps read zeros, so skipping zeros skips them too
    assert analyze_graph(g, x, conventions=replace_conv(skip, padding="counted"))[
        "c"].macs_in == 200 - 8 - 18
    _, rec = run_float(g, x, record=True)
    no_input = analyze_graph(g, spikes=rec)  # without the input values: no zero skipping
    assert no_input["c"].macs_in == 200
    with pytest.raises(KdsnnError, match="zero-input"):
        no_input.under(skip)


def replace_conv(conv, **kw):
    import dataclasses
    return dataclasses.replace(conv, **kw)


def test_conventions_validation_and_grid():
    with pytest.raises(KdsnnError, match="padding"):
        Conventions(padding="sometimes")
    grid = convention_grid()
    assert len(grid) == 8 and grid[0] == DEFAULT_CONVENTIONS
    assert len(set(grid)) == 8
    assert DEFAULT_CONVENTIONS.to_dict() == {"padding": "in_bounds", "first_layer": "once",
                                             "zero_input": "counted",
                                             "neuron_updates": "active_inactive",
                                             "mac_weights": "all", "membrane": "every_step",
                                             "readout": "counted"}


def test_teacher_counted_like_the_student_both_ways():
    teacher = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, bias=False), nn.ReLU(),
                            nn.Flatten(), nn.Linear(32, 3))
    images = hand_images()
    ts = count_teacher(teacher, (1, 4, 4), x=images)
    first, fc = ts.layers
    assert (first.name, first.in_bounds, first.padded, first.input) == ("0", 200, 288, True)
    assert first.nonzero == 200 - 8 - 18
    assert (fc.in_bounds, fc.padded, fc.input, fc.nonzero) == (96, 96, False, None)
    assert ts.macs() == {"0": 200, "3": 96}
    assert ts.macs(Conventions(padding="counted")) == {"0": 288, "3": 96}
    assert ts.macs(Conventions(zero_input="skipped")) == {"0": 174, "3": 96}
    counter = FlopCounterMode(display=False)  # cross-check: flop_counter counts padding taps
    with counter, torch.no_grad():
        teacher(torch.zeros(1, 1, 4, 4))
    assert counter.get_total_flops() == 2 * sum(ts.macs(Conventions(padding="counted")).values())
    # the student's first layer, counted by the same counter, gives the same three figures
    st = analyze_graph(first_layer_graph(T=1), images.unsqueeze(0))
    for conv in convention_grid():
        assert st.under(conv)["c"].macs_in == ts.macs(conv)["0"], conv
    with pytest.raises(KdsnnError, match="zero-input"):
        count_teacher(teacher, (1, 4, 4)).macs(Conventions(zero_input="skipped"))


def test_active_and_inactive_neuron_updates_by_hand():
    w = np.array([[1.0, 0.0], [0.0, 0.0]])  # neuron 1 has no synapse: never active

    def graph(thr):
        return DeployGraph((2,), (layer("a", (2,), [Connection("input", "dense", w)], thr=thr),),
                           time_steps=3, encoding="direct")

    x = torch.zeros(3, 1, 2, dtype=torch.float64)
    x[0, 0, 0] = 1.0  # one input at t = 0 only
    # no spike (threshold 5): neuron 0 is active at t = 0 (input), 1 and 2 (carried voltage)
    quiet = analyze_graph(graph(5.0), x)["a"]
    assert (quiet.active_updates, quiet.neuron_updates, quiet.spikes) == (3, 6, 0)
    # a spike at t = 0 resets it: active at t = 0 only
    loud = analyze_graph(graph(0.5), x)["a"]
    assert (loud.active_updates, loud.spikes) == (1, 1)
    e = energy(analyze_graph(graph(0.5), x), "loihi")
    assert e["neuron_active_pj"] == pytest.approx(1 * 81.0)
    assert e["neuron_inactive_pj"] == pytest.approx(5 * 52.0)
    assert e["spike_pj"] == pytest.approx(1 * 1.7)
    assert e["macs_pj"] == pytest.approx(3 * 4 * 4.6)  # 4 weights, 3 steps (input varies)
    every = energy(analyze_graph(graph(0.5), x), "loihi",
                   Conventions(neuron_updates="all_active"))
    assert every["neuron_active_pj"] == pytest.approx(6 * 81.0)
    assert every["neuron_inactive_pj"] == 0
    biased = DeployGraph((2,), (NeuronLayer("a", (2,), (Connection("input", "dense", w),),
                                            bias=np.array([0.0, 0.1]), alpha=0.0, beta=0.5,
                                            threshold=5.0),), time_steps=3)
    assert analyze_graph(biased, x)["a"].active_updates == 3 + 3  # a bias keeps it active


# --------------------------------------------------------------------------- teacher


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, groups=2, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                       nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.short(x))


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 1, 1)
        self.layer1 = Block(8, 8, 1)
        self.layer2 = Block(8, 16, 2)
        self.dw = nn.Conv2d(16, 16, 3, 2, 0, groups=16)  # depthwise, no padding, odd size
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.dw(self.layer2(self.layer1(torch.relu(self.stem(x)))))
        return self.fc(x.mean((2, 3)))


def test_teacher_macs_match_flop_counter():
    model = TinyResNet().train()
    macs = teacher_macs(model, (3, 13, 13), Conventions(padding="counted"))
    assert model.training  # mode restored
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(torch.zeros(1, 3, 13, 13))
    assert counter.get_total_flops() == 2 * sum(macs.values())
    flops = counter.get_flop_counts()
    for name, n in macs.items():
        assert sum(flops[f"TinyResNet.{name}"].values()) == 2 * n, name
    # hand counts: stem 13*13*8 outputs x 3*9; fc 16*10; dw (16, 3, 3) outputs x 1*9
    assert macs["stem"] == 13 * 13 * 8 * 27
    assert macs["fc"] == 160
    assert macs["dw"] == 16 * 3 * 3 * 9
    assert macs["layer1.conv2"] == 13 * 13 * 8 * 4 * 9  # groups=2: 4 input channels each
    assert list(macs)[:2] == ["stem", "layer1.conv1"]  # call order
    assert teacher_macs(model, (4, 3, 13, 13), Conventions(padding="counted")) == macs
    # in-bounds only (the default) differs exactly where padding is: stem 3x3 pad 1 on 13x13
    # reads (13*3 - 2)**2 = 37**2 in-bounds taps per (C_in, C_out) pair; dw has no padding
    inside = teacher_macs(model, (3, 13, 13))
    assert inside["stem"] == 37 * 37 * 3 * 8 and inside["stem"] < macs["stem"]
    assert inside["dw"] == macs["dw"] and inside["fc"] == macs["fc"]
    assert inside["layer2.short.0"] == macs["layer2.short.0"]  # 1x1, no padding


# --------------------------------------------------------------------------- profiles, energy


def test_builtin_profiles():
    assert {"cmos45nm_fp32", "cmos45nm_int8", "loihi"} <= set(list_profiles())
    cmos = load_profile("cmos45nm_fp32")
    assert (cmos.e_mac_pj, cmos.e_ac_pj, cmos.e_neuron_pj) == (4.6, 0.9, None)
    assert "Horowitz" in cmos.source and load_profile("cmos45nm") == cmos  # the old name
    int8 = load_profile("cmos45nm_int8")
    assert (int8.e_mac_pj, int8.e_ac_pj) == (0.23, 0.03)  # int8 mult 0.2 + add 0.03
    assert int8.figures == {"int8_add": 0.03, "int8_mult": 0.2, "int32_add": 0.1,
                            "int32_mult": 3.1}
    loihi = load_profile("loihi")
    assert (loihi.e_ac_pj, loihi.e_neuron_pj, loihi.e_neuron_inactive_pj,
            loihi.e_spike_pj) == (23.6, 81.0, 52.0, 1.7)
    assert loihi.figures["tile_hop_east_west"] == 3.0
    assert loihi.figures["tile_hop_north_south"] == 4.0
    assert "Davies" in loihi.source and "Table 2" in loihi.source
    assert loihi.teacher_profile == "cmos45nm_fp32" and loihi.notes
    assert any("27.1" in n for n in loihi.notes)


def write(tmp_path, text, name="dev.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_user_profile_and_validation(tmp_path):
    ok = write(tmp_path, "name: dev\nsource: me 2024\ne_mac_pj: 2\ne_ac_pj: 0.5\n"
                         "e_neuron_pj: 1.5\n")
    prof = load_profile(str(ok))
    assert (prof.name, prof.e_mac_pj, prof.e_ac_pj, prof.e_neuron_pj) == ("dev", 2.0, 0.5, 1.5)
    assert load_profile(ok) == prof
    cases = {
        "name: dev\nsource: s\ne_mac_pj: 2\n": "e_ac_pj",
        "source: s\ne_mac_pj: 2\ne_ac_pj: 1\n": "name",
        "name: dev\ne_mac_pj: 2\ne_ac_pj: 1\n": "source",
        "name: dev\nsource: s\ne_mac_pj: 0\ne_ac_pj: 1\n": "e_mac_pj",
        "name: dev\nsource: s\ne_mac_pj: 1\ne_ac_pj: -3\n": "e_ac_pj",
        "name: dev\nsource: s\ne_mac_pj: 1\ne_ac_pj: 1\ne_neuron_pj: x\n": "e_neuron_pj",
        "name: dev\nsource: s\ne_mac_pj: 1\ne_ac_pj: .nan\n": "e_ac_pj",
        "name: dev\nsource: s\ne_mac_pj: true\ne_ac_pj: 1\n": "e_mac_pj",
        "name: dev\nsource: s\ne_mac_pj: 1\ne_ac_pj: 1\ne_nueron_pj: 1\n": "e_nueron_pj",
        "- 1\n- 2\n": "mapping",
        "name: [unclosed\n": "invalid YAML",
    }
    for i, (text, key) in enumerate(cases.items()):
        p = write(tmp_path, text, f"bad{i}.yaml")
        with pytest.raises(KdsnnError) as err:
            load_profile(p)
        assert key in str(err.value) and str(p) in str(err.value), text
    with pytest.raises(KdsnnError, match="unknown energy profile 'tpu'"):
        load_profile("tpu")
    with pytest.raises(KdsnnError, match="not found"):
        load_profile(str(tmp_path / "absent.yaml"))


def test_energy_hand_computed():
    g = residual_graph()
    x = torch.rand(3, 2, 2, 6, 6, dtype=torch.float64)
    stats = analyze_graph(g, x)
    t = stats.totals
    cmos = energy(stats, "cmos45nm")
    assert cmos["total_pj"] == pytest.approx(t["synops"] * 0.9 + t["macs"] * 4.6)
    assert cmos["neuron_pj"] == 0
    loihi = energy(stats, "loihi")
    active = t["active_updates"]
    assert loihi["neuron_pj"] == pytest.approx(
        active * 81.0 + (t["neuron_updates"] - active) * 52.0)
    assert loihi["total_pj"] == pytest.approx(
        t["synops"] * 23.6 + t["macs"] * 4.6 + loihi["neuron_pj"] + t["spikes"] * 1.7)
    assert sum(l["total_pj"] for l in loihi["layers"]) == pytest.approx(loihi["total_pj"])
    te = teacher_energy({"conv": 1000, "fc": 10}, "cmos45nm")
    assert te["macs"] == 1010 and te["total_pj"] == pytest.approx(1010 * 4.6)
    assert teacher_energy(1010, "cmos45nm")["total_pj"] == te["total_pj"]
    assert energy_ratio(cmos, te) == pytest.approx(1010 * 4.6 / cmos["total_pj"])
    on_loihi = teacher_energy(1010, "loihi")  # an ANN cannot run on Loihi: 45 nm fp32
    assert on_loihi["charged_as"] == "cmos45nm_fp32" and on_loihi["total_pj"] == te["total_pj"]
    assert teacher_energy(1010, "cmos45nm_int8")["total_pj"] == pytest.approx(1010 * 0.23)


def test_grouped_conv_fanout_matches_brute_force():
    rng = np.random.default_rng(4)
    w = rng.normal(size=(6, 2, 3, 3))  # groups=2: 4 input channels
    w[0, 1] = 0.0

    class GroupedConn:  # duck-typed like export.quantize.QuantConnection
        kind, stride, padding, groups, weight = "conv", (2, 2), (1, 1), 2, w

        def out_shape(self, s):
            return (6, (s[1] + 2 - 3) // 2 + 1, (s[2] + 2 - 3) // 2 + 1)

    fan = fanout_map(GroupedConn(), (4, 7, 6))
    want = np.zeros((4, 7, 6), dtype=np.int64)
    for g in range(2):  # group g: outputs 3g..3g+2 read inputs 2g..2g+1
        want[2 * g:2 * g + 2] = brute_conv_fanout(w[3 * g:3 * g + 3], (2, 7, 6), (2, 2), (1, 1))
    np.testing.assert_array_equal(fan, want)


def test_quantized_graph_with_records():
    from export.quantize import quantize
    g = residual_graph()
    torch.manual_seed(5)
    x = torch.rand(3, 4, 2, 6, 6, dtype=torch.float64)
    q = quantize(g, x)
    _, rec = run_float(g, x, record=True)  # stand-in for aligned Lava spikes
    ref = analyze_graph(g, x, fanout="all")
    got = analyze_graph(q, spikes=rec, x_seq=x, source="lava", fanout="all")
    assert got.input_mode == "macs"
    for s0, s1 in zip(ref, got):
        assert (s0.name, s0.spikes, s0.synops_in, s0.macs_in) == \
            (s1.name, s1.spikes, s1.synops_in, s1.macs_in)
    with pytest.raises(KdsnnError, match="spike records"):
        analyze_graph(q, x)
