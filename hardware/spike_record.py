"""Lava's spikes and readouts of a parity run, kept for the report (``RUN/parity/lava_spikes.npz``).

``kdsnn report --source lava`` counts synaptic operations from Lava's own spikes.  Parity
has just run Lava on the first N test samples, so it keeps the spikes of the first
``KEEP_SAMPLES`` of them, and the report reuses them when the quantized graph is the same
(``QuantGraph.digest``) and they cover the samples it needs; nothing runs Lava twice.

Format: one ``.npz`` (no pickle): per spiking layer the bits of ``(T, N, neurons)``
packed along the neuron axis (``np.packbits``), the readout ``v`` ``(N, K)`` int64, and a
JSON description (graph digest, N, T, layer names and shapes).
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from math import prod

import numpy as np
import torch

FORMAT = "kdsnn.lava_spikes/1"
META_KEY = "__meta__"
#: parity keeps the spikes of at most this many samples (the report's default is 256)
KEEP_SAMPLES = 256


@dataclass
class SpikeRecord:
    """Spikes ``(T, N, *shape)`` per layer and readout ``v`` ``(N, K)`` of samples 0..N-1."""

    digest: str
    time_steps: int
    shapes: dict
    readout: list = field(default_factory=list)
    spikes: dict = field(default_factory=dict)

    @property
    def samples(self) -> int:
        return sum(len(r) for r in self.readout)

    def add(self, readout, spikes: dict) -> None:
        """Append a batch (the next samples in order)."""
        self.readout.append(np.asarray(readout, dtype=np.int64))
        for name in self.shapes:
            arr = np.asarray(torch.as_tensor(spikes[name]).cpu().numpy())
            self.spikes.setdefault(name, []).append(arr.astype(bool))

    def extend(self, other: "SpikeRecord") -> None:
        if other.digest != self.digest or other.shapes != self.shapes:
            raise ValueError("spike records of different graphs")
        self.readout += other.readout
        for name in self.shapes:
            self.spikes.setdefault(name, []).extend(other.spikes.get(name, []))

    def first(self, n: int) -> tuple:
        """``(readout (n, K) int64, spikes name -> (T, n, *shape) int64 tensors)``."""
        if n > self.samples:
            raise ValueError(f"the record holds {self.samples} samples, {n} asked")
        readout = np.concatenate(self.readout)[:n]
        spikes = {name: torch.as_tensor(np.concatenate(chunks, axis=1)[:, :n]
                                        .astype(np.int64))
                  for name, chunks in self.spikes.items()}
        return torch.as_tensor(readout), spikes

    def to_bytes(self) -> bytes:
        n = self.samples
        payload = {"readout": (np.concatenate(self.readout) if n else
                               np.zeros((0, 0), np.int64))}
        for i, name in enumerate(self.shapes):
            arr = (np.concatenate(self.spikes[name], axis=1) if n else
                   np.zeros((self.time_steps, 0) + tuple(self.shapes[name]), bool))
            payload[f"layer{i}"] = np.packbits(arr.reshape(self.time_steps, n, -1), axis=-1)
        meta = {"format": FORMAT, "digest": self.digest, "samples": n,
                "time_steps": self.time_steps,
                "layers": [[name, list(shape)] for name, shape in self.shapes.items()]}
        payload[META_KEY] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        buf = io.BytesIO()
        np.savez_compressed(buf, **payload)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "SpikeRecord":
        """Read a record; anything malformed raises ValueError (never unpickles)."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                meta = json.loads(bytes(z[META_KEY]).decode())
                if meta.get("format") != FORMAT:
                    raise ValueError("unknown format")
                n, T = int(meta["samples"]), int(meta["time_steps"])
                shapes = {str(name): tuple(int(s) for s in shape)
                          for name, shape in meta["layers"]}
                rec = cls(str(meta["digest"]), T, shapes)
                readout = np.asarray(z["readout"], dtype=np.int64)
                if n:
                    rec.readout = [readout]
                for i, (name, shape) in enumerate(shapes.items()):
                    bits = np.unpackbits(z[f"layer{i}"], axis=-1, count=prod(shape))
                    rec.spikes[name] = [bits.reshape((T, n) + shape).astype(bool)]
        except (OSError, KeyError, ValueError, TypeError, EOFError) as exc:
            raise ValueError(f"not a kdsnn spike record ({type(exc).__name__})") from None
        if rec.samples != n:
            raise ValueError("not a kdsnn spike record (readout and sample count differ)")
        return rec


def empty_record(qgraph) -> SpikeRecord:
    return SpikeRecord(qgraph.digest(), qgraph.time_steps,
                       {layer.name: tuple(layer.shape) for layer in qgraph.layers
                        if layer.spiking})
