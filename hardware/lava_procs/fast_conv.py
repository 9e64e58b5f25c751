"""A faster fixed_pt ProcessModel for Lava's stock ``Conv`` process (same arithmetic).

Lava 0.10's ``PyConvModelFixed`` convolves with ``scipy.signal.convolve2d`` once per
(output channel, input channel) pair per step, which makes wide layers take seconds per
step, and stores ``groups`` in an int8 Var.  This model computes the same thing
(convolution with the (Co, W, H, Ci) kernel, i.e. correlation with the flipped kernel,
stride, padding, groups; result cast to int32 and wrapped to signed 24 bits, sent one step
later) with a strided window view and one integer matrix product per group.  It is
selected only on request (``Loihi2SimCfg(exception_proc_model_map={Conv: ...})``,
``hardware.lava_sim.LavaRunner(conv_model="fast")``); tests check it bit for bit against
the stock model.  Dilation other than 1 is refused.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.conv.process import Conv


def conv_whc(x: np.ndarray, weight: np.ndarray, stride, padding, groups: int) -> np.ndarray:
    """Lava convolution of ``x`` (W, H, Ci) with ``weight`` (Co, kw, kh, Ci/groups), int64."""
    co, kw, kh, cig = weight.shape
    px, py = int(padding[0]), int(padding[1])
    xp = np.pad(x.astype(np.int64), ((px, px), (py, py), (0, 0)))
    win = sliding_window_view(xp, (kw, kh), axis=(0, 1))  # (W', H', Ci, kw, kh)
    win = win[::int(stride[0]), ::int(stride[1])]
    wf = weight[:, ::-1, ::-1, :].astype(np.int64)  # convolution -> correlation
    per_out = co // groups
    outs = []
    for g in range(groups):
        xs = win[:, :, g * cig:(g + 1) * cig]  # (X, Y, cig, kw, kh)
        ws = wf[g * per_out:(g + 1) * per_out]  # (per_out, kw, kh, cig)
        outs.append(np.einsum("xycij,oijc->xyo", xs, ws, optimize=True))
    return np.concatenate(outs, axis=-1)


@implements(proc=Conv, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "fast")
class PyConvModelFixedFast(PyLoihiProcessModel):
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

    def run_spk(self) -> None:
        self.a_out.send(self.a_buf)
        s_in = self.s_in.recv()
        if self.num_message_bits.item() <= 0:
            s_in = s_in.astype(bool)
        if (np.asarray(self.dilation) != 1).any():
            raise ValueError("fast Conv model supports dilation 1 only")
        out = conv_whc(s_in, self.weight, self.stride, self.padding, int(self.groups[0]))
        out = out.astype(np.int32)  # as the stock model's astype(weight.dtype)
        base = 1 << 24
        self.a_buf = ((out.astype(np.int64) + base // 2) % base - base // 2).astype(np.int32)
