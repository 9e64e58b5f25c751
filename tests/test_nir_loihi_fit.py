"""What Loihi's LIF can hold, held; the rest refused by name (issue 30, item 4).

Per-neuron thresholds of a layer fed by dense rows, or per-channel thresholds of a layer fed
by convolutions, fold into the weights and bias (``export.imported.fold_thresholds``): the
same spikes, one threshold per population, and the graph quantizes and runs in Lava bit for
bit.  Per-position thresholds behind a convolution, or decays varying inside a layer, stay
as they are: the import notes them and quantizing refuses in one sentence naming the layer,
the field and the reason.
"""
import numpy as np
import pytest
import torch

from export.graph import Connection, DeployGraph, NeuronLayer, run_float
from export.imported import fit_to_data, fold_thresholds, loihi_problems


def _graph(conv_thr, dense_thr, beta2=0.8):
    rng = np.random.default_rng(3)
    c1 = Connection("input", "conv", rng.normal(0, 0.8, (3, 2, 3, 3)), (1, 1), (1, 1))
    l1 = NeuronLayer("c1", (3, 5, 5), (c1,), rng.normal(0, 0.05, (3, 1, 1)), 0.0, 0.7,
                     conv_thr)
    d = Connection("c1", "dense", rng.normal(0, 0.5, (6, 75)))
    l2 = NeuronLayer("d1", (6,), (d,), rng.normal(0, 0.05, 6), 0.3, beta2, dense_thr)
    o = Connection("d1", "dense", rng.normal(0, 0.5, (4, 6)))
    l3 = NeuronLayer("fc", (4,), (o,), 0.0, 0.0, 1.0, 1.0, spiking=False)
    return DeployGraph((2, 5, 5), (l1, l2, l3), 6)


def _x(n=8, T=6):
    return torch.rand(T, n, 2, 5, 5, dtype=torch.float64,
                      generator=torch.Generator().manual_seed(1))


def test_per_channel_and_per_neuron_thresholds_fold_exactly():
    per_channel = np.array([0.4, 0.9, 1.7]).reshape(3, 1, 1) * np.ones((3, 5, 5))
    per_neuron = np.linspace(0.3, 1.2, 6)
    g = _graph(per_channel, per_neuron)
    assert len(loihi_problems(g)) == 2
    f = fold_thresholds(g)
    assert f.metadata["folded_thresholds"] == ["c1", "d1"]
    assert loihi_problems(f) == []
    assert np.all(f.layer("c1").threshold == 1.7) and np.all(f.layer("d1").threshold == 1.2)
    x = _x()
    la, sa = run_float(g, x, record=True)
    lb, sb = run_float(f, x, record=True)
    for name in ("c1", "d1"):
        assert sa[name].sum() > 0 and torch.equal(sa[name], sb[name]), name
    torch.testing.assert_close(la, lb, rtol=0, atol=1e-12)
    # fit_to_data folds what it can: an imported network Loihi holds
    fitted = fit_to_data(g, (2, 5, 5), 4, 6, "direct")
    assert loihi_problems(fitted) == [] and fitted.metadata["folded_thresholds"]


def test_folded_graph_runs_in_lava_bit_exact():
    import lava.proc.lif.process  # noqa: F401 - Lava first (multiprocessing start method)

    from export.emulate import emulate
    from export.quantize import encode_input, quantize
    from hardware.lava_sim import LavaRunner

    g = fold_thresholds(_graph(np.array([0.4, 0.9, 1.7]).reshape(3, 1, 1) * np.ones((3, 5, 5)),
                               np.linspace(0.3, 1.2, 6)))
    x = _x()
    q = quantize(g, x)
    xi = encode_input(x[:, :3])
    v_emu, s_emu = emulate(q, xi)
    with LavaRunner(q, chunk_samples=3, conv_model="lava") as runner:
        v_lava, s_lava = runner.run(xi)
    assert torch.equal(v_emu, v_lava)
    assert all(torch.equal(s_emu[k], s_lava[k]) for k in s_emu)


@pytest.mark.parametrize("conv_thr,beta2,words", [
    # thresholds varying over positions behind a convolution: no kernel per position
    (np.linspace(0.5, 1.5, 75).reshape(3, 5, 5), 0.8,
     ["layer 'c1'", "threshold from 0.5 to 1.5", "vth (threshold) per population"]),
    # decays varying inside a layer: Loihi has one dv per population
    (1.0, np.linspace(0.5, 0.9, 6), ["layer 'd1'", "beta from 0.5 to 0.9",
                                     "dv (voltage decay) per population"]),
])
def test_what_loihi_cannot_hold_is_refused_by_name(conv_thr, beta2, words):
    from export.quantize import quantize
    g = fold_thresholds(_graph(conv_thr, 1.0, beta2))
    problems = loihi_problems(g)
    assert len(problems) == 1 and all(w in problems[0] for w in words), problems
    layer, key = words[0].split("'")[1], words[1].split()[0]
    with pytest.raises(ValueError, match=f"layer '{layer}': {key} must be uniform per layer"):
        quantize(g, _x(2))
