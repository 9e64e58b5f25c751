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


def check_mode(value: str, allowed: Sequence[str], what: str) -> None:
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
    "mac_weights": {
        "all": "a MAC costs every structural weight, zero or not (a MAC array computes "
               "them all)",
        "nonzero": "a zero weight costs no MAC (NeuroBench's Effective_MACs multiply a "
                   "binary copy of the layer)",
    },
    "membrane": {
        "every_step": "every neuron's membrane is updated once per time step",
        "changed": "a membrane update counts only where the membrane value changed since "
                   "the previous step, every neuron at the first step (NeuroBench's "
                   "MembraneUpdates); needs the float membrane, so torch-source counts only",
    },
    "readout": {
        "counted": "the non-spiking readout's accumulators count as neuron updates",
        "excluded": "the readout's accumulators are not neuron updates (NeuroBench hooks "
                    "spiking neurons only)",
    },
}

#: named sets of choices for ``kdsnn report --conventions NAME`` (unnamed axes: defaults)
CONVENTION_PRESETS: Dict[str, Dict[str, str]] = {
    "kdsnn": {},
    "neurobench": {"padding": "in_bounds", "first_layer": "per_step", "zero_input": "skipped",
                   "neuron_updates": "all_active", "mac_weights": "nonzero",
                   "membrane": "changed", "readout": "excluded"},
    "dense": {"padding": "counted", "first_layer": "per_step", "zero_input": "counted",
              "neuron_updates": "all_active", "mac_weights": "all"},
}


@dataclass(frozen=True)
class Conventions:
    """How operations are charged; one choice applied to student and teacher alike.

    Defaults: in-bounds taps only, first layer once, zero inputs counted, active/inactive
    neuron updates, every weight of a MAC, every membrane every step, the readout counted.  See :data:`CONVENTION_CHOICES` for what every value means.
    """

    padding: str = "in_bounds"
    first_layer: str = "once"
    zero_input: str = "counted"
    neuron_updates: str = "active_inactive"
    mac_weights: str = "all"
    membrane: str = "every_step"
    readout: str = "counted"

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


def parse_conventions(specs: Sequence[str], base: "Conventions" = None) -> "Conventions":
    """Conventions from command-line words, applied in order over ``base`` (default: the
    defaults): a preset name (:data:`CONVENTION_PRESETS`) or ``AXIS=VALUE``."""
    conv = base or DEFAULT_CONVENTIONS
    for spec in specs:
        spec = str(spec).strip()
        if "=" not in spec:
            if spec not in CONVENTION_PRESETS:
                raise KdsnnError(f"unknown conventions preset '{spec}' (presets: "
                                 f"{', '.join(CONVENTION_PRESETS)}; or AXIS=VALUE)")
            conv = replace(DEFAULT_CONVENTIONS, **CONVENTION_PRESETS[spec])
            continue
        axis, value = (s.strip() for s in spec.split("=", 1))
        if axis not in CONVENTION_CHOICES:
            raise KdsnnError(f"unknown convention '{axis}' (axes: "
                             f"{', '.join(CONVENTION_CHOICES)})")
        conv = replace(conv, **{axis: value})  # __post_init__ checks the value
    return conv
