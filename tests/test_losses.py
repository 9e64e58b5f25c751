"""Tests for kd_snn.losses against hand computations on tiny tensors."""
import math

import pytest
import torch

from kd_snn import losses as L
from kd_snn.errors import KdsnnError


def _manual_kl(p, q):
    """sum p log(p/q) / B for (B, N) probability tensors (float64)."""
    p, q = p.double(), q.double()
    return (p * (p.log() - q.log())).sum().item() / p.shape[0]


def _softmax(x, tau=1.0):
    e = torch.exp(x.double() / tau - (x.double() / tau).max(dim=1, keepdim=True).values)
    return e / e.sum(dim=1, keepdim=True)


# ------------------------------------------------------------------------ logits

def test_cross_entropy_label_smoothing_manual():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    target = torch.tensor([0, 2])
    s = 0.1
    logp = _softmax(logits).log()
    manual = 0.0
    for b in range(2):
        manual += (1 - s) * -logp[b, target[b]] + s * (-logp[b]).mean()
    manual = manual.item() / 2
    got = L.cross_entropy(logits, target, label_smoothing=s)
    assert got.item() == pytest.approx(manual, rel=1e-5)
    plain = L.cross_entropy(logits, target)
    assert plain.item() == pytest.approx((-logp[0, 0] - logp[1, 2]).item() / 2, rel=1e-5)
    with pytest.raises(ValueError):
        L.cross_entropy(logits, target, label_smoothing=1.0)


def test_cross_entropy_soft_targets():
    logits = torch.tensor([[1.0, 0.0]])
    target = torch.tensor([[0.25, 0.75]])
    logp = _softmax(logits).log()
    manual = -(0.25 * logp[0, 0] + 0.75 * logp[0, 1]).item()
    assert L.cross_entropy(logits, target).item() == pytest.approx(manual, rel=1e-5)


def test_logit_kd_manual():
    s = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 1.0]])
    t = torch.tensor([[3.0, 1.0, 0.0], [0.5, 0.5, 2.0]])
    tau = 4.0
    manual = _manual_kl(_softmax(t, tau), _softmax(s, tau)) * tau ** 2
    assert L.logit_kd(s, t, tau).item() == pytest.approx(manual, rel=1e-5)
    assert L.logit_kd(s, s, tau).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        L.logit_kd(s, torch.zeros(2, 4))


def test_nld_w1_equals_logit_kd():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    for tau in (1.0, 2.0, 4.0):
        assert L.nld(s, t, tau=tau, w=1.0).item() == pytest.approx(
            L.logit_kd(s, t, tau=tau).item(), rel=1e-5)


def test_nld_deterministic_and_manual():
    s = torch.tensor([[1.0, 0.0, -1.0, 2.0], [0.5, 0.5, 3.0, -2.0], [0.0, 1.0, 0.0, 1.0]])
    t = torch.tensor([[2.0, 1.0, 0.0, 1.0], [0.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 3.0]])
    tau, w = 2.0, 0.9
    a = L.nld(s, t, tau, w, generator=torch.Generator().manual_seed(123))
    b = L.nld(s, t, tau, w, generator=torch.Generator().manual_seed(123))
    c = L.nld(s, t, tau, w, generator=torch.Generator().manual_seed(124))
    assert a.item() == b.item()
    assert a.item() != c.item()
    # manual: eps per logit, unbiased std, noisy logits = mu + eps * sigma^2
    eps = torch.randn(s.shape, generator=torch.Generator().manual_seed(123)).double()
    sd = s.double()
    mu = sd.mean(dim=1, keepdim=True)
    sigma = torch.sqrt(((sd - mu) ** 2).sum(dim=1, keepdim=True) / (s.shape[1] - 1))
    p_s = w * _softmax(sd, tau) + (1 - w) * _softmax(mu + eps * sigma ** 2, tau)
    manual = _manual_kl(_softmax(t, tau), p_s) * tau ** 2
    assert a.item() == pytest.approx(manual, rel=1e-5)


def test_nld_w0_and_stability():
    s = torch.tensor([[200.0, -300.0, 0.0], [1e-3, 0.0, 0.0]], requires_grad=True)
    t = torch.tensor([[-100.0, 400.0, 0.0], [0.0, 0.0, 1.0]])
    for w in (0.0, 0.5, 0.9):
        loss = L.nld(s, t, w=w, generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(loss)
        (g,) = torch.autograd.grad(loss, s)
        assert torch.isfinite(g).all()
    with pytest.raises(ValueError):
        L.nld(s, t, w=1.5)


def test_nld_half_precision_input():
    s = torch.randn(3, 10).half()
    t = torch.randn(3, 10).half()
    out = L.nld(s, t, generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32 and torch.isfinite(out)


# ------------------------------------------------------------------------ maps

def test_teacher_cam_manual_2x2():
    fmap = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]],
                          [[0.5, -1.0], [2.0, -6.0]]]])  # (1, 2, 2, 2)
    W = torch.tensor([[1.0, 0.0], [2.0, 1.0], [-1.0, 1.0]])  # (K=3, C=2)
    logits = torch.tensor([[0.0, 5.0, 1.0]])  # pred = 1 -> W[1] = (2, 1)
    expected = torch.tensor([[[2.5, 3.0], [8.0, 2.0]]])  # 2*F0 + F1, ReLU
    torch.testing.assert_close(L.teacher_cam(fmap, W, logits), expected)
    logits = torch.tensor([[0.0, 0.0, 9.0]])  # pred = 2 -> (-1, 1): (-0.5, -3, -1, -10) -> 0
    torch.testing.assert_close(L.teacher_cam(fmap, W, logits), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="classifier weight"):
        L.teacher_cam(fmap, torch.zeros(3, 5), logits)


def test_student_sam_and_cam():
    spikes = torch.zeros(2, 1, 3, 2, 2)  # (T, B, C, H, W)
    spikes[0, 0, 0, 0, 0] = 1
    spikes[1, 0, 2, 0, 0] = 1
    spikes[1, 0, 1, 1, 1] = 1
    torch.testing.assert_close(L.student_sam(spikes), torch.tensor([[[2.0, 0.0], [0.0, 1.0]]]))
    W = torch.tensor([[1.0, -1.0, 0.0], [0.0, 3.0, 1.0]])
    logits = torch.tensor([[0.0, 1.0]])  # pred 1: 3*S1 + S2 over time-averaged spikes
    torch.testing.assert_close(L.student_cam(spikes, W, logits),
                               torch.tensor([[[0.5, 0.0], [0.0, 1.5]]]))
    with pytest.raises(ValueError, match="T, B, C, H, W"):
        L.student_sam(torch.zeros(1, 3, 2, 2))


def test_minmax_constant_map_is_safe():
    m = torch.full((2, 3, 3), 5.0, requires_grad=True)
    out = L.minmax_normalize(m)
    assert torch.equal(out, torch.zeros(2, 3, 3))
    out.sum().backward()
    assert torch.isfinite(m.grad).all() and m.grad.abs().max() <= 1.0


@pytest.mark.parametrize("scaling", L.SAMD_SCALINGS)
def test_samd_zero_when_maps_agree_up_to_affine(scaling):
    g = torch.Generator().manual_seed(1)
    t_map = torch.rand(3, 4, 4, generator=g)
    s_map = 7.0 * t_map + 3.0
    assert L.samd(s_map, t_map, scaling=scaling).item() == pytest.approx(0.0, abs=1e-6)
    other = torch.rand(3, 4, 4, generator=g)
    loss = L.samd(other, t_map, scaling=scaling)
    assert torch.isfinite(loss) and loss.item() > 1e-6
    # constant maps on either side stay finite
    assert torch.isfinite(L.samd(torch.zeros(3, 4, 4), t_map, scaling=scaling))
    assert torch.isfinite(L.samd(other, torch.ones(3, 4, 4), scaling=scaling))


def test_samd_manual_softmax():
    t_map = torch.tensor([[[0.0, 1.0], [2.0, 4.0]]])
    s_map = torch.tensor([[[1.0, 1.0], [0.0, 2.0]]])
    tau = 2.0
    tn = torch.tensor([[0.0, 0.25, 0.5, 1.0]])
    sn = torch.tensor([[0.5, 0.5, 0.0, 1.0]])
    manual = _manual_kl(_softmax(tn, tau), _softmax(sn, tau))
    assert L.samd(s_map, t_map, tau=tau).item() == pytest.approx(manual, rel=1e-5)


def test_samd_variants_differ():
    t_map = torch.tensor([[[0.0, 1.0], [2.0, 4.0]]])
    s_map = torch.tensor([[[1.0, 1.0], [0.0, 2.0]]])
    vals = {sc: L.samd(s_map, t_map, scaling=sc).item() for sc in L.SAMD_SCALINGS}
    assert len(set(vals.values())) == 3
    assert all(math.isfinite(v) and v > 0 for v in vals.values())
    with pytest.raises(ValueError, match="scaling"):
        L.samd(s_map, t_map, scaling="bogus")


def test_samd_shape_mismatch_and_resize():
    s_map = torch.rand(2, 4, 4)
    t_map = torch.rand(2, 8, 8)
    with pytest.raises(ValueError, match=r"\(2, 4, 4\).*\(2, 8, 8\)"):
        L.samd(s_map, t_map)
    pooled = torch.nn.functional.avg_pool2d(t_map.unsqueeze(1), 2).squeeze(1)
    assert L.samd(s_map, t_map, resize=True).item() == pytest.approx(
        L.samd(s_map, pooled).item(), rel=1e-6)
    with pytest.raises(ValueError):
        L.samd(torch.rand(3, 4, 4), torch.rand(2, 4, 4), resize=True)


def test_feature_kd_manual():
    torch.manual_seed(0)
    spikes = (torch.rand(4, 2, 3, 2, 2) > 0.5).float()
    fmap = torch.randn(2, 5, 2, 2)
    ad = L.FeatureAdapter(3, 5)
    rate = spikes.mean(0)
    pred = torch.einsum("oc,bchw->bohw", ad.conv.weight[:, :, 0, 0], rate) \
        + ad.conv.bias.view(1, 5, 1, 1)
    manual = ((pred - fmap) ** 2).mean().item()
    assert L.feature_kd(spikes, fmap, ad).item() == pytest.approx(manual, rel=1e-5)
    with pytest.raises(ValueError, match="teacher fmap"):
        L.feature_kd(spikes, torch.randn(2, 5, 3, 3), ad)


# ------------------------------------------------------------------------ composer

def _batch(B=2, K=4, T=3, Cs=3, Ct=5, H=2, W=2, grad_teacher=True):
    g = torch.Generator().manual_seed(7)
    s_logits = torch.randn(B, K, generator=g, requires_grad=True)
    spikes = torch.rand(T, B, Cs, H, W, generator=g).requires_grad_(True)
    t_logits = torch.randn(B, K, generator=g, requires_grad=grad_teacher)
    t_fmap = torch.randn(B, Ct, H, W, generator=g, requires_grad=grad_teacher)
    t_w = torch.randn(K, Ct, generator=g, requires_grad=grad_teacher)
    s_w = torch.randn(K, Cs, generator=g, requires_grad=True)
    target = torch.tensor([0, 3])
    return s_logits, spikes, t_logits, t_fmap, t_w, target, s_w


def _kw(spikes, t_logits, t_fmap, t_w, target, s_w=None) -> dict:
    """DistillLoss's keyword inputs from :func:`_batch`'s tensors."""
    return dict(student_spikes=spikes, teacher_logits=t_logits, teacher_fmap=t_fmap,
                teacher_classifier_weight=t_w, target=target, student_classifier_weight=s_w)


def test_gradients_flow_to_student_only():
    s_logits, spikes, t_logits, t_fmap, t_w, target, s_w = _batch()
    cfg = {"ce": 1.0, "samd": 1.0, "nld": 1.0, "logit_kd": 0.5, "camcam": 0.5, "feature": 0.5,
           "student_channels": 3, "teacher_channels": 5}
    crit = L.DistillLoss(cfg)
    total, parts = crit(s_logits, **_kw(spikes, t_logits, t_fmap, t_w, target, s_w),
                        generator=torch.Generator().manual_seed(0))
    total.backward()
    for t in (t_logits, t_fmap, t_w):
        assert t.grad is None
    for s in (s_logits, spikes, s_w, crit.adapter.conv.weight):
        assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    assert set(parts) == {"ce", "samd", "nld", "logit_kd", "camcam", "feature", "total"}
    assert all(not p.requires_grad for p in parts.values())
    weighted = sum(crit.weights[k] * parts[k] for k in L.WEIGHT_KEYS)
    assert parts["total"].item() == pytest.approx(weighted.item(), rel=1e-6)


def test_pure_losses_detach_teacher():
    s_logits, spikes, t_logits, t_fmap, t_w, _, _ = _batch()
    t_map = L.teacher_cam(t_fmap, t_w, t_logits)
    (L.logit_kd(s_logits, t_logits) + L.nld(s_logits, t_logits)
     + L.samd(L.student_sam(spikes), t_map)).backward()
    assert t_logits.grad is None and t_fmap.grad is None and t_w.grad is None
    assert s_logits.grad is not None and spikes.grad is not None


@pytest.mark.parametrize("name,active", [
    ("none", ("ce",)), ("logit_kd", ("ce", "logit_kd")), ("nld", ("ce", "nld")),
    ("samd", ("ce", "samd")), ("samd_nld", ("ce", "samd", "nld")),
    ("camcam", ("ce", "camcam")), ("feature", ("ce", "feature")),
])
def test_presets(name, active):
    over = {"student_channels": 3, "teacher_channels": 5} if name == "feature" else {}
    crit = L.DistillLoss.from_preset(name, **over)
    assert crit.active() == active
    s_logits, spikes, t_logits, t_fmap, t_w, target, s_w = _batch(grad_teacher=False)
    total, parts = crit(s_logits, **_kw(spikes, t_logits, t_fmap, t_w, target, s_w),
                        generator=torch.Generator().manual_seed(0))
    assert set(parts) == set(active) | {"total"}
    assert torch.isfinite(total)
    if name == "none":
        assert total.item() == pytest.approx(L.cross_entropy(s_logits, target).item())


def test_default_is_paper_and_matches_manual_sum():
    crit = L.DistillLoss()
    assert crit.active() == ("ce", "samd", "nld")
    assert L.PRESETS["samd_nld"] == {k: crit.weights[k] for k in L.WEIGHT_KEYS}
    s_logits, spikes, t_logits, t_fmap, t_w, target, _ = _batch(grad_teacher=False)
    total, _ = crit(s_logits, **_kw(spikes, t_logits, t_fmap, t_w, target),
                    generator=torch.Generator().manual_seed(5))
    manual = (L.cross_entropy(s_logits, target)
              + L.samd(L.student_sam(spikes), L.teacher_cam(t_fmap, t_w, t_logits))
              + L.nld(s_logits, t_logits, 2.0, 0.9, torch.Generator().manual_seed(5)))
    assert total.item() == pytest.approx(manual.item(), rel=1e-6)


def test_unused_inputs_may_be_none():
    crit = L.DistillLoss.from_preset("logit_kd")
    s_logits, _, t_logits, _, _, target, _ = _batch(grad_teacher=False)
    total, parts = crit(s_logits, teacher_logits=t_logits, target=target)
    assert set(parts) == {"ce", "logit_kd", "total"}
    with pytest.raises(ValueError, match="camcam.*student_classifier_weight"):
        b = _batch()
        L.DistillLoss.from_preset("camcam")(b[0], **_kw(*b[1:6]))


@pytest.mark.parametrize("cfg,key", [
    ({"bogus": 1.0}, "bogus"),
    ({"samd": -1.0}, "samd"),
    ({"nld": "x"}, "nld"),
    ({"ce": True}, "ce"),
    ({"tau_nld": 0.0}, "tau_nld"),
    ({"w_nld": 1.5}, "w_nld"),
    ({"label_smoothing": 1.0}, "label_smoothing"),
    ({"samd_scaling": "max"}, "samd_scaling"),
    ({"preset": "nope"}, "nope"),
    ({"feature": 1.0}, "student_channels"),
    ({"feature": 1.0, "student_channels": 3}, "teacher_channels"),
    ({"ce": 0.0, "samd": 0.0, "nld": 0.0}, "weights are 0"),
])
def test_config_errors(cfg, key):
    with pytest.raises(KdsnnError, match=key):
        L.DistillLoss(cfg)


def test_config_preset_with_overrides():
    crit = L.DistillLoss({"preset": "logit_kd", "tau_kd": 3, "label_smoothing": 0.1})
    assert crit.active() == ("ce", "logit_kd")
    assert crit.config["tau_kd"] == 3.0 and crit.config["label_smoothing"] == 0.1
    crit = L.DistillLoss({"preset": "none", "nld": 2.0})
    assert crit.active() == ("ce", "nld") and crit.weights["nld"] == 2.0
