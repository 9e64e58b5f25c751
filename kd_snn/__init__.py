"""kdsnn: knowledge distillation of spiking students, Loihi export, parity and energy.

OpenMP threads that spin while waiting make every small op crawl when another
process shares the cores (tests, Lava workers, parallel jobs: 30x slower steps
were measured on 2 cores).  Passive waiting costs nothing when the machine is
idle, so it is the default unless the user set a policy.  This must happen
before torch is imported.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
