"""Spiking ResNet-19/20 of the paper's reference code, and their ANN twins.

Stem conv3x3 (16w) + tdBN + neuron; three stages of BasicBlocks with 16w/32w/64w
channels and strides 1, 2, 2 (width 8 gives the reference 128/256/512).
"""
from __future__ import annotations

from torch import nn

from .layers import BasicBlock, ConvBNAct, Network, last_act, make_head
from .registry import register_model

CHANNELS = (16, 32, 64)
STRIDES = (1, 2, 2)


def channels(width: float) -> tuple[int, int, int]:
    return tuple(max(1, int(round(c * width))) for c in CHANNELS)


def build_resnet(blocks, *, num_classes, in_channels, spiking, width, neuron, head,
                 last_block="spiking"):
    """ResNet with ``blocks`` BasicBlocks per stage.

    ``last_block="relu"`` ends the last block with a ReLU instead of its second neuron
    (the reference code's student: SAMD then reads an analog map); with it, or with a
    head other than ``spiking``, the student is not deployable.
    """
    chans = channels(width)
    stages = [("stem", ConvBNAct(in_channels, chans[0], 3, 1, spiking=spiking, neuron=neuron))]
    cin = chans[0]
    for s, (n, cout, stride) in enumerate(zip(blocks, chans, STRIDES)):
        layer = []
        for b in range(n):
            last = s == len(blocks) - 1 and b == n - 1
            layer.append(BasicBlock(cin, cout, stride if b == 0 else 1, spiking=spiking,
                                    neuron=neuron, last_act=last_act(last_block) if last else None))
            cin = cout
        stages.append((f"layer{s + 1}", nn.Sequential(*layer)))
    return Network(stages, make_head(head, cin, num_classes, spiking), spiking=spiking,
                   deployable=head == "spiking" and last_block == "spiking")


@register_model
def resnet19(**kw):
    return build_resnet((3, 3, 2), **kw)


@register_model
def resnet20(**kw):
    return build_resnet((3, 3, 3), **kw)


@register_model
def resnet8(**kw):
    """One block per stage: the smallest residual student (CPU demos, Lava parity tests)."""
    return build_resnet((1, 1, 1), **kw)
