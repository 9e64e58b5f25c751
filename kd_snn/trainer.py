"""Training of ANN teachers and distillation of spiking students.

Determinism: every random draw of a step (augmentation, batch augmentation, Poisson
encoding, NLD noise) comes from seeds derived from ``(seed, stage, epoch, step)``, and the
data order of an epoch from ``(seed, epoch)``.  A resumed run therefore replays
exactly what an uninterrupted run would have done and ends bit-identical.
"""
from __future__ import annotations

import csv
import gc
import io
import logging
import math
import os
import time
from pathlib import Path
from typing import Optional

import torch
from torch import nn
from . import checkpoint as ckpt
from . import distributed as D
from .config import Config, TrainConfig, loss_options
from .data import make_loader
from .errors import KdsnnError
from .io import write_text
from .losses import DistillLoss, cross_entropy
from .progress import progress as make_progress
from .rundir import RunDir
from .run import (build_model, data_spec, derive_seed, evaluate, load_trained,  # noqa: F401
                  model_spec, open_dataset, pick_device, student_input, teacher_input)

log = logging.getLogger("kdsnn")
CSV_FIELDS = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc"]


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


def evaluated_after(epoch: int, tc: TrainConfig) -> bool:
    """Whether the test split is evaluated after ``epoch`` (0-based): every ``eval_every``-th
    epoch and always the last, whose accuracy is the stage's result."""
    return (epoch + 1) % max(1, tc.eval_every) == 0 or epoch + 1 == tc.epochs


def make_optimizer(model: nn.Module, tc: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if tc.optimizer == "sgd":
        return torch.optim.SGD(params, lr=tc.lr, momentum=tc.momentum,
                               weight_decay=tc.weight_decay,
                               nesterov=tc.nesterov and tc.momentum > 0)
    return torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)


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
        loss, parts = self.criterion(s_logits, target=y, teacher_logits=t_logits,
                                     student_spikes=s_spikes, teacher_fmap=t_fmap,
                                     teacher_classifier_weight=self.teacher.classifier_weight,
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
            loss_sum, correct, seen = D.all_sum(self.dist, [acc["loss"], acc["correct"],
                                                            acc["seen"]])
            row = {"epoch": epoch + 1, "lr": round(lr, 8),
                   "train_loss": round(loss_sum / max(1, seen), 6),
                   "train_acc": round(correct / max(1, seen), 6),
                   "test_loss": None, "test_acc": None}
            if evaluated_after(epoch, tc):
                test = evaluate(self.model, self.test_set, cfg, self.stage, self.device)
                row.update(test_loss=round(test["loss"], 6),
                           test_acc=round(test["accuracy"], 6))
            rows.append(row)
            self._write_rows(rows)
            log.info("%s epoch %d: %s", self.stage, epoch + 1, row)
            shown = "-" if row["test_acc"] is None else f"{row['test_acc']:.4f}"
            bar.write(f"{self.stage} epoch {epoch + 1}/{tc.epochs}: train_acc "
                      f"{row['train_acc']:.4f} test_acc {shown}")
            self._save_state(epoch + 1, 0, rows, acc)
        bar.close()
        final = {"test_accuracy": rows[-1]["test_acc"] if rows else None,
                 "best_test_accuracy": max((r["test_acc"] for r in rows
                                            if r["test_acc"] is not None), default=None),
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
