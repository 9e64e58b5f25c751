"""Small spiking CNN for 28x28 / 8x8 inputs (and its ANN twin).

Three conv-BN-neuron units (strides 1, 2, 2): 8x8 -> 2x2 and 28x28 -> 7x7 at
the last stage, the same for teacher and student (SAMD compares those maps).
"""
from __future__ import annotations

from .layers import ConvBNAct, Network, make_head
from .registry import register_model
from .resnet import STRIDES, channels


@register_model
def cnn(*, num_classes, in_channels, spiking, width, neuron, head):
    chans = channels(width)
    stages, cin = [], in_channels
    for i, (cout, stride) in enumerate(zip(chans, STRIDES)):
        stages.append((f"conv{i + 1}", ConvBNAct(cin, cout, 3, stride, spiking=spiking,
                                                 neuron=neuron)))
        cin = cout
    return Network(stages, make_head(head, cin, num_classes, spiking), spiking=spiking,
                   deployable=head == "spiking")
