"""The neuron core against hand-computed traces and against snntorch's Leaky."""

import pytest
import torch

from kd_snn.neurons import CubaLIF, Readout, cuba_multistep, get_surrogate, loihi_decays
from kd_snn.neurons.surrogate import surrogate_grad, ATAN, SIGMOID, TRIANGLE


def test_plain_lif_trace_by_hand():
    # beta = 0.5, threshold = 1: v = 0.5 v + x, spike when v > 1, reset to 0
    x = torch.tensor([0.6, 0.6, 0.6, 1.0, 0.2, 1.2]).reshape(6, 1)
    s, state = cuba_multistep(x, 0.0, 0.5, 1.0)
    # v: 0.6 -> 0.9 -> 1.05 (spike, 0) -> 1.0 (not > 1) -> 0.7 -> 1.55 (spike, 0)
    assert s.flatten().tolist() == [0, 0, 1, 0, 0, 1]
    assert state.v.item() == 0.0


def test_strict_threshold_comparison():
    s, _ = cuba_multistep(torch.tensor([[1.0]]), 0.0, 0.5, 1.0)
    assert s.item() == 0.0  # v == threshold does not spike (Loihi compares v > vth)


def test_cuba_trace_with_current_memory_and_bias_by_hand():
    alpha, beta, bias = 0.5, 0.75, 0.1
    x = [1.0, 0.0, 0.0, 0.0]
    i = v = 0.0
    expected = []
    for xt in x:
        i = alpha * i + xt
        v = beta * v + i + bias
        spk = v > 1.2
        expected.append(float(spk))
        v = 0.0 if spk else v
    s, _ = cuba_multistep(torch.tensor(x).reshape(4, 1), alpha, beta, 1.2,
                          bias=torch.tensor([bias]))
    assert s.flatten().tolist() == expected == [0.0, 1.0, 0.0, 0.0]


def test_per_neuron_parameters_broadcast():
    x = torch.full((3, 2, 2), 0.6)  # T, B, N
    beta = torch.tensor([0.0, 1.0])
    s, _ = cuba_multistep(x, 0.0, beta, 1.0)
    # neuron 0 never accumulates; neuron 1 integrates 0.6, 1.2 -> spike at t = 1
    assert s[:, 0, 0].tolist() == [0, 0, 0] and s[:, 0, 1].tolist() == [0, 1, 0]


@pytest.mark.parametrize("backend", ["fused", "reference"])
def test_module_matches_snntorch_leaky_exactly(backend):
    snntorch = pytest.importorskip("snntorch")
    torch.manual_seed(0)
    x = torch.randn(8, 16, 32) * 0.8 + 0.3
    ours = CubaLIF(alpha=0.0, beta=0.5, threshold=1.0, backend=backend)(x)
    leaky = snntorch.Leaky(beta=0.5, threshold=1.0, reset_mechanism="zero")
    mem = leaky.init_leaky()
    theirs = []
    for t in range(x.shape[0]):
        spk, mem = leaky(x[t], mem)
        theirs.append(spk)
    theirs = torch.stack(theirs)
    assert ours.sum() > 0
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("name, kind", [("atan", ATAN), ("sigmoid", SIGMOID),
                                        ("triangle", TRIANGLE)])
def test_surrogates_forward_exact_backward_shaped(name, kind):
    spike = get_surrogate(name, width=0.5)
    x = torch.linspace(-2, 2, 401, requires_grad=True)
    y = spike(x)
    assert torch.equal(y, (x > 0).float())
    y.sum().backward()
    g = x.grad
    assert torch.all(g >= 0) and g[200] == g.max()  # peak at the threshold
    assert torch.allclose(g, surrogate_grad(x.detach(), kind, 0.5))
    area = torch.trapezoid(g, x.detach())
    assert abs(float(area) - 1.0) < 0.05 if name != "atan" else float(area) > 0.8


def test_surrogate_width_changes_gradient_spread():
    x = torch.tensor([0.4], requires_grad=True)
    get_surrogate("triangle", 0.5)(x).backward()
    assert x.grad.item() == pytest.approx((1 - 0.4 / 0.5) / 0.5)
    with pytest.raises(ValueError):
        get_surrogate("nope")
    with pytest.raises(ValueError):
        get_surrogate("atan", width=0)


def test_reset_is_detached_and_gradient_reaches_input():
    x = torch.full((4, 1), 0.8, requires_grad=True)
    s, _ = cuba_multistep(x, 0.0, 0.5, 1.0, spike_fn=get_surrogate("atan"))
    s.sum().backward()
    assert x.grad is not None and torch.all(torch.isfinite(x.grad)) and x.grad.abs().sum() > 0


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_undetached_reset_same_spikes_gradient_through_the_reset(alpha):
    """detach_reset=False: d v[t] / d v[t-1] = beta (1 - s) - beta v s' (the reference code)."""
    x = torch.tensor([[1.2], [0.6], [0.3]], dtype=torch.float64)
    grads, spikes = [], []
    for detach in (True, False):
        for backend in ("fused", "reference"):
            xi = x.clone().requires_grad_(True)
            s = CubaLIF(alpha=alpha, surrogate="triangle", backend=backend,
                        detach_reset=detach)(xi)
            s[2].sum().backward()
            spikes.append(s.detach())
            grads.append(xi.grad)
    assert all(torch.equal(s, spikes[0]) for s in spikes)
    torch.testing.assert_close(grads[0], grads[1])  # fused = step by step, detached
    assert torch.equal(grads[2], grads[3])  # undetached: the fused layer runs the same code
    assert not torch.allclose(grads[0], grads[2])
    if alpha == 0.0:  # by hand: v0 = 1.2 spikes, v1 = 0.6, v2 = 0.3 + 0.3; s' = triangle
        g_v2 = 1 - abs(0.6 - 1.0)                       # s2'(v2 - 1)
        g_v1 = 0.5 * g_v2 * (1 - 0.6 * (1 - abs(0.6 - 1.0)))  # through v1 (1 - s1)
        g_v0 = 0.5 * g_v1 * (0 - 1.2 * (1 - abs(1.2 - 1.0)))  # through v0 (1 - s0)
        torch.testing.assert_close(grads[2].flatten(),
                                   torch.tensor([g_v0, g_v1, g_v2], dtype=torch.float64))


def test_loihi_decays_and_readout():
    assert loihi_decays(0.0, 0.5) == (4095, 2048)
    assert loihi_decays(1.0, 1.0) == (0, 0)
    x = torch.arange(12.0).reshape(3, 2, 2)
    assert torch.equal(Readout()(x), x.mean(0))


def test_invalid_decay_refused():
    with pytest.raises(ValueError):
        CubaLIF(beta=1.5)
