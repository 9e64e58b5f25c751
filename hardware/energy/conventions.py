"""How operations are charged: the convention axes, their meanings, and named presets."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Dict, List, Sequence

from kd_snn.errors import KdsnnError

FANOUT_MODES = ("nonzero", "all")
EVENT_MODES = ("nonzero", "magnitude")
#: encodings whose input tensor is real-valued (repeated analog frames) -> MACs
ANALOG_ENCODINGS = ("direct", "analog", "repeat")
#: encodings whose input tensor holds spikes / event counts -> SynOps
SPIKING_ENCODINGS = ("poisson", "frames", "events", "spikes")
INPUT_MODES = ("auto", "macs", "synops")


def _check_mode(value: str, allowed: Sequence[str], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, got '{value}'")


# --------------------------------------------------------------------------- conventions

#: every convention axis, its choices (the first is the default) and what each one means
CONVENTION_CHOICES: Dict[str, Dict[str, str]] = {
    "padding": {
        "in_bounds": "MACs count only in-bounds kernel taps (a zero-padding tap is skipped)",
        "counted": "MACs count padding taps too (what torch.utils.flop_counter reports)",
    },
    "first_layer": {
        "once": "the analog first layer is charged once per inference when its input "
                "repeats over the T steps (direct encoding; the SNN literature's convention)",
        "per_step": "the analog first layer is charged at every one of the T steps (what "
                    "the synchronous executor computes)",
    },
    "zero_input": {
        "counted": "zero-valued input values cost MACs like any other",
        "skipped": "zero-valued input values cost no MAC (a zero-skipping accelerator); "
                   "applies to the network input of student and teacher alike",
    },
    "neuron_updates": {
        "active_inactive": "a neuron update is charged the active figure when the neuron "
                           "has input, a bias or carried state in that step, else the "
                           "inactive figure",
        "all_active": "every neuron update is charged the active figure (upper bound)",
    },
}


@dataclass(frozen=True)
class Conventions:
    """How operations are charged; one choice applied to student and teacher alike.

    Defaults: in-bounds taps only, first layer once, zero inputs counted, active/inactive
    neuron updates.  See :data:`CONVENTION_CHOICES` for what every value means.
    """

    padding: str = "in_bounds"
    first_layer: str = "once"
    zero_input: str = "counted"
    neuron_updates: str = "active_inactive"

    def __post_init__(self):
        for axis, choices in CONVENTION_CHOICES.items():
            value = getattr(self, axis)
            if value not in choices:
                raise KdsnnError(f"convention {axis} must be one of {', '.join(choices)}, "
                                 f"got '{value}'")

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> Dict[str, str]:
        return {axis: CONVENTION_CHOICES[axis][getattr(self, axis)]
                for axis in CONVENTION_CHOICES}

    def short(self) -> str:
        """One-line label, e.g. ``padding=in_bounds, first_layer=once, ...``."""
        return ", ".join(f"{k}={v}" for k, v in self.to_dict().items())


DEFAULT_CONVENTIONS = Conventions()


def convention_grid(axes: Sequence[str] = ("padding", "first_layer", "zero_input"),
                    base: Conventions = DEFAULT_CONVENTIONS) -> List[Conventions]:
    """Every combination of the choices of ``axes`` (the others from ``base``), default first."""
    combos = [base]
    for axis in axes:
        combos = [replace(c, **{axis: v}) for c in combos for v in CONVENTION_CHOICES[axis]]
    return sorted(set(combos), key=lambda c: tuple(
        list(CONVENTION_CHOICES[a]).index(getattr(c, a)) for a in CONVENTION_CHOICES))
