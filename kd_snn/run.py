"""The run layer: what a run directory's config names — device, data set and its splits,
the student's input encoding, the trained teacher and student — loaded and checked.

Every command after training (export, parity, report, eval) and the trainer itself get a
run's models and data from here; only training lives in ``kd_snn.trainer``.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from . import checkpoint as ckpt
from .config import Config, TrainConfig
from .data import build_dataset, dataset_spec, make_loader
from .data.encoding import encode
from .errors import KdsnnError
from .models import create_model
from .progress import progress as make_progress


def derive_seed(*parts) -> int:
    """A 63-bit seed from any tuple of values (stable across processes)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise KdsnnError(f"device '{name}' requested but CUDA is not available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise KdsnnError(f"unknown device '{name}'") from None


# data ------------------------------------------------------------------------------
def _data_options(cfg: Config, split: Optional[str] = None) -> dict:
    opts = dict(cfg.data.options)
    if split == "test" or split is None:
        opts.pop("limit", None)  # a training budget never shrinks the test set
    if dataset_spec(cfg.data.name).kind == "event":
        opts.setdefault("time_steps", cfg.data.time_steps)  # frames = student time steps
    return opts


def data_spec(cfg: Config):
    """The data set's spec under the run's options (shapes can depend on them)."""
    return dataset_spec(cfg.data.name, **_data_options(cfg))


def open_dataset(cfg: Config, split: str):
    """A split of the run's data set, with the run's seed and options."""
    augment = cfg.data.augment if split == "train" else False
    root = cfg.data.root
    if root is not None and not cfg.data.download and not Path(root).expanduser().is_dir():
        raise KdsnnError(f"config key 'data.root': directory '{root}' does not exist")
    return build_dataset(cfg.data.name, split, root=cfg.data.root, download=cfg.data.download,
                         augment=augment, seed=cfg.seed, **_data_options(cfg, split))


# models ----------------------------------------------------------------------------
def model_spec(cfg: Config, stage: str) -> dict:
    """Everything needed to rebuild a stage's model from its checkpoint alone."""
    spec = data_spec(cfg)
    tc: TrainConfig = getattr(cfg, stage)
    out = {"name": tc.model, "num_classes": spec.num_classes, "in_channels": spec.in_channels,
           "spiking": stage == "student", "width": tc.width, "kwargs": dict(tc.model_kwargs),
           "input_size": list(spec.image_size), "normalize": cfg.data.normalize}
    if stage == "student":
        out["head"] = tc.head
        out["last_block"] = tc.last_block
        out["neuron"] = asdict(cfg.neuron)
    return out


MODEL_KEYS = ("name", "num_classes", "in_channels", "spiking", "width")


def build_model(mspec: dict, where: str = "model description") -> nn.Module:
    """The model a description names; a description that does not fit is refused by name."""
    if not isinstance(mspec, dict):
        raise KdsnnError(f"{where}: the model description is not an object")
    missing = [k for k in MODEL_KEYS + (("neuron",) if mspec.get("spiking") else ())
               if k not in mspec]
    if missing:
        raise KdsnnError(f"{where}: the model description misses '{missing[0]}'")
    kwargs = mspec.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise KdsnnError(f"{where}: the model's 'kwargs' is not an object")
    kwargs = dict(kwargs, normalize=mspec.get("normalize", "none"))
    if mspec["spiking"]:
        head, last_block = mspec.get("head", "spiking"), mspec.get("last_block")
        if last_block is None:  # written before the two were split: 'reference' had both
            head, last_block = ("mlp", "relu") if head == "reference" else (head, "spiking")
        kwargs.update(neuron=mspec["neuron"], head=head, last_block=last_block)
    try:
        return create_model(mspec["name"], num_classes=mspec["num_classes"],
                            in_channels=mspec["in_channels"], spiking=mspec["spiking"],
                            width=mspec["width"], **kwargs)
    except (TypeError, ValueError, KeyError) as exc:
        raise KdsnnError(f"{where}: the model description does not build a model "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
                         ) from None


def resolve_checkpoint(path) -> Path:
    """A run directory, a stage directory or a .safetensors file -> the model file."""
    path = Path(path)
    if path.is_dir():
        for cand in (path / "model.safetensors", path / "teacher" / "model.safetensors"):
            if cand.is_file():
                return cand
        raise KdsnnError(f"no trained model in '{path}' (expected model.safetensors)")
    if not path.exists():
        raise KdsnnError(f"checkpoint '{path}' not found")
    return path


def load_trained(path, expect_spiking: Optional[bool] = None) -> tuple[nn.Module, dict]:
    """Rebuild a trained model from its checkpoint (weights-only, no pickle)."""
    file = resolve_checkpoint(path)
    tensors, meta = ckpt.load_checkpoint(file)
    mspec = meta.get("model")
    if not isinstance(mspec, dict):
        raise KdsnnError(f"checkpoint '{file}' has no model description")
    if expect_spiking is not None and mspec.get("spiking") != expect_spiking:
        kind = "spiking student" if expect_spiking else "ANN teacher"
        raise KdsnnError(f"checkpoint '{file}' is not an {kind}")
    model = build_model(mspec, f"checkpoint '{file}'")
    ckpt.load_model_state(model, tensors, str(file))
    model.eval()
    return model, meta


# inputs ----------------------------------------------------------------------------
def student_input(x: torch.Tensor, cfg: Config, kind: str, gen: Optional[torch.Generator]):
    if kind == "event":  # (B, T, 2, H, W) -> (T, B, 2, H, W), binary as a DVS delivers spikes
        return (encode(x, cfg.data.time_steps, "frames") > 0).to(x.dtype)
    if kind == "sequence":  # (B, T, ...) -> (T, B, ...): analog steps, fed as they are
        if x.shape[1] != cfg.data.time_steps:
            raise KdsnnError(f"the data's sequences have {x.shape[1]} steps; the run's "
                             f"config.yaml says data.time_steps = {cfg.data.time_steps}")
        return x.transpose(0, 1).contiguous()
    if x.dim() != 4 and cfg.data.encoding == "direct":  # a non-image static sample (N, F...)
        return x.unsqueeze(0).expand(cfg.data.time_steps, *x.shape)
    return encode(x, cfg.data.time_steps, cfg.data.encoding, generator=gen)


def teacher_input(x: torch.Tensor, kind: str) -> torch.Tensor:
    """ANN teachers see the static image, or the time-average of binary event frames."""
    return (x > 0).to(x.dtype).mean(1) if kind == "event" else x


def student_input_shape(cfg: Config) -> tuple:
    """What the student reads per step: (C, H, W), (2, H, W) event frames, or the shape a
    user's data set gives (``DataSpec.step_shape``)."""
    return data_spec(cfg).step_shape


def student_encoding(cfg: Config) -> str:
    """The input encoding a deployed student runs: ``frames`` for event data."""
    return "frames" if data_spec(cfg).kind == "event" else cfg.data.encoding


def hardware_kind(cfg: Config) -> str:
    """The data set's kind, refusing an input encoding the hardware cannot take."""
    kind = data_spec(cfg).kind
    if kind != "event" and cfg.data.encoding != "direct":
        raise KdsnnError(f"hardware export needs direct (analog) or event input; the run "
                         f"uses '{cfg.data.encoding}' encoding")
    return kind


def sample_inputs(cfg: Config, split: str, n: Optional[int]) -> tuple:
    """First ``n`` samples of a split as the student sees them: ``(T, N, ...)`` float64 +
    int64 labels (what export, parity and the report feed the deployed network)."""
    ds = open_dataset(cfg, split)
    n = len(ds) if n is None else min(int(n), len(ds))
    if n <= 0:
        raise KdsnnError(f"--samples must be > 0 (got {n})")
    return _student_view(ds, 0, n, cfg, hardware_kind(cfg))


def input_batches(cfg: Config, split: str, batch: int):
    """``(n, iterator of (x_seq, labels))``: :func:`sample_inputs` of the whole split, a
    batch at a time (memory of one batch, whatever the split's size and T)."""
    ds = open_dataset(cfg, split)
    kind = hardware_kind(cfg)
    return len(ds), (_student_view(ds, lo, min(lo + batch, len(ds)), cfg, kind)
                     for lo in range(0, len(ds), batch))


def split_size(cfg: Config, split: str = "test") -> int:
    return len(open_dataset(cfg, split))


def _student_view(ds, lo: int, hi: int, cfg: Config, kind: str) -> tuple:
    """Samples ``lo:hi`` of ``ds`` exactly as the student saw them in training."""
    import numpy as np

    xs, ys = zip(*(ds[i] for i in range(lo, hi)))
    x = torch.stack([torch.as_tensor(v) for v in xs])
    return (student_input(x, cfg, kind, None).to(torch.float64),
            np.asarray(ys, dtype=np.int64))


# evaluation ------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model: nn.Module, dataset, cfg: Config, stage: str, device: torch.device,
             progress: bool = False, limit: Optional[int] = None) -> dict:
    """Top-1 accuracy and mean loss of ``model`` on ``dataset``."""
    kind = data_spec(cfg).kind
    loader = make_loader(dataset, cfg.data.eval_batch_size, shuffle=False, seed=cfg.seed, epoch=0)
    gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "eval"))
    was_training = model.training
    model.eval()
    correct = total = 0
    loss_sum = 0.0
    bar = make_progress(desc=f"eval {stage}", unit="batch", enabled=progress, iterable=loader,
                        leave=False, every=25)
    for x, y in bar:
        x, y = x.to(device), y.to(device)
        if stage == "student":
            logits = model(student_input(x, cfg, kind, gen).to(device))
        else:
            logits = model(teacher_input(x, kind))
        loss_sum += float(nn.functional.cross_entropy(logits.float(), y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
        total += int(y.numel())
        if limit is not None and total >= limit:
            break
    model.train(was_training)
    return {"accuracy": correct / max(1, total), "loss": loss_sum / max(1, total), "samples": total}
