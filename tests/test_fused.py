"""Fused CUBA/LIF neuron == reference ``cuba_multistep`` (spikes exactly, grads to 1e-5)."""
import zlib

import pytest
import torch

from kd_snn.neurons import CubaLIF
from kd_snn.neurons.functional import cuba_multistep
from kd_snn.neurons.fused import cuba_multistep_fused, extension_available
from kd_snn.neurons.surrogate import get_surrogate

SHAPE = (4, 3, 6, 5, 5)  # (T, B, C, H, W)
C = SHAPE[2:]

BACKENDS = ["torch", pytest.param("cpp", marks=pytest.mark.skipif(
    not extension_available(), reason="C++ compiler / ninja unavailable"))]


def _params(kind, gen):
    """(alpha, beta, threshold, bias) for a parameter layout."""
    if kind == "scalar-lif":
        return 0.0, 0.5, 1.0, None
    if kind == "scalar-cuba":
        return 0.3, 0.6, 0.8, 0.1
    if kind == "tensor-scalar":  # 0-dim tensors, as CubaLIF stores them
        return torch.tensor(0.25), torch.tensor(0.5), torch.tensor(1.0), torch.tensor(-0.05)
    if kind == "neuron-lif":  # per-neuron (C, H, W), alpha all zero -> plain path
        return (torch.zeros(C), torch.rand(C, generator=gen), 0.5 + torch.rand(C, generator=gen),
                0.2 * torch.randn(C, generator=gen))
    if kind == "neuron-cuba":
        return (torch.rand(C, generator=gen), torch.rand(C, generator=gen),
                0.5 + torch.rand(C, generator=gen), 0.2 * torch.randn(C, generator=gen))
    if kind == "channel":  # per-channel (C, 1, 1) mixed with a per-pixel threshold
        return (0.5 * torch.rand(C[0], 1, 1, generator=gen), torch.rand(C[0], 1, 1, generator=gen),
                0.5 + torch.rand(C[1:], generator=gen), 0.2 * torch.randn(C[0], 1, 1, generator=gen))
    raise KeyError(kind)


def _run_both(x, alpha, beta, thr, bias, surrogate, width, backend, grad_bias):
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(7), dtype=x.dtype)
    out = []
    for fused in (False, True):
        xi = x.detach().clone().requires_grad_()
        bi = bias
        if grad_bias and bias is not None:
            bi = torch.as_tensor(bias, dtype=x.dtype).detach().clone().requires_grad_()
        if fused:
            s = cuba_multistep_fused(xi, alpha, beta, thr, bi, surrogate, width, backend=backend)
        else:
            s, _ = cuba_multistep(xi, alpha, beta, thr, bi, get_surrogate(surrogate, width))
        (s * g).sum().backward()
        out.append((s.detach(), xi.grad, None if not torch.is_tensor(bi) else bi.grad))
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("surrogate,width", [("atan", 1.0), ("sigmoid", 0.7), ("triangle", 1.5)])
@pytest.mark.parametrize("params", ["scalar-lif", "scalar-cuba", "tensor-scalar",
                                    "neuron-lif", "neuron-cuba", "channel"])
def test_matches_reference(backend, surrogate, width, params):
    # crc32, not hash(): str hashes change with every interpreter (PYTHONHASHSEED)
    gen = torch.Generator().manual_seed(zlib.crc32(f"{surrogate}/{params}".encode()))
    x = 1.2 * torch.randn(SHAPE, generator=gen)
    alpha, beta, thr, bias = _params(params, gen)
    (s_ref, gx_ref, gb_ref), (s, gx, gb) = _run_both(x, alpha, beta, thr, bias, surrogate,
                                                      width, backend, grad_bias=True)
    assert s.dtype == s_ref.dtype and s.shape == s_ref.shape
    assert torch.equal(s, s_ref)                      # spikes exactly
    assert 0.05 < s.mean() < 0.95                     # the test exercises spikes and resets
    torch.testing.assert_close(gx, gx_ref, atol=1e-5, rtol=1e-5)
    if gb_ref is not None:
        assert gb.shape == gb_ref.shape
        torch.testing.assert_close(gb, gb_ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float64_and_long_T(backend):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(37, 2, 300, generator=gen, dtype=torch.float64)  # T > 32, N not % block
    (s_ref, gx_ref, _), (s, gx, _) = _run_both(x, 0.5, 0.9, 1.0, None, "atan", 1.0,
                                                backend, grad_bias=False)
    assert s.dtype == torch.float64 and torch.equal(s, s_ref)
    torch.testing.assert_close(gx, gx_ref, atol=1e-10, rtol=1e-10)


def test_threshold_edge_is_strict():
    """v exactly at threshold does not spike; float32 rounding of scalars matches eager."""
    x = torch.tensor([[1.0, 0.1, 0.3, 1.0000001], [0.0, 0.1, 0.3, 0.0]])
    for thr in (1.0, 0.1, 0.3):
        ref, _ = cuba_multistep(x, 0.0, 0.5, thr)
        for backend in ("torch", "cpp") if extension_available() else ("torch",):
            assert torch.equal(cuba_multistep_fused(x, 0.0, 0.5, thr, backend=backend), ref)


def test_params_needing_grad_fall_back_to_reference():
    x = torch.randn(4, 2, 8, requires_grad=True)
    beta = torch.tensor(0.5, requires_grad=True)
    s = cuba_multistep_fused(x, 0.0, beta, 1.0)
    s.sum().backward()
    assert beta.grad is not None


@pytest.mark.parametrize("alpha", [0.0, 0.4])
def test_module_backends_agree(alpha):
    torch.manual_seed(0)
    x = 1.5 * torch.randn(4, 2, 3, 4, 4)
    outs = []
    for backend in ("reference", "fused"):
        m = CubaLIF(alpha=alpha, beta=0.5, threshold=1.0, shape=(3, 4, 4), surrogate="atan",
                    bias=0.1 * torch.ones(3, 4, 4), backend=backend)
        xi = x.clone().requires_grad_()
        s = m(xi)
        (s * torch.arange(s.numel()).reshape(s.shape).sin()).sum().backward()
        outs.append((s.detach(), xi.grad))
    assert torch.equal(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[0][1], outs[1][1], atol=1e-5, rtol=1e-5)
    assert CubaLIF().backend == "fused"
    with pytest.raises(ValueError):
        CubaLIF(backend="nope")
