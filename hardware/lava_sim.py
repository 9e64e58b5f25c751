"""Run a ``QuantGraph`` in Lava (``Loihi2SimCfg(select_tag='fixed_pt')``), bit-accurate.

Network built from stock Lava processes only:

* input: ``lava.proc.io.source.RingBuffer`` sending graded payloads ``round(x * 255)``
  (connections reading it use ``num_message_bits = 8``);
* conv connection: ``lava.proc.conv.process.Conv`` with the weight ``m << e`` (Lava's
  fixed_pt Conv ignores ``weight_exp``), flipped and transposed to Lava's (Co, W, H, Ci)
  convolution layout; I/O in (W, H, C) order (= torch (C, H, W) transposed (2, 1, 0));
* dense connection: ``lava.proc.dense.process.Dense`` with weights ``2 m``,
  ``weight_exp = e - 1``, ``sign_mode = MIXED`` (Lava drops the LSB of mixed-sign
  weights, so even weights are exact); a (W, H, C) source is fed through
  ``s_out.transpose([2, 1, 0]).flatten()`` (C, H, W order, as the DeployGraph);
* neuron layer: ``lava.proc.lif.process.LIFReset`` (fixed_pt model = PyLifResetModelBitAcc,
  same arithmetic as LIF) with du, dv, vth, bias_mant, bias_exp; fan-in = several
  synapse ``a_out`` ports connected to the one ``a_in`` (Lava sums them);
* synaptic bias (a connection from ``export.graph.CLOCK``): a bias axon, i.e. a Dense of
  weights ``2 m`` (one column) from a one-neuron source per layer depth that the runner
  fires (payload 1) at exactly the steps whose spikes reach the layers of that depth
  inside their sample windows, and not during pipeline fill and drain;
* recording: a sink on every spiking layer's ``s_out`` and ``lava.proc.io.sink.Read`` on
  the readout's ``v`` (sampled once per sample).
* I/O (``io``): by default kdsnn's ``ShmSource``/``ShmSink``
  (``hardware.lava_procs.shm_io``), which move samples and spikes through shared memory;
  ``io="vars"`` uses the stock ``lava.proc.io`` RingBuffers, whose ``Var.get/set`` sends
  one element per channel message (the former path: ~94 s per ResNet-20 sample, nearly
  all of it in those transfers).  Both carry the same integers (tested bit for bit).

Timing.  Every synapse adds one step: the layer at depth d (synapses from the input)
handles x[t] of a sample at step t + d.  All fan-in paths of a layer must have the same
depth (``export.latency.balance_latency``).  Samples are streamed back to back, T steps
each, in one compiled network: a layer at depth d resets u and v at the first step of
each of its windows (``reset_interval = T``, ``reset_offset = d + 1``), which also stops
the bias from acting before the first input of a sample arrives.  Stale values in the
synapse buffers only ever arrive outside a layer's window, except on a recurrent (self)
Dense: its buffer holds the layer's last spike of the previous sample when the next
window begins, so the runner stops there and empties it (``Var.set`` on the stock Dense's
``a_buff``), once per sample per recurrent layer.  Within a sample the Dense's one-step
delay is the recurrence's own: the spikes of step t - 1 arrive at step t.  The clock of
depth d fires at stream steps d .. S T + d - 1 (1-based; S samples so far), so its Dense
delivers the bias at each of the S windows' steps of the layers at depth d.  A batch of B
samples takes (B + ceil(L / T)) * T steps, L = depth of the readout; ``LavaRunner.stream`` runs
consecutive batches back to back and pays the ceil(L / T) samples of drain once.  Spikes
returned are aligned by depth, so they compare 1:1 with ``export.emulate.emulate``.

Cost (2 cores, T = 4; see ``benchmarks/results/hardware.md`` for current figures): every
Lava process is an OS process synchronised each step, so with the shared-memory I/O the
rate is set by the process count and the per-step compute.  Older figures (stock I/O):
4-layer toy conv/dense net: ~120
steps/s = ~30 samples/s (record=False), ~17 samples/s recording all spikes; folded
ResNet-20 (width 4, 29 layers with relays) ~12 steps/s = ~2 samples/s with
``conv_model="fast"``; compiling takes 1-10 s once per ``LavaRunner``.  The stock
``PyConvModelFixed`` runs one scipy ``convolve2d`` per (out, in) channel pair per step
(minutes per sample for 256-channel layers): ``conv_model="fast"`` swaps in
``hardware.lava_procs.blas_synapses`` for Conv and Dense (the stock arithmetic as exact
BLAS products, tested bit for bit against the stock models).
Depthwise convs with >= 128 groups are regrouped (Lava's ``groups`` Var is int8).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from export.graph import CLOCK, CLOCK_SHAPE, INPUT, is_clock
from export.fixed_point import QuantGraph, load_quant

# Lava imports (importing lava.proc sets the multiprocessing start method to 'fork').
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.conv.process import Conv
from lava.proc.dense.process import Dense
from lava.proc.io.sink import Read
from lava.proc.io.sink import RingBuffer as Sink
from lava.proc.io.source import RingBuffer as Source
from lava.proc.lif.process import LIFReset
from lava.utils.weightutils import SignMode


#: how samples and spikes cross between the host and Lava: ``shm`` (kdsnn's shared-memory
#: ring processes, ``hardware.lava_procs.shm_io``) or ``vars`` (stock RingBuffer processes and
#: ``Var.get/set``, one element per message: the earlier, ~100x slower path, kept for
#: benchmarks and the equivalence test)
IO_MODES = ("shm", "vars")


def lava_shape(shape: tuple) -> tuple:
    """DeployGraph (C, H, W) -> Lava (W, H, C); 1-D shapes unchanged."""
    return tuple(shape[::-1]) if len(shape) == 3 else tuple(shape)


def to_lava(arr: np.ndarray, shape: tuple) -> np.ndarray:
    """(..., C, H, W) -> (..., W, H, C) for 3-D neuron shapes (batch/time dims first)."""
    if len(shape) != 3:
        return arr
    n = arr.ndim
    return np.moveaxis(arr, (n - 3, n - 2, n - 1), (n - 1, n - 2, n - 3))


def from_lava(arr: np.ndarray, shape: tuple, lead: int) -> np.ndarray:
    """Inverse of ``to_lava`` for arrays with ``lead`` leading axes."""
    if len(shape) != 3:
        return arr
    return np.moveaxis(arr, (lead, lead + 1, lead + 2), (lead + 2, lead + 1, lead))


def conv_weight_to_lava(weight: np.ndarray) -> np.ndarray:
    """torch cross-correlation (Co, Ci, kh, kw) -> Lava convolution (Co, kw, kh, Ci)."""
    return np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))


#: synapse models: ``lava`` = Lava's stock fixed_pt Conv/Dense models; ``fast`` = kdsnn's
#: BLAS models with the stock arithmetic (``hardware.lava_procs.blas_synapses``, tested bit
#: for bit against the stock ones); ``int64`` = the earlier fast Conv model (int64 einsum,
#: stock Dense), kept as the benchmark's baseline
CONV_MODELS = ("fast", "lava", "int64")


def synapse_models(conv_model: str = "fast") -> dict:
    """The ProcessModel classes run for ``Conv`` and ``Dense`` with ``conv_model``."""
    if conv_model not in CONV_MODELS:
        raise ValueError(f"conv_model must be one of {', '.join(CONV_MODELS)}")
    from lava.proc.conv.models import PyConvModelFixed
    from lava.proc.dense.models import PyDenseModelBitAcc
    if conv_model == "fast":
        from hardware.lava_procs.blas_synapses import (PyConvModelFixedBlas,
                                                       PyDenseModelBitAccBlas)
        return {Conv: PyConvModelFixedBlas, Dense: PyDenseModelBitAccBlas}
    if conv_model == "int64":
        from hardware.lava_procs.blas_synapses import PyConvModelFixedInt64
        return {Conv: PyConvModelFixedInt64, Dense: PyDenseModelBitAcc}
    return {Conv: PyConvModelFixed, Dense: PyDenseModelBitAcc}


def run_config(conv_model: str = "fast") -> Loihi2SimCfg:
    """Lava's fixed_pt run configuration with the chosen synapse models."""
    models = synapse_models(conv_model)
    if conv_model == "lava":
        return Loihi2SimCfg(select_tag="fixed_pt")
    return Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=models)


def make_synapse(conn, src_shape: tuple):
    """The Lava ``Conv`` / ``Dense`` process of a quantized connection (unconnected)."""
    if conn.kind == "conv":
        weight, groups = conn.grouped_weight()
        return Conv(weight=conv_weight_to_lava(weight << conn.weight_exp).astype(np.int32),
                    input_shape=lava_shape(src_shape), padding=tuple(conn.padding[::-1]),
                    stride=tuple(conn.stride[::-1]), groups=groups,
                    num_message_bits=conn.message_bits)
    return Dense(weights=(2 * conn.weight).astype(np.int32), weight_exp=conn.weight_exp - 1,
                 num_weight_bits=8, sign_mode=SignMode.MIXED,
                 num_message_bits=conn.message_bits)


class LavaRunner:
    """A compiled Lava network for ``qgraph``; ``run`` streams batches through it.

    ``chunk_samples``: samples per run segment (the source/sink buffers hold
    ``chunk_samples * T`` steps).  ``record``: record the spikes of every layer.
    Use as a context manager or call ``close()`` (stops Lava's worker processes).
    """

    def __init__(self, qgraph: QuantGraph, chunk_samples: int = 64, record: bool = True,
                 conv_model: str = "lava", io: str = "shm"):
        if conv_model not in CONV_MODELS:
            raise ValueError(f"conv_model must be one of {', '.join(CONV_MODELS)}")
        if io not in IO_MODES:
            raise ValueError(f"io must be one of {', '.join(IO_MODES)}")
        self.conv_model = conv_model
        self.io = io
        self._tmp = None
        self.q = qgraph
        self.T = qgraph.time_steps
        self.depth = qgraph.depths()
        self.L = self.depth[qgraph.output.name]
        self.record = record
        self.nb = max(1, int(chunk_samples)) * self.T  # buffer steps
        self.read_off = (self.L + self.T - 1) % self.T
        self.rb = self.nb // self.T + 2
        self.k = 0  # global steps executed
        self.reads = 0  # Read counter
        self.started = False
        self._build()

    # ---- construction ---------------------------------------------------------------
    def _ring(self, name: str, shape: tuple) -> str:
        """A shared-memory ring file for an ShmSource/ShmSink; the host keeps it mapped."""
        from hardware.lava_procs.shm_io import open_ring
        path = str(Path(self._tmp) / f"{len(self._rings)}.i32")
        self._rings[name] = open_ring(path, shape, self.nb, "w+")
        return path

    def _build(self):
        q = self.q
        in_shape = lava_shape(q.input_shape)
        self._rings = {}
        if self.io == "shm":
            import tempfile

            from hardware.lava_procs.shm_io import ShmSink, ShmSource
            shm = Path("/dev/shm")
            self._tmp = tempfile.mkdtemp(prefix="kdsnn-lava-",
                                         dir=str(shm) if shm.is_dir() else None)
            self.source = ShmSource(shape=in_shape, steps=self.nb,
                                    path=self._ring(INPUT, in_shape))
        else:
            self.source = Source(data=np.zeros(in_shape + (self.nb,), dtype=np.int32))
        self.clocks = {}  # depth -> the one-neuron clock source of the layers at that depth
        self.lifs, self.sinks, self.synapses = {}, {}, []
        self.recurrent = []  # (depth, Dense) of every recurrent (self) connection
        for layer in q.layers:
            lshape = lava_shape(layer.shape)
            lif = LIFReset(shape=lshape, du=layer.du, dv=layer.dv, vth=layer.vth,
                           bias_mant=to_lava(layer.bias_mant, layer.shape).astype(np.int32),
                           bias_exp=to_lava(layer.bias_exp, layer.shape).astype(np.int32),
                           reset_interval=self.T,
                           reset_offset=(self.depth[layer.name] + 1) % self.T,
                           name=f"lif:{layer.name}")
            self.lifs[layer.name] = lif
            for conn in layer.connections:
                src_shape = q.source_shape(conn.source)
                if is_clock(conn):
                    out_port = self._clock(self.depth[layer.name]).s_out
                elif conn.source == INPUT:
                    out_port = self.source.s_out
                else:
                    out_port = self.lifs[conn.source].s_out
                if is_clock(conn) and len(layer.shape) == 3:  # rows (C,H,W) -> Lava (W,H,C)
                    w = conn.weight.reshape(*layer.shape, 1).transpose(2, 1, 0, 3)
                    syn = make_synapse(dataclasses.replace(conn, weight=w.reshape(-1, 1)),
                                       src_shape)
                    syn.a_out.reshape(lshape).connect(lif.a_in)
                else:
                    syn = make_synapse(conn, src_shape)
                    syn.a_out.connect(lif.a_in)
                if conn.kind == "dense" and len(src_shape) == 3:
                    out_port.transpose([2, 1, 0]).flatten().connect(syn.s_in)
                else:
                    out_port.connect(syn.s_in)
                self.synapses.append(syn)
                if conn.source == layer.name:
                    self.recurrent.append((self.depth[layer.name], syn))
            if self.record and layer.spiking:
                if self.io == "shm":
                    sink = ShmSink(shape=lshape, steps=self.nb,
                                   path=self._ring(layer.name, lshape))
                else:
                    sink = Sink(shape=lshape, buffer=self.nb)
                lif.s_out.connect(sink.a_in)
                self.sinks[layer.name] = sink
        self.reader = Read(buffer=self.rb, interval=self.T, offset=self.read_off)
        self.reader.connect_var(self.lifs[q.output.name].v)
        self.cfg = run_config(self.conv_model)

    def _clock(self, depth: int):
        """The clock source of the layers at ``depth`` (made on first use)."""
        if depth not in self.clocks:
            if self.io == "shm":
                from hardware.lava_procs.shm_io import ShmSource
                self.clocks[depth] = ShmSource(shape=CLOCK_SHAPE, steps=self.nb,
                                               path=self._ring((CLOCK, depth), CLOCK_SHAPE))
            else:
                self.clocks[depth] = Source(data=np.zeros(CLOCK_SHAPE + (self.nb,),
                                                          dtype=np.int32))
        return self.clocks[depth]

    # ---- running --------------------------------------------------------------------
    def _fill(self, key, source, idx: np.ndarray, values: np.ndarray) -> None:
        """Write ``values`` (n, *shape) at ring steps ``idx`` of a source, zeros elsewhere."""
        if self.io == "shm":
            ring = self._rings[key]
            ring[:] = 0
            ring[idx] = values
            ring.flush()
        else:
            buf = np.zeros(source.data.shape, dtype=np.int32)
            buf[..., idx] = np.moveaxis(values, 0, -1)
            if self.started:
                source.data.set(buf)
            else:
                source.data.init = buf

    def clock_steps(self, first: int, n: int, samples: int) -> dict:
        """Depth -> the clock payloads (n, 1) of stream steps ``first`` .. ``first + n - 1``
        (0-based from the stream's start) when ``samples`` samples are fed: 1 exactly at
        the steps whose Dense delivery lands in a window of that depth (the layer at depth
        d runs sample s, step t at 1-based stream step s T + t + d + 1; the Dense adds one)."""
        j = first + np.arange(n)
        return {d: ((j >= d - 1) & (j <= samples * self.T + d - 2)).astype(np.int32)
                .reshape(n, 1) for d in self.clocks}

    def _segment(self, inputs: np.ndarray, clocks: Optional[dict] = None) -> tuple:
        """Run ``len(inputs)`` steps (<= buffer) feeding ``inputs`` (n, W, H, C) and the
        clocks' payloads ``clocks`` (depth -> (n, 1); zeros when absent)."""
        n = inputs.shape[0]
        k0 = self.k
        idx = (k0 + np.arange(n)) % self.nb
        self._fill(INPUT, self.source, idx, inputs)
        for d, clock in self.clocks.items():
            self._fill((CLOCK, d), clock, idx, (clocks or {}).get(
                d, np.zeros((n, 1), dtype=np.int32)))
        self.source.run(condition=RunSteps(num_steps=n), run_cfg=self.cfg)
        self.started = True
        self.k += n
        spikes = {}
        for name, sink in self.sinks.items():
            if self.io == "shm":
                spikes[name] = np.asarray(self._rings[name][idx], dtype=np.int8)  # 0/1
            else:
                data = sink.data.get()
                spikes[name] = np.moveaxis(data[..., idx], -1, 0).astype(np.int8)
        steps = np.arange(k0 + 1, k0 + n + 1)
        rsteps = steps[(steps - 1) % self.T == self.read_off]
        reads = {}
        if len(rsteps):
            data = self.reader.data.get()
            for j, s in enumerate(rsteps):
                reads[int(s)] = data[..., (self.reads + j) % self.rb].astype(np.int64)
            self.reads += len(rsteps)
        return spikes, reads

    def run(self, x_int_seq) -> tuple:
        """Run samples ``x_int_seq`` ``(T, B, *input_shape)`` (graded ints 0..255).

        Returns ``(readout_v (B, K) int64, spikes)`` with spikes layer -> ``(T, B, *shape)``
        aligned by depth (empty when ``record`` is False), as ``export.emulate.emulate``.
        """
        return next(iter(self.stream([x_int_seq])))

    def stream(self, batches):
        """:meth:`run` over consecutive batches of samples, streamed back to back: yields
        each batch's ``(readout_v, spikes)`` in order, as soon as its last sample has left
        the pipeline.  The latency drain (``ceil(L / T)`` samples of steps) is paid once at
        the end, not once per batch."""
        if self.k % self.T:
            raise RuntimeError("runner is not aligned to a sample boundary")
        T, L, K0 = self.T, self.L, self.k
        # recorded spikes (0/1, int8: a batch of ResNet-19 w8 is ~1 GB as int64), by step
        # from relative index `base` on
        rec = {name: [] for name in self.sinks}
        reads, pending = {}, []  # pending: (first sample, x) not yet yielded
        state = {"fed": 0, "base": 0, "samples": 0}

        def feed(steps: np.ndarray) -> None:
            done = 0
            while done < len(steps):
                n = min(self.nb, len(steps) - done, self._steps_to_boundary())
                clocks = self.clock_steps(state["fed"] + done, n, state["samples"])
                sp, rd = self._segment(steps[done:done + n], clocks)
                self._clear_recurrent()
                for name, arr in sp.items():
                    rec[name].append(arr)
                reads.update(rd)
                done += n
            state["fed"] += len(steps)

        def ready() -> bool:  # sample s is complete once (s + 1) T + L steps ran
            a, x = pending[0]
            return (a + x.shape[1]) * T + L <= state["fed"]

        def take() -> tuple:
            a, x = pending.pop(0)
            B = x.shape[1]
            # sample s, step t of a layer at depth d ran at global step K0 + s T + d + t + 1
            out_v = np.stack([reads.pop(K0 + s * T + L + T) for s in range(a, a + B)])
            spikes = {}
            for name, chunks in rec.items():
                layer, d = self.q.layer(name), self.depth[name]
                allsteps = np.concatenate(chunks, 0) if len(chunks) > 1 else chunks[0]
                ix = (np.arange(a, a + B)[None, :] * T + d + np.arange(T)[:, None]
                      - state["base"])
                spikes[name] = torch.as_tensor(
                    from_lava(allsteps[ix], layer.shape, 2).astype(np.int64))
                rec[name] = [allsteps[(a + B) * T - state["base"]:]]  # what later samples need
            state["base"] = (a + B) * T
            return torch.as_tensor(out_v.reshape(B, *self.q.output.shape)), spikes

        for batch in batches:
            x = np.asarray(torch.as_tensor(batch).cpu().numpy(), dtype=np.int64)
            if x.shape[0] != T:
                raise ValueError(f"input has {x.shape[0]} steps, graph expects {T}")
            B = x.shape[1]
            pending.append((state["samples"], x))
            state["samples"] += B
            # step k (relative, 1-based) carries sample (k-1)//T, time step (k-1)%T
            feed(to_lava(np.moveaxis(x, 0, 1).reshape((B * T,) + x.shape[2:]),
                         self.q.input_shape))
            while pending and ready():
                yield take()
        if pending:  # drain: zero input until the last sample has left the pipeline
            shape = (math.ceil(L / T) * T,) + lava_shape(self.q.input_shape)
            feed(np.zeros(shape, dtype=np.int64))
            while pending:
                yield take()

    def _steps_to_boundary(self) -> int:
        """Steps until the next recurrent layer's window begins (unbounded without one)."""
        if not self.recurrent:
            return 1 << 62
        return min((d - self.k) % self.T or self.T for d, _ in self.recurrent)

    def _clear_recurrent(self) -> None:
        """Before a recurrent layer's window (the first step of a sample, for it) begins,
        empty its recurrent Dense's buffer: it holds what the layer's last spike of the
        previous sample would deliver, and a sample starts with no recurrent input (the
        one-step delay of a Dense on the cycle is the recurrence's own delay)."""
        for d, syn in self.recurrent:
            if self.k % self.T == d % self.T:
                syn.a_buff.set(np.zeros(syn.a_buff.shape, dtype=np.int32))

    def close(self):
        if self.started:
            self.source.stop()
            self.started = False
        if self._tmp is not None:
            import shutil
            self._rings = {}
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_lava(qgraph: QuantGraph, x_int_seq, record: bool = True,
             chunk_samples: int = 64, conv_model: str = "lava", io: str = "shm") -> tuple:
    """Build, run and stop: ``(readout_v (B, K), spikes name -> (T, B, *shape))``."""
    runner = LavaRunner(qgraph, chunk_samples=chunk_samples, record=record,
                        conv_model=conv_model, io=io)
    try:
        return runner.run(x_int_seq)
    finally:
        runner.close()


def run_lava_batches(qgraph: QuantGraph, x_int_seq, batch: int = 16, conv_model: str = "fast",
                     progress: bool = True, desc: str = "Lava") -> tuple:
    """``run_lava`` in batches of ``batch`` samples through one compiled network, with
    progress (a line per ~10 % when not on a terminal): ``(readout_v (B, K), spikes)``."""
    from kd_snn.progress import progress as make_progress

    x = torch.as_tensor(x_int_seq)
    n = x.shape[1]
    bar = make_progress(total=n, unit="sample", desc=f"{desc} ({conv_model} synapses)",
                        enabled=progress, every=10)
    reads, chunks = [], {}
    if progress:
        bar.write(f"{desc}: {n} samples in batches of {batch}; the first includes building "
                  "and compiling the process network")
    try:
        with LavaRunner(qgraph, chunk_samples=batch, record=True,
                        conv_model=conv_model) as runner:
            starts = range(0, n, batch)
            for v, spikes in runner.stream(x[:, a:a + batch] for a in starts):
                reads.append(v)
                for name, arr in spikes.items():
                    chunks.setdefault(name, []).append(arr)
                bar.update(v.shape[0])
    finally:
        bar.close()
    return torch.cat(reads), {name: torch.cat(parts, 1) for name, parts in chunks.items()}


def run_lava_from_files(quant_path, x_int_seq, record: bool = True,
                        chunk_samples: int = 64, conv_model: str = "lava") -> tuple:
    """Rebuild the network from the exported file alone and run it (see ``run_lava``):
    ``student.quant.nir`` (``export.quant_nir``, read with ``nir.read``) or an ``.npz`` of
    ``export.fixed_point.save_quant``."""
    path = Path(quant_path)
    if path.suffix == ".nir":
        from export.quant_nir import read_quant_nir
        qgraph = read_quant_nir(path)
    else:
        qgraph = load_quant(path)
    return run_lava(qgraph, x_int_seq, record, chunk_samples, conv_model)


def run_netx(net_path, x_int_seq, record: bool = True, out_shapes: Optional[list] = None):
    """Run a netx HDF5 network (``export.netx.write_netx``) on graded input
    ``(T, B, *input_shape)`` in fixed_pt and return ``(readout_v (B, K), spikes)`` aligned
    by depth like ``LavaRunner.run``; spikes are keyed by netx block index (1-based,
    counting neuron blocks) as ``"layer{i}"`` in (C, H, W) / (N,) order.

    Samples stream back to back with ``reset_interval = T`` (netx's LIFReset); the whole
    batch is one compiled run of (B + ceil(L / T)) * T steps.
    """
    from lava.lib.dl.netx.hdf5 import Network
    x = np.asarray(torch.as_tensor(x_int_seq).cpu().numpy(), dtype=np.int64)
    T, B = x.shape[:2]
    net = Network(net_config=str(net_path), input_message_bits=8, reset_interval=T,
                  reset_offset=1)
    L = len(net.layers)
    total = (B + math.ceil(L / T)) * T
    xs = np.moveaxis(x, 0, 1).reshape((B * T,) + x.shape[2:])
    xs = to_lava(xs, x.shape[2:])
    data = np.zeros(xs.shape[1:] + (total,), dtype=np.int32)
    data[..., :B * T] = np.moveaxis(xs, 0, -1)
    source = Source(data=data)
    source.s_out.connect(net.inp)
    sinks = []
    if record:
        for blk in net.layers[:-1]:
            sink = Sink(shape=blk.out.shape, buffer=total)
            blk.out.connect(sink.a_in)
            sinks.append(sink)
    read_off = (L + T - 1) % T
    n_reads = sum(1 for k in range(1, total + 1) if (k - 1) % T == read_off)
    reader = Read(buffer=n_reads + 1, interval=T, offset=read_off)
    reader.connect_var(net.layers[-1].neuron.v)
    try:
        source.run(condition=RunSteps(num_steps=total), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        reads = reader.data.get().astype(np.int64)
        rec = [s.data.get().astype(np.int64) for s in sinks]
    finally:
        source.stop()
    read_steps = [k for k in range(1, total + 1) if (k - 1) % T == read_off]
    pos = {k: j for j, k in enumerate(read_steps)}
    out_v = np.stack([reads[..., pos[b * T + L + T]] for b in range(B)])
    spikes = {}
    for i, arr in enumerate(rec):
        d = i + 1
        ix = np.arange(B)[None, :] * T + d + np.arange(T)[:, None]
        got = np.moveaxis(arr, -1, 0)[ix]  # (T, B, *lava_shape)
        if got.ndim == 5:
            got = from_lava(got, got.shape[2:][::-1], 2)
        spikes[f"layer{d}"] = torch.as_tensor(got.copy())
    return torch.as_tensor(out_v), spikes
