"""timm-like model registry: ``create_model(name, ...)`` builds students and teachers."""
from __future__ import annotations

from typing import Callable, Optional

from torch import nn

from kd_snn.errors import KdsnnError

from .layers import HEADS, LAST_BLOCKS, NORMALIZATIONS, neuron_kwargs

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Optional[Callable] = None, *, name: Optional[str] = None):
    """Register a builder ``fn(*, num_classes, in_channels, spiking, width, neuron, head,
    last_block, **kw)`` that returns a :class:`~kd_snn.models.layers.Network`.

    Usable bare (``@register_model``) or with a name (``@register_model(name="x")``).
    """
    def wrap(f: Callable) -> Callable:
        key = name or f.__name__
        if key in _REGISTRY:
            raise ValueError(f"model '{key}' is already registered")
        _REGISTRY[key] = f
        return f
    return wrap(fn) if fn is not None else wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, num_classes: int, in_channels: int, spiking: bool = True,
                 width: float = 1, neuron: Optional[dict] = None, head: str = "spiking",
                 last_block: str = "spiking", normalize: str = "none", **kw) -> nn.Module:
    """Build a registered model; ``model.config`` records the arguments (to rebuild it).

    ``head``: ``spiking`` (deployable), ``reference`` or ``mlp`` (see ``TwoLayerHead``);
    ``last_block``: ``spiking`` or ``relu`` (the reference code's analog last unit);
    ``normalize``: ``none`` or a preset of ``NORMALIZATIONS`` (an ``InputNorm`` first stage).
    """
    if name not in _REGISTRY:
        raise KdsnnError(f"unknown model '{name}' (choose from {', '.join(list_models())})")
    for key, value, allowed in (("head", head, HEADS), ("last_block", last_block, LAST_BLOCKS),
                                ("normalize", normalize, ("none", *NORMALIZATIONS))):
        if value not in allowed:
            raise KdsnnError(f"unknown {key} '{value}' (choose from {', '.join(allowed)})")
    if not width > 0:
        raise KdsnnError(f"model width must be > 0, got {width}")
    if normalize != "none" and len(NORMALIZATIONS[normalize][0]) != int(in_channels):
        raise KdsnnError(f"normalize '{normalize}' is for {len(NORMALIZATIONS[normalize][0])}"
                         f"-channel images; the model takes {int(in_channels)} channels")
    neuron = neuron_kwargs(neuron)
    model = _REGISTRY[name](num_classes=int(num_classes), in_channels=int(in_channels),
                            spiking=bool(spiking), width=width, neuron=neuron, head=head,
                            last_block=last_block, **kw)
    if normalize != "none":
        model.prepend_input_norm(*NORMALIZATIONS[normalize])
    model.config = {"name": name, "num_classes": int(num_classes),
                    "in_channels": int(in_channels), "spiking": bool(spiking), "width": width,
                    "neuron": neuron, "head": head, "last_block": last_block,
                    "normalize": normalize, **kw}
    return model
