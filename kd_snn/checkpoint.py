"""Checkpoints: tensors in safetensors, everything else in a JSON sidecar.

Nothing is ever unpickled.  A checkpoint is one ``NAME.safetensors`` file whose
header carries the metadata (config, metrics, versions, seed, optimizer groups)
and a digest of the tensors, so a truncated or altered file is refused by name
instead of being half-loaded.  ``NAME.json`` beside it is a readable copy.
"""
from __future__ import annotations

import hashlib
import json
import platform
import struct
from pathlib import Path
from typing import Optional

import torch
import safetensors.torch
from safetensors import SafetensorError

from .errors import KdsnnError
from .io import transaction, write_bytes, write_json

FORMAT = "kdsnn.checkpoint/1"


def versions() -> dict:
    import numpy
    out = {"python": platform.python_version(), "torch": torch.__version__,
           "numpy": numpy.__version__}
    try:
        from importlib.metadata import version
        out["kdsnn"] = version("kdsnn")
    except Exception:  # not installed (running from a source tree)
        out["kdsnn"] = "source"
    return out


def _optimizer_to_flat(state: dict) -> tuple[dict, dict]:
    tensors, scalars = {}, {}
    for idx, pstate in state["state"].items():
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_from_flat(tensors: dict, meta: dict) -> dict:
    state: dict = {}
    for name, value in tensors.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    for name, value in meta.get("scalars", {}).items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _digest(tensors: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(name.encode())
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checkpoint(path: Path, model: torch.nn.Module, meta: dict,
                    optimizer: Optional[torch.optim.Optimizer] = None,
                    extra_tensors: Optional[dict] = None) -> None:
    """Write ``path`` (.safetensors with the metadata in its header) atomically.

    The JSON sidecar is a human-readable copy; the header is the source of truth,
    so one atomic rename publishes tensors and metadata together.
    """
    path = Path(path)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = dict(meta, format=FORMAT, versions=versions())
    if optimizer is not None:
        opt_tensors, opt_meta = _optimizer_to_flat(optimizer.state_dict())
        tensors.update(opt_tensors)
        meta["optimizer"] = opt_meta
    for k, v in (extra_tensors or {}).items():
        tensors[f"extra.{k}"] = v.detach().cpu().contiguous()
    meta["tensor_sha256"] = _digest(tensors)
    header = {"kdsnn": json.dumps(meta, sort_keys=True, default=str)}
    data = safetensors.torch.save(tensors, metadata=header)  # in memory: writes fail as OSError
    with transaction():  # weights and readable sidecar appear together
        write_bytes(path, data)
        write_json(path.with_suffix(".json"), meta)


def _parse_header(data: bytes, path: Path) -> dict:
    """The kdsnn metadata in a safetensors header (8-byte length, then JSON)."""
    try:
        n = struct.unpack("<Q", data[:8])[0]
        if n > len(data) - 8:
            raise ValueError("header longer than the file")
        header = json.loads(data[8:8 + n].decode("utf-8"))
        meta = json.loads(header["__metadata__"]["kdsnn"])
    except (struct.error, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise KdsnnError(f"checkpoint '{path}' is corrupt or not a kdsnn checkpoint "
                         f"({type(exc).__name__})") from None
    if not isinstance(meta, dict):
        raise KdsnnError(f"checkpoint '{path}' is corrupt (its metadata is a JSON "
                         f"{type(meta).__name__}, not an object)")
    if meta.get("format") != FORMAT:
        raise KdsnnError(f"'{path}' is not a kdsnn checkpoint (format {meta.get('format')!r})")
    return meta


def _read(path: Path, limit: Optional[int] = None) -> bytes:
    if not path.is_file():
        raise KdsnnError(f"checkpoint '{path}' not found")
    try:
        with open(path, "rb") as f:
            return f.read() if limit is None else f.read(limit)
    except OSError as exc:
        raise KdsnnError(f"cannot read checkpoint '{path}': {exc.strerror}") from None


def read_meta(path: Path) -> dict:
    """Metadata from the checkpoint header (no tensor is read)."""
    path = Path(path)
    head = _read(path, 8)
    n = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
    return _parse_header(_read(path, 8 + min(n, 1 << 28)), path)


def load_checkpoint(path: Path, verify: bool = True) -> tuple[dict, dict]:
    """Return ``(tensors, meta)``; refuses missing, corrupt or mismatched files.

    The file is read once: tensors, metadata and ``meta["file_sha256"]`` (the hash of
    exactly those bytes, for manifests and resume checks) all come from the same read.
    """
    path = Path(path)
    data = _read(path)
    meta = _parse_header(data, path)
    try:
        tensors = safetensors.torch.load(data)
    except (SafetensorError, OSError, ValueError) as exc:
        raise KdsnnError(f"checkpoint '{path}' is corrupt ({str(exc).splitlines()[0]})") from None
    if verify and _digest(tensors) != meta.get("tensor_sha256"):
        raise KdsnnError(f"checkpoint '{path}' is corrupt (checksum mismatch)")
    meta["file_sha256"] = hashlib.sha256(data).hexdigest()
    return tensors, meta


def model_state(tensors: dict) -> dict:
    return {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}


def load_model_state(model: torch.nn.Module, tensors: dict, where: str) -> None:
    """Load weights strictly; a checkpoint that does not fit the model is refused."""
    load_module_state(model, model_state(tensors), where)


def load_module_state(module: torch.nn.Module, state: dict, where: str,
                      what: str = "the model") -> None:
    """Load ``state`` strictly into ``module``; a missing, extra or reshaped tensor is
    refused by name."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        detail = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise KdsnnError(f"checkpoint '{where}' does not fit {what} ({detail})")
    for k, v in state.items():
        if own[k].shape != v.shape:
            raise KdsnnError(f"checkpoint '{where}' does not fit {what} "
                             f"({k}: {tuple(v.shape)} vs {tuple(own[k].shape)})")
    module.load_state_dict(state)


def load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    opt = {k: v for k, v in tensors.items() if k.startswith("optim.")}
    try:
        optimizer.load_state_dict(_optimizer_from_flat(opt, meta["optimizer"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise KdsnnError(f"checkpoint optimizer state does not fit ({type(exc).__name__})") from None


def extra(tensors: dict) -> dict:
    return {k[len("extra."):]: v for k, v in tensors.items() if k.startswith("extra.")}
