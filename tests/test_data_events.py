"""Saccade event generator and the cached EventVersion data sets."""
import numpy as np
import pytest
import torch

from kd_snn.data import EventVersion, build_dataset, saccade_events, saccade_events_batch
from kd_snn.data.saccade import _luminance, saccade_path


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("KDSNN_CACHE_DIR", str(tmp_path / "cache"))


def square(size=16, contrast=1.0):
    img = np.zeros((size, size), np.float32)
    img[4:12, 5:11] = contrast
    return img


def test_path_is_triangle_of_three_saccades():
    t, dx, dy = saccade_path(6, 10)
    assert len(t) == 31 and t[0] == 0 and t[-1] == 300_000
    assert (dx[0], dy[0]) == (0, 0) and (dx[10], dy[10]) == (3, 6)
    assert (dx[20], dy[20]) == (6, 0) and (dx[30], dy[30]) == (0, 0)


def test_events_sane():
    ev = saccade_events(square())
    assert ev.dtype.names == ("x", "y", "t", "p")
    assert np.issubdtype(ev["t"].dtype, np.integer) and np.issubdtype(ev["p"].dtype, np.integer)
    assert len(ev) > 100
    assert np.all(np.diff(ev["t"]) >= 0)
    assert ev["t"].min() >= 0 and ev["t"].max() <= 300_000
    assert set(np.unique(ev["p"])) == {0, 1}
    A = 3  # default amplitude for 16 px: round(6 * 16 / 28)
    assert ev["x"].min() >= 0 and ev["x"].max() < 16 + A and ev["y"].max() < 16 + A
    # a closed path: as many ON as OFF events, within a few per pixel
    on, off = (ev["p"] == 1).sum(), (ev["p"] == 0).sum()
    assert abs(int(on) - int(off)) <= 0.2 * len(ev)
    # first saccade moves down-right: the square's right edge (x = 10 + dx) turns ON
    first = ev[ev["t"] < 100_000]
    right = first[(first["x"] >= 11) & (first["y"] >= 6) & (first["y"] < 12)]
    assert (right["p"] == 1).mean() > 0.8
    # a still image gives no events
    assert len(saccade_events(square(), amplitude=0)) == 0
    # an edge passing a pixel gives at most ceil(log contrast / threshold) events; the
    # triangle path passes each pixel only a few times
    pix = ev["y"].astype(int) * 100 + ev["x"]
    assert np.bincount(pix).max() <= 6 * int(np.ceil(np.log(1.5 / 0.5) / 0.3))


def test_events_deterministic_and_batch_independent():
    rng = np.random.default_rng(0)
    imgs = rng.random((5, 1, 12, 12)).astype(np.float32)
    a, s1 = saccade_events_batch(imgs)
    b, s2 = saccade_events_batch(imgs[2:4])
    assert s1 == s2 == (12 + 3, 12 + 3)
    assert np.array_equal(a[2], b[0]) and np.array_equal(a[3], b[1])
    c, _ = saccade_events_batch(imgs)
    assert all(np.array_equal(u, v) for u, v in zip(a, c))
    # colour images use their luminance
    rgb = np.repeat(imgs[:1], 3, axis=1)
    assert np.array_equal(saccade_events_batch(rgb)[0][0], a[0])


def test_luminance_is_exact_for_grey_and_fixed_for_colour():
    """Grey RGB gives back the grey value bit for bit (also at 0, 1, subnormals and the
    float32 neighbours of 1); colour uses 0.299 r + 0.587 g + 0.114 b."""
    grey = np.concatenate([np.random.default_rng(1).random(4096, dtype=np.float32),
                           np.array([0, 1, 2 ** -149, 2 ** -126, 1 - 2 ** -24], np.float32)])
    grey = grey.reshape(1, 1, 1, -1)
    assert np.array_equal(_luminance(np.repeat(grey, 3, axis=1)), grey[:, 0])
    rgb = np.array([1.0, 0.5, 0.25], np.float32).reshape(1, 3, 1, 1)
    assert _luminance(rgb)[0, 0, 0] == np.float32(0.299 + 0.587 * 0.5 + 0.114 * 0.25)
    assert _luminance(rgb).dtype == np.float32


def test_more_contrast_more_events():
    counts = [len(saccade_events(square(contrast=c))) for c in (0.1, 0.3, 1.0)]
    assert counts[0] < counts[1] < counts[2]
    assert len(saccade_events(square(), threshold=0.6)) < len(saccade_events(square()))


def test_digits_events_cached(tmp_path):
    cache = tmp_path / "c"
    ds = build_dataset("digits_events", "test", cache_dir=str(cache))
    files = list((cache / "events").glob("digits_events-test-*.npz"))
    assert len(files) == 1
    assert len(ds) == 360 and ds.spec.image_size == (10, 10) and ds.spec.kind == "event"
    fr, y = ds[0]
    assert fr.shape == (10, 2, 10, 10) and fr.dtype == torch.float32 and fr.sum() > 0
    base = build_dataset("digits", "test")
    assert y == base[0][1]
    for i in (0, 359):  # the packed cache gives back exactly the generator's events
        assert np.array_equal(ds.events(i), saccade_events(base[i][0].numpy()))
    # no pickles in the cache
    with np.load(files[0], allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)
    mtime = files[0].stat().st_mtime_ns
    ds2 = build_dataset("digits_events", "test", cache_dir=str(cache))
    assert files[0].stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert np.array_equal(ds2.events(5), ds.events(5))
    assert torch.equal(ds2[5][0], ds[5][0])
    # other parameters -> other cache file
    ds3 = build_dataset("digits_events", "test", cache_dir=str(cache), threshold=0.5,
                        time_steps=4)
    assert len(list((cache / "events").glob("*.npz"))) == 2
    assert ds3[0][0].shape == (4, 2, 10, 10) and len(ds3.events(0)) < len(ds.events(0))
    # a damaged cache file is rebuilt
    files[0].write_bytes(b"garbage")
    ds4 = build_dataset("digits_events", "test", cache_dir=str(cache))
    assert np.array_equal(ds4.events(5), ds.events(5))


def test_event_version_generic_wrapper():
    base = [(torch.rand(1, 8, 8), i % 3) for i in range(7)]
    ev = EventVersion(base, time_steps=6, amplitude=2)
    assert len(ev) == 7 and ev.image_size == (10, 10)
    fr, y = ev[4]
    assert fr.shape == (6, 2, 10, 10) and y == 1
    assert ev.cache_path is None


def test_event_sets_accept_augment(tmp_path):
    plain = build_dataset("digits_events", "train", limit=12, augment=None)
    aug = build_dataset("digits_events", "train", limit=12, augment=True, seed=3)
    assert not plain.augment and aug.augment
    a0 = torch.stack([aug[i][0] for i in range(12)])
    p0 = torch.stack([plain[i][0] for i in range(12)])
    assert not torch.equal(a0, p0) and torch.allclose(a0.sum(), p0.sum())  # roll keeps counts
    assert torch.equal(a0, torch.stack([aug[i][0] for i in range(12)]))
    aug.set_epoch(1)
    assert not torch.equal(a0, torch.stack([aug[i][0] for i in range(12)]))


def test_frame_memo_gives_the_framed_counts_and_keeps_them():
    base = [(torch.rand(1, 8, 8), i % 3) for i in range(5)]
    memo = EventVersion(base, time_steps=6, amplitude=2)
    plain = EventVersion(base, time_steps=6, amplitude=2, memo_frames=False)
    for i in range(5):
        a, b = memo[i][0], plain[i][0]
        assert a.dtype == torch.float32 and torch.equal(a, b)
        a += 1  # a caller's in-place change must not reach the memo
    assert len(memo._frames) == 5 and not plain._frames
    assert all(torch.equal(memo[i][0], plain[i][0]) for i in range(5))
