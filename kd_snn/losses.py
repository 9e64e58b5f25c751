"""Distillation losses for spiking students (arXiv 2511.06902: SAMD + NLD, and baselines).

Pure functions plus one composer, :class:`DistillLoss`.

Conventions (see docs/ARCHITECTURE.md):

- student logits ``(B, K)``; student last-stage spikes ``(T, B, C, H, W)``;
- teacher logits ``(B, K)``; teacher last feature map ``(B, C_t, H, W)`` (before global
  average pooling); classifier weights ``(K, C)``.

Every loss treats its *teacher* argument as a fixed target: it is detached inside, so
gradients reach the student only.  Losses are computed in float32 whatever the input
dtype (AMP-safe) and returned as 0-dim float32 tensors.

Choices that the paper leaves open (checked against the authors' public reference
code, github.com/SinoLeu/CKDSNN, where it exists):

- NLD: ``mu`` and ``sigma`` are the per-sample mean and *unbiased* std (``torch.std``)
  of the student logits over classes, **not detached** (as in the reference code);
  ``eps`` is drawn **per logit** (shape ``(B, K)``); the noise branch uses the same
  ``tau`` as the clean branch.  The noisy logits are ``mu + eps * sigma**2`` (pure noise
  around the mean, not ``z + noise``), exactly the paper formula.  Since ``mu`` is constant
  over classes it cancels inside the softmax; the student's gradient through the noise
  branch goes through ``sigma`` only.  The log of the mixture is taken with ``logsumexp``
  over the two log-weighted ``log_softmax`` branches (the reference takes ``.log()`` of
  the mixed probabilities, which underflows in half precision).
- SAMD: by default maps are min-max normalised **per sample** (``norm="sample"``: each
  sample's target is independent of its batch; a map whose range is below ``MINMAX_EPS``
  becomes all zeros, a uniform spatial distribution, with bounded gradients).
  ``norm="batch"`` is the reference: ``m - min`` over the whole batch, divided by
  its ``max + 1e-3``.  No ``tau**2`` factor (as in the reference).  The reference adds
  1e-10 to both spatial probabilities before the log; at ``H*W <= 1024`` that is below
  float32 resolution of the probabilities and is left out (log_softmax is exact instead).
- CAM-CAM: the student map is the CAM of the time-averaged last-stage map (as in the
  reference, ``mid_spike.mean(0)``); ``detach_weight=True`` takes the student classifier
  weight without gradient (the reference's ``.data``).
- SAMD scaling variants (paper ablation "replace softmax with z-score or L2-norm
  scaling"): a KL target must be a distribution, and the reference's z-score path feeds
  negative z-scores into ``log`` (NaN).  Here every variant keeps the spatial softmax as
  the normaliser and changes what is fed to it: ``softmax`` -> ``m / tau`` (``m`` the
  min-max map), ``zscore`` -> ``(m - mean) / std / tau``, ``l2`` -> ``m / ||m||_2 / tau``.
  All three give valid, finite KL targets; ``l2`` is the flattest (values <= 1).
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from kd_snn.errors import KdsnnError

Tensor = torch.Tensor

#: Maps whose per-sample range (max - min) is at or below this are treated as constant.
MINMAX_EPS = 1e-6

#: The reference's batch-global normalisation divides by ``max + BATCH_MINMAX_EPS``.
BATCH_MINMAX_EPS = 1e-3

SAMD_SCALINGS = ("softmax", "zscore", "l2")
SAMD_NORMS = ("sample", "batch")

__all__ = [
    "MINMAX_EPS", "BATCH_MINMAX_EPS", "SAMD_SCALINGS", "SAMD_NORMS", "cross_entropy",
    "logit_kd", "nld", "teacher_cam", "student_sam", "student_cam", "minmax_normalize",
    "minmax_normalize_batch", "spatial_log_distribution", "samd",
    "camcam", "FeatureAdapter", "feature_kd", "DEFAULTS", "PRESETS", "WEIGHT_KEYS",
    "resolve_config", "DistillLoss",
]


# --------------------------------------------------------------------------- helpers

def _check_logits(name: str, x: Tensor) -> None:
    if x.dim() != 2:
        raise ValueError(f"{name} must be (B, K), got shape {tuple(x.shape)}")


def _check_pair(student: Tensor, teacher: Tensor, what: str = "logits") -> None:
    if student.shape != teacher.shape:
        raise ValueError(f"student {what} shape {tuple(student.shape)} != "
                         f"teacher {what} shape {tuple(teacher.shape)}")


def _check_tau(tau: float, name: str = "tau") -> None:
    if not tau > 0:
        raise ValueError(f"{name} must be > 0, got {tau}")


def _kl_batchmean(target_prob: Tensor, log_pred: Tensor) -> Tensor:
    """KL(target || pred) summed over the last axis, averaged over the batch (axis 0).

    ``0 * log 0`` is taken as 0 (``xlogy``), so one-hot-like targets are fine.
    """
    per_elem = torch.special.xlogy(target_prob, target_prob) - target_prob * log_pred
    return per_elem.sum() / target_prob.shape[0]


# --------------------------------------------------------------------------- logits

def cross_entropy(logits: Tensor, target: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy with optional label smoothing (mean over the batch).

    ``target`` is class indices ``(B,)`` or class probabilities ``(B, K)`` (mixup).
    With smoothing ``s``: ``(1 - s) * -log p_y + s * mean_k(-log p_k)``.
    """
    _check_logits("logits", logits)
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if target.is_floating_point():
        target = target.float()
    return F.cross_entropy(logits.float(), target, label_smoothing=label_smoothing)


def logit_kd(student_logits: Tensor, teacher_logits: Tensor, tau: float = 4.0) -> Tensor:
    """Hinton KD: ``KL(softmax(t / tau) || softmax(s / tau))`` 'batchmean' ``* tau**2``."""
    _check_logits("student_logits", student_logits)
    _check_pair(student_logits, teacher_logits)
    _check_tau(tau)
    p_t = F.softmax(teacher_logits.detach().float() / tau, dim=1)
    log_p_s = F.log_softmax(student_logits.float() / tau, dim=1)
    return _kl_batchmean(p_t, log_p_s) * tau ** 2


def _standard_normal(shape, generator: Optional[torch.Generator], like: Tensor) -> Tensor:
    """N(0, 1) noise of ``shape`` drawn on the generator's device, moved to ``like``."""
    device = generator.device if generator is not None else torch.device("cpu")
    eps = torch.randn(tuple(shape), generator=generator, device=device, dtype=torch.float32)
    return eps.to(device=like.device, dtype=like.dtype)


def nld(student_logits: Tensor, teacher_logits: Tensor, tau: float = 2.0, w: float = 0.9,
        generator: Optional[torch.Generator] = None) -> Tensor:
    """Noise-smoothed logits distillation (NLD).

    ``p_s = w * softmax(z / tau) + (1 - w) * softmax((mu + eps * sigma**2) / tau)`` with
    ``mu``, ``sigma`` the per-sample mean and unbiased std of ``z`` over classes (not
    detached), ``eps ~ N(0, 1)`` per logit, drawn with ``generator`` (on the generator's
    device, CPU when None; then moved to the logits' device).  Returns
    ``KL(softmax(z_T / tau) || p_s)`` 'batchmean' ``* tau**2``.  ``w = 1`` is
    :func:`logit_kd` at the same ``tau`` (no noise is drawn then).
    """
    _check_logits("student_logits", student_logits)
    _check_pair(student_logits, teacher_logits)
    _check_tau(tau)
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"w must be in [0, 1], got {w}")
    if student_logits.shape[1] < 2:
        raise ValueError("nld needs at least 2 classes (the std over classes is undefined)")
    z = student_logits.float()
    p_t = F.softmax(teacher_logits.detach().float() / tau, dim=1)
    branches = []
    if w > 0.0:
        branches.append(math.log(w) + F.log_softmax(z / tau, dim=1))
    if w < 1.0:
        mu = z.mean(dim=1, keepdim=True)
        sigma = z.std(dim=1, keepdim=True)
        eps = _standard_normal(z.shape, generator, z)
        noisy = mu + eps * sigma ** 2
        branches.append(math.log1p(-w) + F.log_softmax(noisy / tau, dim=1))
    log_p_s = branches[0] if len(branches) == 1 else torch.logsumexp(torch.stack(branches), 0)
    return _kl_batchmean(p_t, log_p_s) * tau ** 2


# --------------------------------------------------------------------------- maps

def teacher_cam(fmap: Tensor, classifier_weight: Tensor, logits: Tensor) -> Tensor:
    """Class activation map of the teacher's predicted class: ``(B, H, W)``.

    ``ReLU(sum_c W[pred, c] * F[c, h, w])`` with ``pred = argmax(logits)``.  Pure (no
    detach): the losses detach their teacher inputs.
    """
    if fmap.dim() != 4:
        raise ValueError(f"teacher fmap must be (B, C, H, W), got shape {tuple(fmap.shape)}")
    return _cam(fmap, classifier_weight, logits, "teacher")


def _cam(fmap: Tensor, weight: Tensor, logits: Tensor, who: str) -> Tensor:
    B, C = fmap.shape[:2]
    if weight.dim() != 2 or weight.shape[1] != C:
        raise ValueError(f"{who} classifier weight shape {tuple(weight.shape)} does not match "
                         f"(K, C) with C = {C} channels of the {who} map {tuple(fmap.shape)}")
    if logits.dim() != 2 or logits.shape[0] != B or logits.shape[1] != weight.shape[0]:
        raise ValueError(f"{who} logits shape {tuple(logits.shape)} does not match "
                         f"(B, K) = ({B}, {weight.shape[0]})")
    pred = logits.argmax(dim=1)
    w = weight.float()[pred]  # (B, C)
    return torch.relu(torch.einsum("bc,bchw->bhw", w, fmap.float()))


def student_sam(spikes: Tensor) -> Tensor:
    """Spike activation map: last-stage spikes ``(T, B, C, H, W)`` summed over T and C."""
    if spikes.dim() != 5:
        raise ValueError(f"student spikes must be (T, B, C, H, W), got shape {tuple(spikes.shape)}")
    return spikes.float().sum(dim=(0, 2))


def student_cam(spikes: Tensor, classifier_weight: Tensor, logits: Tensor,
                detach_weight: bool = False) -> Tensor:
    """CAM-CAM baseline (CATKD-style): the student's own CAM ``(B, H, W)``.

    ``ReLU(sum_c W_s[pred_s, c] * S[c, h, w])`` with ``S`` the time-averaged last-stage
    map (the reference's ``mid_spike.mean(0)``) and ``pred_s = argmax`` of the student
    logits.  ``classifier_weight`` must be ``(K, C)`` for the map's C channels.  Gradients
    flow to the map, and to the weight unless ``detach_weight`` (the reference's ``.data``).
    """
    if spikes.dim() != 5:
        raise ValueError(f"student spikes must be (T, B, C, H, W), got shape {tuple(spikes.shape)}")
    weight = classifier_weight.detach() if detach_weight else classifier_weight
    return _cam(spikes.float().mean(dim=0), weight, logits, "student")


def minmax_normalize(maps: Tensor, eps: float = MINMAX_EPS) -> Tensor:
    """Per-sample min-max normalisation of ``(B, H, W)`` maps into [0, 1].

    A sample whose range is ``<= eps`` becomes ``map - min`` (all ~0): no division by a
    tiny range, so no exploding gradients for dead (all-zero) spike maps.
    """
    flat = maps.flatten(1)
    lo = flat.amin(dim=1, keepdim=True)
    rng = flat.amax(dim=1, keepdim=True) - lo
    denom = torch.where(rng > eps, rng, torch.ones_like(rng))
    return ((flat - lo) / denom).view_as(maps)


def minmax_normalize_batch(maps: Tensor, eps: float = BATCH_MINMAX_EPS) -> Tensor:
    """The reference's normalisation: ``m = maps - min``, then ``m / (max(m) + eps)``,
    min and max taken over the whole batch (every sample's target depends on its batch)."""
    shifted = maps - maps.min()
    return shifted / (shifted.max() + eps)


def _normalize(maps: Tensor, norm: str) -> Tensor:
    if norm == "sample":
        return minmax_normalize(maps)
    if norm == "batch":
        return minmax_normalize_batch(maps)
    raise ValueError(f"unknown SAMD normalisation {norm!r}; expected one of {SAMD_NORMS}")


def spatial_log_distribution(maps: Tensor, tau: float = 2.0, scaling: str = "softmax") -> Tensor:
    """Log of the spatial distribution over ``H*W`` of min-max maps: ``(B, H*W)``.

    ``scaling``: ``softmax`` -> ``log_softmax(m / tau)``; ``zscore`` ->
    ``log_softmax(zscore(m) / tau)``; ``l2`` -> ``log_softmax(m / ||m||_2 / tau)``
    (constant maps give a uniform distribution in every variant).
    """
    _check_tau(tau)
    m = maps.flatten(1)
    if scaling == "softmax":
        x = m
    elif scaling == "zscore":
        std = m.std(dim=1, keepdim=True, correction=0)
        std = torch.where(std > MINMAX_EPS, std, torch.ones_like(std))
        x = (m - m.mean(dim=1, keepdim=True)) / std
    elif scaling == "l2":
        norm = m.norm(dim=1, keepdim=True)
        norm = torch.where(norm > MINMAX_EPS, norm, torch.ones_like(norm))
        x = m / norm
    else:
        raise ValueError(f"unknown SAMD scaling {scaling!r}; expected one of {SAMD_SCALINGS}")
    return F.log_softmax(x / tau, dim=1)


def _match_teacher_map(student_map: Tensor, teacher_map: Tensor, resize: bool) -> Tensor:
    if student_map.dim() != 3 or teacher_map.dim() != 3:
        raise ValueError(f"maps must be (B, H, W): student map shape {tuple(student_map.shape)}, "
                         f"teacher map shape {tuple(teacher_map.shape)}")
    if student_map.shape == teacher_map.shape:
        return teacher_map
    if resize and student_map.shape[0] == teacher_map.shape[0]:
        return F.adaptive_avg_pool2d(teacher_map.unsqueeze(1), student_map.shape[1:]).squeeze(1)
    raise ValueError(f"student map shape {tuple(student_map.shape)} != teacher map shape "
                     f"{tuple(teacher_map.shape)}" + ("" if resize else " (pass resize=True to "
                                                       "pool the teacher map to the student size)"))


def samd(student_map: Tensor, teacher_map: Tensor, tau: float = 2.0,
         scaling: str = "softmax", resize: bool = False, norm: str = "sample") -> Tensor:
    """Saliency-scaled activation map distillation (SAMD).

    Both ``(B, H, W)`` maps are min-max normalised (``norm``: per ``sample``, or over the
    whole ``batch`` as the reference does), turned into spatial distributions over ``H*W``
    (see :func:`spatial_log_distribution`), and the loss is ``KL(teacher || student)``
    'batchmean' (no ``tau**2``).  The teacher map is detached.  Shapes must match; with
    ``resize=True`` a teacher map of another spatial size is first adaptive-average-pooled
    (on the raw map) to the student's ``H x W``.
    """
    teacher_map = _match_teacher_map(student_map, teacher_map, resize)
    log_p_t = spatial_log_distribution(_normalize(teacher_map.detach().float(), norm), tau,
                                       scaling)
    log_p_s = spatial_log_distribution(_normalize(student_map.float(), norm), tau, scaling)
    return _kl_batchmean(log_p_t.exp(), log_p_s)


def camcam(student_spikes: Tensor, student_classifier_weight: Tensor, student_logits: Tensor,
           teacher_map: Tensor, tau: float = 2.0, scaling: str = "softmax",
           resize: bool = False, norm: str = "sample", detach_weight: bool = False) -> Tensor:
    """CAM-CAM baseline: :func:`samd` with the student map = :func:`student_cam`."""
    s_map = student_cam(student_spikes, student_classifier_weight, student_logits, detach_weight)
    return samd(s_map, teacher_map, tau=tau, scaling=scaling, resize=resize, norm=norm)


# --------------------------------------------------------------------------- features

class FeatureAdapter(nn.Module):
    """1x1 convolution (with bias) from the student's C channels to the teacher's."""

    def __init__(self, student_channels: int, teacher_channels: int):
        super().__init__()
        self.student_channels = int(student_channels)
        self.teacher_channels = int(teacher_channels)
        self.conv = nn.Conv2d(self.student_channels, self.teacher_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


def feature_kd(student_spikes: Tensor, teacher_fmap: Tensor, adapter: nn.Module) -> Tensor:
    """MSE between ``adapter(mean_T(spikes))`` and the (detached) teacher feature map."""
    if student_spikes.dim() != 5:
        raise ValueError(f"student spikes must be (T, B, C, H, W), got shape "
                         f"{tuple(student_spikes.shape)}")
    if teacher_fmap.dim() != 4:
        raise ValueError(f"teacher fmap must be (B, C, H, W), got shape {tuple(teacher_fmap.shape)}")
    rate = student_spikes.mean(dim=0)
    pred = adapter(rate.to(next(adapter.parameters()).dtype)).float()
    target = teacher_fmap.detach().float()
    if pred.shape != target.shape:
        raise ValueError(f"adapted student features shape {tuple(pred.shape)} != teacher fmap "
                         f"shape {tuple(target.shape)}")
    return F.mse_loss(pred, target)


# --------------------------------------------------------------------------- composer

WEIGHT_KEYS = ("ce", "samd", "nld", "logit_kd", "camcam", "feature")

#: Default config = the paper's setting (CE + SAMD + NLD, weights 1, 1, 1).
DEFAULTS: dict[str, Any] = {
    "ce": 1.0, "samd": 1.0, "nld": 1.0, "logit_kd": 0.0, "camcam": 0.0, "feature": 0.0,
    "label_smoothing": 0.0, "tau_nld": 2.0, "w_nld": 0.9, "tau_samd": 2.0,
    "samd_scaling": "softmax", "samd_resize": False, "samd_norm": "sample",
    "camcam_detach": False, "tau_kd": 4.0,
    "student_channels": None, "teacher_channels": None,
}


def _weights(**on: float) -> dict[str, float]:
    w = {k: 0.0 for k in WEIGHT_KEYS}
    w["ce"] = 1.0
    w.update(on)
    return w


PRESETS: dict[str, dict[str, float]] = {
    "none": _weights(),
    "logit_kd": _weights(logit_kd=1.0),
    "nld": _weights(nld=1.0),
    "samd": _weights(samd=1.0),
    "samd_nld": _weights(samd=1.0, nld=1.0),
    "camcam": _weights(camcam=1.0),
    "feature": _weights(feature=1.0),
}


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


def resolve_config(config: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Validate ``config`` and fill it in; returns a full config dict.

    Missing keys come from :data:`DEFAULTS`, or, when ``config["preset"]`` names one of
    :data:`PRESETS`, the preset's weights override the default weights first (so
    ``{"preset": "logit_kd", "tau_kd": 3}`` is CE + KD at tau 3).  Raises
    :class:`KdsnnError` naming the offending key.
    """
    config = dict(config or {})
    out = dict(DEFAULTS)
    preset = config.pop("preset", None)
    if preset is not None:
        if preset not in PRESETS:
            raise KdsnnError(f"loss config: unknown preset {preset!r} "
                             f"(expected one of {', '.join(PRESETS)})")
        out.update(PRESETS[preset])
    for key in config:
        if key not in DEFAULTS:
            raise KdsnnError(f"loss config: unknown key {key!r} "
                             f"(expected one of {', '.join(['preset', *DEFAULTS])})")
    out.update(config)
    for key in WEIGHT_KEYS:
        if not _is_number(out[key]):
            raise KdsnnError(f"loss config: {key!r} must be a number, got {out[key]!r}")
        if out[key] < 0:
            raise KdsnnError(f"loss config: weight {key!r} must be >= 0, got {out[key]}")
        out[key] = float(out[key])
    for key in ("tau_nld", "tau_samd", "tau_kd"):
        if not _is_number(out[key]) or out[key] <= 0:
            raise KdsnnError(f"loss config: {key!r} must be a number > 0, got {out[key]!r}")
        out[key] = float(out[key])
    if not _is_number(out["w_nld"]) or not 0.0 <= out["w_nld"] <= 1.0:
        raise KdsnnError(f"loss config: 'w_nld' must be in [0, 1], got {out['w_nld']!r}")
    if not _is_number(out["label_smoothing"]) or not 0.0 <= out["label_smoothing"] < 1.0:
        raise KdsnnError("loss config: 'label_smoothing' must be in [0, 1), "
                         f"got {out['label_smoothing']!r}")
    if out["samd_scaling"] not in SAMD_SCALINGS:
        raise KdsnnError(f"loss config: 'samd_scaling' must be one of {', '.join(SAMD_SCALINGS)}, "
                         f"got {out['samd_scaling']!r}")
    if out["samd_norm"] not in SAMD_NORMS:
        raise KdsnnError(f"loss config: 'samd_norm' must be one of {', '.join(SAMD_NORMS)}, "
                         f"got {out['samd_norm']!r}")
    for key in ("samd_resize", "camcam_detach"):
        if not isinstance(out[key], bool):
            raise KdsnnError(f"loss config: {key!r} must be true or false, got {out[key]!r}")
    for key in ("student_channels", "teacher_channels"):
        v = out[key]
        if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0):
            raise KdsnnError(f"loss config: {key!r} must be a positive integer, got {v!r}")
        if out["feature"] > 0 and v is None:
            raise KdsnnError(f"loss config: {key!r} is required when 'feature' > 0")
    if sum(out[k] for k in WEIGHT_KEYS) <= 0:
        raise KdsnnError("loss config: all loss weights are 0 ('ce', 'samd', 'nld', ...)")
    return out


class DistillLoss(nn.Module):
    """Weighted sum of the losses above, built from a config dict (see :func:`resolve_config`).

    ``DistillLoss()`` is the paper's CE + SAMD + NLD.  With ``feature > 0`` it owns a
    :class:`FeatureAdapter` (``self.adapter``): give ``DistillLoss.parameters()`` to the
    optimizer together with the student's.  Terms with weight 0 are not computed and their
    inputs may be None.
    """

    def __init__(self, config: Optional[Mapping[str, Any]] = None):
        super().__init__()
        self.config = resolve_config(config)
        self.weights = {k: self.config[k] for k in WEIGHT_KEYS}
        self.adapter: Optional[FeatureAdapter] = None
        if self.weights["feature"] > 0:
            self.adapter = FeatureAdapter(self.config["student_channels"],
                                          self.config["teacher_channels"])

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "DistillLoss":
        return cls({"preset": name, **overrides})

    def active(self) -> tuple[str, ...]:
        """Names of the terms with a weight > 0, in :data:`WEIGHT_KEYS` order."""
        return tuple(k for k in WEIGHT_KEYS if self.weights[k] > 0)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={self.weights[k]:g}" for k in self.active())

    def forward(self, student_logits: Tensor, *, target: Optional[Tensor] = None,
                teacher_logits: Optional[Tensor] = None,
                student_spikes: Optional[Tensor] = None,
                teacher_fmap: Optional[Tensor] = None,
                teacher_classifier_weight: Optional[Tensor] = None,
                student_classifier_weight: Optional[Tensor] = None,
                generator: Optional[torch.Generator] = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Return ``(total, parts)``; every input but the student's logits by keyword.

        ``target``: labels (B,) for CE; ``teacher_logits`` (B, K) for NLD and logit KD;
        ``student_spikes`` (T, B, C, H, W) and ``teacher_fmap`` (B, C', H', W') with
        ``teacher_classifier_weight`` (K, C') for SAMD (and the feature and CAM-CAM terms,
        CAM-CAM also with ``student_classifier_weight``); ``generator`` seeds NLD's noise.
        A term whose inputs are missing raises ``ValueError`` naming them.

        ``parts`` maps each active term name to its *unweighted* value and ``"total"`` to the
        weighted sum, all as detached 0-dim tensors (call ``float()`` when logging; no
        device sync happens here).  ``total`` keeps the graph.
        """
        cfg = self.config

        def need(name: str, **tensors: Optional[Tensor]) -> None:
            for arg, t in tensors.items():
                if t is None:
                    raise ValueError(f"DistillLoss term {name!r} needs {arg} (got None)")

        # Teacher tensors are targets only.
        t_logits = teacher_logits.detach() if teacher_logits is not None else None
        t_fmap = teacher_fmap.detach() if teacher_fmap is not None else None
        t_weight = (teacher_classifier_weight.detach()
                    if teacher_classifier_weight is not None else None)

        terms: dict[str, Tensor] = {}
        if self.weights["ce"] > 0:
            need("ce", target=target)
            terms["ce"] = cross_entropy(student_logits, target, cfg["label_smoothing"])
        t_cam = None
        if self.weights["samd"] > 0 or self.weights["camcam"] > 0:
            need("samd/camcam", teacher_fmap=t_fmap, teacher_classifier_weight=t_weight,
                 teacher_logits=t_logits, student_spikes=student_spikes)
            t_cam = teacher_cam(t_fmap, t_weight, t_logits)
        if self.weights["samd"] > 0:
            terms["samd"] = samd(student_sam(student_spikes), t_cam, cfg["tau_samd"],
                                 cfg["samd_scaling"], cfg["samd_resize"], cfg["samd_norm"])
        if self.weights["nld"] > 0:
            need("nld", teacher_logits=t_logits)
            terms["nld"] = nld(student_logits, t_logits, cfg["tau_nld"], cfg["w_nld"], generator)
        if self.weights["logit_kd"] > 0:
            need("logit_kd", teacher_logits=t_logits)
            terms["logit_kd"] = logit_kd(student_logits, t_logits, cfg["tau_kd"])
        if self.weights["camcam"] > 0:
            need("camcam", student_classifier_weight=student_classifier_weight)
            terms["camcam"] = camcam(student_spikes, student_classifier_weight, student_logits,
                                     t_cam, cfg["tau_samd"], cfg["samd_scaling"],
                                     cfg["samd_resize"], cfg["samd_norm"],
                                     cfg["camcam_detach"])
        if self.weights["feature"] > 0:
            need("feature", student_spikes=student_spikes, teacher_fmap=t_fmap)
            terms["feature"] = feature_kd(student_spikes, t_fmap, self.adapter)

        total = sum(self.weights[k] * v for k, v in terms.items())
        parts = {k: v.detach() for k, v in terms.items()}
        parts["total"] = total.detach()
        return total, parts
