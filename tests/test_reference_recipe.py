"""The reference recipe end to end at tiny size: kornia batch augmentation, teacher in
train mode, `kdsnn teacher --config cifar100_ckdsnn` / `kdsnn distill`, resume, export."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from kd_snn.config import load_config
from kd_snn.data.augment import BatchAugment
from kd_snn.errors import KdsnnError
from kdsnn.cli import main
from tests.test_cli import same_threads
from tests.test_data_files import cifar_records

MEAN = (0.4914, 0.4822, 0.4465)
#: tiny reference run: 32 training images, batch 16 (2 steps per epoch), width 1 (16/32/64)
TINY = ["--set", "teacher.epochs=1", "--set", "student.epochs=2", "--set", "teacher.width=1",
        "--set", "student.width=1", "--set", "data.batch_size=16", "--no-progress"]


# ------------------------------------------------------------------ batch augmentation

def test_batch_augment_is_seeded_per_step():
    aug = BatchAugment("cifar10", 0.5, (0.02, 0.2), fill=MEAN)
    x = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    x0, state = x.clone(), torch.get_rng_state()
    a, b, c = aug(x, 11), aug(x, 11), aug(x, 12)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is left alone
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert not torch.equal(a, x) and torch.equal(x, x0)  # the input is not changed


def test_random_erasing_fills_with_the_mean():
    """Erasing with 0 after Normalize = filling with the channel mean before it."""
    aug = BatchAugment("none", 1.0, (0.1, 0.2), fill=MEAN)
    x = torch.full((4, 3, 16, 16), 0.9)
    y = aug(x, 0)
    erased = y[:, 0] != 0.9
    assert erased.any(1).any(1).all()  # p = 1: every image has a box
    for c, m in enumerate(MEAN):
        torch.testing.assert_close(y[:, c][erased], torch.full_like(y[:, c][erased], m))
        assert torch.equal(y[:, c] != 0.9, erased)  # the same box in every channel


def test_autoaugment_picks_a_subpolicy_per_image():
    aug = BatchAugment("cifar10")
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)).repeat(32, 1, 1, 1)
    y = aug(x, 3)
    distinct = {tuple(v.flatten()[:64].tolist()) for v in y}
    assert len(distinct) > 3  # one batch call, several different sub-policies


def test_bad_recipe_options_refused_at_load():
    with pytest.raises(KdsnnError, match="data.autoaugment.*direct"):
        load_config("cifar100_ckdsnn", ["data.encoding=poisson"])
    with pytest.raises(KdsnnError, match="data.erasing_scale"):
        load_config("cifar100_ckdsnn", ["data.erasing_scale=[0.3, 0.1]"])
    with pytest.raises(KdsnnError, match="data.normalize' must be one of"):
        load_config("digits", ["data.normalize=imagenet"])
    with pytest.raises(KdsnnError, match="loss.teacher_mode"):
        load_config("digits", ["loss.teacher_mode=frozen"])


# ------------------------------------------------------------------ the command line

@pytest.fixture(scope="module")
def cifar100_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    d = root / "cifar-100-binary"
    d.mkdir()
    for name, n, seed in (("train.bin", 32, 1), ("test.bin", 16, 2)):
        raw, img, lab = cifar_records(n, 2, 100, seed)
        lab[:, 0] %= 20
        (d / name).write_bytes(np.concatenate([lab, img.reshape(n, -1)], axis=1).tobytes())
    return root


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, cifar100_root):
    run = tmp_path_factory.mktemp("runs") / "ckdsnn"
    args = ["--set", f"data.root={cifar100_root}", *TINY]
    assert main(["teacher", "--config", "cifar100_ckdsnn", str(run), *args]) == 0
    assert main(["distill", str(run), "--no-progress"]) == 0
    return run


def test_reference_recipe_runs(reference_run):
    metrics = json.loads((reference_run / "metrics.json").read_text())
    assert metrics["student"]["time_steps"] == 1 and metrics["student"]["loss"] == "samd_nld"
    meta = json.loads((reference_run / "student/model.json").read_text())
    spec = meta["model"]
    assert (spec["head"], spec["last_block"], spec["normalize"]) == ("reference", "relu",
                                                                     "cifar10")
    assert spec["neuron"]["detach_reset"] is False and spec["neuron"]["surrogate"] == "triangle"
    teacher = json.loads((reference_run / "teacher/model.json").read_text())["model"]
    assert teacher["normalize"] == "cifar10"
    rows = (reference_run / "student/metrics.csv").read_text().splitlines()
    lrs = [float(r.split(",")[1]) for r in rows[1:]]
    assert lrs == [0.1, pytest.approx(0.05)]  # cosine per epoch over 2 epochs: 0.1, then 0.05


def test_teacher_in_train_mode_is_never_changed(reference_run):
    """Train-mode teacher: batch statistics, running statistics untouched (momentum 0)."""
    from kd_snn.rundir import RunDir
    from kd_snn.trainer import Stage
    run = RunDir(reference_run)
    stage = Stage(run, run.load_config(), "student", device="cpu", progress=False)
    stage.prepare()
    assert stage.teacher.training
    before = {k: v.clone() for k, v in stage.teacher.state_dict().items()
              if "running" in k}
    x, y = next(iter(torch.utils.data.DataLoader(stage.train_set, batch_size=8)))
    with torch.no_grad():
        stage.teacher(x)
    after = stage.teacher.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


def test_reference_resume_is_bit_identical(reference_run, tmp_path):
    """kornia's draws are seeded from (seed, stage, epoch, step): a resumed run replays them."""
    args = ["--no-progress", "--teacher", str(reference_run / "teacher")]
    crashed = tmp_path / "crashed"
    cfg = str(reference_run / "config.yaml")
    proc = subprocess.run([sys.executable, "-m", "kdsnn", "distill", "--config", cfg,
                           str(crashed), *args], capture_output=True, text=True,
                          env=same_threads(KDSNN_FAIL_AT_STEP="3"))  # mid epoch 2
    assert proc.returncode == 3, proc.stderr
    assert main(["distill", str(crashed), "--resume", *args]) == 0
    ref = tmp_path / "ref"
    assert main(["distill", "--config", cfg, str(ref), *args]) == 0
    a = load_file(ref / "student/model.safetensors")
    b = load_file(crashed / "student/model.safetensors")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    c = load_file(reference_run / "student/model.safetensors")
    assert all(torch.equal(a[k], c[k]) for k in a)  # the same as the fixture's run


def test_reference_student_export_refused_by_name(reference_run, capsys):
    assert main(["export", str(reference_run), "--target", "quant"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kdsnn: error: module '") and "cannot be expressed on Loihi" in err
    assert not (reference_run / "export").exists()
