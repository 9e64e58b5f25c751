"""Exact operation counts and energy estimates for a DeployGraph and its ANN teacher.

Conventions (FIELD-NOTES section 5):

* **SynOps** (synaptic operations, accumulates): every input *event* costs its exact
  fan-out, the number of synapses it drives.  Conv fan-out depends on the position
  (borders, stride, padding) and is computed once per connection as a map over the
  source (a transposed convolution of ones with the weight mask), never ``C_out*k*k``.
* **Fan-out mode** ``fanout=``:
  ``"nonzero"`` (default, Loihi-faithful): only synapses whose weight is non-zero count
  (Loihi stores sparse synapse lists, a zero weight is never fetched);
  ``"all"``: every structural synapse counts (dense ``N_out`` per input, conv every
  in-bounds kernel tap times ``C_out``).  Pooling (avg/sum) fan-out is 1 for every source
  pixel inside a pooling window and 0 for the rows/columns the floor division drops.
* **Events**: a source entry is one event when it is non-zero (binary spikes; a Loihi 2
  graded spike is also one event).  ``events="magnitude"`` counts ``|value|`` events
  instead (event frames holding counts sent as that many unit spikes).
* **MACs**: connections fed by a real-valued source (the ``"input"`` under ``direct``
  encoding, or a non-spiking layer) cost multiply-accumulates: every value, zero or not,
  times its fan-out, every time step (what the synchronous executor runs).
* **Neuron updates**: every neuron of every layer is updated once per time step
  (``neurons * T``, readout integrator included), charged only by profiles that have
  ``e_neuron_pj``.
* All per-sample counts are summed over the ``T`` time steps of one inference;
  ``*_per_step`` fields divide by ``T``.

Energies are in picojoules per inference (one sample).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
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
        _, h, wd = source_shape
        _, oh, ow = out_shape
        ones = torch.ones(1, co, oh, ow, dtype=torch.float64)
        # conv_transpose2d reads a (C_out, C_in/groups, kh, kw) weight exactly as conv2d
        # stores it, so the transposed conv of ones sends each output's synapses back.
        # Transposed conv size: (o-1)*s - 2p + k; the rows a strided conv never reaches
        # (the remainder of the floor division) are restored by output_padding (< stride).
        base_h = (oh - 1) * conn.stride[0] - 2 * conn.padding[0] + kh
        base_w = (ow - 1) * conn.stride[1] - 2 * conn.padding[1] + kw
        fmap = tF.conv_transpose2d(ones, mask, stride=conn.stride, padding=conn.padding,
                                   output_padding=(h - base_h, wd - base_w), groups=groups)
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


def macs_per_connection(conn: Connection, src_values: ArrayLike, *, fanout: str = "nonzero",
                        fmap: Optional[np.ndarray] = None) -> np.ndarray:
    """Exact MACs of a real-valued source ``(T, B, *source_shape)`` through ``conn``.

    Every value, zero or not, is multiplied into each synapse it drives, so the count per
    (t, b) is the sum of the fan-out map (the values only supply ``T``, ``B`` and the
    shape).  Returns an int64 array ``(T, B)``.
    """
    shape = tuple(src_values.shape)
    if len(shape) < 3:
        raise ValueError(f"values must be (T, B, *source_shape), got shape {shape}")
    if fmap is None:
        fmap = fanout_map(conn, shape[2:], fanout)
    return np.full(shape[:2], int(fmap.sum()), dtype=np.int64)


# --------------------------------------------------------------------------- graph analysis


@dataclass(frozen=True)
class LayerStats:
    """Activity and operation counts of one neuron layer, per inference (one sample).

    ``synops_in`` / ``macs_in`` sum every incoming connection (residual edges included);
    ``synops_by_source`` / ``macs_by_source`` split them per source.
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
    synops_by_source: Dict[str, float] = field(default_factory=dict)
    macs_by_source: Dict[str, float] = field(default_factory=dict)

    @property
    def synops_per_step(self) -> float:
        return self.synops_in / self.time_steps

    @property
    def macs_per_step(self) -> float:
        return self.macs_in / self.time_steps

    def to_dict(self) -> dict:
        d = asdict(self)
        d["synops_per_step"] = self.synops_per_step
        d["macs_per_step"] = self.macs_per_step
        return d


@dataclass(frozen=True)
class GraphStats:
    """Per-layer statistics of one graph on one data batch; behaves as a list of layers.

    ``source`` names where the spikes came from (``"float"`` = ``run_float``, ``"lava"``,
    ``"emulate"``, ...); ``samples`` is the number of inputs averaged over.
    """

    layers: Tuple[LayerStats, ...]
    time_steps: int
    samples: int
    source: str = "float"
    fanout: str = "nonzero"
    input_mode: str = "macs"

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

    @property
    def totals(self) -> dict:
        spiking = [s for s in self.layers if s.spiking]
        neurons = sum(s.neurons for s in spiking)
        spikes = float(sum(s.spikes for s in spiking))
        return {
            "neurons": int(sum(s.neurons for s in self.layers)),
            "spiking_neurons": int(neurons),
            "spikes": spikes,
            "spikes_per_step": spikes / self.time_steps,
            "firing_rate": spikes / (neurons * self.time_steps) if neurons else None,
            "synops": float(sum(s.synops_in for s in self.layers)),
            "macs": float(sum(s.macs_in for s in self.layers)),
            "neuron_updates": int(sum(s.neuron_updates for s in self.layers)),
        }

    def to_dict(self) -> dict:
        return {"source": self.source, "time_steps": self.time_steps, "samples": self.samples,
                "fanout": self.fanout, "input_mode": self.input_mode,
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
                  events: str = "nonzero", input_mode: str = "auto") -> GraphStats:
    """Per-layer spikes, firing rates, SynOps and MACs of ``graph``, per inference.

    Either run the synchronous float executor on ``x_seq`` ``(T, N, *input_shape)`` in
    chunks of ``batch_size`` samples, or pass precomputed ``spikes`` (layer name ->
    ``(T, N, *shape)``, e.g. a latency-aligned Lava run; set ``source="lava"``), so both
    can be compared side by side.  With precomputed spikes ``x_seq`` is only needed when
    the input is spiking (``poisson``/``frames``) and ``spikes`` has no ``"input"`` entry.
    Non-spiking layers (the readout) need no record.  ``graph`` may also be the
    ``export.quantize.QuantGraph`` a Lava run used (records required): its integer weights
    give the deployed non-zero synapses (weights quantized to 0 drop out), its relay layers
    are counted, pools are grouped convs (same fan-out), and its graded input counts MACs.

    ``input_mode``: ``"auto"`` (from ``graph.encoding``: direct -> MACs, poisson/frames ->
    SynOps), ``"macs"`` or ``"synops"``.  ``fanout``/``events``: see the module docstring.
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
    fmaps = {}
    for layer in graph.layers:
        for k, conn in enumerate(layer.connections):
            fmaps[(layer.name, k)] = fanout_map(conn, graph.source_shape(conn.source), fanout)
            if spiking_of[conn.source] and conn.source == INPUT and x is None and (
                    recs is None or INPUT not in recs):
                raise KdsnnError("input is spiking: pass x_seq or an 'input' record to count "
                                 "its SynOps")

    spike_tot = {l.name: 0.0 for l in graph.layers}
    syn_tot = {l.name: {} for l in graph.layers}
    mac_tot = {l.name: {} for l in graph.layers}
    for start in range(0, N, batch_size):
        sl = slice(start, min(N, start + batch_size))
        if recs is None:
            _, chunk = run_float(graph, x[:, sl], record=True)
        else:
            chunk = {k: v[:, sl] for k, v in recs.items()}
        if x is not None and INPUT not in chunk:
            chunk[INPUT] = x[:, sl]
        for layer in graph.layers:
            if layer.spiking:
                spike_tot[layer.name] += float(_events(chunk[layer.name], "nonzero").sum())
            for k, conn in enumerate(layer.connections):
                fm = fmaps[(layer.name, k)]
                key = conn.source
                if spiking_of[conn.source]:
                    n = float(synops_per_connection(conn, chunk[conn.source], events=events,
                                                    fmap=fm).sum())
                    syn_tot[layer.name][key] = syn_tot[layer.name].get(key, 0.0) + n
                else:
                    n = float(fm.sum()) * T * (sl.stop - sl.start)
                    mac_tot[layer.name][key] = mac_tot[layer.name].get(key, 0.0) + n

    out = []
    for layer in graph.layers:
        neurons = int(np.prod(layer.shape))
        sp = spike_tot[layer.name] / N if layer.spiking else 0.0
        syn = {k: v / N for k, v in syn_tot[layer.name].items()}
        mac = {k: v / N for k, v in mac_tot[layer.name].items()}
        out.append(LayerStats(
            name=layer.name, neurons=neurons, spiking=bool(layer.spiking), time_steps=T,
            spikes=sp, spikes_per_step=sp / T,
            firing_rate=(sp / (neurons * T)) if layer.spiking else None,
            synops_in=float(sum(syn.values())), macs_in=float(sum(mac.values())),
            neuron_updates=neurons * T, synops_by_source=syn, macs_by_source=mac))
    return GraphStats(layers=tuple(out), time_steps=T, samples=N, source=source,
                      fanout=fanout, input_mode="macs" if analog_input else "synops")


# --------------------------------------------------------------------------- teacher


def teacher_macs(model: torch.nn.Module, input_shape: Sequence[int]) -> Dict[str, int]:
    """Exact MACs per inference of every conv / linear module of an ANN, in call order.

    ``input_shape`` is ``(C, H, W)`` (or with a leading batch size, which is divided out).
    Counted by forward hooks on one forward pass of zeros: conv ``out.numel() *
    (C_in/groups) * prod(kernel)`` (so groups, stride, padding and dilation are exact),
    transposed conv ``in.numel() * (C_out/groups) * prod(kernel)``, linear
    ``out.numel() * in_features``.  Bias additions, BN, activations and pooling are not MACs.
    Matches ``torch.utils.flop_counter.FlopCounterMode`` (flops = 2 * MACs) for modules
    (functional calls outside modules are not seen).  A module called twice is summed.
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) < 2:
        raise ValueError(f"input_shape must be (C, H, W) or (B, C, H, W), got {shape}")
    batched = shape if len(shape) >= 4 else (1,) + shape
    batch = batched[0]
    counts: Dict[str, int] = {}
    hooks = []

    def hook(name):
        def fn(mod, inputs, output):
            if isinstance(mod, torch.nn.modules.conv._ConvTransposeNd):
                n = inputs[0].numel() * mod.weight.shape[1] * math.prod(mod.weight.shape[2:])
            elif isinstance(mod, torch.nn.modules.conv._ConvNd):
                n = output.numel() * math.prod(mod.weight.shape[1:])
            else:  # Linear
                n = output.numel() * mod.in_features
            counts[name] = counts.get(name, 0) + int(n)
        return fn

    for name, mod in model.named_modules():
        if isinstance(mod, (torch.nn.modules.conv._ConvNd, torch.nn.Linear)):
            hooks.append(mod.register_forward_hook(hook(name or type(mod).__name__)))
    was_training = model.training
    try:
        model.eval()
        p = next(model.parameters(), None)
        dtype = p.dtype if p is not None else torch.float32
        device = p.device if p is not None else "cpu"
        with torch.no_grad():
            model(torch.zeros(batched, dtype=dtype, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return {k: v // batch for k, v in counts.items()}


# --------------------------------------------------------------------------- profiles

PROFILE_KEYS_REQUIRED = ("name", "source", "e_mac_pj", "e_ac_pj")
PROFILE_KEYS_OPTIONAL = ("e_neuron_pj", "description", "notes")
_NUMERIC = ("e_mac_pj", "e_ac_pj", "e_neuron_pj")


@dataclass(frozen=True)
class Profile:
    """Energy constants of a device, in picojoules per operation.

    ``e_ac_pj``: one synaptic operation (an accumulate); ``e_mac_pj``: one
    multiply-accumulate (layers fed by real-valued input, and the ANN teacher);
    ``e_neuron_pj``: one neuron update per time step (``None``: not charged).
    """

    name: str
    source: str
    e_mac_pj: float
    e_ac_pj: float
    e_neuron_pj: Optional[float] = None
    description: str = ""
    notes: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def profile_dir() -> Path:
    return Path(str(resources.files("hardware") / "profiles"))


def list_profiles() -> Tuple[str, ...]:
    return tuple(sorted(p.stem for p in profile_dir().glob("*.yaml")))


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
        if key not in data:
            continue
        val = data[key]
        ok = isinstance(val, (int, float)) and not isinstance(val, bool)
        if not ok or not math.isfinite(val) or val <= 0:
            raise KdsnnError(f"energy profile {where}: key '{key}' must be a positive "
                             f"number (pJ), got {val!r}")
    return Profile(name=data["name"].strip(), source=data["source"].strip(),
                   e_mac_pj=float(data["e_mac_pj"]), e_ac_pj=float(data["e_ac_pj"]),
                   e_neuron_pj=(float(data["e_neuron_pj"]) if data.get("e_neuron_pj")
                                is not None else None),
                   description=str(data.get("description") or "").strip(),
                   notes=str(data.get("notes") or "").strip())


def load_profile(name_or_path: Union[str, Path, Profile]) -> Profile:
    """A built-in profile by name (``cmos45nm``, ``loihi``) or a user YAML file (validated)."""
    if isinstance(name_or_path, Profile):
        return name_or_path
    text = str(name_or_path)
    path = Path(text)
    is_path = isinstance(name_or_path, Path) or path.suffix in (".yaml", ".yml") or \
        "/" in text or "\\" in text
    if not is_path:
        builtin = profile_dir() / f"{text}.yaml"
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


# --------------------------------------------------------------------------- energy


def energy(stats: Union[GraphStats, Iterable[LayerStats]], profile) -> dict:
    """Student energy per inference in pJ: SynOps*E_AC + MACs*E_MAC (+ updates*E_neuron).

    Returns ``{"profile", "synops_pj", "macs_pj", "neuron_pj", "total_pj", "layers": [...]}``
    with the same split per layer.
    """
    prof = load_profile(profile)
    layers = []
    for s in stats:
        syn = s.synops_in * prof.e_ac_pj
        mac = s.macs_in * prof.e_mac_pj
        neu = s.neuron_updates * prof.e_neuron_pj if prof.e_neuron_pj else 0.0
        layers.append({"name": s.name, "synops_pj": syn, "macs_pj": mac, "neuron_pj": neu,
                       "total_pj": syn + mac + neu})
    tot = {k: float(sum(l[k] for l in layers))
           for k in ("synops_pj", "macs_pj", "neuron_pj", "total_pj")}
    return {"profile": prof.name, **tot, "layers": layers}


def teacher_energy(macs: Union[Mapping[str, int], int, float], profile) -> dict:
    """ANN energy per inference in pJ: MACs * E_MAC (per layer and total)."""
    prof = load_profile(profile)
    if isinstance(macs, Mapping):
        layers = [{"name": k, "macs": int(v), "total_pj": float(v) * prof.e_mac_pj}
                  for k, v in macs.items()]
    else:
        layers = [{"name": "total", "macs": int(macs), "total_pj": float(macs) * prof.e_mac_pj}]
    return {"profile": prof.name, "macs": int(sum(l["macs"] for l in layers)),
            "total_pj": float(sum(l["total_pj"] for l in layers)), "layers": layers}


def energy_ratio(student: dict, teacher: dict) -> Optional[float]:
    """Teacher energy / student energy (> 1: the student is that many times cheaper)."""
    s, t = float(student["total_pj"]), float(teacher["total_pj"])
    return t / s if s > 0 else None
