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
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as tF
import yaml

from export.graph import INPUT, Connection, DeployGraph, run_float
from kd_snn.errors import KdsnnError

FANOUT_MODES = ("nonzero", "all")
EVENT_MODES = ("nonzero", "magnitude")
#: encodings whose input tensor is real-valued (repeated analog frames) -> MACs
ANALOG_ENCODINGS = ("direct", "analog", "repeat")
#: encodings whose input tensor holds spikes / event counts -> SynOps
SPIKING_ENCODINGS = ("poisson", "frames", "events", "spikes")
INPUT_MODES = ("auto", "macs", "synops")

ArrayLike = Union[np.ndarray, torch.Tensor]


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


# --------------------------------------------------------------------------- fan-out


def _check_mode(value: str, allowed: Sequence[str], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, got '{value}'")


def fanout_map(conn: Connection, source_shape: Sequence[int], fanout: str = "nonzero") -> np.ndarray:
    """Exact fan-out of every source element of ``conn`` (an int64 array of ``source_shape``).

    Conv: a transposed convolution of an all-ones output map with the (non-zero) weight
    mask, so each source pixel gets the number of (output neuron, weight) pairs that read
    it, borders, stride and padding included.  Dense: non-zero weights per column
    (``fanout="nonzero"``) or ``N_out`` (``"all"``).  Pooling: 1 inside a window, 0 for
    the pixels the floor division leaves out.
    """
    _check_mode(fanout, FANOUT_MODES, "fanout")
    source_shape = tuple(int(s) for s in source_shape)
    out_shape = conn.out_shape(source_shape)
    if conn.kind == "dense":
        w = conn.weight
        col = (w != 0).sum(axis=0) if fanout == "nonzero" else np.full(w.shape[1], w.shape[0])
        return col.astype(np.int64).reshape(source_shape)
    if conn.kind == "conv":
        w = torch.as_tensor(conn.weight, dtype=torch.float64)
        mask = (w != 0).to(torch.float64) if fanout == "nonzero" else torch.ones_like(w)
        co, _, kh, kw = w.shape
        groups = int(getattr(conn, "groups", 1))  # QuantConnection: pools become grouped convs
        dil = tuple(getattr(conn, "dilation", (1, 1)))  # teacher convs (see count_teacher)
        _, h, wd = source_shape
        _, oh, ow = out_shape
        ones = torch.ones(1, co, oh, ow, dtype=torch.float64)
        # conv_transpose2d reads a (C_out, C_in/groups, kh, kw) weight exactly as conv2d
        # stores it, so the transposed conv of ones sends each output's synapses back.
        # Transposed conv size: (o-1)*s - 2p + d(k-1) + 1; the rows a strided conv never
        # reaches (the remainder of the floor division) are restored by output_padding.
        base_h = (oh - 1) * conn.stride[0] - 2 * conn.padding[0] + dil[0] * (kh - 1) + 1
        base_w = (ow - 1) * conn.stride[1] - 2 * conn.padding[1] + dil[1] * (kw - 1) + 1
        fmap = tF.conv_transpose2d(ones, mask, stride=conn.stride, padding=conn.padding,
                                   output_padding=(h - base_h, wd - base_w), groups=groups,
                                   dilation=dil)
        return fmap[0].round().to(torch.int64).numpy()
    # avgpool / sumpool: windows of size kernel, stride kernel, no padding
    kh, kw = conn.kernel
    c, h, wd = source_shape
    fmap = np.zeros(source_shape, dtype=np.int64)
    fmap[:, : (h // kh) * kh, : (wd // kw) * kw] = 1
    return fmap


def _as_tensor(x: ArrayLike) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    return torch.as_tensor(np.asarray(x))


def _events(x: torch.Tensor, events: str) -> torch.Tensor:
    _check_mode(events, EVENT_MODES, "events")
    if events == "nonzero":
        return (x != 0).to(torch.float64)
    return x.to(torch.float64).abs()


def _weighted_counts(values: torch.Tensor, fmap: np.ndarray) -> np.ndarray:
    """sum over source elements of ``values * fmap`` for each (t, b): float64 (T, B)."""
    f = torch.as_tensor(fmap, dtype=torch.float64)
    T, B = values.shape[:2]
    return (values.reshape(T, B, -1) @ f.reshape(-1)).numpy()


def _to_int(counts: np.ndarray) -> np.ndarray:
    rounded = np.rint(counts)
    if np.array_equal(rounded, counts):
        return rounded.astype(np.int64)
    return counts


def synops_per_connection(conn: Connection, src_spikes: ArrayLike, *, fanout: str = "nonzero",
                          events: str = "nonzero",
                          fmap: Optional[np.ndarray] = None) -> np.ndarray:
    """Exact SynOps of ``src_spikes`` ``(T, B, *source_shape)`` through ``conn``.

    Returns an array ``(T, B)``: the synaptic operations of each sample at each time step
    (int64 for binary spikes).  Sum it for totals; ``.sum(0).mean()`` is the per-inference
    count.  ``fmap`` may pass a precomputed :func:`fanout_map`.
    """
    x = _as_tensor(src_spikes)
    if x.ndim < 3:
        raise ValueError(f"spikes must be (T, B, *source_shape), got shape {tuple(x.shape)}")
    if fmap is None:
        fmap = fanout_map(conn, tuple(x.shape[2:]), fanout)
    elif tuple(fmap.shape) != tuple(x.shape[2:]):
        raise ValueError(f"fan-out map {fmap.shape} does not match spikes {tuple(x.shape[2:])}")
    return _to_int(_weighted_counts(_events(x, events), fmap))


def macs_per_connection(conn: Connection, src_values: ArrayLike, *, fanout: str = "all",
                        fmap: Optional[np.ndarray] = None) -> np.ndarray:
    """Exact MACs of a real-valued source ``(T, B, *source_shape)`` through ``conn``.

    Every value, zero or not, is multiplied into each in-bounds weight it meets (every
    weight: ``fanout="all"``), so the count per (t, b) is the sum of the fan-out map (the
    values only supply ``T``, ``B`` and the shape).  Returns an int64 array ``(T, B)``.
    """
    shape = tuple(src_values.shape)
    if len(shape) < 3:
        raise ValueError(f"values must be (T, B, *source_shape), got shape {shape}")
    if fmap is None:
        fmap = fanout_map(conn, shape[2:], fanout)
    return np.full(shape[:2], int(fmap.sum()), dtype=np.int64)


def padded_taps(conn, source_shape: Sequence[int]) -> int:
    """Every kernel tap of every output, zero padding included (flop_counter's MACs)."""
    source_shape = tuple(int(s) for s in source_shape)
    if conn.kind == "conv":
        return int(np.prod(conn.out_shape(source_shape))) * int(np.prod(conn.weight.shape[1:]))
    if conn.kind == "dense":
        return int(np.asarray(conn.weight).size)
    return int(fanout_map(conn, source_shape, "all").sum())  # pools have no padding


def _reached(conn, events: torch.Tensor) -> torch.Tensor:
    """Which target neurons ``(B, *out_shape)`` get at least one event through a non-zero
    synapse; ``events`` is a 0/1 float64 ``(B, *source_shape)`` (exact integer sums)."""
    B = events.shape[0]
    if conn.kind == "dense":
        mask = torch.as_tensor(np.asarray(conn.weight) != 0, dtype=torch.float64)
        return (events.reshape(B, -1) @ mask.T) > 0
    if conn.kind == "conv":
        mask = torch.as_tensor(np.asarray(conn.weight) != 0, dtype=torch.float64)
        return tF.conv2d(events, mask, stride=conn.stride, padding=conn.padding,
                         groups=int(getattr(conn, "groups", 1))) > 0
    return tF.avg_pool2d(events, conn.kernel, conn.kernel) > 0


def _neuron_flags(layer) -> tuple:
    """Per neuron: non-zero bias, keeps its voltage between steps, keeps its current."""
    shape = tuple(layer.shape)
    if hasattr(layer, "bias_mant"):  # QuantLayer: dv = 4096 (1 - beta), du = 4096 (1 - alpha) - 1
        bias = np.broadcast_to(np.asarray(layer.bias_mant) != 0, shape)
        keeps_v = np.full(shape, layer.dv < 4096)
        keeps_i = np.full(shape, layer.du < 4095)
    else:
        bias = np.broadcast_to(np.asarray(layer.bias) != 0, shape)
        keeps_v = np.broadcast_to(np.asarray(layer.beta) > 0, shape)
        keeps_i = np.broadcast_to(np.asarray(layer.alpha) > 0, shape)
    return tuple(torch.as_tensor(np.array(a, dtype=bool)) for a in (bias, keeps_v, keeps_i))


def active_updates(layer, inputs: Sequence[Tuple[object, torch.Tensor]],
                   spikes: Optional[torch.Tensor]) -> int:
    """Active neuron updates of ``layer`` over ``(T, B)``: a neuron is active in a step when
    an event reaches it through a non-zero synapse, it has a non-zero bias, or it carries
    state from an active previous step (voltage if it did not spike and beta > 0, current
    if alpha > 0).  An upper bound: a voltage that cancels or decays to exactly 0 counts.

    ``inputs``: (connection, source events ``(T, B, *source_shape)`` as 0/1 float64).
    ``spikes``: the layer's own spikes ``(T, B, *shape)`` (``None``: never spikes).
    """
    bias, keeps_v, keeps_i = _neuron_flags(layer)
    T, B = inputs[0][1].shape[:2]
    prev = torch.zeros((B,) + tuple(layer.shape), dtype=torch.bool)
    fired = torch.zeros_like(prev)
    total = 0
    for t in range(T):
        act = bias | (prev & ((~fired & keeps_v) | keeps_i))
        for conn, ev in inputs:
            act = act | _reached(conn, ev[t]).reshape(act.shape)
        total += int(act.sum())
        prev = act
        if spikes is not None:
            fired = spikes[t] != 0
    return total


RATE_BINS = 20  # firing-rate histogram: 20 bins of 5 % each


def _rate_histogram(counts: torch.Tensor, denom: int) -> dict:
    """Distribution of per-neuron firing rates (``counts`` spikes per neuron over N*T)."""
    c = counts.reshape(-1).to(torch.int64).numpy()
    rates = c / denom
    hist, edges = np.histogram(rates, bins=RATE_BINS, range=(0.0, 1.0))
    return {"edges": [float(e) for e in edges], "counts": [int(h) for h in hist],
            "dead": int((c == 0).sum()), "saturated": int((c == denom).sum()),
            "dead_fraction": float((c == 0).mean()),
            "saturated_fraction": float((c == denom).mean())}


RASTER_NEURONS = 12  # neurons per layer in the spike raster, evenly spaced by index


def _raster(spk: torch.Tensor) -> dict:
    """Spike steps of a few evenly spaced neurons of sample 0 (``spk`` ``(T, B, ...)``)."""
    flat = spk[:, 0].reshape(spk.shape[0], -1)
    n = flat.shape[1]
    idx = sorted(set(np.linspace(0, n - 1, min(RASTER_NEURONS, n)).round().astype(int)))
    return {"sample": 0, "neurons": [int(i) for i in idx],
            "spike_steps": [[int(t) for t in torch.nonzero(flat[:, i]).reshape(-1)]
                            for i in idx]}


def _mac_count(c: Mapping, conv: "Conventions", T: int) -> float:
    """MACs per inference of one real-valued connection under ``conv``."""
    once = c["input"] and conv.first_layer == "once" and bool(c["repeats"])
    if c["input"] and conv.zero_input == "skipped":
        if c["nonzero_steps"] is None:
            raise KdsnnError("zero-input skipping needs the input values: pass x_seq")
        return float(c["nonzero_first"] if once else c["nonzero_steps"])
    per_step = c["padded" if conv.padding == "counted" else "in_bounds"]
    return float(per_step * (1 if once else T))


# --------------------------------------------------------------------------- graph analysis


@dataclass(frozen=True)
class LayerStats:
    """Activity and operation counts of one neuron layer, per inference (one sample).

    ``synops_in`` / ``macs_in`` sum every incoming connection (residual edges included);
    ``synops_by_source`` / ``macs_by_source`` split them per source; ``macs_*`` follow the
    conventions of the :class:`GraphStats` they belong to, derived from ``mac_counts``
    (per real-valued source: in-bounds and padded taps per step, non-zero-input taps of the
    first step and of all steps, whether the input repeats over time).
    ``firing_rate`` = spikes / (neurons * T); ``None`` for the non-spiking readout.
    """

    name: str
    neurons: int
    spiking: bool
    time_steps: int
    spikes: float  # per sample, summed over T
    spikes_per_step: float  # per sample per time step
    firing_rate: Optional[float]
    synops_in: float
    macs_in: float
    neuron_updates: int  # neurons * T
    active_updates: float = 0.0  # per sample (see active_updates())
    synops_by_source: Dict[str, float] = field(default_factory=dict)
    macs_by_source: Dict[str, float] = field(default_factory=dict)
    mac_counts: Dict[str, dict] = field(default_factory=dict)
    spikes_by_step: Tuple[float, ...] = ()  # per sample, one entry per step
    rate_histogram: Optional[dict] = None  # per-neuron firing rates (spiking layers)
    raster: Optional[dict] = None  # a few neurons of sample 0 (spiking layers)

    @property
    def synops_per_step(self) -> float:
        return self.synops_in / self.time_steps

    @property
    def macs_per_step(self) -> float:
        return self.macs_in / self.time_steps

    def to_dict(self) -> dict:
        d = asdict(self)
        d["spikes_by_step"] = list(self.spikes_by_step)
        d["synops_per_step"] = self.synops_per_step
        d["macs_per_step"] = self.macs_per_step
        return d


@dataclass(frozen=True)
class GraphStats:
    """Per-layer statistics of one graph on one data batch; behaves as a list of layers.

    ``source`` names where the spikes came from (``"float"`` = ``run_float``, ``"lava"``,
    ``"emulate"``, ...); ``samples`` is the number of inputs averaged over; the MAC figures
    follow ``conventions`` (:meth:`under` derives another convention's figures).
    """

    layers: Tuple[LayerStats, ...]
    time_steps: int
    samples: int
    source: str = "float"
    fanout: str = "nonzero"
    input_mode: str = "macs"
    conventions: Conventions = DEFAULT_CONVENTIONS

    def __iter__(self):
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, key):
        if isinstance(key, str):
            for layer in self.layers:
                if layer.name == key:
                    return layer
            raise KeyError(key)
        return self.layers[key]

    def under(self, conventions: Conventions) -> "GraphStats":
        """The same counts charged under ``conventions`` (MAC figures re-derived)."""
        layers = []
        for s in self.layers:
            macs = {k: _mac_count(c, conventions, self.time_steps)
                    for k, c in s.mac_counts.items()}
            layers.append(replace(s, macs_by_source=macs, macs_in=float(sum(macs.values()))))
        return replace(self, layers=tuple(layers), conventions=conventions)

    @property
    def totals(self) -> dict:
        spiking = [s for s in self.layers if s.spiking]
        neurons = sum(s.neurons for s in spiking)
        spikes = float(sum(s.spikes for s in spiking))
        hists = [s.rate_histogram for s in spiking if s.rate_histogram]
        return {
            "neurons": int(sum(s.neurons for s in self.layers)),
            "spiking_neurons": int(neurons),
            "spikes": spikes,
            "spikes_per_step": spikes / self.time_steps,
            "firing_rate": spikes / (neurons * self.time_steps) if neurons else None,
            "synops": float(sum(s.synops_in for s in self.layers)),
            "macs": float(sum(s.macs_in for s in self.layers)),
            "neuron_updates": int(sum(s.neuron_updates for s in self.layers)),
            "active_updates": float(sum(s.active_updates for s in self.layers)),
            "dead_fraction": (sum(h["dead"] for h in hists) / neurons) if hists else None,
            "saturated_fraction": (sum(h["saturated"] for h in hists) / neurons)
            if hists else None,
        }

    def to_dict(self) -> dict:
        return {"source": self.source, "time_steps": self.time_steps, "samples": self.samples,
                "fanout": self.fanout, "input_mode": self.input_mode,
                "conventions": self.conventions.to_dict(),
                "layers": [s.to_dict() for s in self.layers], "totals": self.totals}


def _input_is_analog(graph: DeployGraph, input_mode: str) -> bool:
    _check_mode(input_mode, INPUT_MODES, "input_mode")
    if input_mode != "auto":
        return input_mode == "macs"
    enc = getattr(graph, "encoding", None)
    if enc is None:  # QuantGraph: the input arrives as graded (8-bit) real-valued messages
        return True
    enc = str(enc).lower()
    if enc in ANALOG_ENCODINGS:
        return True
    if enc in SPIKING_ENCODINGS:
        return False
    raise KdsnnError(f"unknown input encoding '{graph.encoding}': pass input_mode='macs' "
                     "(real-valued input) or 'synops' (spiking input)")


def _check_record(name: str, rec: torch.Tensor, shape: tuple, T: int, N: int) -> None:
    want = (T, N) + tuple(shape)
    if tuple(rec.shape) != want:
        raise KdsnnError(f"spike record of '{name}' has shape {tuple(rec.shape)}, expected "
                         f"{want} (T, B, *shape), time-major and latency-aligned")


def analyze_graph(graph, x_seq: Optional[ArrayLike] = None, *,
                  spikes: Optional[Mapping[str, ArrayLike]] = None, batch_size: int = 64,
                  source: Optional[str] = None, fanout: str = "nonzero",
                  events: str = "nonzero", input_mode: str = "auto",
                  conventions: Conventions = DEFAULT_CONVENTIONS) -> GraphStats:
    """Per-layer spikes, firing rates, SynOps, MACs and neuron updates of ``graph``.

    Either run the synchronous float executor on ``x_seq`` ``(T, N, *input_shape)`` in
    chunks of ``batch_size`` samples, or pass precomputed ``spikes`` (layer name ->
    ``(T, N, *shape)``, e.g. a latency-aligned Lava run; set ``source="lava"``), so both
    can be compared side by side.  With precomputed spikes ``x_seq`` is still needed for
    spiking input without an ``"input"`` record, and for the zero-input and first-layer
    conventions (without it the input is taken as repeating only for direct encoding and
    zero skipping is unavailable).  ``graph`` may also be the ``export.fixed_point.QuantGraph``
    a Lava run used (records required): its integer weights give the deployed non-zero
    synapses, its relay layers are counted, pools are grouped convs (same fan-out).

    ``input_mode``: ``"auto"`` (from ``graph.encoding``: direct -> MACs, poisson/frames ->
    SynOps), ``"macs"`` or ``"synops"``.  ``fanout``/``events``: see the module docstring.
    ``conventions``: how the returned MAC figures are charged (:class:`Conventions`).
    """
    _check_mode(fanout, FANOUT_MODES, "fanout")
    _check_mode(events, EVENT_MODES, "events")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    analog_input = _input_is_analog(graph, input_mode)
    if x_seq is None and spikes is None:
        raise ValueError("analyze_graph needs x_seq or precomputed spikes")
    if spikes is None and not isinstance(graph, DeployGraph):
        raise KdsnnError("only a DeployGraph can be run here; pass the spike records of "
                         f"this {type(graph).__name__} (e.g. from hardware.lava_sim.run_lava)")
    if source is None:
        source = "float" if spikes is None else "records"
    x = None if x_seq is None else _as_tensor(x_seq)
    recs = None if spikes is None else {k: _as_tensor(v) for k, v in spikes.items()}

    if recs is not None:
        ref = next((recs[l.name] for l in graph.layers if l.spiking and l.name in recs), None)
        if ref is None and x is None:
            raise KdsnnError("spike records hold none of the graph's spiking layers")
        T, N = (ref.shape[:2] if ref is not None else x.shape[:2])
        for layer in graph.layers:
            if not layer.spiking:
                continue
            if layer.name not in recs:
                raise KdsnnError(f"spike records have no layer '{layer.name}' "
                                 f"(have: {', '.join(sorted(recs)) or 'none'})")
            _check_record(layer.name, recs[layer.name], layer.shape, T, N)
    else:
        T, N = x.shape[:2]
    T, N = int(T), int(N)
    if x is not None:
        _check_record(INPUT, x, graph.input_shape, T, N)
    if recs is not None and INPUT in recs:
        _check_record(INPUT, recs[INPUT], graph.input_shape, T, N)
    if N < 1 or T < 1:
        raise KdsnnError("no samples / time steps to analyse")

    spiking_of = {INPUT: not analog_input}
    spiking_of.update({l.name: l.spiking for l in graph.layers})
    fmaps, macs = {}, {l.name: {} for l in graph.layers}
    has_input = x is not None or (recs is not None and INPUT in recs)
    for layer in graph.layers:
        for k, conn in enumerate(layer.connections):
            shape = graph.source_shape(conn.source)
            fmaps[(layer.name, k)] = fanout_map(conn, shape, fanout)
            if spiking_of[conn.source]:
                if conn.source == INPUT and not has_input:
                    raise KdsnnError("input is spiking: pass x_seq or an 'input' record to "
                                     "count its SynOps")
                continue
            is_input = conn.source == INPUT
            macs[layer.name][(conn.source, k)] = {
                "input": is_input, "fmap": fanout_map(conn, shape, "all"),
                "in_bounds": 0, "padded": padded_taps(conn, shape),
                "nonzero_first": 0.0 if is_input and has_input else None,
                "nonzero_steps": 0.0 if is_input and has_input else None,
                "repeats": True if is_input and has_input else (
                    is_input and str(getattr(graph, "encoding", "")).lower()
                    in ANALOG_ENCODINGS)}
            macs[layer.name][(conn.source, k)]["in_bounds"] = int(
                macs[layer.name][(conn.source, k)]["fmap"].sum())

    spike_tot = {l.name: 0.0 for l in graph.layers}
    per_step = {l.name: np.zeros(T) for l in graph.layers}
    per_neuron = {l.name: torch.zeros(tuple(l.shape), dtype=torch.int64)
                  for l in graph.layers if l.spiking}
    active = {l.name: 0 for l in graph.layers}
    syn_tot = {l.name: {} for l in graph.layers}
    rasters = {}
    for start in range(0, N, batch_size):
        sl = slice(start, min(N, start + batch_size))
        if recs is None:
            _, chunk = run_float(graph, x[:, sl], record=True)
        else:
            chunk = {k: v[:, sl] for k, v in recs.items()}
        if x is not None and INPUT not in chunk:
            chunk[INPUT] = x[:, sl]
        ev = {k: _events(v, "nonzero") for k, v in chunk.items()}
        for layer in graph.layers:
            if layer.spiking:
                s = ev[layer.name]
                spike_tot[layer.name] += float(s.sum())
                per_step[layer.name] += s.reshape(T, -1).sum(1).numpy()
                per_neuron[layer.name] += s.sum((0, 1)).to(torch.int64)
                if start == 0:
                    rasters[layer.name] = _raster(s)
            inputs = []
            for k, conn in enumerate(layer.connections):
                src = ev.get(conn.source)
                if src is None:  # an unrecorded real-valued layer: every value is an input
                    src = torch.ones((T, sl.stop - sl.start) + tuple(
                        graph.source_shape(conn.source)), dtype=torch.float64)
                inputs.append((conn, src))
                if spiking_of[conn.source]:
                    n = float(synops_per_connection(conn, chunk[conn.source], events=events,
                                                    fmap=fmaps[(layer.name, k)]).sum())
                    syn_tot[layer.name][conn.source] = syn_tot[layer.name].get(
                        conn.source, 0.0) + n
                    continue
                c = macs[layer.name][(conn.source, k)]
                if c["nonzero_steps"] is not None:
                    steps = _weighted_counts(src, c["fmap"])  # (T, B) non-zero-input taps
                    c["nonzero_steps"] += float(steps.sum())
                    c["nonzero_first"] += float(steps[0].sum())
                    xin = chunk[INPUT]
                    c["repeats"] = c["repeats"] and all(torch.equal(xin[t], xin[0])
                                                        for t in range(T))
            active[layer.name] += active_updates(
                layer, inputs, chunk.get(layer.name) if layer.spiking else None)

    out = []
    for layer in graph.layers:
        neurons = int(np.prod(layer.shape))
        sp = spike_tot[layer.name] / N if layer.spiking else 0.0
        syn = {k: v / N for k, v in syn_tot[layer.name].items()}
        counts = {}
        for (src, k), c in macs[layer.name].items():
            key = src if src not in counts else f"{src}#{k}"
            counts[key] = {"input": c["input"], "in_bounds": c["in_bounds"],
                           "padded": c["padded"], "repeats": bool(c["repeats"]),
                           "nonzero_first": None if c["nonzero_first"] is None
                           else c["nonzero_first"] / N,
                           "nonzero_steps": None if c["nonzero_steps"] is None
                           else c["nonzero_steps"] / N}
        out.append(LayerStats(
            name=layer.name, neurons=neurons, spiking=bool(layer.spiking), time_steps=T,
            spikes=sp, spikes_per_step=sp / T,
            firing_rate=(sp / (neurons * T)) if layer.spiking else None,
            synops_in=float(sum(syn.values())), macs_in=0.0,
            neuron_updates=neurons * T, active_updates=active[layer.name] / N,
            synops_by_source=syn, mac_counts=counts,
            spikes_by_step=tuple(float(v) / N for v in per_step[layer.name]),
            rate_histogram=(_rate_histogram(per_neuron[layer.name], N * T)
                            if layer.spiking else None),
            raster=rasters.get(layer.name)))
    return GraphStats(layers=tuple(out), time_steps=T, samples=N, source=source,
                      fanout=fanout, input_mode="macs" if analog_input else "synops"
                      ).under(conventions)


# --------------------------------------------------------------------------- teacher


@dataclass(frozen=True)
class TeacherLayer:
    """MACs per inference of one conv / linear module of the ANN teacher.

    ``in_bounds``: taps that read real data; ``padded``: every tap, zero padding included
    (``torch.utils.flop_counter``'s MACs = flops / 2); ``input``: fed by the network input;
    ``nonzero``: in-bounds taps that meet a non-zero input value (mean per sample; input
    layers counted on data only, else ``None``).
    """

    name: str
    in_bounds: int
    padded: int
    input: bool = False
    nonzero: Optional[float] = None

    def macs(self, conventions: Conventions = DEFAULT_CONVENTIONS) -> float:
        if self.input and conventions.zero_input == "skipped":
            if self.nonzero is None:
                raise KdsnnError("zero-input skipping needs the teacher counted on data: "
                                 "pass x to count_teacher")
            return self.nonzero
        return self.padded if conventions.padding == "counted" else self.in_bounds


@dataclass(frozen=True)
class TeacherStats:
    """The teacher's exact MAC counts per layer (call order); ``samples`` it was run on."""

    layers: Tuple[TeacherLayer, ...]
    samples: int = 0

    def macs(self, conventions: Conventions = DEFAULT_CONVENTIONS) -> Dict[str, float]:
        return {l.name: l.macs(conventions) for l in self.layers}

    def to_dict(self) -> dict:
        return {"samples": self.samples, "layers": [asdict(l) for l in self.layers]}


class _TeacherConv:
    """A torch Conv2d seen as a kdsnn conv connection, so :func:`fanout_map` counts it."""

    kind = "conv"

    def __init__(self, mod: torch.nn.Conv2d, out_shape: tuple):
        if isinstance(mod.padding, str):
            if mod.padding != "valid":
                raise KdsnnError(f"teacher conv padding '{mod.padding}' is not counted: "
                                 "use explicit integer padding")
            self.padding = (0, 0)
        else:
            self.padding = tuple(int(p) for p in mod.padding)
        self.weight = mod.weight.detach().cpu().to(torch.float64).numpy()
        self.stride = tuple(int(s) for s in mod.stride)
        self.dilation = tuple(int(d) for d in mod.dilation)
        self.groups = int(mod.groups)
        self._out = tuple(out_shape)

    def out_shape(self, _source_shape) -> tuple:
        return self._out


def _teacher_layer(name: str, mod, inp: torch.Tensor, out: torch.Tensor, is_input: bool):
    """(in_bounds, padded, nonzero-input taps summed over the batch) of one module call."""
    batch = inp.shape[0]
    if isinstance(mod, torch.nn.Linear):
        fan = mod.out_features  # the dense fan-out of every input value
        rows = inp.numel() // (batch * mod.in_features)  # tokens, when there are any
        n = rows * mod.in_features * fan
        nonzero = float((inp != 0).sum()) * fan if is_input else None
        return n, n, nonzero
    if type(mod) is not torch.nn.Conv2d:
        raise KdsnnError(f"teacher module '{name}' ({type(mod).__name__}) is not counted: "
                         "only Conv2d and Linear are")
    conn = _TeacherConv(mod, out.shape[1:])
    fmap = fanout_map(conn, tuple(inp.shape[1:]), "all")
    padded = padded_taps(conn, tuple(inp.shape[1:]))
    in_bounds = int(fmap.sum()) if mod.padding_mode == "zeros" else padded
    nonzero = None
    if is_input:
        ev = (inp.detach().cpu() != 0).to(torch.float64).unsqueeze(0)  # (1, B, C, H, W)
        nonzero = float(_weighted_counts(ev, fmap).sum())
    return in_bounds, padded, nonzero


def count_teacher(model: torch.nn.Module, input_shape: Sequence[int],
                  x: Optional[ArrayLike] = None, batch_size: int = 64) -> TeacherStats:
    """Exact MACs per inference of every Conv2d / Linear module of an ANN, in call order,
    counted by the student's counter (:func:`fanout_map`), so both follow one convention.

    ``input_shape`` is ``(C, H, W)`` (a leading batch size is ignored).  The model runs on
    zeros, or on the images ``x`` ``(N, C, H, W)`` to count the non-zero input values of
    the modules fed by the network input (zero-input convention).  Bias additions, BN,
    activations, pooling and functional calls outside modules are not MACs.  A module
    called twice is summed.
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) < 2:
        raise ValueError(f"input_shape must be (C, H, W) or (B, C, H, W), got {shape}")
    shape = shape[1:] if len(shape) >= 4 else shape
    p = next(model.parameters(), None)
    dtype = p.dtype if p is not None else torch.float32
    device = p.device if p is not None else "cpu"
    if x is None:
        batches, samples = [torch.zeros((1,) + shape, dtype=dtype)], 0
    else:
        xs = _as_tensor(x)
        if tuple(xs.shape[1:]) != shape:
            raise KdsnnError(f"teacher images have shape {tuple(xs.shape[1:])}, "
                             f"expected {shape}")
        batches, samples = list(torch.split(xs, batch_size)), int(xs.shape[0])
    order: List[str] = []
    counts: Dict[str, list] = {}
    current = {}

    def hook(name):
        def fn(mod, inputs, output):
            inp = inputs[0]
            is_input = inp.shape == current["x"].shape and \
                inp.data_ptr() == current["x"].data_ptr()
            ib, pd, nz = _teacher_layer(name, mod, inp, output, is_input)
            if name not in counts:
                order.append(name)
                counts[name] = [0, 0, is_input, 0.0 if is_input and samples else None]
            c = counts[name]
            if current["first"]:  # static per-sample counts: the first batch suffices
                c[0] += ib
                c[1] += pd
            if c[3] is not None and nz is not None:
                c[3] += nz
        return fn

    hooks = [mod.register_forward_hook(hook(name or type(mod).__name__))
             for name, mod in model.named_modules()
             if isinstance(mod, (torch.nn.modules.conv._ConvNd, torch.nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            for i, b in enumerate(batches):
                current["x"] = b.to(device=device, dtype=dtype)
                current["first"] = i == 0
                model(current["x"])
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    layers = []
    for name in order:
        ib, pd, is_input, nz = counts[name]
        layers.append(TeacherLayer(name, int(ib), int(pd), bool(is_input),
                                   None if nz is None else nz / samples))
    return TeacherStats(tuple(layers), samples)


def teacher_macs(model: torch.nn.Module, input_shape: Sequence[int],
                 conventions: Conventions = DEFAULT_CONVENTIONS) -> Dict[str, int]:
    """MACs per inference of every conv / linear module under ``conventions`` (default:
    in-bounds taps; ``Conventions(padding="counted")`` gives ``flop_counter``'s figure)."""
    return {k: int(v) for k, v in count_teacher(model, input_shape).macs(conventions).items()}


# --------------------------------------------------------------------------- profiles

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


# --------------------------------------------------------------------------- energy

ENERGY_PARTS = ("synops_pj", "macs_pj", "neuron_active_pj", "neuron_inactive_pj", "spike_pj")


def energy(stats: Union[GraphStats, Iterable[LayerStats]], profile,
           conventions: Optional[Conventions] = None) -> dict:
    """Student energy per inference in pJ, split into parts: SynOps * E_AC, MACs * E_MAC,
    active / inactive neuron updates * E_neuron, spikes * E_spike (profiles without a
    figure charge nothing for that part).

    ``conventions``: derive the counts under these (default: the stats' own).  Returns
    ``{"profile", "conventions", "synops_pj", "macs_pj", "neuron_active_pj",
    "neuron_inactive_pj", "neuron_pj", "spike_pj", "total_pj", "layers": [...]}``.
    """
    prof = load_profile(profile)
    if conventions is not None:
        if not isinstance(stats, GraphStats):
            raise TypeError("conventions need a GraphStats")
        stats = stats.under(conventions)
    conv = stats.conventions if isinstance(stats, GraphStats) else DEFAULT_CONVENTIONS
    layers = []
    for s in stats:
        active, inactive = float(s.neuron_updates), 0.0
        if conv.neuron_updates == "active_inactive" and prof.e_neuron_inactive_pj:
            active = float(s.active_updates)
            inactive = s.neuron_updates - active
        e_inactive = prof.e_neuron_inactive_pj or prof.e_neuron_pj or 0.0
        part = {"synops_pj": s.synops_in * prof.e_ac_pj, "macs_pj": s.macs_in * prof.e_mac_pj,
                "neuron_active_pj": active * (prof.e_neuron_pj or 0.0),
                "neuron_inactive_pj": inactive * e_inactive,
                "spike_pj": s.spikes * (prof.e_spike_pj or 0.0)}
        part["neuron_pj"] = part["neuron_active_pj"] + part["neuron_inactive_pj"]
        part["total_pj"] = sum(part[k] for k in ENERGY_PARTS)
        layers.append({"name": s.name, **part})
    keys = ENERGY_PARTS + ("neuron_pj", "total_pj")
    tot = {k: float(sum(l[k] for l in layers)) for k in keys}
    return {"profile": prof.name, "conventions": conv.to_dict(), **tot, "layers": layers}


def teacher_energy(macs: Union[Mapping[str, float], TeacherStats, int, float], profile,
                   conventions: Conventions = DEFAULT_CONVENTIONS) -> dict:
    """ANN energy per inference in pJ: MACs * E_MAC of the profile the teacher is charged
    with under ``profile`` (``"charged_as"``, see :func:`teacher_profile`)."""
    prof = load_profile(profile)
    charged = teacher_profile(prof)
    if isinstance(macs, TeacherStats):
        macs = macs.macs(conventions)
    if not isinstance(macs, Mapping):
        macs = {"total": macs}
    layers = [{"name": k, "macs": float(v), "total_pj": float(v) * charged.e_mac_pj}
              for k, v in macs.items()]
    return {"profile": prof.name, "charged_as": charged.name,
            "macs": float(sum(l["macs"] for l in layers)),
            "total_pj": float(sum(l["total_pj"] for l in layers)), "layers": layers}


def energy_ratio(student: dict, teacher: dict) -> Optional[float]:
    """Teacher energy / student energy (> 1: the student is that many times cheaper)."""
    s, t = float(student["total_pj"]), float(teacher["total_pj"])
    return t / s if s > 0 else None
