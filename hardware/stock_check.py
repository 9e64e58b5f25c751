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

from export.graph import INPUT


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


def _source_train(qgraph, name: str, x_int, spikes: dict, flat: bool) -> np.ndarray:
    """The source's activity ``(k * T, *port shape)`` in step order (sample by sample), in
    Lava's layout, as it reached the synapse's port."""
    from hardware.lava_sim import to_lava

    act = x_int if name == INPUT else spikes[name]
    act = torch.as_tensor(act).to(torch.int64)
    T, k = act.shape[:2]
    steps = act.transpose(0, 1).reshape((k * T,) + tuple(act.shape[2:])).numpy()
    if flat:  # a Dense after a (C, H, W) source: s_out.transpose([2, 1, 0]).flatten()
        return steps.reshape(k * T, -1)
    return to_lava(steps, qgraph.source_shape(name)) if steps.ndim > 2 else steps


def check_synapses(qgraph, x_int, spikes: dict, conv_model: str) -> dict:
    """Every Conv/Dense of ``qgraph``'s network run by Lava's stock model and by
    ``conv_model``'s on the recorded trains: ``x_int`` ``(T, k, *input)`` (graded ints) and
    ``spikes`` layer -> ``(T, k, *shape)`` (Lava's, from the run).  Returns ``{"samples",
    "steps", "synapses", "bit_exact", "mismatches"}`` (``mismatches``: the first few
    synapses that differ, as ``layer <- source``)."""
    from threadpoolctl import threadpool_limits

    from hardware.lava_sim import make_synapse, synapse_models

    stock, used = synapse_models("lava"), synapse_models(conv_model)
    T, k = int(x_int.shape[0]), int(x_int.shape[1])
    mismatches, count = [], 0
    with threadpool_limits(limits=None), np.errstate(invalid="ignore"):  # models may set 1
        for layer in qgraph.layers:
            for conn in layer.connections:
                src_shape = qgraph.source_shape(conn.source)
                process = make_synapse(conn, src_shape)
                kind = type(process)
                train = _source_train(qgraph, conn.source, x_int, spikes,
                                      kind.__name__ == "Dense" and len(src_shape) == 3)
                want = _step_all(instantiate(stock[kind], process), train)
                got = _step_all(instantiate(used[kind], process), train)
                count += 1
                if not (want.shape == got.shape and np.array_equal(want, got)):
                    mismatches.append(f"{layer.name} <- {conn.source}")
    return {"samples": k, "steps": k * T, "synapses": count, "bit_exact": not mismatches,
            "mismatches": mismatches[:5]}
