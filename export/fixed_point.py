"""Loihi fixed-point network description: the ``QuantGraph`` and its integer fields.

The vocabulary shared by the quantizer (``export.quantize``, which builds it), the integer
emulation (``export.emulate``), Lava (``hardware``) and NIR/netx export (which read it):
field limits, the frozen data classes, their file format (``.npz`` + JSON, no pickle) and
the 8-bit graded input encoding.  The integer semantics are described in
``export.quantize``.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import numpy as np
import torch

from export.graph import INPUT, LayerLookup, is_feedforward

MANT_MIN, MANT_MAX = -128, 127
VTH_MAX = (1 << 17) - 1
UV_LIMIT = 1 << 23
BIAS_MANT_MAX = 4095
BIAS_EXP_MAX = 7
INPUT_LEVELS = 255
INPUT_MESSAGE_BITS = 8
DEFAULT_EXP_RANGE = (-8, 7)


# --------------------------------------------------------------------------------------
# data classes
# --------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class QuantConnection:
    """Integer synapses from ``source`` into a layer.

    ``weight`` holds 8-bit signed mantissas (int64 array): conv ``(Co, Ci/groups, kh, kw)``
    in torch cross-correlation layout, dense ``(N_out, N_in)`` over the source flattened
    in C,H,W order.  Effective weight = ``weight * 2**weight_exp`` (see module doc for
    the exact rounding).  ``scale`` is the float -> integer factor that was applied to
    the float weight (``s`` of the target layer, divided by 255 for the input).
    """

    source: str
    kind: str  # "conv" | "dense"
    weight: np.ndarray
    weight_exp: int = 0
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    groups: int = 1
    message_bits: int = 0  # 0: binary spikes; 8: graded input spikes
    scale: float = 1.0
    origin: str = ""  # kind of the float connection (conv, dense, avgpool, sumpool)

    def __post_init__(self):
        if self.kind not in ("conv", "dense"):
            raise ValueError(f"unknown quantized connection kind '{self.kind}'")
        w = np.asarray(self.weight)
        if not np.issubdtype(w.dtype, np.integer):
            raise ValueError("quantized weights must be integers")
        w = w.astype(np.int64)
        if w.ndim != (4 if self.kind == "conv" else 2):
            raise ValueError(f"{self.kind} weight has wrong rank {w.ndim}")
        if w.size and (w.min() < MANT_MIN or w.max() > MANT_MAX):
            raise ValueError("weight mantissas must lie in [-128, 127]")
        if self.kind == "conv" and self.weight_exp < 0:
            raise ValueError("conv connections need weight_exp >= 0 (Lava's Conv has no "
                             "weight exponent; the weight is deployed as m << e)")
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "weight_exp", int(self.weight_exp))
        object.__setattr__(self, "stride", tuple(int(s) for s in self.stride))
        object.__setattr__(self, "padding", tuple(int(p) for p in self.padding))
        object.__setattr__(self, "groups", int(self.groups))
        object.__setattr__(self, "message_bits", int(self.message_bits))
        object.__setattr__(self, "scale", float(self.scale))

    def out_shape(self, in_shape: tuple) -> tuple:
        if self.kind == "dense":
            if int(np.prod(in_shape)) != self.weight.shape[1]:
                raise ValueError(f"dense expects {self.weight.shape[1]} inputs, source has "
                                 f"shape {in_shape}")
            return (self.weight.shape[0],)
        c, h, w = in_shape
        co, cig, kh, kw = self.weight.shape
        if cig * self.groups != c:
            raise ValueError(f"conv expects {cig * self.groups} input channels, source has {c}")
        return (co, (h + 2 * self.padding[0] - kh) // self.stride[0] + 1,
                (w + 2 * self.padding[1] - kw) // self.stride[1] + 1)

    def grouped_weight(self, max_groups: int = 127) -> tuple:
        """``(weight, groups)`` with ``groups <= max_groups`` (Lava's Conv stores
        ``groups`` in an int8 Var: 128 or more wraps).  Merges groups into larger
        block-diagonal ones (zeros in between): same convolution, more synapses."""
        if self.kind != "conv" or self.groups <= max_groups:
            return self.weight, self.groups
        g2 = max(d for d in range(1, max_groups + 1) if self.groups % d == 0)
        co, cig, kh, kw = self.weight.shape
        ci = cig * self.groups
        full = np.zeros((co, ci, kh, kw), dtype=self.weight.dtype)
        per_out = co // self.groups
        for o in range(co):
            g = o // per_out
            full[o, g * cig:(g + 1) * cig] = self.weight[o]
        cig2, per_out2 = ci // g2, co // g2
        out = np.stack([full[o, (o // per_out2) * cig2:(o // per_out2 + 1) * cig2]
                        for o in range(co)])
        return out, g2

    def effective_weight(self) -> np.ndarray:
        """``m * 2**e`` as float (the integer units the synapse adds, before rounding)."""
        return self.weight.astype(np.float64) * (2.0 ** self.weight_exp)


@dataclass(frozen=True, eq=False)
class QuantLayer:
    """A population of Loihi CUBA neurons (one ``LIF`` process)."""

    name: str
    shape: tuple
    connections: tuple
    vth: int
    du: int
    dv: int
    bias_mant: np.ndarray
    bias_exp: np.ndarray
    spiking: bool = True
    scale: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "connections", tuple(self.connections))
        for key in ("vth", "du", "dv"):
            object.__setattr__(self, key, int(getattr(self, key)))
        if not 0 <= self.vth <= VTH_MAX:
            raise ValueError(f"layer '{self.name}': vth {self.vth} outside 17 bits")
        if not (0 <= self.du <= 4095 and 0 <= self.dv <= 4095):
            raise ValueError(f"layer '{self.name}': du/dv outside 12 bits")
        for key in ("bias_mant", "bias_exp"):
            arr = np.asarray(getattr(self, key))
            if not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(f"layer '{self.name}': {key} must be integers")
            object.__setattr__(self, key, np.broadcast_to(arr.astype(np.int64),
                                                          self.shape).copy())
        if np.abs(self.bias_mant).max(initial=0) > BIAS_MANT_MAX + 1 or \
                self.bias_mant.min(initial=0) < -(BIAS_MANT_MAX + 1):
            raise ValueError(f"layer '{self.name}': bias mantissa outside 13 bits")
        if self.bias_exp.min(initial=0) < 0 or self.bias_exp.max(initial=0) > BIAS_EXP_MAX:
            raise ValueError(f"layer '{self.name}': bias exponent outside 0..7")
        object.__setattr__(self, "scale", float(self.scale))

    def bias_effective(self) -> np.ndarray:
        """``bias_mant << bias_exp``: what Lava adds to ``v`` every step."""
        return np.left_shift(self.bias_mant, self.bias_exp)


def _check_graded(conn) -> None:
    if (conn.source == INPUT) != (conn.message_bits > 0):
        raise ValueError("graded (message_bits > 0) exactly for input connections")


@dataclass(frozen=True, eq=False)
class QuantGraph(LayerLookup):
    """Integer counterpart of ``DeployGraph`` (same layer names, same topology)."""

    input_shape: tuple
    layers: tuple
    time_steps: int = 4
    input_levels: int = INPUT_LEVELS
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        object.__setattr__(self, "layers", tuple(self.layers))
        self.check_topology(_check_graded)

    def depths(self) -> dict:
        """Synapses from the input to each layer; raises if paths differ (unbalanced)."""
        depth = {INPUT: 0}
        for layer in self.layers:
            ds = {depth[c.source] + 1 for c in layer.connections
                  if is_feedforward(c, layer)}  # a recurrent or clock connection adds none
            if len(ds) != 1:
                raise ValueError(f"layer '{layer.name}' has fan-in paths of different "
                                 f"latency {sorted(ds)}; run export.latency.balance_latency "
                                 "on the DeployGraph before quantizing")
            depth[layer.name] = ds.pop()
        del depth[INPUT]
        return depth

    def logits(self, readout_v) -> np.ndarray:
        """Float logits from the readout's integer ``v`` after T steps."""
        v = np.asarray(readout_v, dtype=np.float64)
        return v / (64.0 * self.output.scale * self.time_steps)

    # ---- serialisation (no pickle) -------------------------------------------------
    def to_arrays(self) -> tuple[dict, dict]:
        """``(arrays, meta)``: int64 numpy arrays by key and a JSON-able description."""
        arrays, layers = {}, []
        for li, layer in enumerate(self.layers):
            arrays[f"layer{li}.bias_mant"] = layer.bias_mant.astype(np.int64)
            arrays[f"layer{li}.bias_exp"] = layer.bias_exp.astype(np.int64)
            conns = []
            for ci, conn in enumerate(layer.connections):
                arrays[f"layer{li}.conn{ci}.weight"] = conn.weight.astype(np.int64)
                conns.append({"source": conn.source, "kind": conn.kind,
                              "weight_exp": conn.weight_exp, "stride": list(conn.stride),
                              "padding": list(conn.padding), "groups": conn.groups,
                              "message_bits": conn.message_bits, "scale": conn.scale,
                              "origin": conn.origin})
            layers.append({"name": layer.name, "shape": list(layer.shape), "vth": layer.vth,
                           "du": layer.du, "dv": layer.dv, "spiking": layer.spiking,
                           "scale": layer.scale, "connections": conns})
        meta = {"format": "kdsnn.quantgraph", "version": 1,
                "input_shape": list(self.input_shape), "time_steps": self.time_steps,
                "input_levels": self.input_levels, "layers": layers,
                "metadata": json.loads(json.dumps(self.metadata, default=json_default))}
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: dict, meta: dict) -> "QuantGraph":
        if meta.get("format") != "kdsnn.quantgraph":
            raise ValueError("not a kdsnn QuantGraph description")
        layers = []
        for li, ld in enumerate(meta["layers"]):
            conns = tuple(
                QuantConnection(cd["source"], cd["kind"],
                                np.asarray(arrays[f"layer{li}.conn{ci}.weight"]),
                                cd["weight_exp"], tuple(cd["stride"]), tuple(cd["padding"]),
                                cd["groups"], cd["message_bits"], cd["scale"], cd["origin"])
                for ci, cd in enumerate(ld["connections"]))
            layers.append(QuantLayer(ld["name"], tuple(ld["shape"]), conns, ld["vth"],
                                     ld["du"], ld["dv"],
                                     np.asarray(arrays[f"layer{li}.bias_mant"]),
                                     np.asarray(arrays[f"layer{li}.bias_exp"]),
                                     ld["spiking"], ld["scale"]))
        return cls(tuple(meta["input_shape"]), tuple(layers), int(meta["time_steps"]),
                   int(meta["input_levels"]), dict(meta.get("metadata", {})))

    def replace(self, **changes) -> "QuantGraph":
        return dataclasses.replace(self, **changes)

    def digest(self) -> str:
        """sha256 of what the chip runs (integer arrays, topology, Loihi fields, scales),
        independent of the file it was read from; ``metadata`` (the quantization report)
        is left out. Results computed on a graph are reused only under the same digest."""
        import hashlib

        arrays, meta = self.to_arrays()
        meta.pop("metadata", None)
        h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
        for key in sorted(arrays):
            a = np.ascontiguousarray(arrays[key], dtype=np.int64)
            h.update(f"{key}:{a.shape}".encode())
            h.update(a.tobytes())
        return h.hexdigest()


def json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


META_KEY = "__kdsnn_meta__"


def save_quant(path, qgraph: QuantGraph) -> None:
    """Write ``qgraph`` as an ``.npz`` of int64 arrays plus the JSON description (stored
    as a uint8 array under ``__kdsnn_meta__``); atomic; loadable without pickle."""
    import io

    from kd_snn.io import write_bytes
    arrays, meta = qgraph.to_arrays()
    payload = dict(arrays)
    payload[META_KEY] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
    buf = io.BytesIO()  # in memory: a full disk is one write error, never a half zip
    np.savez(buf, **payload)
    write_bytes(path, buf.getvalue())


def load_quant(path) -> QuantGraph:
    """Read a ``save_quant`` file; a damaged or foreign file raises ``ValueError``."""
    import zipfile
    import zlib
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k != META_KEY}
            meta = json.loads(bytes(z[META_KEY]).decode())
        return QuantGraph.from_arrays(arrays, meta)
    except (KeyError, EOFError, zipfile.BadZipFile, zlib.error, UnicodeDecodeError,
            json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"not a kdsnn QuantGraph file ({type(exc).__name__})") from None


# --------------------------------------------------------------------------------------
# input encoding
# --------------------------------------------------------------------------------------
def encode_input(x_seq, levels: int = INPUT_LEVELS) -> torch.Tensor:
    """Analog input in [0, 1] -> graded spike payloads ``round(x * 255)`` (int64).

    Values outside [0, 1] are clipped (Loihi graded spikes here are unsigned 8-bit).
    """
    x = torch.as_tensor(x_seq, dtype=torch.float64)
    return torch.round(x.clamp(0.0, 1.0) * levels).to(torch.int64)
