"""Reference-exact mode (issue 12, part 1): losses, student and recipe against the authors'
code (SinoLeu/CKDSNN), restated here from its formulas, not imported."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kd_snn import losses as L
from kd_snn.config import load_config
from kd_snn.models import create_model
from kd_snn.trainer import lr_at, make_optimizer

REF_NEURON = {"beta": 0.5, "threshold": 1.0, "surrogate": "triangle", "width": 1.0,
              "detach_reset": False}
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


# ------------------------------------------------------------------ the reference's formulas

def ref_minmax(cam):
    """getForwardCAM / compute_cam: ``cam - cam.min()`` then ``/ (cam.max() + 1e-3)``."""
    cam = cam - cam.min()
    return cam / (cam.max() + 1e-3)


def ref_cam(fmap, weight, pred):
    """compute_cam: ReLU(sum_d W[pred, d] F[d]), batch-global min-max."""
    B, D = fmap.shape[:2]
    return ref_minmax(torch.relu((fmap * weight[pred].view(B, D, 1, 1)).sum(1)))


def ref_kl(preds_s, preds_t, tau=2.0, eps=1e-10):
    """compute_kl_divergence: softmax over H*W of map / tau, + eps, KL(T || S) batchmean."""
    p_s = F.softmax((preds_s / tau).flatten(1), 1) + eps
    p_t = F.softmax((preds_t / tau).flatten(1), 1) + eps
    return F.kl_div(p_s.log(), p_t, reduction="batchmean")


def ref_soft_loss_smooth(z_s, z_t, eps, tau=2.0, weight=0.9):
    """soft_loss_smooth with smooth_noise_softmax and generate_gaussian_noise (eps given)."""
    noisy = z_s.mean(-1, keepdim=True) + eps * z_s.std(-1, keepdim=True) ** 2
    p = weight * F.softmax(z_s / tau, 1) + (1 - weight) * F.softmax(noisy / tau, 1)
    return F.kl_div(p.log(), F.softmax(z_t / tau, 1), reduction="batchmean") * tau ** 2


#: losses are computed in float32: the KL's terms cancel to ~1e-7 of the spatial entropy
F32 = dict(rel=1e-4, abs=1e-6)


def _maps(seed=0):
    g = torch.Generator().manual_seed(seed)
    T, B, C, H, W, K, Ct = 2, 3, 4, 4, 4, 5, 6
    student = torch.rand(T, B, C, H, W, generator=g, dtype=torch.float64) * 2  # analog (ReLU)
    fmap = torch.rand(B, Ct, H, W, generator=g, dtype=torch.float64) * 3
    w_t = torch.randn(K, Ct, generator=g, dtype=torch.float64)
    z_t = torch.randn(B, K, generator=g, dtype=torch.float64) * 3
    z_s = torch.randn(B, K, generator=g, dtype=torch.float64) * 3
    w_s = torch.randn(K, C, generator=g, dtype=torch.float64)
    return student, fmap, w_t, z_t, z_s, w_s


# ------------------------------------------------------------------ losses

def test_samd_batch_norm_equals_reference():
    student, fmap, w_t, z_t, z_s, _ = _maps()
    s_map = ref_minmax(student.sum(0).sum(1))  # getForwardCAM on (T, B, C, H, W)
    t_map = ref_cam(fmap, w_t, z_t.argmax(1))
    want = ref_kl(s_map, t_map)
    got = L.samd(L.student_sam(student), L.teacher_cam(fmap, w_t, z_t), 2.0, norm="batch")
    assert float(got) == pytest.approx(float(want), **F32)
    total, parts = L.DistillLoss({"preset": "samd", "samd_norm": "batch", "ce": 0.0})(
        z_s, student_spikes=student, teacher_logits=z_t, teacher_fmap=fmap,
        teacher_classifier_weight=w_t)
    assert float(parts["samd"]) == pytest.approx(float(want), **F32)
    per_sample = L.samd(L.student_sam(student), L.teacher_cam(fmap, w_t, z_t), 2.0)
    assert abs(float(per_sample) - float(want)) > 1e-4  # the option changes the loss


def test_samd_batch_norm_gradient_equals_reference():
    student, fmap, w_t, z_t, _, _ = _maps(1)
    a = student.clone().requires_grad_(True)
    ref_kl(ref_minmax(a.sum(0).sum(1)), ref_cam(fmap, w_t, z_t.argmax(1))).backward()
    b = student.clone().requires_grad_(True)
    L.samd(L.student_sam(b), L.teacher_cam(fmap, w_t, z_t), 2.0, norm="batch").backward()
    torch.testing.assert_close(b.grad.double(), a.grad, rtol=1e-5, atol=1e-9)


def test_nld_equals_reference():
    _, _, _, z_t, z_s, _ = _maps(2)
    z_s = z_s.float()
    eps = torch.randn(z_s.shape, generator=torch.Generator().manual_seed(7))
    want = ref_soft_loss_smooth(z_s, z_t.float(), eps)
    got = L.nld(z_s, z_t.float(), tau=2.0, w=0.9, generator=torch.Generator().manual_seed(7))
    assert float(got) == pytest.approx(float(want), rel=1e-5)


def test_camcam_reference_detached_weight():
    student, fmap, w_t, z_t, z_s, w_s = _maps(3)
    # the reference's CAM-CAM: compute_cam(mid_spike.mean(0), fc.weight.data, student argmax)
    want = ref_kl(ref_cam(student.mean(0), w_s, z_s.argmax(1)), ref_cam(fmap, w_t, z_t.argmax(1)))
    spikes, weight = student.clone().requires_grad_(True), w_s.clone().requires_grad_(True)
    loss = L.DistillLoss({"preset": "camcam", "samd_norm": "batch", "camcam_detach": True,
                          "ce": 0.0})
    total, parts = loss(z_s, student_spikes=spikes, teacher_logits=z_t, teacher_fmap=fmap,
                        teacher_classifier_weight=w_t, student_classifier_weight=weight)
    assert float(parts["camcam"]) == pytest.approx(float(want), **F32)
    total.backward()
    assert weight.grad is None and spikes.grad.abs().sum() > 0
    weight2 = w_s.clone().requires_grad_(True)
    L.camcam(student, weight2, z_s, L.teacher_cam(fmap, w_t, z_t), norm="batch").backward()
    assert weight2.grad.abs().sum() > 0  # the default keeps the weight's gradient


def test_per_sample_camcam_unchanged_by_time_average():
    """The default per-sample normalisation is scale-free: mean or sum over T is the same."""
    student, fmap, w_t, z_t, z_s, w_s = _maps(4)
    t_cam = L.teacher_cam(fmap, w_t, z_t)
    by_sum = L.samd(L._cam(student.sum(0), w_s, z_s, "student"), t_cam)
    torch.testing.assert_close(L.camcam(student, w_s, z_s, t_cam), by_sum.float())


# ------------------------------------------------------------------ the reference student

def _zif(u):
    """ZIF with gamma 1: the step forward, max(0, 1 - |u|) backward (straight through:
    c - c|c|/2 with c = clamp(u, -1, 1) has exactly that derivative)."""
    c = u.clamp(-1.0, 1.0)
    soft = c - c * c.abs() / 2
    return (u > 0).to(u.dtype) + soft - soft.detach()


def _lif(x):  # (T, B, ...): mem = 0.5 mem + x, spike mem - 1 > 0, mem = (1 - spike) mem
    mem, out = 0.0, []
    for t in range(x.shape[0]):
        mem = mem * 0.5 + x[t]
        spike = _zif(mem - 1.0)
        mem = (1 - spike) * mem
        out.append(spike)
    return torch.stack(out)


def _td(fn, x):
    y = fn(x.flatten(0, 1))
    return y.view(x.shape[0], x.shape[1], *y.shape[1:])


def _conv_bn(x, p, name, stride=1, pool=1):
    w = p[f"{name}.conv.weight"]

    def op(v):
        if pool > 1:
            v = F.avg_pool2d(v, pool)
        v = F.conv2d(v, w, stride=stride, padding=w.shape[-1] // 2)
        return F.batch_norm(v, None, None, p[f"{name}.bn.weight"], p[f"{name}.bn.bias"],
                            training=True, eps=1e-5)
    return _td(op, x)


def reference_student(x, p, blocks=(3, 3, 2)):
    """The reference ResNet-19 student: x (B, C, H, W) normalised, repeated over T."""
    x = (x - p["norm.mean"].view(3, 1, 1)) / p["norm.std"].view(3, 1, 1)
    out = _lif(_conv_bn(x, p, "stem"))
    for s, n in enumerate(blocks):
        for b in range(n):
            name = f"layer{s + 1}.{b}"
            stride = 2 if s > 0 and b == 0 else 1
            h = _lif(_conv_bn(out, p, f"{name}.conv1", stride))
            h = _conv_bn(h, p, f"{name}.conv2")
            if f"{name}.shortcut.conv.weight" in p:
                h = h + _conv_bn(out, p, f"{name}.shortcut", pool=stride)
            else:
                h = h + out
            last = s == len(blocks) - 1 and b == n - 1
            out = torch.relu(h) if last else _lif(h)
    g = out.mean((-2, -1)).mean(0)  # GAP, mean over T
    y = F.linear(F.linear(g, p["head.fc1.weight"], p["head.fc1.bias"]),
                 p["head.fc2.weight"], p["head.fc2.bias"])
    return y, out


def _reference_model(detach_reset=False):
    torch.manual_seed(0)
    model = create_model("resnet19", 7, 3, width=0.25, head="reference", last_block="relu",
                         normalize="cifar10", neuron={**REF_NEURON, "detach_reset": detach_reset})
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.8, 1.6)
                m.bias.uniform_(-0.2, 0.4)
    return model.double().train()


def test_reference_student_equals_restatement():
    model = _reference_model()
    params = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    assert params["norm.mean"].flatten().tolist() == pytest.approx(CIFAR10_MEAN, abs=1e-7)
    assert params["norm.std"].flatten().tolist() == pytest.approx(CIFAR10_STD, abs=1e-7)
    T = 2
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x1 = x.clone().requires_grad_(True)
    want, want_map = reference_student(x1.unsqueeze(0).expand(T, *x.shape), params)
    x2 = x.clone().requires_grad_(True)
    got, got_map = model.forward_features(x2.unsqueeze(0).expand(T, *x.shape))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got_map, want_map, rtol=1e-10, atol=1e-10)
    assert (got_map > 0).any() and not torch.equal(got_map, (got_map > 0).double())  # analog
    (got.square().sum() + got_map.sum()).backward()
    (want.square().sum() + want_map.sum()).backward()
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-8, atol=1e-10)
    # the reset's gradient is what the option changes
    detached = _reference_model(detach_reset=True)
    x3 = x.clone().requires_grad_(True)
    y3, m3 = detached.forward_features(x3.unsqueeze(0).expand(T, *x.shape))
    (y3.square().sum() + m3.sum()).backward()
    assert not torch.allclose(x3.grad, x1.grad)


# ------------------------------------------------------------------ the recipe

def test_cifar100_ckdsnn_resolves_to_the_reference_recipe():
    cfg = load_config("cifar100_ckdsnn")
    d, n, lo = cfg.data, cfg.neuron, cfg.loss
    assert (d.name, d.time_steps, d.encoding, d.batch_size) == ("cifar100", 1, "direct", 128)
    assert d.augment and d.autoaugment == "cifar10" and d.normalize == "cifar10"
    assert d.erasing == 0.5 and d.erasing_scale == [0.02, 0.2]
    assert cfg.amp
    for tc in (cfg.teacher, cfg.student):
        assert (tc.model, tc.width, tc.epochs) == ("resnet19", 8, 400)
        assert (tc.optimizer, tc.lr, tc.momentum, tc.nesterov) == ("sgd", 0.1, 0.9, False)
        assert (tc.weight_decay, tc.scheduler, tc.lr_interval) == (1e-4, "cosine", "epoch")
        assert tc.warmup_epochs == 0 and tc.label_smoothing == 0.0
    assert (cfg.student.head, cfg.student.last_block) == ("reference", "relu")
    assert (n.alpha, n.beta, n.threshold) == (0.0, 0.5, 1.0)
    assert (n.surrogate, n.width, n.detach_reset) == ("triangle", 1.0, False)
    assert (lo.preset, lo.tau_nld, lo.w_nld, lo.tau_samd) == ("samd_nld", 2.0, 0.9, 2.0)
    assert (lo.samd_scaling, lo.samd_norm, lo.camcam_detach, lo.teacher_mode) == \
        ("softmax", "batch", True, "train")
    assert L.resolve_config({"preset": lo.preset})["ce"] == 1.0


def test_the_defaults_stay_as_they_were():
    cfg = load_config("digits")
    assert cfg.loss.samd_norm == "sample" and not cfg.loss.camcam_detach
    assert cfg.loss.teacher_mode == "eval" and cfg.neuron.detach_reset
    assert cfg.student.head == cfg.student.last_block == "spiking"
    assert cfg.student.nesterov and cfg.student.lr_interval == "step"
    assert cfg.data.autoaugment == cfg.data.normalize == "none" and cfg.data.erasing == 0


def test_cosine_per_epoch_and_nesterov_option():
    tc = load_config("cifar100_ckdsnn").student
    for epoch in (0, 1, 200, 399):
        want = 0.5 * 0.1 * (1 + math.cos(math.pi * epoch / 400))  # CosineAnnealingLR, T_max 400
        assert lr_at(tc, epoch, 0, 390) == pytest.approx(want)
        assert lr_at(tc, epoch, 389, 390) == lr_at(tc, epoch, 0, 390)
    assert lr_at(load_config("digits").student, 0, 5, 10) < 0.003  # per step: moves inside
    opt = make_optimizer(nn.Linear(2, 2), tc)
    assert opt.param_groups[0]["nesterov"] is False and opt.param_groups[0]["momentum"] == 0.9
    assert opt.param_groups[0]["weight_decay"] == 1e-4
    assert make_optimizer(nn.Linear(2, 2), load_config("cifar100_resnet19").student
                          ).param_groups[0]["nesterov"] is True
