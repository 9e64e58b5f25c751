"""Training of ANN teachers and distillation of spiking students.

Determinism: every random draw of a step (augmentation, batch augmentation, Poisson
encoding, NLD noise) comes from seeds derived from ``(seed, stage, epoch, step)``, and the
data order of an epoch from ``(seed, epoch)``.  A resumed run therefore replays
exactly what an uninterrupted run would have done and ends bit-identical.
"""
from __future__ import annotations

import csv
import gc
import hashlib
import io
import logging
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import torch
from torch import nn
from . import checkpoint as ckpt
from . import distributed as D
from .config import Config, TrainConfig, loss_options
from .data import build_dataset, dataset_spec, make_loader
from .data.encoding import encode
from .errors import KdsnnError
from .io import write_text
from .losses import DistillLoss, cross_entropy
from .models import create_model
from .progress import progress as make_progress
from .rundir import RunDir

log = logging.getLogger("kdsnn")
CSV_FIELDS = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc"]


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
    return encode(x, cfg.data.time_steps, cfg.data.encoding, generator=gen)


def teacher_input(x: torch.Tensor, kind: str) -> torch.Tensor:
    """ANN teachers see the static image, or the time-average of binary event frames."""
    return (x > 0).to(x.dtype).mean(1) if kind == "event" else x


def batch_augment(cfg: Config):
    """The run's kornia batch augmentation (None when the config asks for none)."""
    if cfg.data.autoaugment == "none" and cfg.data.erasing == 0:
        return None
    if data_spec(cfg).kind == "event":
        raise KdsnnError("config keys 'data.autoaugment' / 'data.erasing' need static images; "
                         f"data set '{cfg.data.name}' is event data")
    from .data.augment import BatchAugment
    from .models.layers import NORMALIZATIONS
    fill = NORMALIZATIONS[cfg.data.normalize][0] if cfg.data.normalize != "none" else None
    return BatchAugment(cfg.data.autoaugment, cfg.data.erasing, cfg.data.erasing_scale, fill)


def lr_at(tc: TrainConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    """Warm-up then cosine (or constant); ``lr_interval: epoch`` holds it for a whole epoch."""
    progress = epoch if tc.lr_interval == "epoch" else epoch + step / max(1, steps_per_epoch)
    if tc.warmup_epochs and progress < tc.warmup_epochs:
        return tc.lr * (progress + 1e-3) / tc.warmup_epochs
    if tc.scheduler == "constant":
        return tc.lr
    span = max(1e-8, tc.epochs - tc.warmup_epochs)
    return 0.5 * tc.lr * (1 + math.cos(math.pi * (progress - tc.warmup_epochs) / span))


def make_optimizer(model: nn.Module, tc: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if tc.optimizer == "sgd":
        return torch.optim.SGD(params, lr=tc.lr, momentum=tc.momentum,
                               weight_decay=tc.weight_decay,
                               nesterov=tc.nesterov and tc.momentum > 0)
    return torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)


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


# training --------------------------------------------------------------------------
class Stage:
    """One training stage of a run directory (``teacher`` or ``student``)."""

    def __init__(self, run: RunDir, cfg: Config, stage: str, teacher_path=None,
                 device: Optional[str] = None, progress: bool = True,
                 fail_at_step: Optional[int] = None):
        self.run, self.cfg, self.stage = run, cfg, stage
        self.tc: TrainConfig = getattr(cfg, stage)
        self.dist = D.setup(device or cfg.device)
        self.device = pick_device(device or cfg.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        self.progress = progress and self.dist.is_main
        self.fail_at_step = fail_at_step
        self.dir = run.stage_dir(stage)
        self.spec = data_spec(cfg)
        self.teacher_path = teacher_path
        self._prepared = False

    # set-up -------------------------------------------------------------------------
    def _prepare(self):
        cfg = self.cfg
        self.train_set = open_dataset(cfg, "train")
        self.test_set = open_dataset(cfg, "test")
        self.augment = batch_augment(cfg)
        torch.manual_seed(derive_seed(cfg.seed, self.stage, "init"))
        self.mspec = model_spec(cfg, self.stage)
        self.model = build_model(self.mspec).to(self.device)
        self.teacher = self.criterion = None
        self.teacher_sha256 = None
        if self.stage == "student":
            self.teacher, self.teacher_meta = self._load_teacher()
            self.teacher_sha256 = self.teacher_meta["file_sha256"]
            losses = loss_options(cfg, self._student_channels(),
                                  int(self.teacher.classifier_weight.shape[1]))
            self.criterion = DistillLoss(losses).to(self.device)
            # the criterion may own trainable parts (feature-KD adapter)
            extra = [p for p in self.criterion.parameters() if p.requires_grad]
        else:
            extra = []
        self.forward = self.model if self.stage == "teacher" else self.model.forward_features
        if self.dist.enabled:
            D.convert_batchnorm(self.model, self.device.type == "cuda")
            wrapped = self.model if self.stage == "teacher" else D.FeatureForward(self.model)
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward = nn.parallel.DistributedDataParallel(wrapped, device_ids=ids)
        self.optimizer = make_optimizer(self.model, self.tc)
        if extra:
            self.optimizer.add_param_group({"params": extra})
        self.amp = bool(cfg.amp and self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

    def _student_channels(self) -> int:
        return int(self.model.classifier_weight.shape[1])

    def _load_teacher(self):
        path = self.teacher_path or self.run.model_path("teacher")
        if not Path(path).exists():
            raise KdsnnError(f"no teacher at '{path}': run 'kdsnn teacher {self.run.path}' "
                             "first or pass --teacher RUN_OR_CHECKPOINT")
        teacher, meta = load_trained(path, expect_spiking=False)
        tm = meta["model"]
        if tm["num_classes"] != self.mspec["num_classes"] or \
                tm["in_channels"] != self.mspec["in_channels"]:
            raise KdsnnError(f"teacher '{path}' was trained for {tm['num_classes']} classes / "
                             f"{tm['in_channels']} channels, data set '{self.cfg.data.name}' has "
                             f"{self.mspec['num_classes']} / {self.mspec['in_channels']}")
        teacher.to(self.device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        self._check_maps(teacher)
        if self.cfg.loss.teacher_mode == "train":
            teacher.train()  # BatchNorm normalises with batch statistics, as in the reference
            for m in teacher.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.momentum = 0.0  # ... and never moves its running statistics
        return teacher, meta

    @torch.no_grad()
    def _check_maps(self, teacher):
        """SAMD compares spatial maps: teacher and student must agree in size."""
        x, _ = self.train_set[0]
        x = x.unsqueeze(0).to(self.device)
        _, fmap = teacher.forward_features(teacher_input(x, self.spec.kind))
        was = self.model.training
        self.model.eval()
        _, spikes = self.model.forward_features(
            student_input(x, self.cfg, self.spec.kind, None).to(self.device))
        self.model.train(was)
        if tuple(fmap.shape[-2:]) != tuple(spikes.shape[-2:]):
            raise KdsnnError(f"teacher feature map {tuple(fmap.shape[-2:])} and student spike "
                             f"map {tuple(spikes.shape[-2:])} differ in size; SAMD needs them equal")

    # state ---------------------------------------------------------------------------
    def _save_state(self, epoch: int, step: int, rows: list, acc: dict):
        """Everything a resume needs: model, optimizer, loss-owned parameters, AMP scaler."""
        if not self.dist.is_main:
            return
        meta = {"stage": self.stage, "epoch": epoch, "step": step, "rows": rows, "acc": acc,
                "seed": self.cfg.seed, "config": self.cfg.to_dict(), "model": self.mspec,
                "teacher_sha256": self.teacher_sha256, "scaler": self.scaler.state_dict()}
        extra = {}
        if self.criterion is not None:
            extra.update({f"criterion.{k}": v for k, v in self.criterion.state_dict().items()})
        ckpt.save_checkpoint(self.run.state_path(self.stage), self.model, meta,
                             optimizer=self.optimizer, extra_tensors=extra)

    def _read_state(self):
        """Load and check the resume state before anything is written."""
        path = self.run.state_path(self.stage)
        if not path.is_file():
            raise KdsnnError(f"nothing to resume: '{path}' does not exist")
        tensors, meta = ckpt.load_checkpoint(path)
        if meta.get("config") != self.cfg.to_dict():
            raise KdsnnError(f"cannot resume '{path}': the config changed since it was written "
                             "(resume without --set/--config, or start a new run)")
        if self.stage == "student" and meta.get("teacher_sha256") != self.teacher_sha256:
            raise KdsnnError(f"cannot resume '{path}': it was distilled from another teacher "
                             f"than '{self.teacher_path or self.run.model_path('teacher')}' "
                             "(pass the same --teacher as before)")
        for key in ("epoch", "step", "rows", "acc"):
            if key not in meta:
                raise KdsnnError(f"cannot resume '{path}': the state misses '{key}'")
        return tensors, meta

    def _restore_state(self, tensors: dict, meta: dict):
        path = str(self.run.state_path(self.stage))
        ckpt.load_model_state(self.model, tensors, path)
        ckpt.load_optimizer_state(self.optimizer, tensors, meta)
        if self.criterion is not None:
            saved = {k[len("criterion."):]: v for k, v in ckpt.extra(tensors).items()
                     if k.startswith("criterion.")}
            ckpt.load_module_state(self.criterion, saved, path, "the loss of this config")
        restore_scaler(self.scaler, meta.get("scaler"))
        return meta["epoch"], meta["step"], meta["rows"], meta["acc"]

    def _write_rows(self, rows: list):
        if not rows or not self.dist.is_main:
            return
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text(self.dir / "metrics.csv", buf.getvalue())

    # loop ----------------------------------------------------------------------------
    def _step_loss(self, x, y, gen, nld_gen):
        kind = self.spec.kind
        if self.stage == "teacher":
            logits = self.forward(teacher_input(x, kind))
            loss = cross_entropy(logits, y, label_smoothing=self.tc.label_smoothing)
            return loss, logits, {"ce": float(loss.detach())}
        with torch.no_grad():
            t_logits, t_fmap = self.teacher.forward_features(teacher_input(x, kind))
        s_logits, s_spikes = self.forward(student_input(x, self.cfg, kind, gen).to(self.device))
        loss, parts = self.criterion(s_logits, s_spikes, t_logits, t_fmap,
                                     self.teacher.classifier_weight, y,
                                     student_classifier_weight=self.model.classifier_weight,
                                     generator=nld_gen)
        return loss, s_logits, {k: float(v) for k, v in parts.items()}

    def prepare(self, resume: bool = False) -> None:
        """Build and check everything the stage needs; writes nothing.

        Data, models, teacher, loss, batch size against the training set, and for
        ``resume`` the saved state (its config and teacher) are all checked here, so a
        refused command leaves the run directory as it was.
        """
        if self._prepared:
            return
        self._prepare()
        cfg = self.cfg
        self.batch = D.local_batch(self.dist, cfg.data.batch_size)
        self.shard = dict(rank=self.dist.rank, world_size=self.dist.world_size)
        self.steps = len(make_loader(self.train_set, self.batch, shuffle=True, seed=cfg.seed,
                                     epoch=0, drop_last=True, **self.shard))
        if self.steps == 0:
            raise KdsnnError(f"batch size {cfg.data.batch_size} exceeds the training set "
                             f"({len(self.train_set)} samples)")
        self.resume_state = self._read_state() if resume else None
        self._prepared = True

    def fit(self, resume: bool = False) -> dict:
        self.prepare(resume)  # everything that can refuse the input runs before any write
        if self.dist.is_main:
            self.run.save_config(self.cfg)
            self.dir.mkdir(parents=True, exist_ok=True)
        D.barrier(self.dist)
        handler = logging.FileHandler(self.dir / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(handler)
        finished = False
        try:
            result = self._fit()
            finished = True
            return result
        finally:
            log.removeHandler(handler)
            handler.close()
            if self.dist.enabled:
                # DDP's reducer holds the process group and its gloo threads: release it on
                # every rank before the group goes (a rank that exits with a live reducer can
                # abort in C++ at interpreter shutdown: "terminate called without an active
                # exception", seen once in CI)
                self.forward = None
                gc.collect()
            D.teardown(self.dist, sync=finished)

    def _fit(self) -> dict:
        cfg, tc = self.cfg, self.tc
        start_epoch, start_step, rows, acc = 0, 0, [], {}
        if self.resume_state is not None:
            start_epoch, start_step, rows, acc = self._restore_state(*self.resume_state)
            self.resume_state = None
            log.info("resumed %s at epoch %d step %d", self.stage, start_epoch, start_step)
        batch, shard, steps = self.batch, self.shard, self.steps
        total = tc.epochs * steps
        bar = make_progress(total=total, initial=start_epoch * steps + start_step, unit="step",
                            desc=f"{self.stage}", enabled=self.progress, every=10)
        t0 = time.time()
        self.model.train()
        for epoch in range(start_epoch, tc.epochs):
            first = start_step if epoch == start_epoch else 0
            if first == 0:
                acc = {"loss": 0.0, "correct": 0, "seen": 0}
            loader = make_loader(self.train_set, batch, shuffle=True, seed=cfg.seed,
                                 epoch=epoch, drop_last=True, skip_batches=first, **shard)
            it = iter(loader)
            for step in range(first, steps):
                torch.manual_seed(derive_seed(cfg.seed, self.stage, epoch, step, "data"))
                x, y = next(it)
                x, y = x.to(self.device), y.to(self.device)
                rank_key = (self.dist.rank,) if self.dist.enabled else ()
                if self.augment is not None:
                    x = self.augment(x, derive_seed(cfg.seed, self.stage, epoch, step,
                                                    "augment", *rank_key))
                gen = torch.Generator().manual_seed(derive_seed(cfg.seed, self.stage, epoch,
                                                                step, "enc", *rank_key))
                nld_gen = torch.Generator().manual_seed(derive_seed(cfg.seed, self.stage,
                                                                    epoch, step, "nld", *rank_key))
                lr = lr_at(tc, epoch, step, steps)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                with torch.autocast(self.device.type, enabled=self.amp):
                    loss, logits, parts = self._step_loss(x, y, gen, nld_gen)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                if not torch.isfinite(loss):
                    raise KdsnnError(f"{self.stage} training diverged (loss {float(loss)}) at "
                                     f"epoch {epoch} step {step}; lower the learning rate")
                acc["loss"] += float(loss.detach()) * y.numel()
                acc["correct"] += int((logits.argmax(1) == y).sum())
                acc["seen"] += int(y.numel())
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}", lr=f"{lr:.2g}")
                done = step + 1
                if self.fail_at_step is not None and epoch * steps + done == self.fail_at_step:
                    self._save_state(epoch, done, rows, acc)
                    bar.close()
                    os._exit(3)  # simulate a crash right after a checkpoint (tests)
                if tc.checkpoint_every and done % tc.checkpoint_every == 0 and done < steps:
                    self._save_state(epoch, done, rows, acc)
            test = evaluate(self.model, self.test_set, cfg, self.stage, self.device)
            loss_sum, correct, seen = D.all_sum(self.dist, [acc["loss"], acc["correct"],
                                                            acc["seen"]])
            row = {"epoch": epoch + 1, "lr": round(lr, 8),
                   "train_loss": round(loss_sum / max(1, seen), 6),
                   "train_acc": round(correct / max(1, seen), 6),
                   "test_loss": round(test["loss"], 6), "test_acc": round(test["accuracy"], 6)}
            rows.append(row)
            self._write_rows(rows)
            log.info("%s epoch %d: %s", self.stage, epoch + 1, row)
            bar.write(f"{self.stage} epoch {epoch + 1}/{tc.epochs}: train_acc "
                      f"{row['train_acc']:.4f} test_acc {row['test_acc']:.4f}")
            self._save_state(epoch + 1, 0, rows, acc)
        bar.close()
        final = {"test_accuracy": rows[-1]["test_acc"] if rows else None,
                 "best_test_accuracy": max((r["test_acc"] for r in rows), default=None),
                 "epochs": tc.epochs, "train_seconds": round(time.time() - t0, 2),
                 "model": tc.model, "seed": cfg.seed, "time_steps": cfg.data.time_steps,
                 "data": cfg.data.name}
        if self.stage == "student":
            final["loss"] = cfg.loss.preset
        if self.dist.enabled:
            final["world_size"] = self.dist.world_size
        meta = {"stage": self.stage, "config": cfg.to_dict(), "model": self.mspec,
                "metrics": final, "seed": cfg.seed, "data": cfg.data.name}
        if self.dist.is_main:
            ckpt.save_checkpoint(self.run.model_path(self.stage), self._plain_model(), meta)
            self.run.update_metrics(self.stage, final)
        D.barrier(self.dist)
        return final

    def _plain_model(self) -> nn.Module:
        """The model as a single process would save it (GlobalBatchNorm is BatchNorm2d)."""
        return self.model


def restore_scaler(scaler, state) -> None:
    """Restore the AMP GradScaler (scale and growth tracker) saved by ``_save_state``."""
    if scaler.is_enabled() and state:
        scaler.load_state_dict(state)
