"""Torch helpers of the workers (peers built on torch: snntorch, norse, sinabs, rockpool)."""
from __future__ import annotations

import torch


def first(output):
    """A module's output tensor (neuron modules return ``(output, state)``)."""
    return (output[0] if isinstance(output, tuple) else output).detach()


def in_float64(model):
    """``model`` in float64, every module's floating inputs cast to float64 (spikes are 0/1:
    exact), so that no spike flips by float32 rounding (machine-dependent)."""
    def cast(_module, args):
        return tuple(a.double() if torch.is_tensor(a) and a.is_floating_point() else a
                     for a in args)
    for module in model.double().modules():
        module.register_forward_pre_hook(cast)
    return model


def recorder(model, names):
    """Outputs of the submodules named like the NIR nodes (nirtorch turns '.' into '_')."""
    mods = dict(model.named_modules())
    rec = {}
    for name in names:
        mod = mods.get(name) or mods.get(name.replace(".", "_"))
        if mod is None:
            continue
        rec[name] = []
        mod.register_forward_hook(lambda m, i, o, n=name: rec[n].append(first(o)))
    return rec
