"""The run directory: the unit users pass around.

    RUN/config.yaml              resolved configuration of the experiment
    RUN/metrics.json             final figures of every stage (merged)
    RUN/<stage>/model.safetensors  trained weights (+ .json readable metadata)
    RUN/student/model.nir        a student imported from NIR (``kdsnn import``), instead
    RUN/<stage>/state.safetensors  resume state (weights, optimizer, position)
    RUN/<stage>/metrics.csv      one row per epoch
    RUN/<stage>/train.log        log of the stage
    RUN/export/ RUN/parity/ RUN/report/   written by the later commands
    RUN/.kdsnn.lock              held by the one command that writes the run (its PID inside)

``stage`` is ``teacher`` or ``student``.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Optional

from . import config as C
from .errors import KdsnnError
from . import io as kio
from .io import missing_dirs, read_json_object, remove_stale_temps, write_json, write_text

STAGES = ("teacher", "student")
LOCK_NAME = ".kdsnn.lock"


class RunDir:
    def __init__(self, path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # the directory itself ------------------------------------------------------------
    def check_usable(self) -> None:
        """Refuse a run path that is a file or lies below a file (before anything is written)."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise KdsnnError(f"run directory '{p}' is a file")
        _, existing = missing_dirs(p)
        if not existing.is_dir():
            raise KdsnnError(f"run directory '{p}' lies below '{existing}', which is a file")

    def check_writable(self) -> None:
        """Refuse a run directory that cannot be written (read-only file system, permissions)."""
        self.check_usable()
        _, d = missing_dirs(self.path)
        if not os.access(d, os.W_OK | os.X_OK):
            raise KdsnnError(f"run directory '{self.path}' is not writable ('{d}' is read-only)")

    @contextlib.contextmanager
    def lock(self, name: str = LOCK_NAME, clean: bool = True) -> Iterator[None]:
        """Hold the run's exclusive writer lock; a second writer is refused naming the holder.

        ``name``: another lock file for work that writes only its own files beside other
        writers (a parity shard: ``RUN/.kdsnn-parity-K-of-N.lock``); such a holder leaves
        other writers' temp files alone (``clean=False``).

        The lock is an OS file lock (``filelock``), so a crashed holder releases it.  The
        lock file exists only while a command holds it (removed before the release), and
        a command that fails also removes the directories it made: a refused command
        leaves the directory as it was.
        """
        from filelock import FileLock, Timeout

        self.check_writable()
        made_dirs, _ = missing_dirs(self.path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise KdsnnError(f"cannot create run directory '{self.path}': {exc.strerror}") from None
        path = self.path / name
        left_by_crash = _read_bytes(path)  # a killed holder's file: kept as is if we fail
        lock = FileLock(str(path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            holder = _read_pid(path)
            raise KdsnnError(f"run directory '{self.path}' is in use by another kdsnn process"
                             + (f" (PID {holder})" if holder else "")) from None
        except OSError as exc:
            _remove_made(made_dirs)
            raise KdsnnError(f"cannot lock run directory '{self.path}': {exc.strerror}") from None
        ok = False
        try:
            _write_pid(path)
            if clean:
                remove_stale_temps(self.path)  # a killed writer's leftovers: nobody else writes
            yield
            ok = True
        finally:
            with contextlib.suppress(OSError):
                if ok or left_by_crash is None:
                    path.unlink()  # while still held: a waiting peer re-checks the inode
                else:
                    _write_pid(path, left_by_crash)
            lock.release()
            if not ok:
                _remove_made(made_dirs)

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

    @property
    def imported_student_path(self) -> Path:
        """A student trained elsewhere and imported from NIR (``kdsnn import``)."""
        return self.stage_dir("student") / "model.nir"

    def student_source(self) -> Path:
        """The file the student is read from (checkpoint or imported NIR)."""
        if self.imported_student_path.is_file():
            return self.imported_student_path
        return self.model_path("student")

    def subdir(self, name: str) -> Path:
        return self.path / name

    # configuration -------------------------------------------------------------------
    def resolve_config(self, config: Optional[str], overrides: list[str]) -> C.Config:
        """Config for a command: ``--config`` for a new run, else the run's own."""
        self.check_usable()
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
        self.check_usable()
        if not self.config_path.is_file():
            raise KdsnnError(f"'{self.path}' is not a kdsnn run directory (no config.yaml)")
        return C.from_dict(C.load_yaml(str(self.config_path)))

    # metrics -------------------------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    def read_metrics(self) -> dict:
        if not kio.exists(self.metrics_path):
            return {}
        metrics = read_json_object(self.metrics_path, "metrics object")
        for key, value in metrics.items():
            if not isinstance(value, dict):
                raise KdsnnError(f"'{self.metrics_path}' is corrupt ('{key}' is not an object)")
        return metrics

    def update_metrics(self, section: str, values: dict) -> dict:
        metrics = self.read_metrics()
        metrics.setdefault(section, {}).update(values)
        write_json(self.metrics_path, metrics)
        return metrics


def _write_pid(path: Path, content: Optional[bytes] = None) -> None:
    """Put the holder's PID (or ``content``) in the lock file without replacing its inode."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, content if content is not None else f"{os.getpid()}\n".encode())
        finally:
            os.close(fd)


def _read_bytes(path: Path) -> Optional[bytes]:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _read_pid(path: Path) -> Optional[int]:
    text = (_read_bytes(path) or b"").strip()
    return int(text) if text.isdigit() else None


def _remove_made(dirs: list) -> None:
    for d in dirs:  # innermost first
        with contextlib.suppress(OSError):
            d.rmdir()
