"""Exact operation counts and energy estimates for a DeployGraph and its ANN teacher.

What is counted (FIELD-NOTES section 5):

* **SynOps** (synaptic operations, accumulates): every input *event* costs its exact
  fan-out, the number of synapses it drives.  Conv fan-out depends on the position
  (borders, stride, padding) and is computed once per connection as a map over the
  source (a transposed convolution of ones with the weight mask), never ``C_out*k*k``.
  ``fanout="nonzero"`` (default, Loihi-faithful: a zero weight is never stored or
  fetched) or ``"all"`` (every structural synapse).  Pooling fan-out is 1 inside a
  window, 0 for the rows/columns the floor division drops.  Padding taps carry no event,
  so SynOps never depend on the padding convention.
* **Events**: a non-zero source entry is one event (``events="magnitude"``: ``|value|``
  events, for event frames holding counts).
* **MACs**: connections fed by a real-valued source (the ``"input"`` under ``direct``
  encoding, or a non-spiking layer) cost multiply-accumulates.  A MAC array computes every
  weight, zero or not, so MACs count every structural weight, for the student and the
  teacher alike (the teacher is counted by the same :func:`fanout_map`).
* **Neuron updates**: every neuron of every layer, once per time step; a profile may charge
  *active* and *inactive* updates differently (see :func:`active_updates`).

How it is charged is a choice, made explicit by :class:`Conventions` and applied to the
student and the teacher alike: padding taps counted or not, the analog first layer charged
once or at every step, zero-valued input values counted or skipped, and which neuron-update
energy applies.  :class:`GraphStats` keeps the raw ingredients, so any convention can be
derived afterwards (:meth:`GraphStats.under`).

Energies are in picojoules per inference (one sample).

The package's parts: :mod:`.conventions` (how operations are charged), :mod:`.counting`
(exact fan-out and per-connection counts), :mod:`.graph_stats` (a student graph on data),
:mod:`.membrane` (membrane updates where the value changes), :mod:`.teacher` (the ANN
teacher's MACs), :mod:`.profiles` (device figures), :mod:`.charge` (counts times figures),
:mod:`.neurobench` (the counts under NeuroBench's definitions).  Every public name is re-exported here.
"""

from __future__ import annotations

from .charge import ENERGY_PARTS, energy, energy_ratio, teacher_energy
from .charge import neuron_updates
from .conventions import (ANALOG_ENCODINGS, CONVENTION_CHOICES, CONVENTION_PRESETS,
                          DEFAULT_CONVENTIONS, EVENT_MODES, FANOUT_MODES, INPUT_MODES,
                          SPIKING_ENCODINGS, Conventions, convention_grid, parse_conventions)
from .counting import (RASTER_NEURONS, RATE_BINS, ArrayLike, active_updates, fanout_map,
                       macs_per_connection, padded_taps, synops_per_connection)
from .graph_stats import GraphStats, LayerStats, analyze_graph
from .membrane import membrane_changes
from .neurobench import NEUROBENCH_CONVENTIONS, NEUROBENCH_VERSION, neurobench_metrics
from .profiles import (PROFILE_ALIASES, PROFILE_KEYS_OPTIONAL, PROFILE_KEYS_REQUIRED, Profile,
                       list_profiles, load_profile, profile_dir, teacher_profile)
from .teacher import TeacherLayer, TeacherStats, count_teacher, teacher_macs

__all__ = [
    "ANALOG_ENCODINGS", "CONVENTION_CHOICES", "CONVENTION_PRESETS", "DEFAULT_CONVENTIONS", "ENERGY_PARTS",
    "EVENT_MODES", "FANOUT_MODES", "INPUT_MODES", "PROFILE_ALIASES", "PROFILE_KEYS_OPTIONAL",
    "PROFILE_KEYS_REQUIRED", "RASTER_NEURONS", "RATE_BINS", "SPIKING_ENCODINGS", "ArrayLike",
    "Conventions", "GraphStats", "LayerStats", "Profile", "TeacherLayer", "TeacherStats",
    "active_updates", "analyze_graph", "convention_grid", "count_teacher", "energy",
    "energy_ratio", "fanout_map", "list_profiles", "load_profile", "macs_per_connection",
    "padded_taps", "profile_dir", "synops_per_connection", "teacher_energy", "teacher_macs",
    "teacher_profile", "parse_conventions", "neuron_updates", "membrane_changes",
    "NEUROBENCH_CONVENTIONS", "NEUROBENCH_VERSION", "neurobench_metrics",
]
