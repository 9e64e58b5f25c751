"""DeployGraph <-> NIR (Neuromorphic Intermediate Representation, nir 1.0.8).

Public API
----------
``graph_to_nir(graph, dt=1e-4) -> nir.NIRGraph``
``write_nir(graph, path, dt=1e-4) -> pathlib.Path``   (atomic, byte-deterministic)
``read_nir(path) -> nir.NIRGraph``                    (``nir.read`` with type checks)
``nir_to_graph(nir_graph_or_path, dt=None) -> DeployGraph`` (inverse, foreign files too)

This module is the convention below and these names; the work is done by
``export.nir_write`` (DeployGraph -> NIR), ``export.nir_read`` (NIR -> DeployGraph: the
graph walk and neuron parameters), ``export.nir_chains`` (the linear nodes between two
neuron layers as one connection) and ``export.nir_checks`` (file and field checks before
anything is built, and the refusals' wording).

Time step and neuron convention (why these r, w_in, tau, dt)
-------------------------------------------------------------
NIR is continuous time.  Both real importers integrate with forward Euler,
``x <- x + dt/tau * (rhs - x)``, and kdsnn's discrete CUBA neuron

    i = alpha*i + x ;  v = beta*v + i + bias ;  s = v > thr (strict) ; v <- 0 on s

is such an Euler step with ``alpha = 1 - dt/tau_syn`` and ``beta = 1 - dt/tau_mem``.

* ``dt = 1e-4``.  snntorch's importer hard-codes ``dt = 1e-4`` (``beta = 1 - dt/tau``),
  so any other dt is misread by snntorch.  norse takes dt as an argument: call
  ``norse.torch.from_nir(g, dt=g.metadata["dt"])`` (its default, 1e-3, is wrong here).
* ``CubaLIF`` (layers with some ``alpha > 0``):
  ``tau_syn = dt/(1-alpha)``, ``tau_mem = dt/(1-beta)``, ``w_in = tau_syn/dt = 1/(1-alpha)``,
  ``r = tau_mem/dt = 1/(1-beta)``, ``v_threshold = thr``.  Euler then gives
  ``i = alpha*i + (1-alpha)*w_in*x = alpha*i + x`` and ``v = beta*v + (1-beta)*r*i = beta*v + i``.
  snntorch *asserts* ``r == tau_mem/dt`` and needs ``w_in*dt/tau_syn == 1`` (else it
  rescales thresholds); norse multiplies by ``w_in`` and ``r`` explicitly.  Both reproduce
  the kdsnn dynamics.
* ``LIF`` (layers with ``alpha == 0`` everywhere, ``beta < 1``):
  ``tau = dt/(1-beta)``, ``r = 1``, ``v_threshold = (1-beta)*thr``.  Euler:
  ``u = beta*u + (1-beta)*x``, i.e. ``u = (1-beta)*v`` is kdsnn's membrane scaled by
  ``(1-beta)``, with the threshold scaled alike (reset to zero is scale-free).  The
  reason for ``r = 1`` (rather than snntorch's own export convention ``r = tau/dt``):
  norse's LIF importer ignores ``r`` (it only warns), so ``r = 1`` is the only value norse
  runs correctly; snntorch sees ``r*dt/tau = 1-beta != 1`` and, by design, divides the
  threshold by that factor, recovering ``Leaky(beta, thr)`` exactly.
* ``IF`` (``alpha == 0``, ``beta == 1``): ``r = 1/dt`` (``v += dt*r*x = x``).  Exact NIR,
  but neither importer runs IF correctly (snntorch builds ``Leaky(beta=0.9)`` and asserts
  ``r == 1``; norse uses its own tau).  Layers mixing ``beta == 1`` and ``beta < 1``,
  ``alpha == 1`` or CubaLIF with ``beta == 1`` are refused (``KdsnnError``): tau would be inf.
* Bias.  Both importers refuse or misread ``v_leak``: snntorch asserts ``v_leak == 0``;
  norse starts the membrane *at* ``v_leak`` and, for CubaLIF, also leaks the synaptic
  current toward it.  So for LIF/IF layers the bias goes into the bias of the first
  incoming ``Affine`` (dense) or ``Conv2d`` (when the bias is constant per channel):
  with ``alpha = 0`` a synaptic bias is the same as a membrane bias, exactly.  Otherwise
  (LIF fed only by pooling, or a per-position conv bias) it goes into ``v_leak = bias``
  (LIF convention above), which is exact NIR but not imported correctly by either tool.
  A CubaLIF's membrane bias goes into ``v_leak = bias/(1-beta)`` (Euler:
  ``v += (1-beta)*v_leak``): exact NIR; snntorch refuses it (assert) and norse misapplies
  it.  A CubaLIF's *synaptic* bias (a ``CLOCK`` connection, ``export.graph``: a constant
  current filtered by alpha) is the bias of its first feed-forward Affine/Conv2d (else of
  its recurrent Affine), which is how NIR, snntorch and norse write and read it; reading,
  an Affine/Conv2d bias into a CubaLIF becomes that clock connection (into LIF/IF,
  alpha = 0, the membrane bias, the same exactly).  Zero biases give ``v_leak = 0``.
* Thresholds are per-neuron arrays in the file (no scalar shapes).  snntorch can only
  build one threshold per layer (it asserts a unique value); norse takes per-neuron
  thresholds.
* Readout (``spiking=False``): its connections go straight into the graph ``Output`` (an
  ``Affine`` with the readout bias for the usual dense readout; several connections are
  summed by a ``Scale(1)`` node).  The ``Output`` stream is the readout current per step;
  the logits are its **mean over the T steps** (``metadata["readout"]``).  An ``LI`` node
  would not give the mean exactly and neither importer maps ``LI``.
* Dense connections from a ``(C,H,W)`` source get ``Flatten(start_dim=-3, end_dim=-1)``
  (negative dims: the NIR type is ``(C*H*W,)`` and ``nir``'s type checks pass, while the
  importers build ``torch.nn.Flatten(-3, -1)`` which keeps the batch axis).  With the usual
  ``start_dim=0`` the importers flatten the batch too and fail at batch > 1; with this
  graph both importers run at batch 1 and batch > 1.
* Average pooling is ``SumPool2d`` + ``Scale(1/(kh*kw))``.  Neither importer maps
  ``Scale`` (snntorch/nirtorch raise "Unknown node type", norse returns no module), so
  graphs with average pooling or a fan-in readout are not importable by them (exact NIR).
* Residual fan-in is several edges into the same neuron node (NIR sums them).  snntorch
  (``nirtorch.nir_to_torch``) sums them in topological order: exact.  norse's ``from_nir``
  runs nirtorch's deprecated ``GraphExecutor`` in DFS pre-order, so in a diamond one branch
  is read one step late: norse is exact on sequential graphs only.

Every neuron node (and the ``Output`` node of a readout) carries ``kdsnn_*`` metadata with
the exact float64 kdsnn parameters, so ``nir_to_graph`` restores them bit-exactly; it
checks them against the values derived from the NIR parameters (a mismatch, i.e. an edited
file, is an error) and derives them when absent (foreign files).
"""
from __future__ import annotations

from export.nir_chains import linear_chain
from export.nir_checks import MAX_ELEMENTS, MAX_NIR_BYTES, MAX_NODES, read_nir
from export.nir_read import nir_to_graph
from export.nir_write import DT, FORMAT, graph_to_nir, write_nir

__all__ = ["graph_to_nir", "write_nir", "read_nir", "nir_to_graph", "linear_chain", "DT",
           "FORMAT", "MAX_NIR_BYTES", "MAX_ELEMENTS", "MAX_NODES"]
