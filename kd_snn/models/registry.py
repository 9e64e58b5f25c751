"""timm-like model registry: ``create_model(name, ...)`` builds students and teachers."""
from __future__ import annotations

from typing import Callable, Optional

from torch import nn

from kd_snn.errors import KdsnnError

from .layers import HEADS, neuron_kwargs

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Optional[Callable] = None, *, name: Optional[str] = None):
    """Register a builder ``fn(*, num_classes, in_channels, spiking, width, neuron, head, **kw)``.

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
                 **kw) -> nn.Module:
    """Build a registered model; ``model.config`` records the arguments (to rebuild it)."""
    if name not in _REGISTRY:
        raise KdsnnError(f"unknown model '{name}' (choose from {', '.join(list_models())})")
    if head not in HEADS:
        raise KdsnnError(f"unknown head '{head}' (choose from {', '.join(HEADS)})")
    if not width > 0:
        raise KdsnnError(f"model width must be > 0, got {width}")
    neuron = neuron_kwargs(neuron)
    model = _REGISTRY[name](num_classes=int(num_classes), in_channels=int(in_channels),
                            spiking=bool(spiking), width=width, neuron=neuron, head=head, **kw)
    model.config = {"name": name, "num_classes": int(num_classes),
                    "in_channels": int(in_channels), "spiking": bool(spiking), "width": width,
                    "neuron": neuron, "head": head, **kw}
    return model
