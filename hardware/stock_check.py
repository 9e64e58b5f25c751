"""The stock re-check of a parity run: Lava's own Conv/Dense process models, synapse by synapse.

Parity runs its Lava network with kdsnn's BLAS synapse models and Lava's stock LIF models.
To show that Lava's stock ``PyConvModelFixed`` / ``PyDenseModelBitAcc`` would have made the
very same run, every Conv/Dense process of that network is driven, step by step, with the
spike train its source emitted in the run (recorded by parity's sinks; the graded input
for the first layer), once by Lava's stock process model and once by the model the run
used, and their outputs are compared at every step.

Why that suffices: a LIF's input at a step is the sum of its synapses' outputs, each a
function of its source's spikes of the step before.  If every synapse model gives the stock
model's output on the spike trains the run produced, then by induction over the steps a
network with the stock models receives the same input at every LIF (the same stock LIF
models) and emits the same spikes: it is the run that was made.

Why not run the whole network again with the stock models: a stock Conv convolves once per
(output, input) channel pair per step (scipy), and a network pass over k samples takes
``(k + ceil(L / T)) * T`` steps (L = latency, e.g. 28 steps for 2 samples of ResNet-20 at
T = 4) plus a second compilation; synapse by synapse it is ``k * T`` steps of each model.

Both models are instantiated the way Lava's builder does it (``PyProcessBuilder.build``:
the model class with the process's parameters, each Var an array of its declared type
filled with the Var's value) and stepped through ``run_spk`` with ports that hand over the
recorded input (summed into an array of the port's type, as ``PyInPortVectorDense.recv``)
and keep what is sent.
"""
from __future__ import annotations

import numpy as np
import torch

from export.graph import CLOCK, INPUT, clock_activity


class _InPort:
    """``PyInPortVectorDense.recv``: the payload summed into zeros of the port's type."""

    def __init__(self, shape: tuple, dtype):
        self.shape, self.dtype, self.data = tuple(shape), dtype, None

    def recv(self) -> np.ndarray:
        return np.zeros(self.shape, self.dtype) + self.data


class _OutPort:
    def __init__(self):
        self.sent = []

    def send(self, data) -> None:
        self.sent.append(np.array(data, copy=True))


def instantiate(model_cls, process):
    """``model_cls`` for ``process`` as Lava's builder makes it, with recording ports."""
    from lava.magma.core.model.py.type import LavaPyType

    model = model_cls(process.proc_params)
    for var in process.vars:
        lt = getattr(model_cls, var.name, None)
        if not isinstance(lt, LavaPyType):
            continue
        if issubclass(lt.cls, np.ndarray):
            value = np.ndarray(var.shape, lt.d_type)
            value[:] = var.init
        else:
            value = var.init
        setattr(model, var.name, value)
    model.s_in = _InPort(process.s_in.shape, getattr(model_cls, "s_in").d_type)
    model.a_out = _OutPort()
    return model


def _step_all(model, inputs: np.ndarray) -> np.ndarray:
    """Outputs of ``model`` for each input step (one step more flushes the last one)."""
    for x in list(inputs) + [np.zeros_like(inputs[0])]:
        model.s_in.data = x
        model.run_spk()
    return np.stack(model.a_out.sent[1:])  # what a step sends is the step before's result


def _step_order(act) -> np.ndarray:
    """Activity ``(T, k, *shape)`` -> int64 ``(k * T, *shape)`` in step order (sample by
    sample, as the network streams them)."""
    act = torch.as_tensor(act).to(torch.int64)
    T, k = act.shape[:2]
    return act.transpose(0, 1).reshape((k * T,) + tuple(act.shape[2:])).numpy()


def _source_train(qgraph, name: str, steps: np.ndarray, flat: bool) -> np.ndarray:
    """The source's activity in step order as it reaches the synapse's port: Lava's
    (W, H, C) layout, or flattened in (C, H, W) order for a Dense after a 3-D source
    (``s_out.transpose([2, 1, 0]).flatten()``)."""
    from hardware.lava_sim import to_lava

    steps = steps.astype(np.int32)  # what the senders' ports carry (LIF fixed_pt, ShmSource)
    if flat:
        return steps.reshape(steps.shape[0], -1)
    return to_lava(steps, qgraph.source_shape(name)) if steps.ndim > 2 else steps


#: what the forked workers read (set before the pool forks: nothing large is pickled)
_STATE: dict = {}


def _check_one(index: int) -> tuple:
    """``(index, name, equal)`` for the ``index``-th connection of the graph in ``_STATE``."""
    from hardware.lava_sim import make_synapse, synapse_models

    q, trains, conv_model = _STATE["q"], _STATE["trains"], _STATE["conv_model"]
    layer, conn = _STATE["conns"][index]
    src_shape = q.source_shape(conn.source)
    process = make_synapse(conn, src_shape)
    kind = type(process)
    train = _source_train(q, conn.source, trains[conn.source],
                          conn.kind == "dense" and len(src_shape) == 3)
    with np.errstate(invalid="ignore"):  # out-of-int32 casts, as the stock model
        want = _step_all(instantiate(synapse_models("lava")[kind], process), train)
        got = _step_all(instantiate(synapse_models(conv_model)[kind], process), train)
    return index, f"{layer.name} <- {conn.source}", bool(
        want.shape == got.shape and np.array_equal(want, got))


def check_synapses(qgraph, x_int, spikes: dict, conv_model: str, jobs=None,
                   progress: bool = False) -> dict:
    """Every Conv/Dense of ``qgraph``'s network run by Lava's stock model and by
    ``conv_model``'s on the recorded trains: ``x_int`` ``(T, k, *input)`` (graded ints) and
    ``spikes`` layer -> ``(T, k, *shape)`` (Lava's, from the run).  ``jobs`` forked
    workers (default: one per core, at most 8) share the synapses; ``progress``: a line
    per ~10 % of them (ResNet-19's stock convolutions take minutes).  Returns ``{"samples", "steps", "synapses", "bit_exact",
    "mismatches"}`` (``mismatches``: the first few synapses that differ, as
    ``layer <- source``, in graph order)."""
    import multiprocessing as mp

    from threadpoolctl import threadpool_limits

    from kd_snn.progress import progress as make_progress

    import os

    jobs = jobs or min(os.cpu_count() or 1, 8)
    T, k = int(x_int.shape[0]), int(x_int.shape[1])
    conns = [(layer, conn) for layer in qgraph.layers for conn in layer.connections]
    sources = {conn.source for _, conn in conns}  # numpy before the fork: no torch there
    trains = {name: _step_order(x_int if name == INPUT else clock_activity(
        T, k, dtype=torch.int64) if name == CLOCK else spikes[name]) for name in sources}
    _STATE.update(q=qgraph, trains=trains, conv_model=conv_model, conns=conns)
    bar = make_progress(total=len(conns), unit="synapse", desc="stock re-check",
                        enabled=progress, every=10)
    results = []
    try:
        with threadpool_limits(limits=None):  # the fast models set one BLAS thread
            if jobs > 1 and len(conns) > 1:
                with mp.get_context("fork").Pool(min(jobs, len(conns))) as pool:
                    for res in pool.imap_unordered(_check_one, range(len(conns))):
                        results.append(res)
                        bar.update(1)
            else:
                for i in range(len(conns)):
                    results.append(_check_one(i))
                    bar.update(1)
    finally:
        bar.close()
        _STATE.clear()
    mismatches = [name for _, name, equal in sorted(results) if not equal]
    return {"samples": k, "steps": k * T, "synapses": len(conns), "bit_exact": not mismatches,
            "mismatches": mismatches[:5]}
