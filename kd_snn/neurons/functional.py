"""Pure state-update functions of the discrete Loihi CUBA neuron.

    i[t] = alpha * i[t-1] + x[t]
    v[t] = beta  * v[t-1] + i[t] + bias
    s[t] = v[t] > threshold,  then v[t] <- 0 where s[t]   (reset to zero)

``alpha = 0`` is the plain LIF ``v = beta * v + x`` used by the paper's reference
code.  By default the reset is detached from the graph (as in snntorch), so gradients
flow through the membrane and the surrogate only; ``detach_reset=False`` lets them flow
through ``v * (1 - s)`` as well, as in the reference code.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import torch

Tensor = torch.Tensor


class CubaState(NamedTuple):
    i: Tensor
    v: Tensor


def heaviside(x: Tensor) -> Tensor:
    """Exact spike function without surrogate (strict ``>``, as on Loihi)."""
    return (x > 0).to(x.dtype)


def _fire(v: Tensor, threshold, bias, spike_fn, detach_reset: bool) -> tuple[Tensor, Tensor]:
    """Spike and reset to zero: ``(s, v * (1 - s))``, the reset detached or not."""
    if bias is not None:
        v = v + bias
    s = spike_fn(v - threshold)
    return s, v * (1.0 - (s.detach() if detach_reset else s))


def cuba_step(x: Tensor, state: CubaState, alpha, beta, threshold, bias=None,
              spike_fn: Callable[[Tensor], Tensor] = heaviside,
              detach_reset: bool = True) -> tuple[Tensor, CubaState]:
    """One time step. Parameters broadcast against ``x`` (scalars or per-neuron)."""
    i = alpha * state.i + x
    s, v = _fire(beta * state.v + i, threshold, bias, spike_fn, detach_reset)
    return s, CubaState(i, v)


def lif_step(x: Tensor, v: Tensor, beta, threshold, bias=None,
             spike_fn: Callable[[Tensor], Tensor] = heaviside,
             detach_reset: bool = True) -> tuple[Tensor, Tensor]:
    """Plain LIF step (``alpha = 0``): ``v = beta*v + x (+ bias)``, reset to zero."""
    return _fire(beta * v + x, threshold, bias, spike_fn, detach_reset)


def cuba_multistep(x_seq: Tensor, alpha, beta, threshold, bias=None,
                   spike_fn: Callable[[Tensor], Tensor] = heaviside,
                   state: Optional[CubaState] = None,
                   detach_reset: bool = True) -> tuple[Tensor, CubaState]:
    """Run ``cuba_step`` over the leading time axis of ``x_seq`` ``(T, ...)``."""
    if state is None:
        zeros = torch.zeros_like(x_seq[0])
        state = CubaState(zeros, zeros)
    spikes = []
    plain = isinstance(alpha, (int, float)) and alpha == 0
    for x in x_seq:
        if plain:
            s, v = lif_step(x, state.v, beta, threshold, bias, spike_fn, detach_reset)
            state = CubaState(x, v)
        else:
            s, state = cuba_step(x, state, alpha, beta, threshold, bias, spike_fn, detach_reset)
        spikes.append(s)
    return torch.stack(spikes), state


def integrate_readout(x_seq: Tensor, bias=None) -> Tensor:
    """Non-spiking readout: mean over time of the input current (+ bias) = logits."""
    out = x_seq.mean(0)
    return out if bias is None else out + bias


def loihi_decays(alpha: float, beta: float) -> tuple[int, int]:
    """(du, dv) of Loihi's 12-bit decays for the given float decays."""
    du = round(4096 * (1 - alpha)) - 1
    dv = round(4096 * (1 - beta))
    return max(0, min(4095, du)), max(0, min(4095, dv))
