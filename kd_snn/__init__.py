"""kd_snn: the training side of kdsnn — data sets and encodings (``kd_snn.data``), the model
registry (``kd_snn.models``), Loihi CUBA neurons (``kd_snn.neurons``), the distillation losses
(``kd_snn.losses``: SAMD, NLD and the baselines), the run directory (``kd_snn.rundir``,
``kd_snn.run``), training (``kd_snn.trainer``) and the ablations (``kd_snn.ablate``). Each
subpackage declares its public names in ``__all__``.

OpenMP threads that spin while waiting make every small op crawl when another
process shares the cores (tests, Lava workers, parallel jobs: 30x slower steps
were measured on 2 cores).  Passive waiting costs nothing when the machine is
idle, so it is the default unless the user set a policy.  This must happen
before torch is imported.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

__all__ = ["__version__"]
