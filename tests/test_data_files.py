"""Readers on small files written here in the real on-disk formats (no downloads)."""
import gzip
import struct

import numpy as np
import pytest
import torch

from kd_snn.data import build_dataset
from kd_snn.data.static import read_idx
from kd_snn.errors import KdsnnError


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("KDSNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("KDSNN_DATA_ROOT", raising=False)


# --------------------------------------------------------------------------- IDX

def idx_bytes(arr: np.ndarray) -> bytes:
    code = {np.uint8: 0x08, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D}[arr.dtype.type]
    hdr = bytes([0, 0, code, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    return hdr + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_mnist(folder, n_train=12, n_test=5, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, stem, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n).astype(np.uint8)
        for kind, arr in (("images-idx3", x), ("labels-idx1", y)):
            data = idx_bytes(arr)
            name = f"{stem}-{kind}-ubyte"
            if gz:
                (folder / (name + ".gz")).write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
        out[split] = (x, y)
    return out


def test_idx_reader_raw_and_gz(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.idx").write_bytes(idx_bytes(a))
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(idx_bytes(a)))
    for f in ("a.idx", "a.idx.gz"):
        b = read_idx(tmp_path / f)
        assert b.dtype == np.uint8 and np.array_equal(a, b)
    i = np.array([[1, -2], [300000, 4]], dtype=np.int32)
    (tmp_path / "i.idx").write_bytes(idx_bytes(i))
    assert np.array_equal(read_idx(tmp_path / "i.idx"), i)


def test_idx_reader_refuses_corrupt(tmp_path):
    a = np.zeros((2, 3), np.uint8)
    good = idx_bytes(a)
    (tmp_path / "magic").write_bytes(b"\x08\x03" + good[2:])
    with pytest.raises(KdsnnError, match="magic.*magic"):
        read_idx(tmp_path / "magic")
    (tmp_path / "short").write_bytes(good[:-1])
    with pytest.raises(KdsnnError, match="short.*expected"):
        read_idx(tmp_path / "short")
    (tmp_path / "long.gz").write_bytes(gzip.compress(good + b"\0"))
    with pytest.raises(KdsnnError, match="long.gz"):
        read_idx(tmp_path / "long.gz")
    (tmp_path / "trunc.gz").write_bytes(gzip.compress(good)[:-6])
    with pytest.raises(KdsnnError, match="trunc.gz"):
        read_idx(tmp_path / "trunc.gz")


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_and_fashion_from_root(tmp_path, gz):
    ref = write_mnist(tmp_path / "m", gz=gz)
    for name in ("mnist", "fashion_mnist"):
        for split in ("train", "test"):
            ds = build_dataset(name, split, root=str(tmp_path / "m"))
            x, y = ref[split]
            assert len(ds) == len(y)
            xi, yi = ds[3]
            assert xi.shape == (1, 28, 28) and xi.dtype == torch.float32
            assert torch.allclose(xi[0], torch.from_numpy(x[3] / 255.0).float())
            assert yi == int(y[3])
    # torchvision-style sub-folder is found too
    write_mnist(tmp_path / "r" / "MNIST" / "raw", gz=gz)
    assert len(build_dataset("mnist", "test", root=str(tmp_path / "r"))) == 5


def test_mnist_bad_labels_refused(tmp_path):
    write_mnist(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(5, 11, np.uint8)))
    with pytest.raises(KdsnnError, match="t10k-labels"):
        build_dataset("mnist", "test", root=str(tmp_path))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(KdsnnError, match="pair up"):
        build_dataset("mnist", "test", root=str(tmp_path))


# --------------------------------------------------------------------------- CIFAR binary

def cifar_records(n, label_bytes, num_classes, seed):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)  # planes R, G, B
    labels = rng.integers(0, num_classes, (n, label_bytes), dtype=np.uint8)
    raw = np.concatenate([labels, img.reshape(n, -1)], axis=1)
    return raw.tobytes(), img, labels


def test_cifar10_binary(tmp_path):
    d = tmp_path / "cifar-10-batches-bin"
    d.mkdir()
    ref = []
    for i in range(1, 6):
        raw, img, lab = cifar_records(3, 1, 10, i)
        (d / f"data_batch_{i}.bin").write_bytes(raw)
        ref.append((img, lab[:, 0]))
    raw, timg, tlab = cifar_records(4, 1, 10, 9)
    (d / "test_batch.bin").write_bytes(raw)
    tr = build_dataset("cifar10", "train", root=str(tmp_path), augment=False)
    assert len(tr) == 15
    x, y = tr[7]  # batch 3, record 1
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert y == int(ref[2][1][1])
    assert torch.equal(x, torch.from_numpy(ref[2][0][1] / 255.0).float())
    te = build_dataset("cifar10", "test", root=str(tmp_path))
    assert [te[i][1] for i in range(4)] == tlab[:, 0].tolist()
    assert not te.augment and tr.spec.num_classes == 10


def test_cifar_pixel_layout(tmp_path):
    """Record = label, 1024 red bytes, 1024 green, 1024 blue, each row-major."""
    d = tmp_path / "cifar-10-batches-bin"
    d.mkdir()
    rec = bytearray(3073)
    rec[0] = 7
    rec[1 + 0 * 1024 + 2 * 32 + 5] = 255      # red at (row 2, col 5)
    rec[1 + 1 * 1024 + 0 * 32 + 31] = 128     # green at (0, 31)
    rec[1 + 2 * 1024 + 31 * 32 + 0] = 51      # blue at (31, 0)
    (d / "test_batch.bin").write_bytes(bytes(rec))
    x, y = build_dataset("cifar10", "test", root=str(tmp_path))[0]
    assert y == 7
    assert x[0, 2, 5] == 1.0 and x[1, 0, 31] == pytest.approx(128 / 255)
    assert x[2, 31, 0] == pytest.approx(0.2)
    assert x.sum() == pytest.approx(1.0 + 128 / 255 + 0.2)


def test_cifar100_binary_and_truncation(tmp_path):
    d = tmp_path / "cifar-100-binary"
    d.mkdir()
    raw, img, lab = cifar_records(6, 2, 100, 1)  # (coarse, fine)
    lab[:, 0] %= 20
    raw = np.concatenate([lab, img.reshape(6, -1)], axis=1).tobytes()
    (d / "train.bin").write_bytes(raw)
    (d / "test.bin").write_bytes(raw[: 3074 * 2])
    tr = build_dataset("cifar100", "train", root=str(tmp_path), augment=False)
    assert [tr[i][1] for i in range(6)] == lab[:, 1].tolist()  # fine labels
    assert torch.equal(tr[5][0], torch.from_numpy(img[5] / 255.0).float())
    assert len(build_dataset("cifar100", "test", root=str(tmp_path))) == 2
    (d / "test.bin").write_bytes(raw[: 3074 * 2 - 100])
    with pytest.raises(KdsnnError, match="test.bin"):
        build_dataset("cifar100", "test", root=str(tmp_path))


def test_cifar_augment_deterministic(tmp_path):
    d = tmp_path / "cifar-10-batches-bin"
    d.mkdir()
    raw, img, _ = cifar_records(4, 1, 10, 3)
    for i in range(1, 6):
        (d / f"data_batch_{i}.bin").write_bytes(raw)
    a = build_dataset("cifar10", "train", root=str(tmp_path))
    b = build_dataset("cifar10", "train", root=str(tmp_path))
    assert a.augment
    xs = [a[i][0] for i in range(20)]
    assert all(torch.equal(x, b[i][0]) for i, x in enumerate(xs))
    assert all(x.shape == (3, 32, 32) for x in xs)
    plain = torch.from_numpy(img / 255.0).float()
    assert any(not torch.equal(xs[i], plain[i % 4]) for i in range(20))
    a.set_epoch(1)
    assert any(not torch.equal(a[i][0], xs[i]) for i in range(20))


# --------------------------------------------------------------------------- N-MNIST

def nmnist_bytes(x, y, t, p):
    """Orchard's 40-bit format: x, y, p<<7 | t[22:16], t[15:8], t[7:0]."""
    x, y, t, p = (np.asarray(v, dtype=np.int64) for v in (x, y, t, p))
    b = np.stack([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF], axis=1)
    return b.astype(np.uint8).tobytes()


def write_nmnist(root, split, per_class=2, n_events=50, seed=0):
    rng = np.random.default_rng(seed)
    ref = {}
    folder = root / "NMNIST" / ("Train" if split == "train" else "Test")
    for digit in range(10):
        (folder / str(digit)).mkdir(parents=True)
        for k in range(per_class):
            t = np.sort(rng.integers(0, 300_000, n_events))
            x, y = rng.integers(0, 34, n_events), rng.integers(0, 34, n_events)
            p = rng.integers(0, 2, n_events)
            f = folder / str(digit) / f"{k:05d}.bin"
            f.write_bytes(nmnist_bytes(x, y, t, p))
            ref[f] = (x, y, t, p)
    return ref


def test_nmnist_bin_roundtrip(tmp_path):
    ref = write_nmnist(tmp_path, "train")
    write_nmnist(tmp_path, "test", per_class=1)
    ds = build_dataset("nmnist", "train", root=str(tmp_path), time_steps=5)
    assert len(ds) == 20 and ds.spec.default_time_steps == 5
    assert build_dataset("nmnist", "test", root=str(tmp_path)).labels.tolist() == list(range(10))
    for i in (0, 7, 19):
        ev = ds.events(i)
        x, y, t, p = ref[ds.files[i]]
        assert np.array_equal(ev["x"], x) and np.array_equal(ev["y"], y)
        assert np.array_equal(ev["t"], t) and np.array_equal(ev["p"], p)
        assert ds.labels[i] == int(ds.files[i].parent.name)
        fr, label = ds[i]
        assert fr.shape == (5, 2, 34, 34) and fr.dtype == torch.float32 and label == i // 2
        # tonic's time bins drop only events at the very last time stamp(s)
        assert len(ev) - 3 <= fr.sum() <= len(ev)
        assert fr[:, 1].sum() <= (p == 1).sum()


def test_nmnist_corrupt(tmp_path):
    ref = write_nmnist(tmp_path, "train", per_class=1)
    f = sorted(ref)[0]
    f.write_bytes(f.read_bytes()[:-2])
    ds = build_dataset("nmnist", "train", root=str(tmp_path))
    with pytest.raises(KdsnnError, match=str(f.name)):
        ds[0]


# --------------------------------------------------------------------------- CIFAR10-DVS

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")


def aedat2_bytes(x, y, t, p):
    """AER-DAT 2.0 as jAER writes it (DVS128): '#' header lines (CRLF), then big-endian
    (address u32, timestamp u32) pairs; raw address = rawx << 8 | rawy << 1 | rawp. The
    CIFAR10-DVS recordings are upside down with inverted polarity: raw = 127 - upright."""
    x, y, t, p = (np.asarray(v, dtype=np.int64) for v in (x, y, t, p))
    addr = ((127 - x) << 8) | ((127 - y) << 1) | (1 - p)
    data = np.stack([addr, t], axis=1).astype(">u4").tobytes()
    hdr = b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n" \
          b"# Data format is int32 address, int32 timestamp (8 bytes total)\r\n"
    return hdr + data


def write_cifar10dvs(root, per_class=10, n_events=400, seed=0):
    rng = np.random.default_rng(seed)
    ref = {}
    for c in CLASSES:
        (root / "CIFAR10DVS" / c).mkdir(parents=True)
        for k in range(per_class):
            t = np.sort(rng.integers(1000, 1_000_000, n_events))
            x, y = rng.integers(0, 128, n_events), rng.integers(0, 128, n_events)
            p = rng.integers(0, 2, n_events)
            f = root / "CIFAR10DVS" / c / f"cifar10_{c}_{k}.aedat"
            f.write_bytes(aedat2_bytes(x, y, t, p))
            ref[f] = (x, y, t, p)
    return ref


def test_cifar10dvs_aedat_roundtrip_and_split(tmp_path):
    ref = write_cifar10dvs(tmp_path)
    tr = build_dataset("cifar10dvs", "train", root=str(tmp_path), augment=False)
    te = build_dataset("cifar10dvs", "test", root=str(tmp_path))
    assert len(tr) == 90 and len(te) == 10
    assert np.bincount(tr.labels).tolist() == [9] * 10 and te.labels.tolist() == list(range(10))
    # natural order: file _9 is the test one of each class, _10 would sort after _9
    assert all(f.name.endswith("_9.aedat") for f in te.files)
    assert not set(tr.files) & set(te.files)
    ev = tr.events(13)
    x, y, t, p = ref[tr.files[13]]
    assert np.array_equal(ev["x"], x) and np.array_equal(ev["y"], y)
    assert np.array_equal(ev["p"], p) and np.array_equal(ev["t"], t - t[0])
    fr, label = tr[13]
    assert label == 1 and fr.shape == (10, 2, 48, 48) and fr.dtype == torch.float32
    # area resize keeps roughly the mean count per pixel: total scales by ~(48/128)^2
    assert fr.sum().item() == pytest.approx(len(ev) * (48 / 128) ** 2, rel=0.1)
    big = build_dataset("cifar10dvs", "test", root=str(tmp_path), size=128, time_steps=4)
    assert big[0][0].shape == (4, 2, 128, 128) and big.spec.image_size == (128, 128)


def test_cifar10dvs_augment_deterministic(tmp_path):
    write_cifar10dvs(tmp_path, per_class=2, n_events=300)
    a = build_dataset("cifar10dvs", "train", root=str(tmp_path), train_fraction=0.5)
    b = build_dataset("cifar10dvs", "train", root=str(tmp_path), train_fraction=0.5)
    plain = build_dataset("cifar10dvs", "train", root=str(tmp_path), train_fraction=0.5,
                          augment=False)
    assert a.augment and len(a) == 10
    same = [torch.equal(a[i][0], b[i][0]) for i in range(10)]
    assert all(same)
    assert any(not torch.equal(a[i][0], plain[i][0]) for i in range(10))
    # flip / roll only move counts around; Cutout removes some
    assert all(a[i][0].sum() <= plain[i][0].sum() + 1e-3 for i in range(10))


def test_cifar10dvs_corrupt(tmp_path):
    ref = write_cifar10dvs(tmp_path, per_class=1, n_events=10)
    f = sorted(ref)[0]
    f.write_bytes(f.read_bytes()[:-3])
    g = sorted(ref)[1]
    g.write_bytes(b"\x00\x01" * 40)
    ds = build_dataset("cifar10dvs", "test", root=str(tmp_path), train_fraction=0.0)
    idx = {p: i for i, p in enumerate(ds.files)}
    with pytest.raises(KdsnnError, match=f.name):
        ds[idx[f]]
    with pytest.raises(KdsnnError, match=g.name):
        ds[idx[g]]
