"""kdsnn: from a trained ANN to an energy-measured spiking network on Loihi-class hardware
simulation. The workflow as a library; the ``kdsnn`` command line parses and calls it::

    import kdsnn
    kdsnn.train_teacher("runs/demo", config="digits")
    kdsnn.distill("runs/demo")                      # SAMD + NLD (arXiv 2511.06902)
    kdsnn.export("runs/demo", targets=["all"])      # Loihi fixed point, NIR, ONNX, Lava
    r = kdsnn.parity("runs/demo", samples=60)       # float vs emulation vs Lava fixed_pt
    print(r.bit_exact, r.accuracy)
    kdsnn.report("runs/demo", source="both", html=True)

A run directory is the unit every step takes and writes. Data flows one way:
``kd_snn`` (data, models, losses, training) -> ``export`` -> ``hardware`` -> this package.
Every step refuses bad input with :class:`KdsnnError` (one line) before it writes anything,
and publishes its files atomically under the run's writer lock.
"""
import kd_snn  # noqa: F401  (sets the OpenMP wait policy before torch is imported)
from kd_snn import __version__
from kd_snn.errors import KdsnnError

from .ablation import ablate
from .deploy import export, quantize
from .importing import import_nir
from .reporting import report
from .results import (AblationResult, EvalResult, ExportResult, ImportResult, ParityResult,
                      ReportResult, ShardResult, StageResult)
from .training import distill, evaluate, train_teacher
from .verify import merge_parity, parity, parity_shard

__all__ = ["__version__", "KdsnnError",
           "train_teacher", "distill", "evaluate", "quantize", "export", "parity",
           "parity_shard", "merge_parity", "report", "import_nir", "ablate",
           "StageResult", "EvalResult", "ExportResult", "ParityResult", "ShardResult",
           "ReportResult", "ImportResult", "AblationResult"]
