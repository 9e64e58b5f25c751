"""NIR files written by OTHER libraries' own exporters, with those libraries' own forward.

A helper for the tests (not a test module): one function per library builds, with seeded
weights, a small spiking network fit for the embedded ``digits`` data set (input
``(1, 8, 8)``, 10 classes, ``T = 4`` steps, the same analog frame fed every step, i.e.
"direct" encoding), writes it with the library's own NIR exporter, runs the library's
own forward on seeded digits images and returns a :class:`ForeignExport`::

    path, inputs, readout, spikes, import_kwargs = snntorch_sequential(tmp_dir)
    graph = nir_to_graph(path, **import_kwargs)
    logits, rec = run_float(graph, inputs.double(), record=True)
    # logits ~ readout.mean(0); [rec[l.name] for l in graph.layers if l.spiking] ~ spikes

``inputs`` is ``(T, B, *graph_input)`` float32 (B = 16 digits test images);
``readout`` is the library's readout per step ``(T, B, 10)`` (kdsnn's logits are its mean
over the T steps); ``spikes`` the library's spike trains of its spiking layers in
topological order, each ``(T, B, *shape)``; ``import_kwargs`` the arguments
``nir_to_graph`` needs for that library's file (the time step ``dt`` the file's time
constants are expressed in, when the exporter does not write one).

A library that cannot be imported raises :class:`LibraryMissing` (the tests turn it into a
skip with its reason).

Which neuron options NIR expresses exactly (so that kdsnn's forward of the file can equal
the library's forward; all of them "reset to v_reset = 0", strict or non-strict threshold):

* **snntorch 1.0** (``export_to_nir``, dt = 1e-4 fixed, ``r = tau/dt``, ``w_in = tau_syn/dt``):
  ``Leaky`` and ``Synaptic`` with ``reset_mechanism="zero"`` and ``reset_delay=False``;
  per-neuron ``beta``/``threshold`` tensors of the layer's shape (scalars give NIR
  parameters of shape ``()``, and the exporter's own ``infer_types`` then fails).  Its
  default ``reset_mechanism="subtract"`` is written as ``v_reset = 0`` too (the file then
  says reset-to-zero, which is not what snntorch ran: nothing in the file tells them
  apart).  ``Synaptic(reset_mechanism="zero")`` with the default ``reset_delay=True``
  zeroes the whole next update, input included: not a NIR neuron.  A biased ``Linear``
  or ``Conv2d`` may feed a ``Leaky`` (a constant input current = a membrane bias) but not
  a ``Synaptic`` (the current filter makes the bias a transient).  Residual adds are
  written as fan-in (two edges into the neuron).  ``Leaky(beta=1)`` (tau = inf) and
  ``learn_*`` options are outside NIR.
* **norse 1.1** (``to_nir``, writes ``tau = dt / tau_mem_inv``, i.e. ``dt * tau`` instead of
  ``tau``, and ``r = 1``): ``LIFBoxCell`` (LIF without current) with ``v_leak = 0`` (norse
  starts the membrane *at* ``v_leak``) and ``v_reset = 0``; read it with
  ``dt = dt_norse ** 2``.  Its exporter maps no ``Flatten`` or pooling module (they become
  ``None`` nodes that cannot be written), so the network here is convolutional to the end.
  ``LIFCell`` (CubaLIF) is not expressible: norse updates the membrane with the *previous*
  step's current (a one-step delay per layer that NIR's CubaLIF and kdsnn do not have).
* **spikingjelly 2.0** (``nir_exchange.export_to_nir``, dt = 1e-4, ``tau_nir = tau * dt``,
  ``r = 1`` if ``decay_input`` else ``tau``, ``v_leak = v_reset``): ``LIFNode`` and
  ``IFNode`` with ``v_reset = 0.0`` (``v_reset=None`` is a soft reset and the exporter
  refuses it), ``decay_input`` either way, single-step mode.  Its spike is ``v >= v_th``
  (kdsnn: ``v > thr``; equal only on a measure-zero set).  Residual adds are fan-in.
* **sinabs 3.1** (``to_nir``; writes ``IF(r = 1)``: the file's time unit is one step, read
  it with ``dt = 1``): ``IAF`` with ``spike_fn=SingleSpike`` (the default ``MultiSpike``
  emits several spikes per step) and ``reset_fn=MembraneReset()`` (the default
  ``MembraneSubtract`` is a soft reset), ``min_v_mem=None``.  Its spike is
  ``v >= thr``.  ``sinabs.layers.LIF`` decays by ``exp(-1/tau)`` (exact exponential), not
  NIR's Euler step, and ``ExpLeak`` is written as ``LI``: neither is reproduced exactly.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

T = 4
BATCH = 16
INPUT_SHAPE = (1, 8, 8)
CLASSES = 10


class LibraryMissing(Exception):
    """The library (or its NIR support) is not usable here; ``str(exc)`` says why."""


class ForeignExport(NamedTuple):
    path: Path
    inputs: torch.Tensor  # (T, B, *input) float32, the same frame every step
    readout: torch.Tensor  # (T, B, CLASSES): the library's readout per step
    spikes: list  # the library's spikes per spiking layer, topological order, (T, B, *shape)
    import_kwargs: dict  # what nir_to_graph needs for this file (e.g. {"dt": 1.0})


def digits_frames(batch: int = BATCH) -> torch.Tensor:
    """``(T, batch, 1, 8, 8)`` float32: the first digits test images, repeated T times."""
    from kd_snn.data.static import digits_arrays
    x = torch.from_numpy(digits_arrays("test")[0][:batch].copy())
    return x.unsqueeze(0).expand(T, *x.shape).contiguous()


def _need(module: str, hint: str):
    import importlib
    try:
        return importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any import failure is "not usable here"
        raise LibraryMissing(f"{module} not importable ({type(exc).__name__}: {exc}); "
                             f"{hint}") from None


def _uniform(gen, shape, lo, hi, per_layer: bool = False):
    """Seeded neuron parameters in [lo, hi): per neuron, or one value for the whole layer
    (``per_layer``: what Loihi can run, whose du, dv and vth are per population)."""
    v = lo + (hi - lo) * torch.rand(shape, generator=gen)
    return torch.full(v.shape, float(v.flatten()[0])) if per_layer else v


def _quiet():
    """Silence the exporters' prints and deprecation warnings."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def _write(graph, path: Path) -> Path:
    import nir
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nir.write(str(path), graph)
    return path


# ------------------------------------------------------------------------- snntorch
def _snntorch_net(residual: bool, seed: int, per_layer: bool = False,
                  spiking_output: bool = False):
    snn = _need("snntorch", "pip install snntorch")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    nn = torch.nn

    def leaky(shape):
        return snn.Leaky(beta=_uniform(gen, shape, 0.5, 0.9, per_layer),
                         threshold=_uniform(gen, shape, 0.4, 0.8, per_layer), init_hidden=True,
                         reset_mechanism="zero", reset_delay=False)

    class Sequential(nn.Module):
        """conv(bias) -> Leaky -> avgpool -> flatten -> linear(no bias) -> Synaptic ->
        linear readout."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 6, 3, padding=1)
            self.lif1 = leaky((6, 8, 8))
            self.pool = nn.AvgPool2d(2)
            self.flat = nn.Flatten()
            self.fc = nn.Linear(96, 24, bias=False)
            self.lif2 = snn.Synaptic(alpha=_uniform(gen, (24,), 0.2, 0.6, per_layer),
                                     beta=_uniform(gen, (24,), 0.5, 0.9, per_layer),
                                     threshold=_uniform(gen, (24,), 0.4, 0.8, per_layer),
                                     init_hidden=True, reset_mechanism="zero",
                                     reset_delay=False)
            self.out = nn.Linear(24, CLASSES)
            self.lif_out = leaky((CLASSES,)) if spiking_output else None
            with torch.no_grad():
                self.fc.weight.mul_(4.0)
                self.out.weight.mul_(2.0 if not spiking_output else 6.0)

        def forward(self, x):
            s1 = self.lif1(self.conv(x))
            s2 = self.lif2(self.fc(self.flat(self.pool(s1))))
            out = self.out(s2)
            return out if self.lif_out is None else self.lif_out(out)

        def spiking(self):
            return [self.lif1, self.lif2] + ([self.lif_out] if spiking_output else [])

    class Residual(nn.Module):
        """conv -> Leaky -> [conv + 1x1 shortcut conv] (fan-in) -> Leaky -> avgpool ->
        flatten -> linear -> Leaky -> linear readout."""

        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
            self.lif1 = leaky((4, 8, 8))
            self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
            self.short = nn.Conv2d(4, 4, 1, bias=False)
            self.lif2 = leaky((4, 8, 8))
            self.pool = nn.AvgPool2d(2)
            self.flat = nn.Flatten()
            self.fc = nn.Linear(64, 20)
            self.lif3 = leaky((20,))
            self.out = nn.Linear(20, CLASSES)
            with torch.no_grad():
                self.fc.weight.mul_(3.0)
                self.out.weight.mul_(2.0)

        def forward(self, x):
            s1 = self.lif1(self.conv1(x))
            s2 = self.lif2(self.conv2(s1) + self.short(s1))
            s3 = self.lif3(self.fc(self.flat(self.pool(s2))))
            return self.out(s3)

        def spiking(self):
            return [self.lif1, self.lif2, self.lif3]

    return snn, (Residual if residual else Sequential)()


def _snntorch(out_dir, residual: bool, seed: int, per_layer: bool = False,
              spiking_output: bool = False) -> ForeignExport:
    snn, net = _snntorch_net(residual, seed, per_layer, spiking_output)
    from snntorch.export_nir import export_to_nir
    x = digits_frames()
    with _quiet():
        graph = export_to_nir(net, x[0, :1], ignore_dims=[0])
    name = "residual" if residual else "spiking_out" if spiking_output else "seq"
    path = _write(graph, Path(out_dir) / f"snntorch_{name}.nir")
    from snntorch import utils
    utils.reset(net)
    outs, spikes = [], [[] for _ in net.spiking()]
    hooks = [m.register_forward_hook(lambda m, i, o, k=k: spikes[k].append(
        (o[0] if isinstance(o, tuple) else o).detach().clone()))
        for k, m in enumerate(net.spiking())]
    with torch.no_grad():
        for t in range(T):
            outs.append(net(x[t]))
    for h in hooks:
        h.remove()
    return ForeignExport(path, x, torch.stack(outs), [torch.stack(s) for s in spikes],
                         {})


def snntorch_sequential(out_dir, seed: int = 0, per_layer: bool = False) -> ForeignExport:
    """snntorch: Conv2d -> Leaky -> AvgPool2d -> Flatten -> Linear -> Synaptic -> Linear,
    written by ``snntorch.export_nir.export_to_nir`` (``per_layer``: one beta, alpha and
    threshold per layer, as Loihi needs)."""
    return _snntorch(out_dir, residual=False, seed=seed, per_layer=per_layer)


def snntorch_spiking_output(out_dir, seed: int = 0) -> ForeignExport:
    """snntorch_sequential(per_layer=True) whose last Linear feeds a Leaky: the classifier
    is read by spike counts (``readout`` holds the output spikes; their mean over T is what
    kdsnn's added ``spike_count`` readout gives)."""
    return _snntorch(out_dir, residual=False, seed=seed, per_layer=True, spiking_output=True)


def snntorch_residual(out_dir, seed: int = 0) -> ForeignExport:
    """snntorch with a residual sum (written as fan-in: two edges into one Leaky)."""
    return _snntorch(out_dir, residual=True, seed=seed)


def snntorch_recurrent(out_dir, seed: int = 0) -> ForeignExport:
    """snntorch with a recurrent layer: Flatten -> Linear -> RLeaky (all-to-all ``w_rec``
    with its bias) -> Linear (no bias) -> Synaptic -> Linear readout; one beta, alpha and
    threshold per layer; ``export_to_nir`` writes the RLeaky as the NIR cycle
    ``lif1.lif -> lif1.w_rec -> lif1.lif``; snntorch feeds step t with the spikes of step
    t - 1.  (``RSynaptic(reset_mechanism="zero", reset_delay=False)`` fails in snntorch 1.0's
    own forward: ``spk`` is None.)"""
    snn = _need("snntorch", "pip install snntorch")
    torch.manual_seed(seed)
    nn = torch.nn

    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.flat = nn.Flatten()
            self.fc1 = nn.Linear(64, 24)
            self.lif1 = snn.RLeaky(beta=torch.full((24,), 0.8),
                                   threshold=torch.full((24,), 0.6), linear_features=24,
                                   init_hidden=True, reset_mechanism="zero",
                                   reset_delay=False)
            self.fc2 = nn.Linear(24, 16, bias=False)
            self.lif2 = snn.Synaptic(alpha=torch.full((16,), 0.5),
                                     beta=torch.full((16,), 0.7),
                                     threshold=torch.full((16,), 0.8), init_hidden=True,
                                     reset_mechanism="zero", reset_delay=False)
            self.out = nn.Linear(16, CLASSES)
            with torch.no_grad():
                self.fc1.weight.mul_(3.0)
                self.lif1.recurrent.weight.mul_(2.0)
                self.fc2.weight.mul_(3.0)

        def forward(self, x):
            s1 = self.lif1(self.fc1(self.flat(x)))
            s1 = s1[0] if isinstance(s1, tuple) else s1
            s2 = self.lif2(self.fc2(s1))
            s2 = s2[0] if isinstance(s2, tuple) else s2
            return self.out(s2)

        def spiking(self):
            return [self.lif1, self.lif2]

    net = Recurrent()
    from snntorch.export_nir import export_to_nir
    x = digits_frames()
    with _quiet():
        graph = export_to_nir(net, x[0, :1], ignore_dims=[0])
    path = _write(graph, Path(out_dir) / "snntorch_recurrent.nir")
    from snntorch import utils
    utils.reset(net)
    outs, spikes = [], [[] for _ in net.spiking()]
    hooks = [m.register_forward_hook(lambda m, i, o, k=k: spikes[k].append(
        (o[0] if isinstance(o, tuple) else o).detach().clone()))
        for k, m in enumerate(net.spiking())]
    with torch.no_grad():
        for t in range(T):
            outs.append(net(x[t]))
    for h in hooks:
        h.remove()
    return ForeignExport(path, x, torch.stack(outs), [torch.stack(s) for s in spikes], {})


# ---------------------------------------------------------------------------- norse
NORSE_DT = 1e-3  # norse's default time step (to_nir's and LIFBoxCell's)


def norse_mlp(out_dir, seed: int = 0, per_layer: bool = False) -> ForeignExport:
    """norse: Linear -> LIFBoxCell -> Linear -> LIFBoxCell -> Linear readout on the flattened
    digits frame (``inputs`` are ``(T, B, 64)``), written by
    ``norse.torch.utils.export_nir.to_nir``.  norse writes ``tau = dt / tau_mem_inv``
    (``dt * tau``): kdsnn reads it with ``dt = NORSE_DT ** 2``.  Its exporter writes
    ``Conv2d`` without ``input_shape`` (nir 1.0.8 cannot write that) and no ``Flatten`` or
    pooling node, hence dense layers; its ``Input`` type keeps the batch axis ``(1, 64)``."""
    norse = _need("norse.torch", "pip install norse --no-deps")
    from norse.torch.utils.export_nir import to_nir
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    nn = torch.nn

    def box(n):  # tau_mem_inv in 1/s: beta = 1 - dt * tau_mem_inv in [0.5, 0.9]
        return norse.LIFBoxCell(norse.LIFBoxParameters(
            tau_mem_inv=_uniform(gen, (n,), 100.0, 500.0, per_layer),
            v_th=_uniform(gen, (n,), 0.1, 0.3, per_layer), v_leak=torch.zeros(n),
            v_reset=torch.zeros(n)), dt=NORSE_DT)

    net = norse.SequentialState(nn.Linear(64, 32), box(32), nn.Linear(32, 24), box(24),
                                nn.Linear(24, CLASSES))
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[2].weight.mul_(3.0)
        net[4].weight.mul_(2.0)
    x = digits_frames().flatten(2)
    with _quiet():
        graph = to_nir(net, x[0, :1], dt=NORSE_DT)
    path = _write(graph, Path(out_dir) / "norse_mlp.nir")
    cells = [net[1], net[3]]
    spikes = [[] for _ in cells]
    hooks = [m.register_forward_hook(lambda m, i, o, k=k: spikes[k].append(o[0].detach()))
             for k, m in enumerate(cells)]
    outs, state = [], None
    with torch.no_grad():
        for t in range(T):
            y, state = net(x[t], state)
            outs.append(y)
    for h in hooks:
        h.remove()
    return ForeignExport(path, x, torch.stack(outs), [torch.stack(s) for s in spikes],
                         {"dt": NORSE_DT ** 2})


# ---------------------------------------------------------------------- spikingjelly
def spikingjelly_net(out_dir, seed: int = 0, residual: bool = False) -> ForeignExport:
    """spikingjelly 2.0: Conv2d -> LIFNode(decay_input=False) -> AvgPool2d -> Flatten ->
    Linear -> LIFNode(decay_input=True) -> Linear (``residual``: plus a second conv stage
    whose input is the sum of a 3x3 conv and a 1x1 shortcut), written by
    ``spikingjelly.activation_based.nir_exchange.export_to_nir`` (dt = 1e-4)."""
    _need("loguru", "spikingjelly needs loguru (pip install loguru)")
    _need("spikingjelly", "pip install spikingjelly==2.0.0 --no-deps "
          "(see scripts/requirements-nir-peers.txt)")
    try:
        from spikingjelly.activation_based import functional, neuron
        from spikingjelly.activation_based.nir_exchange import export_to_nir
    except Exception as exc:  # noqa: BLE001
        raise LibraryMissing(f"spikingjelly's NIR exchange not importable: {exc}") from None
    torch.manual_seed(seed)
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 6, 3, padding=1)
            self.sn1 = neuron.LIFNode(tau=2.0, decay_input=False, v_threshold=0.6,
                                      v_reset=0.0)
            if residual:
                self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
                self.short = nn.Conv2d(6, 6, 1)
                self.sn_res = neuron.LIFNode(tau=3.0, decay_input=False, v_threshold=0.5,
                                             v_reset=0.0)
            self.pool = nn.AvgPool2d(2)
            self.flat = nn.Flatten()
            self.fc = nn.Linear(96, 24)
            self.sn2 = neuron.LIFNode(tau=4.0, decay_input=True, v_threshold=0.2,
                                      v_reset=0.0)
            self.out = nn.Linear(24, CLASSES)
            with torch.no_grad():
                self.fc.weight.mul_(3.0)
                self.out.weight.mul_(2.0)

        def forward(self, x):
            s = self.sn1(self.conv(x))
            if residual:
                s = self.sn_res(self.conv2(s) + self.short(s))
            return self.out(self.sn2(self.fc(self.flat(self.pool(s)))))

        def spiking(self):
            return [self.sn1] + ([self.sn_res] if residual else []) + [self.sn2]

    net = Net()
    x = digits_frames()
    with _quiet():
        graph = export_to_nir(net, x[0, :1], dt=1e-4)
    functional.reset_net(net)
    path = _write(graph, Path(out_dir) / f"spikingjelly_{'residual' if residual else 'seq'}.nir")
    spikes = [[] for _ in net.spiking()]
    hooks = [m.register_forward_hook(lambda m, i, o, k=k: spikes[k].append(o.detach().clone()))
             for k, m in enumerate(net.spiking())]
    outs = []
    with torch.no_grad():
        for t in range(T):
            outs.append(net(x[t]))
    for h in hooks:
        h.remove()
    functional.reset_net(net)
    return ForeignExport(path, x, torch.stack(outs), [torch.stack(s) for s in spikes], {})


# ---------------------------------------------------------------------------- sinabs
def sinabs_net(out_dir, seed: int = 0) -> ForeignExport:
    """sinabs 3.1: Flatten -> Linear -> IAF -> Linear -> IAF -> Linear, IAF with
    ``SingleSpike`` and ``MembraneReset``, written by ``sinabs.to_nir`` (``IF(r = 1)``: its
    time unit is one step, so kdsnn reads it with ``dt = 1``).  Dense only: sinabs writes
    ``Conv2d`` without ``input_shape``, which nir 1.0.8 cannot write (sinabs declares
    ``nir <= 1.0.4``)."""
    _need("pbr", "sinabs needs pbr (pip install pbr)")
    sinabs = _need("sinabs", "pip install sinabs==3.1.3 --no-deps "
                   "(see scripts/requirements-nir-peers.txt)")
    try:
        import sinabs.layers as sl
        from sinabs.activation import MembraneReset, SingleSpike
    except Exception as exc:  # noqa: BLE001
        raise LibraryMissing(f"sinabs layers not importable: {exc}") from None
    torch.manual_seed(seed)
    nn = torch.nn

    def iaf(thr):
        return sl.IAFSqueeze(batch_size=BATCH, spike_threshold=torch.tensor(thr),
                             spike_fn=SingleSpike, reset_fn=MembraneReset(), min_v_mem=None)

    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), iaf(0.8), nn.Linear(32, 24),
                        iaf(1.0), nn.Linear(24, CLASSES))
    with torch.no_grad():
        net[1].weight.mul_(2.0)
        net[3].weight.mul_(2.0)
        net[5].weight.mul_(2.0)
    x = digits_frames()
    # sinabs' "squeeze" layers take (B*T, ...) batch-major and keep their state per call
    x_bt = x.transpose(0, 1).reshape(BATCH * T, *x.shape[2:])
    with _quiet():
        graph = sinabs.to_nir(net, x_bt)
        # sinabs leaves Flatten.input_type = None, which nir.write cannot store; nir's own
        # type inference fills it (what snntorch's exporter does itself)
        graph.infer_types()
    path = _write(graph, Path(out_dir) / "sinabs_seq.nir")
    cells = [net[2], net[4]]
    for m in cells:
        m.reset_states()
    spikes = []
    hooks = [m.register_forward_hook(lambda m, i, o: spikes.append(o.detach().clone()))
             for m in cells]
    with torch.no_grad():
        y = net(x_bt)
    for h in hooks:
        h.remove()

    def tb(a):  # (B*T, ...) -> (T, B, ...)
        return a.reshape(BATCH, T, *a.shape[1:]).transpose(0, 1)
    return ForeignExport(path, x, tb(y), [tb(s) for s in spikes], {"dt": 1.0})


ALL = {
    "snntorch": snntorch_sequential,
    "snntorch_residual": snntorch_residual,
    "snntorch_recurrent": snntorch_recurrent,
    "norse": norse_mlp,
    "spikingjelly": spikingjelly_net,
    "spikingjelly_residual": lambda d, seed=0: spikingjelly_net(d, seed, residual=True),
    "sinabs": sinabs_net,
}


def norse_forward(graph, x, dt=None):
    """norse 1.1's ``from_nir`` of a NIR graph (``dt``: its argument, left at norse's default
    when None) stepped over ``x`` (T, 1, ...): ``(T, 1, out)``, the reference forward of the
    NIR-paper tests."""
    import logging

    import pytest
    import torch
    norse = pytest.importorskip("norse.torch")
    logging.disable(logging.WARNING)  # norse warns about r on IF nodes
    try:
        module = norse.from_nir(graph) if dt is None else norse.from_nir(graph, dt=dt)
    finally:
        logging.disable(logging.NOTSET)
    state, outs = None, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            y, state = module(x[t], state)
            outs.append(y.reshape(1, -1))
    return torch.stack(outs)

