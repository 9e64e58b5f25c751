"""Device energy profiles (pJ per operation): the built-in YAML files and user files."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import yaml

from kd_snn.errors import KdsnnError

PROFILE_KEYS_REQUIRED = ("name", "source", "e_mac_pj", "e_ac_pj")
PROFILE_KEYS_OPTIONAL = ("e_neuron_pj", "e_neuron_inactive_pj", "e_spike_pj",
                         "teacher_profile", "description", "notes", "figures")
_NUMERIC = ("e_mac_pj", "e_ac_pj", "e_neuron_pj", "e_neuron_inactive_pj", "e_spike_pj")
#: old profile names that still load (renamed when the integer profile came)
PROFILE_ALIASES = {"cmos45nm": "cmos45nm_fp32"}


@dataclass(frozen=True)
class Profile:
    """Energy constants of a device, in picojoules per operation.

    ``e_ac_pj``: one synaptic operation (an accumulate); ``e_mac_pj``: one
    multiply-accumulate (layers fed by real-valued input); ``e_neuron_pj``: one (active)
    neuron update per time step, ``e_neuron_inactive_pj`` an inactive one (``None``: as
    active); ``e_spike_pj``: per spike sent (routing); ``None``: not charged.
    ``teacher_profile``: the profile the ANN teacher is charged with when this device
    cannot run it (``None``: this one).  ``figures``: the cited figures, charged or not.
    """

    name: str
    source: str
    e_mac_pj: float
    e_ac_pj: float
    e_neuron_pj: Optional[float] = None
    e_neuron_inactive_pj: Optional[float] = None
    e_spike_pj: Optional[float] = None
    teacher_profile: Optional[str] = None
    description: str = ""
    notes: Tuple[str, ...] = ()
    figures: Dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d


def profile_dir() -> Path:
    return Path(str(resources.files("hardware") / "profiles"))


def list_profiles() -> Tuple[str, ...]:
    return tuple(sorted(p.stem for p in profile_dir().glob("*.yaml")))


def _positive(val) -> bool:
    ok = isinstance(val, (int, float)) and not isinstance(val, bool)
    return ok and math.isfinite(val) and val > 0


def _validate_profile(data, where: str) -> Profile:
    if not isinstance(data, dict):
        raise KdsnnError(f"energy profile {where}: expected a mapping of keys, got "
                         f"{type(data).__name__}")
    for key in data:
        if key not in PROFILE_KEYS_REQUIRED + PROFILE_KEYS_OPTIONAL:
            raise KdsnnError(f"energy profile {where}: unknown key '{key}' (allowed: "
                             f"{', '.join(PROFILE_KEYS_REQUIRED + PROFILE_KEYS_OPTIONAL)})")
    for key in PROFILE_KEYS_REQUIRED:
        if key not in data or data[key] is None:
            raise KdsnnError(f"energy profile {where}: missing key '{key}'")
    for key in ("name", "source"):
        if not isinstance(data[key], str) or not data[key].strip():
            raise KdsnnError(f"energy profile {where}: key '{key}' must be a non-empty string")
    for key in _NUMERIC:
        if key in data and data[key] is not None and not _positive(data[key]):
            raise KdsnnError(f"energy profile {where}: key '{key}' must be a positive "
                             f"number (pJ), got {data[key]!r}")
    notes = data.get("notes") or ()
    notes = (notes,) if isinstance(notes, str) else notes
    if not isinstance(notes, (list, tuple)) or not all(isinstance(n, str) for n in notes):
        raise KdsnnError(f"energy profile {where}: key 'notes' must be a string or a list "
                         "of strings")
    figures = data.get("figures") or {}
    if not isinstance(figures, dict) or not all(
            isinstance(k, str) and _positive(v) for k, v in figures.items()):
        raise KdsnnError(f"energy profile {where}: key 'figures' must map names to positive "
                         "numbers (pJ)")
    teacher = data.get("teacher_profile")
    if teacher is not None and (not isinstance(teacher, str) or not teacher.strip()):
        raise KdsnnError(f"energy profile {where}: key 'teacher_profile' must be a profile "
                         "name")
    num = lambda k: float(data[k]) if data.get(k) is not None else None  # noqa: E731
    return Profile(name=data["name"].strip(), source=" ".join(data["source"].split()),
                   e_mac_pj=float(data["e_mac_pj"]), e_ac_pj=float(data["e_ac_pj"]),
                   e_neuron_pj=num("e_neuron_pj"),
                   e_neuron_inactive_pj=num("e_neuron_inactive_pj"),
                   e_spike_pj=num("e_spike_pj"),
                   teacher_profile=teacher.strip() if teacher else None,
                   description=" ".join(str(data.get("description") or "").split()),
                   notes=tuple(" ".join(n.split()) for n in notes if n.strip()),
                   figures={k: float(v) for k, v in figures.items()})


def load_profile(name_or_path: Union[str, Path, Profile]) -> Profile:
    """A built-in profile by name (``cmos45nm_fp32``, ``cmos45nm_int8``, ``loihi``; the
    old ``cmos45nm`` is ``cmos45nm_fp32``) or a user YAML file (validated)."""
    if isinstance(name_or_path, Profile):
        return name_or_path
    text = str(name_or_path)
    path = Path(text)
    is_path = isinstance(name_or_path, Path) or path.suffix in (".yaml", ".yml") or \
        "/" in text or "\\" in text
    if not is_path:
        builtin = profile_dir() / f"{PROFILE_ALIASES.get(text, text)}.yaml"
        if not builtin.is_file():
            raise KdsnnError(f"unknown energy profile '{text}' (built in: "
                             f"{', '.join(list_profiles())}; or give a .yaml file)")
        path = builtin
    elif not path.is_file():
        raise KdsnnError(f"energy profile file {path} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise KdsnnError(f"energy profile {path}: invalid YAML ({line})") from None
    return _validate_profile(data, str(path))


def teacher_profile(profile) -> Profile:
    """The profile the teacher is charged with under ``profile`` (itself, or its
    ``teacher_profile`` when the device cannot run an ANN)."""
    prof = load_profile(profile)
    return load_profile(prof.teacher_profile) if prof.teacher_profile else prof
