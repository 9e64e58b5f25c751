"""kd_snn.data registry, digits split, errors."""
import numpy as np
import pytest
import torch

from kd_snn.data import DataSpec, build_dataset, dataset_spec, list_datasets
from kd_snn.errors import KdsnnError


def test_list_and_specs():
    names = list_datasets()
    for n in ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "nmnist",
              "cifar10dvs", "digits_events", "fashion_mnist_events"):
        assert n in names
    assert dataset_spec("digits") == DataSpec("digits", 10, 1, (8, 8), "static", 4)
    assert dataset_spec("cifar100").num_classes == 100
    assert dataset_spec("cifar10dvs").image_size == (48, 48)
    assert dataset_spec("cifar10dvs", size=64).image_size == (64, 64)
    assert dataset_spec("fashion-mnist").name == "fashion_mnist"
    s = dataset_spec("nmnist")
    assert (s.kind, s.in_channels, s.image_size) == ("event", 2, (34, 34))


def test_unknown_name_split_option():
    with pytest.raises(KdsnnError, match=r"'imagenet'.*choices: .*digits"):
        build_dataset("imagenet", "train")
    with pytest.raises(KdsnnError, match="'imagenet'"):
        dataset_spec("imagenet")
    with pytest.raises(KdsnnError, match="split 'val'"):
        build_dataset("digits", "val")
    with pytest.raises(KdsnnError, match="bogus"):
        build_dataset("digits", "train", bogus=1)


def test_digits_split():
    tr, te = build_dataset("digits", "train"), build_dataset("digits", "test")
    assert len(te) == 360 and len(tr) == 1797 - 360
    x, y = te[0]
    assert x.dtype == torch.float32 and x.shape == (1, 8, 8) and isinstance(y, int)
    xs = torch.stack([tr[i][0] for i in range(len(tr))])
    assert 0.0 <= xs.min() and xs.max() <= 1.0 and xs.max() == 1.0
    # stratified: every class has ~20 % of its samples in test
    ytr, yte = np.bincount(tr.labels, minlength=10), np.bincount(te.labels, minlength=10)
    assert np.all(np.abs(yte / (ytr + yte) - 0.2) < 0.01)
    # deterministic and disjoint
    te2 = build_dataset("digits", "test")
    assert torch.equal(torch.stack([te[i][0] for i in range(360)]),
                       torch.stack([te2[i][0] for i in range(360)]))
    from sklearn.datasets import load_digits
    d = load_digits()
    flat = {tuple(v) for v in (d.images / 16.0).reshape(len(d.images), -1).round(6)}
    assert len(flat) > 1700
    tr_set = {tuple(tr.images[i].reshape(-1).round(6)) for i in range(len(tr))}
    te_set = {tuple(te.images[i].reshape(-1).round(6)) for i in range(len(te))}
    assert len(tr_set & te_set) <= 3  # only exact duplicate images in the source data


def test_missing_files_message(tmp_path, monkeypatch):
    monkeypatch.setenv("KDSNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("KDSNN_DATA_ROOT", raising=False)
    for name, needle in (("mnist", "train-images-idx3-ubyte"), ("cifar10", "data_batch_1.bin"),
                         ("cifar100", "train.bin"), ("nmnist", ".bin"),
                         ("cifar10dvs", ".aedat")):
        with pytest.raises(KdsnnError) as e:
            build_dataset(name, "train", root=str(tmp_path / "none"))
        msg = str(e.value)
        assert needle in msg and str(tmp_path / "none") in msg and "get them" in msg
        assert "\n" not in msg


def test_fashion_searches_debian_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("KDSNN_CACHE_DIR", str(tmp_path / "cache"))
    from pathlib import Path
    if Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").exists():
        ds = build_dataset("fashion_mnist", "test", root=str(tmp_path / "none"))
        assert len(ds) == 10000 and ds[0][0].shape == (1, 28, 28)
    else:
        with pytest.raises(KdsnnError, match="/usr/share/datasets/fashion-mnist.*apt-get"):
            build_dataset("fashion_mnist", "test", root=str(tmp_path / "none"))
