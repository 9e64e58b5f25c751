"""Per-layer statistics of a student graph on data (:func:`analyze_graph`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
import torch

from export.devices import as_device, exact_kernels
from export.graph import CLOCK, INPUT, DeployGraph, clock_activity, run_float
from kd_snn.errors import KdsnnError

from .conventions import (ANALOG_ENCODINGS, DEFAULT_CONVENTIONS, EVENT_MODES, FANOUT_MODES,
                          INPUT_MODES, SPIKING_ENCODINGS, Conventions, check_mode)
from .counting import (ArrayLike, as_tensor, spike_events, mac_count, raster_sample, firing_rate_histogram,
                       weighted_counts, active_updates, fanout_map, padded_taps,
                       synops_per_connection)
from .membrane import membrane_changes

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
    synaptic_taps: int = 0  # conv/dense in-bounds taps per step, every weight (Dense)
    pooled_synops: float = 0.0  # per sample: the part of synops_in through pool connections
    membrane_changes: Optional[float] = None  # per sample (membrane.py); None: no membrane

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
            macs = {k: mac_count(c, conventions, self.time_steps)
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
    check_mode(input_mode, INPUT_MODES, "input_mode")
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
                  conventions: Conventions = DEFAULT_CONVENTIONS,
                  device=None) -> GraphStats:
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
    ``device``: where the float pass and the counting of each chunk compute (the counts
    are integers summed in float64, exact on every device); inputs stay where they are.
    """
    check_mode(fanout, FANOUT_MODES, "fanout")
    check_mode(events, EVENT_MODES, "events")
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
    x = None if x_seq is None else as_tensor(x_seq)
    recs = None if spikes is None else {k: as_tensor(v) for k, v in spikes.items()}

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

    spiking_of = {INPUT: not analog_input, CLOCK: True}  # the bias axon: a spike a step
    spiking_of.update({l.name: l.spiking for l in graph.layers})
    fmaps, macs = {}, {l.name: {} for l in graph.layers}
    taps = {l.name: 0 for l in graph.layers}  # conv/dense in-bounds taps per step, all weights
    has_input = x is not None or (recs is not None and INPUT in recs)
    for layer in graph.layers:
        for k, conn in enumerate(layer.connections):
            shape = graph.source_shape(conn.source)
            fmaps[(layer.name, k)] = fanout_map(conn, shape, fanout)
            if conn.kind in ("conv", "dense"):
                taps[layer.name] += int(fanout_map(conn, shape, "all").sum())
            if spiking_of[conn.source]:
                if conn.source == INPUT and not has_input:
                    raise KdsnnError("input is spiking: pass x_seq or an 'input' record to "
                                     "count its SynOps")
                continue
            is_input = conn.source == INPUT
            zeros = 0.0 if is_input and has_input else None
            fmap, fmap_nzw = fanout_map(conn, shape, "all"), fanout_map(conn, shape, "nonzero")
            macs[layer.name][(conn.source, k)] = {
                "input": is_input, "fmap": fmap, "fmap_nzw": fmap_nzw,
                "in_bounds": int(fmap.sum()), "padded": padded_taps(conn, shape),
                "in_bounds_nzw": int(fmap_nzw.sum()),
                "padded_nzw": padded_taps(conn, shape, "nonzero"),
                "nonzero_first": zeros, "nonzero_steps": zeros,
                "nonzero_first_nzw": zeros, "nonzero_steps_nzw": zeros,
                "repeats": True if is_input and has_input else (
                    is_input and str(getattr(graph, "encoding", "")).lower()
                    in ANALOG_ENCODINGS)}

    spike_tot = {l.name: 0.0 for l in graph.layers}
    per_step = {l.name: np.zeros(T) for l in graph.layers}
    dev = as_device(device)
    per_neuron = {l.name: torch.zeros(tuple(l.shape), dtype=torch.int64, device=dev)
                  for l in graph.layers if l.spiking}
    active = {l.name: 0 for l in graph.layers}
    syn_tot = {l.name: {} for l in graph.layers}
    pooled = {l.name: 0.0 for l in graph.layers}  # SynOps through avg/sum-pool connections
    float_membrane = isinstance(graph, DeployGraph)
    changed = {l.name: 0 for l in graph.layers if l.spiking and float_membrane}
    rasters = {}
    for start in range(0, N, batch_size):
        sl = slice(start, min(N, start + batch_size))
        if recs is None:
            with exact_kernels(dev):  # TF32 off: the float pass is float64 as on the CPU
                _, chunk = run_float(graph, x[:, sl].to(dev), record=True)
        else:
            chunk = {k: v[:, sl].to(dev) for k, v in recs.items()}
        if x is not None and INPUT not in chunk:
            chunk[INPUT] = x[:, sl].to(dev)
        chunk[CLOCK] = clock_activity(T, sl.stop - sl.start, device=dev)
        ev = {k: spike_events(v, "nonzero") for k, v in chunk.items()}
        for layer in graph.layers:
            if layer.spiking:
                s = ev[layer.name]
                spike_tot[layer.name] += float(s.sum())
                per_step[layer.name] += s.reshape(T, -1).sum(1).cpu().numpy()
                per_neuron[layer.name] += s.sum((0, 1)).to(torch.int64)
                if start == 0:
                    rasters[layer.name] = raster_sample(s)
            inputs = []
            for k, conn in enumerate(layer.connections):
                src = ev.get(conn.source)
                if src is None:  # an unrecorded real-valued layer: every value is an input
                    src = torch.ones((T, sl.stop - sl.start) + tuple(
                        graph.source_shape(conn.source)), dtype=torch.float64, device=dev)
                inputs.append((conn, src))
                if spiking_of[conn.source]:
                    n = float(synops_per_connection(conn, chunk[conn.source], events=events,
                                                    fmap=fmaps[(layer.name, k)]).sum())
                    syn_tot[layer.name][conn.source] = syn_tot[layer.name].get(
                        conn.source, 0.0) + n
                    if conn.kind in ("avgpool", "sumpool"):
                        pooled[layer.name] += n
                    continue
                c = macs[layer.name][(conn.source, k)]
                if c["nonzero_steps"] is not None:
                    steps = weighted_counts(src, c["fmap"])  # (T, B) non-zero-input taps
                    c["nonzero_steps"] += float(steps.sum())
                    c["nonzero_first"] += float(steps[0].sum())
                    steps = weighted_counts(src, c["fmap_nzw"])
                    c["nonzero_steps_nzw"] += float(steps.sum())
                    c["nonzero_first_nzw"] += float(steps[0].sum())
                    xin = chunk[INPUT]
                    c["repeats"] = c["repeats"] and all(torch.equal(xin[t], xin[0])
                                                        for t in range(T))
            active[layer.name] += active_updates(
                layer, inputs, chunk.get(layer.name) if layer.spiking else None)
            if layer.name in changed and all(c.source in chunk for c in layer.connections):
                changed[layer.name] += membrane_changes(layer, chunk)
            else:
                changed.pop(layer.name, None)

    out = []
    for layer in graph.layers:
        neurons = int(np.prod(layer.shape))
        sp = spike_tot[layer.name] / N if layer.spiking else 0.0
        syn = {k: v / N for k, v in syn_tot[layer.name].items()}
        counts = {}
        for (src, k), c in macs[layer.name].items():
            key = src if src not in counts else f"{src}#{k}"
            counts[key] = {k2: c[k2] for k2 in ("input", "in_bounds", "padded",
                                                "in_bounds_nzw", "padded_nzw")}
            counts[key]["repeats"] = bool(c["repeats"])
            for k2 in ("nonzero_first", "nonzero_steps", "nonzero_first_nzw",
                       "nonzero_steps_nzw"):
                counts[key][k2] = None if c[k2] is None else c[k2] / N
        out.append(LayerStats(
            name=layer.name, neurons=neurons, spiking=bool(layer.spiking), time_steps=T,
            spikes=sp, spikes_per_step=sp / T,
            firing_rate=(sp / (neurons * T)) if layer.spiking else None,
            synops_in=float(sum(syn.values())), macs_in=0.0,
            neuron_updates=neurons * T, active_updates=active[layer.name] / N,
            synops_by_source=syn, mac_counts=counts,
            spikes_by_step=tuple(float(v) / N for v in per_step[layer.name]),
            rate_histogram=(firing_rate_histogram(per_neuron[layer.name], N * T)
                            if layer.spiking else None),
            raster=rasters.get(layer.name), synaptic_taps=taps[layer.name],
            pooled_synops=pooled[layer.name] / N,
            membrane_changes=changed[layer.name] / N if layer.name in changed else None))
    return GraphStats(layers=tuple(out), time_steps=T, samples=N, source=source,
                      fanout=fanout, input_mode="macs" if analog_input else "synops"
                      ).under(conventions)
