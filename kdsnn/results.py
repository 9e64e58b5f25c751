"""What each step of the workflow returns: small frozen records of its results and of the
files it wrote (paths inside the run directory)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

__all__ = ["StageResult", "EvalResult", "ExportResult", "ParityResult", "ShardResult",
           "ReportResult", "ImportResult", "AblationResult"]


@dataclass(frozen=True)
class StageResult:
    """A trained teacher or student: its test accuracy after the last epoch and its best."""
    stage: str
    test_accuracy: float
    best_test_accuracy: float
    model_path: Path
    metrics: dict = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class EvalResult:
    """One model's top-1 accuracy on the test split (``samples`` images)."""
    stage: str
    accuracy: float
    samples: int


@dataclass(frozen=True)
class ExportResult:
    """What ``quantize``/``export`` wrote: the manifest, every target's files, and the
    quantized accuracy (float vs integer emulation) when the fixed-point network was made."""
    targets: tuple
    files: tuple
    manifest_path: Path
    manifest: dict = field(repr=False)
    quantized_accuracy: Optional[dict] = None
    lines: tuple = field(default=(), repr=False)  # one line per target, for the user


@dataclass(frozen=True)
class ParityResult:
    """float vs integer emulation vs Lava on the same samples: accuracies, the bit-exactness
    verdict (Lava == emulation at every spike of every step), the full parity record."""
    bit_exact: bool
    samples: int
    accuracy: dict
    files: tuple
    result: dict = field(repr=False)
    timing: dict = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class ShardResult:
    """One parity shard ``shard``/``shards``: samples ``lo``..``hi - 1`` of ``samples``."""
    shard: int
    shards: int
    lo: int
    hi: int
    samples: int
    seconds: float
    path: Path


@dataclass(frozen=True)
class ReportResult:
    """The energy/sparsity report: its files and the report dict (``report.json``)."""
    files: tuple
    report: dict = field(repr=False)
    notes: tuple = ()


@dataclass(frozen=True)
class ImportResult:
    """A network from a NIR file that became a run's student."""
    run: Path
    layers: int
    input_shape: tuple
    time_steps: int
    test_accuracy: float
    test_samples: int
    teacher: Optional[Path]
    notes: tuple = ()
    loihi_problems: tuple = ()


@dataclass(frozen=True)
class AblationResult:
    """An ablation's result files and its runs' states (``ablation.json``'s ``runs``)."""
    out: Path
    files: tuple
    finished: int
    total: int
    seconds: float
