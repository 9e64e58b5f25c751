"""Model zoo: ``create_model(name, num_classes, in_channels, spiking=True, ...)``.

Importing this package registers every family (one module each).
"""
from . import cnn, resnet, spikformer  # noqa: F401  (registration side effects)
from .layers import NEURON_DEFAULTS, Network
from .registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model", "Network", "NEURON_DEFAULTS"]
