"""The run directory: the unit users pass around.

    RUN/config.yaml              resolved configuration of the experiment
    RUN/metrics.json             final figures of every stage (merged)
    RUN/<stage>/model.safetensors  trained weights (+ .json readable metadata)
    RUN/<stage>/state.safetensors  resume state (weights, optimizer, position)
    RUN/<stage>/metrics.csv      one row per epoch
    RUN/<stage>/train.log        log of the stage
    RUN/export/ RUN/parity/ RUN/report/   written by the later commands

``stage`` is ``teacher`` or ``student``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import yaml

from . import config as C
from .errors import KdsnnError
from .io import write_json, write_text

STAGES = ("teacher", "student")


class RunDir:
    def __init__(self, path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    def stage_dir(self, stage: str) -> Path:
        if stage not in STAGES:
            raise KdsnnError(f"unknown stage '{stage}' (choose from {', '.join(STAGES)})")
        return self.path / stage

    def model_path(self, stage: str) -> Path:
        return self.stage_dir(stage) / "model.safetensors"

    def state_path(self, stage: str) -> Path:
        return self.stage_dir(stage) / "state.safetensors"

    def has_model(self, stage: str) -> bool:
        return self.model_path(stage).is_file()

    def subdir(self, name: str) -> Path:
        return self.path / name

    # configuration -------------------------------------------------------------------
    def resolve_config(self, config: Optional[str], overrides: list[str]) -> C.Config:
        """Config for a command: ``--config`` for a new run, else the run's own."""
        if config is not None:
            raw = C.load_yaml(config)
        elif self.config_path.is_file():
            raw = C.load_yaml(str(self.config_path))
        else:
            raise KdsnnError(f"'{self.path}' has no config.yaml: pass --config NAME "
                             f"(shipped: {', '.join(C.builtin_configs())})")
        return C.from_dict(C.apply_overrides(raw, overrides))

    def save_config(self, cfg: C.Config) -> None:
        write_text(self.config_path, cfg.to_yaml())

    def load_config(self) -> C.Config:
        if not self.config_path.is_file():
            raise KdsnnError(f"'{self.path}' is not a kdsnn run directory (no config.yaml)")
        return C.from_dict(yaml.safe_load(self.config_path.read_text()))

    # metrics -------------------------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    def read_metrics(self) -> dict:
        if not self.metrics_path.is_file():
            return {}
        try:
            return json.loads(self.metrics_path.read_text())
        except json.JSONDecodeError:
            raise KdsnnError(f"'{self.metrics_path}' is corrupt (not JSON)") from None

    def update_metrics(self, section: str, values: dict) -> dict:
        metrics = self.read_metrics()
        metrics.setdefault(section, {}).update(values)
        write_json(self.metrics_path, metrics)
        return metrics
