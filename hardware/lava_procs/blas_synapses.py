"""Fixed_pt ProcessModels for Lava's stock ``Conv`` and ``Dense`` with the stock arithmetic,
computed with BLAS (``hardware.lava_procs.exact_arith``).

Lava 0.10's ``PyConvModelFixed`` convolves with ``scipy.signal.convolve2d`` once per
(output channel, input channel) pair per step (seconds per step for 256-channel layers).
These models keep the stock processes, ports, Vars and timing (send the previous step's
accumulation, then receive) and replace only the arithmetic with im2col matrix products in
float32 / float64 where a bound proves every sum exact, and the stock code elsewhere.
They are selected on request only (``Loihi2SimCfg(exception_proc_model_map=...)``, see
``hardware.lava_sim.run_config``); ``tests/test_exact_synapses.py`` checks them bit for
bit against the stock models, in Lava and on random integers at the field limits.

``PyConvModelFixedInt64`` is the earlier fast model (int64 ``einsum``, no BLAS), kept as
the baseline of ``benchmarks/hardware.py``.
"""
import numpy as np

from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.conv.process import Conv
from lava.proc.dense.models import PyDenseModelBitAcc
from lava.proc.dense.process import Dense

from hardware.lava_procs.exact_arith import ConvPlan, DensePlan, conv_exact, conv_stock, dense_exact


def _one_blas_thread() -> None:
    """Each Lava process model is its own OS process: one BLAS thread each."""
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=1)
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        pass


@implements(proc=Conv, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "blas")
class PyConvModelFixedBlas(PyLoihiProcessModel):
    """Stock ``PyConvModelFixed`` arithmetic; im2col products in exact float32/64."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    a_buf: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    weight: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    kernel_size: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    stride: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    padding: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    dilation: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    groups: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=16)
    num_message_bits: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=5)
    weight_exp: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    num_weight_bits: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=5)

    MODE = "blas"

    def _plan(self) -> ConvPlan:
        if getattr(self, "_conv_plan", None) is None:
            _one_blas_thread()
            self._conv_plan = ConvPlan(self.weight, self.stride, self.padding,
                                       int(self.groups[0]))
        return self._conv_plan

    def run_spk(self) -> None:
        self.a_out.send(self.a_buf)
        s_in = self.s_in.recv()
        if self.num_message_bits.item() <= 0:
            s_in = s_in.astype(bool)
        if (np.asarray(self.dilation) != 1).any():  # not used by kdsnn: the stock code
            self.a_buf = conv_stock(s_in, self.weight, self.stride, self.padding,
                                    int(self.groups[0]), self.dilation)
            return
        self.a_buf = conv_exact(self._plan(), s_in, self.MODE)


@implements(proc=Conv, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "int64")
class PyConvModelFixedInt64(PyConvModelFixedBlas):
    """The earlier fast model: the same sums with an int64 einsum (benchmark baseline)."""

    MODE = "int64"


@implements(proc=Dense, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt", "blas")
class PyDenseModelBitAccBlas(PyDenseModelBitAcc):
    """Stock ``PyDenseModelBitAcc`` (same weight clipping and truncation, same shift); the
    accumulation as one exact float32/64 matrix product."""

    def run_spk(self):
        self.weight_exp = self.proc_params.get("weight_exp", 0)
        if not self.weights_set:  # the stock model's own weight preparation
            from lava.utils.weightutils import (clip_weights, determine_sign_mode,
                                                truncate_weights)
            num_weight_bits = self.proc_params.get("num_weight_bits", 8)
            sign_mode = self.proc_params.get("sign_mode") or determine_sign_mode(self.weights)
            self.weights = clip_weights(self.weights, sign_mode, num_bits=8)
            self.weights = truncate_weights(self.weights, sign_mode, num_weight_bits)
            self.weights_set = True
            _one_blas_thread()
            self._dense_plan = DensePlan(self.weights)
        self.a_out.send(self.a_buff)
        graded = self.num_message_bits.item() > 0
        s_in = self.s_in.recv()
        a_accum = dense_exact(self._dense_plan, s_in, graded)
        self.a_buff = (np.left_shift(a_accum, self.weight_exp) if self.weight_exp > 0
                       else np.right_shift(a_accum, -self.weight_exp))
