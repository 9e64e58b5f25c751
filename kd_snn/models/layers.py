"""Multi-step building blocks shared by every model family.

One code path serves both students and teachers: stateless ops (conv, BN,
pooling, linear) run over the merged ``T*B`` axis when the input is time-major
``(T, B, C, H, W)`` (so tdBN is plain BatchNorm over ``T*B``), and only the
neuron loops over time.  Teachers get ``nn.ReLU`` where students get
``CubaLIF``, which keeps the ANN twin structurally identical to the student.
"""
from __future__ import annotations

import inspect
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from kd_snn.errors import KdsnnError
from kd_snn.neurons import CubaLIF, Readout

NEURON_DEFAULTS = {"alpha": 0.0, "beta": 0.5, "threshold": 1.0, "surrogate": "atan",
                   "width": 1.0, "detach_reset": True}


# Any scalar CubaLIF option is accepted (shape/bias are per-neuron, set by export only).
NEURON_OPTIONS = tuple(p for p in inspect.signature(CubaLIF).parameters
                       if p not in ("self", "shape", "bias"))


def neuron_kwargs(neuron: Optional[dict] = None) -> dict:
    """Defaults merged with the user's CubaLIF kwargs; unknown keys are a user error."""
    neuron = dict(neuron or {})
    unknown = sorted(set(neuron) - set(NEURON_OPTIONS))
    if unknown:
        raise KdsnnError(f"unknown neuron option(s) {', '.join(unknown)} "
                         f"(choose from {', '.join(NEURON_OPTIONS)})")
    return {**NEURON_DEFAULTS, **neuron}


def make_act(spiking: bool, neuron: dict) -> nn.Module:
    """The model's nonlinearity: a CubaLIF for students, ReLU for teachers."""
    return CubaLIF(**neuron) if spiking else nn.ReLU()


LAST_BLOCKS = ("spiking", "relu")


def last_act(last_block: str) -> Optional[nn.Module]:
    """The last unit's nonlinearity: None (the model's own) or the reference code's ReLU.

    With ``relu`` the last-stage map that SAMD reads is analog, not spikes, and the
    student cannot be deployed (export refuses the ReLU by its module name).
    """
    if last_block not in LAST_BLOCKS:
        raise KdsnnError(f"unknown last_block '{last_block}' (choose from "
                         f"{', '.join(LAST_BLOCKS)})")
    return nn.ReLU() if last_block == "relu" else None


def bn_init(spiking: bool, neuron: dict) -> float:
    """tdBN initial BN weight alpha * Vth (alpha = 1); 1 for teachers."""
    return float(neuron["threshold"]) if spiking else 1.0


def over_time(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Apply a stateless 4-D op to ``x``; time-major 5-D input runs over ``T*B`` at once."""
    if x.dim() != 5:
        return fn(x)
    T, B = x.shape[:2]
    y = fn(x.flatten(0, 1))
    return y.reshape(T, B, *y.shape[1:])


class ConvBN(nn.Module):
    """Conv (no bias) + BN, optionally preceded by AvgPool2d(``pool``) (the shortcut).

    The pooled form is only built with a 1x1 kernel, so export can fold it into a
    single ``pool x pool`` stride-``pool`` convolution exactly.
    """

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, pool: int = 1,
                 bn_weight: float = 1.0):
        super().__init__()
        if pool > 1 and (kernel != 1 or stride != 1):
            raise ValueError("ConvBN: pooling is only supported before a 1x1 stride-1 conv")
        self.pool = pool
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        nn.init.constant_(self.bn.weight, bn_weight)

    def _apply4d(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool > 1:
            x = nn.functional.avg_pool2d(x, self.pool)
        return self.bn(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return over_time(self._apply4d, x)


class ConvBNAct(ConvBN):
    """The one conv-BN-nonlinearity unit used by every family (``act`` = LIF or ReLU)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, *,
                 spiking: bool, neuron: dict, act: Optional[nn.Module] = None):
        super().__init__(cin, cout, kernel, stride, bn_weight=bn_init(spiking, neuron))
        self.act = act if act is not None else make_act(spiking, neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(super().forward(x))


class BasicBlock(nn.Module):
    """conv3x3-BN-act-conv3x3-BN, plus shortcut, then act.

    Shortcut: identity, or AvgPool2d(stride) + conv1x1 + BN when the shape changes
    (the reference code's choice; it folds exactly into one conv on Loihi).
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, *, spiking: bool, neuron: dict,
                 last_act: Optional[nn.Module] = None):
        super().__init__()
        w0 = bn_init(spiking, neuron)
        self.conv1 = ConvBNAct(cin, cout, 3, stride, spiking=spiking, neuron=neuron)
        self.conv2 = ConvBN(cout, cout, 3, 1, bn_weight=w0)
        self.shortcut = (ConvBN(cin, cout, 1, 1, pool=stride, bn_weight=w0)
                         if stride != 1 or cin != cout else nn.Identity())
        self.act2 = last_act if last_act is not None else make_act(spiking, neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act2(self.conv2(self.conv1(x)) + self.shortcut(x))


def gap(x: torch.Tensor) -> torch.Tensor:
    """Global average pool over the two trailing spatial axes (any leading axes)."""
    return x.mean((-2, -1))


class LinearHead(nn.Module):
    """GAP + fc; students add the Readout (logits = mean over T of fc(GAP(spikes)))."""

    def __init__(self, cin: int, num_classes: int, spiking: bool):
        super().__init__()
        self.fc = nn.Linear(cin, num_classes)
        self.readout = Readout() if spiking else None

    @property
    def classifier_weight(self) -> torch.Tensor:
        return self.fc.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(gap(x))
        return y if self.readout is None else self.readout(y)


class TwoLayerHead(nn.Module):
    """GAP + fc(C->hidden) + fc(hidden->K): the reference code's head, and a ReLU variant.

    ``relu=False`` (head ``reference``) is the reference code exactly: GAP, mean over T,
    then the two fc layers with nothing between them.  ``relu=True`` (head ``mlp``) puts a
    ReLU between them, per time step, then the Readout.  Neither is deployable.
    ``classifier_weight`` is ``fc2.W @ fc1.W`` (K, C): the head itself without the ReLU,
    so CAM-based losses get a (K, C) matrix (exact for ``reference``).
    """

    def __init__(self, cin: int, num_classes: int, spiking: bool, relu: bool,
                 hidden: int = 256):
        super().__init__()
        self.fc1 = nn.Linear(cin, hidden)
        self.relu = nn.ReLU() if relu else None
        self.fc2 = nn.Linear(hidden, num_classes)
        self.readout = Readout() if spiking else None

    @property
    def classifier_weight(self) -> torch.Tensor:
        return self.fc2.weight @ self.fc1.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = gap(x)
        if self.relu is None:  # linear: averaging over T first is the same, and cheaper
            return self.fc2(self.fc1(x if self.readout is None else x.mean(0)))
        y = self.fc2(self.relu(self.fc1(x)))
        return y if self.readout is None else self.readout(y)


HEADS = ("spiking", "reference", "mlp")


def make_head(kind: str, cin: int, num_classes: int, spiking: bool) -> nn.Module:
    if kind == "spiking":
        return LinearHead(cin, num_classes, spiking)
    if kind in ("reference", "mlp"):
        return TwoLayerHead(cin, num_classes, spiking, relu=kind == "mlp")
    raise KdsnnError(f"unknown head '{kind}' (choose from {', '.join(HEADS)})")


#: ``normalize`` presets: per-channel (mean, std) of the input images.
NORMALIZATIONS = {"cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))}


class InputNorm(nn.Module):
    """``(x - mean) / std`` per channel, the first stage of a model trained on normalised input.

    Part of the model so that training, ``kdsnn eval`` and export all see it; Loihi
    receives x in [0, 1] as graded spikes, so export refuses it by name.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(-1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Network(nn.Module):
    """Stages run in registration order, then the head.

    Students take ``(T, B, C, H, W)``; teachers ``(B, C, H, W)``.  The stage
    order is also what ``export.fold`` walks, so a model's structure is its
    deployment recipe.
    """

    def __init__(self, stages: Sequence[tuple[str, nn.Module]], head: nn.Module, *,
                 spiking: bool, deployable: bool):
        super().__init__()
        for name, module in stages:
            self.add_module(name, module)
        self.stage_names = tuple(name for name, _ in stages)
        self.head = head
        self.spiking = spiking
        self.deployable = bool(deployable and spiking)
        self.config: dict = {}  # filled by create_model (enough to rebuild the model)

    def prepend_input_norm(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Make :class:`InputNorm` the first stage (the model then takes raw [0, 1] images)."""
        self.norm = InputNorm(mean, std)
        self.stage_names = ("norm",) + self.stage_names
        self.deployable = False

    @property
    def classifier_weight(self) -> torch.Tensor:
        return self.head.classifier_weight

    def _check_input(self, x: torch.Tensor) -> None:
        want = 5 if self.spiking else 4
        if x.dim() != want:
            kind = "student expects (T, B, C, H, W)" if self.spiking else \
                "teacher expects (B, C, H, W)"
            raise ValueError(f"{kind}, got shape {tuple(x.shape)}")

    def body(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return x

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, last-stage map)``: spikes (T,B,C,H,W) or the teacher's fmap (B,C,H,W)."""
        feats = self.body(x)
        return self.head(feats), feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]
