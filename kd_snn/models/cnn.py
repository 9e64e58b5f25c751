"""Small spiking CNN for 28x28 / 8x8 inputs (and its ANN twin).

Three conv-BN-neuron units (strides 1, 2, 2): 8x8 -> 2x2 and 28x28 -> 7x7 at
the last stage, the same for teacher and student (SAMD compares those maps).
"""
from __future__ import annotations

from .layers import ConvBNAct, Network, last_act, make_head
from .registry import register_model
from .resnet import STRIDES, channels


@register_model
def cnn(*, num_classes, in_channels, spiking, width, neuron, head, last_block="spiking"):
    """``last_block="relu"`` gives the last unit a ReLU instead of its neuron."""
    chans = channels(width)
    stages, cin = [], in_channels
    for i, (cout, stride) in enumerate(zip(chans, STRIDES)):
        act = last_act(last_block) if i == len(chans) - 1 else None
        stages.append((f"conv{i + 1}", ConvBNAct(cin, cout, 3, stride, spiking=spiking,
                                                 neuron=neuron, act=act)))
        cin = cout
    return Network(stages, make_head(head, cin, num_classes, spiking), spiking=spiking,
                   deployable=head == "spiking" and last_block == "spiking")
