"""Bulk input/output for Lava networks through shared memory, one step at a time.

Lava 0.10 moves a ``Var`` between the host and a process one element per channel
message (``model.py``: "FIXME: send a whole vector"): reading a spike sink of a
28x28x16 layer over 32 steps is 400 k round trips, which made parity take ~100 s per
sample on a ResNet-20 while the network itself steps in milliseconds.  These two
processes carry the same data through a file in shared memory (``numpy.memmap``) that
the host writes before a run and reads after it.

They do no arithmetic: ``ShmSource`` sends exactly the int32 payload the host wrote
for the step, ``ShmSink`` stores exactly what arrived, as the stock
``lava.proc.io.source/sink.RingBuffer`` do (``tests/test_lava_shm_io.py`` checks both
against the stock pair).  Every neuron and synapse stays a stock Lava ``fixed_pt``
model.  The buffer is a ring of ``steps`` entries indexed by ``(time_step - 1) % steps``.
"""
import numpy as np

from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


def open_ring(path: str, shape: tuple, steps: int, mode: str) -> np.memmap:
    """The ring buffer file: ``(steps, *shape)`` int32."""
    return np.memmap(path, dtype=np.int32, mode=mode, shape=(int(steps),) + tuple(shape))


class ShmSource(AbstractProcess):
    """Sends, at step k, entry ``(k - 1) % steps`` of the ring in ``path``."""

    def __init__(self, *, shape: tuple, steps: int, path: str) -> None:
        super().__init__(shape=tuple(shape), steps=int(steps), path=str(path))
        self.s_out = OutPort(shape=tuple(shape))


class ShmSink(AbstractProcess):
    """Stores what arrives at step k into entry ``(k - 1) % steps`` of the ring in ``path``."""

    def __init__(self, *, shape: tuple, steps: int, path: str) -> None:
        super().__init__(shape=tuple(shape), steps=int(steps), path=str(path))
        self.a_in = InPort(shape=tuple(shape))


class _Ring(PyLoihiProcessModel):
    mode = "r"

    def _ring(self) -> np.memmap:
        ring = getattr(self, "_mm", None)
        if ring is None:  # opened in the worker process, after Lava forked it
            p = self.proc_params
            ring = self._mm = open_ring(p["path"], p["shape"], p["steps"], self.mode)
        return ring


@implements(proc=ShmSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyShmSourceModel(_Ring):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32)

    def run_spk(self) -> None:
        ring = self._ring()
        self.s_out.send(np.array(ring[(self.time_step - 1) % ring.shape[0]]))


@implements(proc=ShmSink, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyShmSinkModel(_Ring):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32)
    mode = "r+"

    def run_spk(self) -> None:
        ring = self._ring()
        ring[(self.time_step - 1) % ring.shape[0]] = self.a_in.recv()
