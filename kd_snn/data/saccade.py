"""Offline event versions of static images, made the way N-MNIST was recorded.

Orchard et al. (2015) moved a DVS camera in three saccades along a triangle in front of a
still image (~100 ms each). Here the image moves over a dark sensor of ``(H + A, W + A)``
pixels along the triangle (0, 0) -> (A/2, A) -> (A, 0) -> (0, 0) (offsets (dx, dy), A =
``amplitude``), sampled ``steps_per_saccade`` times per saccade with bilinear sub-pixel shifts.
Each pixel keeps the log intensity ``log(eps + I)`` of its last event; whenever the current
value differs from it by more than ``threshold``, an ON (p = 1) or OFF (p = 0) event is
emitted per threshold crossing, at the linearly interpolated crossing time. No noise: the
result is a deterministic function of the image and the parameters.

Everything is vectorised over a batch of images (numpy); a 60k set takes seconds to a minute
and is cached to disk (``.npz``, ``allow_pickle=False``, written atomically).
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from kd_snn.data.common import item_generator
from kd_snn.data.events import EVENT_DTYPE, augment_frames, to_frames
from kd_snn.io import atomic_path

GENERATOR_VERSION = 3  # generator + cache format (bump when either changes); 3: exact luminance
SACCADE_US = 100_000


def default_amplitude(size: int) -> int:
    """Saccade amplitude in pixels: 6 for 28x28 (N-MNIST: 28 -> 34x34 sensor), scaled."""
    return max(1, int(round(6 * size / 28)))


LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B


def _luminance(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) or (N, H, W) in [0,1] -> (N, H, W) float32, the same bits on every CPU.

    RGB is ``(0.299 r + 0.587 g) + 0.114 b``, any other channel count the mean (weights
    1/C), evaluated plane by plane in float64 in that fixed order and rounded once to
    float32.  Each step is one correctly rounded IEEE operation per element, so no BLAS or
    SIMD summation order enters (``np.tensordot`` in float32 did, and turned grey RGB into
    other values than the grey image).  A grey pixel r = g = b = x gives exactly x: the
    float64 weights sum to 1 within 2**-53 and the C products and C - 1 sums of same-sign
    terms add a relative error below 2C * 2**-53, far inside float32's half-ulp
    (>= 2**-25 |x|), so the result rounds back to x.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        return images
    channels = images.shape[1]
    if channels == 1:
        return images[:, 0]
    weights = LUMA_WEIGHTS if channels == 3 else (1.0 / channels,) * channels
    planes = images.astype(np.float64)
    lum = np.zeros(planes[:, 0].shape, np.float64)
    for c, weight in enumerate(weights):
        lum += weight * planes[:, c]
    return lum.astype(np.float32)


def saccade_path(amplitude: float, steps_per_saccade: int, saccade_us: int = SACCADE_US
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample times (us) and offsets dx, dy of the three saccades (3*S + 1 samples)."""
    A = float(amplitude)
    verts = np.array([[0, 0], [A / 2, A], [A, 0], [0, 0]], dtype=np.float64)
    S = int(steps_per_saccade)
    k = np.arange(3 * S + 1)
    seg, frac = np.minimum(k // S, 2), (k - np.minimum(k // S, 2) * S) / S
    pos = verts[seg] + (verts[seg + 1] - verts[seg]) * frac[:, None]
    t = k * (saccade_us / S)
    return t, pos[:, 0], pos[:, 1]


def _render(img: np.ndarray, dx: float, dy: float, sensor: Tuple[int, int]) -> np.ndarray:
    """Place (N, H, W) at sub-pixel offset (dx, dy) on a dark (N, Hs, Ws) canvas (bilinear)."""
    N, H, W = img.shape
    Hs, Ws = sensor
    ix, iy = int(np.floor(dx)), int(np.floor(dy))
    fx, fy = dx - ix, dy - iy
    canvas = np.zeros((N, Hs + 1, Ws + 1), dtype=np.float32)
    for oy, wy in ((0, 1 - fy), (1, fy)):
        for ox, wx in ((0, 1 - fx), (1, fx)):
            w = wy * wx
            if w > 1e-9:
                canvas[:, iy + oy:iy + oy + H, ix + ox:ix + ox + W] += np.float32(w) * img
    return canvas[:, :Hs, :Ws]


def saccade_events_flat(images: np.ndarray, amplitude: Optional[int] = None,
                        steps_per_saccade: int = 20, threshold: float = 0.3, eps: float = 0.5,
                        saccade_us: int = SACCADE_US):
    """Events of a batch, flat: ((x, y, t, p, bounds), (Hs, Ws)); image i owns
    ``[bounds[i], bounds[i+1])``, each sorted by t then y, x."""
    img = _luminance(images)
    N, H, W = img.shape
    A = default_amplitude(max(H, W)) if amplitude is None else int(amplitude)
    sensor = (H + A, W + A)
    t, dx, dy = saccade_path(A, steps_per_saccade, saccade_us)
    L_prev = np.log(eps + _render(img, dx[0], dy[0], sensor))
    L_ref = L_prev.copy()
    HW = sensor[0] * sensor[1]
    chunks = []  # per step: (n, pixel, t, p), sorted by (n, t, pixel)
    for k in range(1, len(t)):
        L = np.log(eps + _render(img, dx[k], dy[k], sensor))
        d = (L - L_ref).ravel()
        step = []
        for pol, sign in ((1, 1.0), (0, -1.0)):
            nz = np.flatnonzero(sign * d >= threshold)
            if nz.size == 0:
                continue
            reps = np.floor(sign * d[nz] / threshold).astype(np.int64)
            keep = reps > 0
            nz, reps = nz[keep], reps[keep]
            flat = np.repeat(nz, reps)
            j = np.arange(flat.size) - np.repeat(np.cumsum(reps) - reps, reps) + 1
            lp = L_prev.ravel()[flat]
            level = L_ref.ravel()[flat] + sign * threshold * j
            den = L.ravel()[flat] - lp
            safe = np.where(np.abs(den) > 1e-12, den, 1.0)
            frac = np.where(np.abs(den) > 1e-12, (level - lp) / safe, 1.0)
            tt = np.rint(t[k - 1] + np.clip(frac, 0.0, 1.0) * (t[k] - t[k - 1]))
            step.append((flat, tt.astype(np.int64), np.full(flat.size, pol, np.int8)))
            L_ref.ravel()[nz] += np.float32(sign * threshold) * reps
        if step:
            flat, tt, p = (np.concatenate(c) for c in zip(*step))
            n, pix = np.divmod(flat, HW)
            o = np.lexsort((pix, tt, n))
            chunks.append((n[o], pix[o], tt[o], p[o]))
        L_prev = L
    if chunks:
        n, pix, tt, p = (np.concatenate(c) for c in zip(*chunks))
        o = np.argsort(n, kind="stable")  # steps are in time order: stays sorted by t
        n, pix, tt, p = n[o], pix[o], tt[o], p[o]
    else:
        n = pix = tt = np.zeros(0, np.int64)
        p = np.zeros(0, np.int8)
    y, x = np.divmod(pix, sensor[1])
    bounds = np.searchsorted(n, np.arange(N + 1))
    return (x, y, tt, p, bounds), sensor


def saccade_events_batch(images: np.ndarray, **kw) -> Tuple[List[np.ndarray], Tuple[int, int]]:
    """Event recordings of a batch of images ``(N, [C,] H, W)`` in [0, 1].

    Returns (list of N structured arrays with fields x, y, t (us, int64), p (int8: 1 = ON),
    sorted by t, then y, x), and the sensor size ``(Hs, Ws)``. Keywords: ``amplitude``
    (pixels, default :func:`default_amplitude`), ``steps_per_saccade`` (20), ``threshold``
    (0.3, log units), ``eps`` (0.5, added to the intensity before the log), ``saccade_us``.
    """
    (x, y, tt, p, bounds), sensor = saccade_events_flat(images, **kw)
    N = len(bounds) - 1
    out = []
    for i in range(N):
        s = slice(bounds[i], bounds[i + 1])
        ev = np.empty(bounds[i + 1] - bounds[i], dtype=EVENT_DTYPE)
        ev["x"], ev["y"], ev["t"], ev["p"] = x[s], y[s], tt[s], p[s]
        out.append(ev)
    return out, sensor


def saccade_events(image: np.ndarray, **kw) -> np.ndarray:
    """Event recording of one image ``([C,] H, W)`` in [0,1]; see :func:`saccade_events_batch`."""
    image = np.asarray(image, dtype=np.float32)
    return saccade_events_batch(image[None], **kw)[0][0]


# --------------------------------------------------------------------------- dataset wrapper


class EventVersion(Dataset):
    """Event version of a static data set (items ``(x (C,H,W) in [0,1], y)``).

    Items are ``(frames float32 (T, 2, Hs, Ws), y)`` framed with tonic ``ToFrame``;
    ``events(i)`` gives the raw structured array. All recordings are generated on first use,
    in batches of ``batch``, and, when ``cache_dir`` is given, stored in
    ``<cache_dir>/events/<cache_key>-<hash>.npz`` (the hash covers the parameters, the
    generator version and, where the static set exposes its arrays, the image bytes), so a
    60k set is built once. With ``memo_frames`` (default) each recording's frames are kept
    in memory once made (uint8 counts, ~23 KB at 34x34, T = 10), so the epochs after the
    first and every evaluation skip tonic's framing (0.55 ms a recording). ``augment=True`` rolls the frames by up to ``roll`` pixels (no
    flip: digits and letters are not mirror-symmetric), drawn from (seed, epoch, index).
    """

    def __init__(self, static_dataset, time_steps: int = 10, amplitude: Optional[int] = None,
                 steps_per_saccade: int = 20, threshold: float = 0.3, eps: float = 0.5,
                 cache_dir=None, cache_key: Optional[str] = None, batch: int = 128,
                 build: bool = True, augment: bool = False, roll: int = 2, seed: int = 0,
                 memo_frames: bool = True):
        self.base = static_dataset
        self.memo_frames = bool(memo_frames)
        self._frames = {}  # index -> framed counts (uint8 where they fit): framed once per run
        self.augment = bool(augment)
        self.roll = int(roll)
        self.seed = int(seed)
        self.epoch = 0
        self.time_steps = int(time_steps)
        self.params = dict(amplitude=amplitude, steps_per_saccade=int(steps_per_saccade),
                           threshold=float(threshold), eps=float(eps))
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None
        self.cache_key = cache_key
        self.batch = int(batch)
        self._arrays = None
        self.labels = None
        if build:
            self._ensure()

    # ----- building / caching
    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(json.dumps({"v": GENERATOR_VERSION, **self.params, "n": len(self.base)},
                            sort_keys=True).encode())
        imgs = getattr(self.base, "images", None)
        if isinstance(imgs, np.ndarray) and not getattr(self.base, "augment", False):
            h.update(np.ascontiguousarray(imgs).tobytes())
            h.update(np.ascontiguousarray(self.base.labels).tobytes())
        return h.hexdigest()[:16]

    @property
    def cache_path(self) -> Optional[Path]:
        if self.cache_dir is None:
            return None
        key = self.cache_key or type(self.base).__name__
        return self.cache_dir / "events" / f"{key}-{self._fingerprint()}.npz"

    def _ensure(self) -> None:
        if self._arrays is not None:
            return
        path = self.cache_path
        if path is not None and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    arrays = {k: z[k] for k in ("code", "t", "offsets", "labels", "sensor")}
                if arrays["offsets"][-1] == len(arrays["t"]) and \
                        len(arrays["labels"]) == len(self.base):
                    self._set(arrays)
                    return
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                pass  # unreadable cache: rebuild it (written atomically, so rare)
        arrays = self._generate()
        if path is not None:
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, **arrays)
                os.chmod(tmp, 0o644)
        self._set(arrays)

    def _static_arrays(self, lo: int, hi: int):
        imgs = getattr(self.base, "images", None)
        if isinstance(imgs, np.ndarray) and not getattr(self.base, "augment", False):
            scale = float(getattr(self.base, "scale", 1.0))
            x = imgs[lo:hi].astype(np.float32) / scale
            return x, np.asarray(self.base.labels[lo:hi], dtype=np.int64)
        xs, ys = zip(*(self.base[i] for i in range(lo, hi)))
        x = np.stack([np.asarray(v, dtype=np.float32) for v in xs])
        return x, np.asarray(ys, dtype=np.int64)

    def _generate(self):
        """All recordings, packed: ``code = (y * Ws + x) * 2 + p`` (uint16 when it fits) and
        ``t`` (uint32 us), ~6 bytes per event; image i owns ``offsets[i]:offsets[i+1]``."""
        parts, labels, total = [], [], 0
        sensor = None
        offsets = [np.zeros(1, np.int64)]
        for lo in range(0, len(self.base), self.batch):
            x, y = self._static_arrays(lo, min(len(self.base), lo + self.batch))
            (ex, ey, et, ep, bounds), sensor = saccade_events_flat(x, **self.params)
            cdt = np.uint16 if sensor[0] * sensor[1] * 2 <= 1 << 16 else np.uint32
            code = (ey.astype(np.int64) * sensor[1] + ex) * 2 + ep
            parts.append((code.astype(cdt), et.astype(np.uint32)))
            offsets.append(total + bounds[1:])
            total += int(bounds[-1])
            labels.append(y)
        if parts:
            code, et = (np.concatenate(c) for c in zip(*parts))
        else:
            code, et = np.zeros(0, np.uint16), np.zeros(0, np.uint32)
        return dict(code=code, t=et, offsets=np.concatenate(offsets).astype(np.int64),
                    labels=(np.concatenate(labels) if labels else np.zeros(0, np.int64)),
                    sensor=np.asarray(sensor if sensor else (0, 0), np.int64))

    def _set(self, arrays) -> None:
        self._arrays = arrays
        self.labels = arrays["labels"]
        self.targets = self.labels
        self.sensor = (int(arrays["sensor"][0]), int(arrays["sensor"][1]))

    # ----- dataset API
    @property
    def image_size(self) -> Tuple[int, int]:
        self._ensure()
        return self.sensor

    def __len__(self) -> int:
        return len(self.base)

    def events(self, index: int) -> np.ndarray:
        self._ensure()
        a = self._arrays
        s = slice(int(a["offsets"][index]), int(a["offsets"][index + 1]))
        code = a["code"][s].astype(np.int64)
        pix, p = np.divmod(code, 2)
        y, x = np.divmod(pix, self.sensor[1])
        ev = np.empty(s.stop - s.start, dtype=EVENT_DTYPE)
        ev["x"], ev["y"], ev["t"], ev["p"] = x, y, a["t"][s], p
        return ev

    def __getitem__(self, index: int):
        if index < 0:
            index += len(self)
        fr = self._frames.get(index)
        if fr is None:
            Hs, Ws = self.image_size
            fr = torch.from_numpy(to_frames(self.events(index), (Ws, Hs, 2), self.time_steps))
            if self.memo_frames:
                self._frames[index] = fr.to(torch.uint8) if fr.max() <= 255 else fr
        fr = fr.to(torch.float32, copy=True)  # the memo stays as it is
        if self.augment:
            fr = augment_frames(fr, item_generator(self.seed, self.epoch, index), self.roll,
                                cutout=0, flip=False)
        return fr, int(self.labels[index])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
