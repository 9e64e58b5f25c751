"""Encodings and the deterministic, resumable, shardable loader."""
import pytest
import torch
from torch.utils.data import TensorDataset

from kd_snn.data import build_dataset, encode, make_loader
from kd_snn.data.loader import epoch_indices
from kd_snn.errors import KdsnnError


def test_encode_direct_and_frames():
    x = torch.rand(3, 1, 4, 5)
    d = encode(x, 4, "direct")
    assert d.shape == (4, 3, 1, 4, 5) and all(torch.equal(d[t], x) for t in range(4))
    ev = torch.rand(3, 6, 2, 4, 5)
    f = encode(ev, None, "frames")
    assert f.shape == (6, 3, 2, 4, 5) and torch.equal(f[2, 1], ev[1, 2])
    assert torch.equal(encode(ev, 6, "frames"), f)
    with pytest.raises(KdsnnError, match="T=6"):
        encode(ev, 4, "frames")
    with pytest.raises(KdsnnError, match="'rate'.*direct, poisson, frames"):
        encode(x, 4, "rate")
    with pytest.raises(KdsnnError, match="frames"):
        encode(ev, 4, "direct")


def test_encode_poisson():
    x = torch.full((2, 1, 50, 50), 0.3)
    x[1] = 0.8
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a, b = encode(x, 20, "poisson", g1), encode(x, 20, "poisson", g2)
    assert a.shape == (20, 2, 1, 50, 50) and torch.equal(a, b)
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    assert a[:, 0].mean().item() == pytest.approx(0.3, abs=0.01)
    assert a[:, 1].mean().item() == pytest.approx(0.8, abs=0.01)
    c = encode(x, 20, "poisson", torch.Generator().manual_seed(6))
    assert not torch.equal(a, c)
    assert encode(torch.zeros(1, 1, 3, 3), 5, "poisson").sum() == 0
    assert encode(torch.ones(1, 1, 3, 3), 5, "poisson").mean() == 1


def _order(loader):
    return [y.tolist() for _, y in loader]


def test_loader_deterministic_across_epochs_and_seeds():
    ds = TensorDataset(torch.zeros(23, 1), torch.arange(23))
    a = _order(make_loader(ds, 5, shuffle=True, seed=1, epoch=0))
    assert a == _order(make_loader(ds, 5, shuffle=True, seed=1, epoch=0))
    assert sorted(sum(a, [])) == list(range(23)) and [len(b) for b in a] == [5, 5, 5, 5, 3]
    assert a != _order(make_loader(ds, 5, shuffle=True, seed=1, epoch=1))
    assert a != _order(make_loader(ds, 5, shuffle=True, seed=2, epoch=0))
    assert _order(make_loader(ds, 5, shuffle=False, seed=1, epoch=3))[0] == [0, 1, 2, 3, 4]
    dl = make_loader(ds, 5, shuffle=True, seed=1, epoch=0, drop_last=True)
    assert len(dl) == 4 and [len(b) for b in _order(dl)] == [5] * 4
    # the global RNG does not matter
    torch.manual_seed(123)
    assert a == _order(make_loader(ds, 5, shuffle=True, seed=1, epoch=0))


def test_loader_skip_batches_resumes():
    ds = TensorDataset(torch.zeros(23, 1), torch.arange(23))
    full = _order(make_loader(ds, 4, shuffle=True, seed=7, epoch=2))
    rest = make_loader(ds, 4, shuffle=True, seed=7, epoch=2, skip_batches=3)
    assert len(rest) == len(full) - 3 and _order(rest) == full[3:]
    assert _order(make_loader(ds, 4, shuffle=True, seed=7, epoch=2, skip_batches=99)) == []
    with pytest.raises(KdsnnError):
        make_loader(ds, 4, skip_batches=-1)


def test_loader_sharding():
    n = 23
    ds = TensorDataset(torch.zeros(n, 1), torch.arange(n))
    shards = [sum(_order(make_loader(ds, 3, True, 4, 1, rank=r, world_size=3)), [])
              for r in range(3)]
    assert len({len(s) for s in shards}) == 1 and sum(map(len, shards)) == 24  # padded
    assert set(sum(shards, [])) == set(range(n))
    again = [epoch_indices(n, True, 4, 1, r, 3) for r in range(3)]
    assert again == shards
    # the shards interleave the single-process order
    single = epoch_indices(n, True, 4, 1)
    assert shards[0][:3] == single[0:9:3] and shards[1][:3] == single[1:9:3]
    dropped = [epoch_indices(n, True, 4, 1, r, 3, drop_last=True) for r in range(3)]
    assert all(len(s) == 7 for s in dropped) and len(set(sum(dropped, []))) == 21
    with pytest.raises(KdsnnError):
        make_loader(ds, 3, rank=3, world_size=3)


def test_loader_sets_epoch_for_augmentation(tmp_path, monkeypatch):
    monkeypatch.setenv("KDSNN_CACHE_DIR", str(tmp_path))
    ds = build_dataset("digits", "train", augment=True, limit=40)
    b0 = next(iter(make_loader(ds, 40, shuffle=False, seed=0, epoch=0)))[0]
    b0_again = next(iter(make_loader(ds, 40, shuffle=False, seed=0, epoch=0)))[0]
    b1 = next(iter(make_loader(ds, 40, shuffle=False, seed=0, epoch=1)))[0]
    assert torch.equal(b0, b0_again) and not torch.equal(b0, b1)
    x, y = next(iter(make_loader(build_dataset("digits_events", "test", limit=8), 4)))
    assert x.shape == (4, 10, 2, 10, 10) and encode(x, 10, "frames").shape == (10, 4, 2, 10, 10)
