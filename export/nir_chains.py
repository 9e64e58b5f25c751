"""The linear NIR nodes between two neuron layers composed into one exact kdsnn Connection.

Other tools write a connection as a chain (SumPool2d -> Conv2d, Flatten -> Affine, Scale
...); kdsnn's layers have one Connection per source, so ``linear_chain`` folds the chain
into one and checks the result against the nodes applied one by one, refusing by name what
is not one exact connection.
"""
from __future__ import annotations

import numpy as np

import nir

from export.graph import Connection
from export.nir_checks import MAX_ELEMENTS, WHY_NOT, f64, scalar, why_not
from kd_snn.errors import KdsnnError

__all__ = ["linear_chain"]


def _pair(x) -> tuple:
    a = np.atleast_1d(np.asarray(x)).astype(np.int64)
    return (int(a[0]), int(a[-1]))


# One small converter per linear NIR node type (the table ``_LINEAR``), as snntorch's
# ``import_nir`` has one per node: each folds its node into ``_Chain``, the one linear map
# the nodes between two neuron layers make.  A chain ends as one kdsnn Connection (pooling,
# a convolution, or a dense layer over the flattened source) plus a constant (the biases
# carried through), e.g. SumPool2d(2) -> Conv2d(3x3, padding 1) is one Conv2d(6x6, stride
# 2, padding 2) over the same integers (each tap of the conv repeated over its 2x2 window).
# Every composition is checked against the nodes applied one by one (float64, random
# inputs: two linear maps equal on random vectors are equal); a chain that is not one
# exact connection (a padded conv after a conv whose border reads data, ...) is refused
# by name.
class _Chain:
    """The linear map of the chain's nodes so far, from a source of ``src_shape``:
    ``kind`` 'id' (nothing yet), 'pool' (``pool`` = 'sumpool'/'avgpool', ``kernel``),
    'conv' (``weight``, ``stride``, ``padding``) or 'dense' (``weight`` over the flattened
    source); ``shape`` its output shape; ``keys`` the nodes folded in, in order."""

    def __init__(self, src_shape: tuple):
        self.src_shape = tuple(src_shape)
        self.shape = tuple(src_shape)
        self.kind, self.pool, self.kernel = "id", None, (1, 1)
        self.weight, self.stride, self.padding = None, (1, 1), (0, 0)
        self.grid = tuple(src_shape)  # the output shape before any Flatten
        self.keys: list = []

    def connection(self, source: str) -> Connection:
        if self.kind == "pool":
            return Connection(source, self.pool, kernel=self.kernel)
        if self.kind == "conv":
            return Connection(source, "conv", self.weight, self.stride, self.padding)
        return Connection(source, "dense", self.weight)

    def as_conv(self, key: str):
        """The map so far as a convolution (a pool is a diagonal one)."""
        if self.kind == "conv":
            return self.weight, self.stride, self.padding
        if len(self.src_shape) != 3 or len(self.grid) != 3:
            raise KdsnnError(f"NIR import: node '{key}' needs a (C,H,W) input, the chain "
                             f"before it gives shape {self.grid}")
        c = self.src_shape[0]
        kh, kw = self.kernel
        w = np.zeros((c, c, kh, kw))
        w[np.arange(c), np.arange(c)] = 1.0 / (kh * kw if self.pool == "avgpool" else 1)
        return w, self.kernel, (0, 0)

    def set_conv(self, w, stride, padding, shape):
        self.kind, self.weight = "conv", w
        self.stride, self.padding = tuple(stride), tuple(padding)
        self.shape = self.grid = tuple(shape)

    def dense_matrix(self, key: str) -> np.ndarray:
        """The map so far as a matrix over the flattened source (the identity for 'id')."""
        n_in = int(np.prod(self.src_shape))
        n_out = int(np.prod(self.shape))
        if float(n_in) * n_out > MAX_ELEMENTS:
            raise KdsnnError(f"NIR import: the chain through '{key}' composes into a "
                             f"{n_out} x {n_in} matrix (absurdly large)")
        if self.kind == "dense":
            return self.weight
        if self.kind == "id":
            return np.eye(n_in)
        return None  # conv/pool: composed by the transpose in _lin_dense


def _conv_out(size: tuple, k: tuple, s: tuple, p: tuple) -> tuple:
    return tuple((size[d] + 2 * p[d] - k[d]) // s[d] + 1 for d in range(2))


def _compose_conv(w1, s1, p1, w2, s2, p2) -> tuple:
    """conv2(conv1(x)) as one convolution (exact where conv2 reads no padding that conv1
    would have filled with data; checked by the caller)."""
    co, cm, k2h, k2w = w2.shape
    _, ci, k1h, k1w = w1.shape
    kh, kw = k1h + (k2h - 1) * s1[0], k1w + (k2w - 1) * s1[1]
    if float(co) * ci * kh * kw > MAX_ELEMENTS:
        raise KdsnnError("NIR import: a composed convolution kernel is absurdly large")
    w = np.zeros((co, ci, kh, kw))
    for a in range(k2h):
        for b in range(k2w):
            w[:, :, a * s1[0]:a * s1[0] + k1h, b * s1[1]:b * s1[1] + k1w] += np.einsum(
                "om,mihw->oihw", w2[:, :, a, b], w1)
    return w, (s1[0] * s2[0], s1[1] * s2[1]), (p1[0] + p2[0] * s1[0], p1[1] + p2[1] * s1[1])


def _lin_conv(c: _Chain, key: str, node) -> _Chain:
    w = f64(node.weight)
    if w.ndim != 4:
        raise KdsnnError(f"NIR import: conv '{key}' weight has rank {w.ndim}")
    if _pair(node.dilation) != (1, 1) or int(scalar(node.groups)) != 1 or \
            isinstance(node.padding, str):
        raise KdsnnError(f"NIR import: conv '{key}' uses dilation, groups or a string "
                         "padding (not supported)")
    if c.kind == "dense" or len(c.shape) != 3:
        raise KdsnnError(f"NIR import: conv '{key}' reads a flat input of shape {c.shape} "
                         "(no (C,H,W) to convolve)")
    if node.input_shape is not None and tuple(_pair(node.input_shape)) != tuple(c.shape[1:]):
        raise KdsnnError(f"NIR import: conv '{key}' declares input_shape "
                         f"{_pair(node.input_shape)}, its source gives {tuple(c.shape[1:])}")
    if w.shape[1] != c.shape[0]:
        raise KdsnnError(f"NIR import: conv '{key}' expects {w.shape[1]} input channels, "
                         f"its source has {c.shape[0]}")
    if node.bias is not None and np.size(node.bias) not in (1, w.shape[0]):
        raise KdsnnError(f"NIR import: conv '{key}' has {np.size(node.bias)} biases for "
                         f"{w.shape[0]} channels")
    s, p = _pair(node.stride), _pair(node.padding)
    if min(s) < 1 or min(p) < 0:
        raise KdsnnError(f"NIR import: conv '{key}' has stride {s} and padding {p}")
    out = (w.shape[0], *_conv_out(c.shape[1:], w.shape[2:], s, p))
    if min(out) < 1:
        raise KdsnnError(f"NIR import: conv '{key}' gives an empty output {out}")
    if c.kind == "id":
        c.set_conv(w, s, p, out)
    else:
        c.set_conv(*_compose_conv(*c.as_conv(key), w, s, p), out)
    return c


def _lin_pool(c: _Chain, key: str, node) -> _Chain:
    k, s = _pair(node.kernel_size), _pair(node.stride)
    if k != s or any(_pair(node.padding)):
        raise KdsnnError(f"NIR import: pool '{key}' needs stride == kernel and no padding")
    if len(c.shape) != 3:
        raise KdsnnError(f"NIR import: pool '{key}' reads a source of shape {c.shape}, "
                         "not (C,H,W)")
    kind = "sumpool" if isinstance(node, nir.SumPool2d) else "avgpool"
    out = (c.shape[0], c.shape[1] // k[0], c.shape[2] // k[1])
    if min(out) < 1:
        raise KdsnnError(f"NIR import: pool '{key}' is larger than its input {c.shape}")
    if c.kind == "id" or (c.kind == "pool" and c.pool == kind):
        c.kind, c.pool, c.shape = "pool", kind, out
        c.grid = out
        c.kernel = (c.kernel[0] * k[0], c.kernel[1] * k[1])
        return c
    if c.kind == "dense":
        raise KdsnnError(f"NIR import: pool '{key}' reads a flat input of shape {c.shape}")
    pw = np.zeros((c.shape[0], c.shape[0], *k))
    pw[np.arange(c.shape[0]), np.arange(c.shape[0])] = 1.0 / (
        k[0] * k[1] if kind == "avgpool" else 1)
    c.set_conv(*_compose_conv(*c.as_conv(key), pw, k, (0, 0)), out)
    return c


def _lin_flatten(c: _Chain, key: str, node) -> _Chain:
    c.shape = (int(np.prod(c.shape)),)  # any start_dim: the batch axis is not in kdsnn's
    return c


def _lin_dense(c: _Chain, key: str, node) -> _Chain:
    what = type(node).__name__
    w = f64(node.weight)
    size = int(np.prod(c.shape))
    if w.ndim != 2 or w.shape[1] != size:
        raise KdsnnError(f"NIR import: {what} '{key}' has weight shape {w.shape}, its "
                         f"source gives {size} values (shape {c.shape})")
    if len(c.shape) > 1:
        raise KdsnnError(f"NIR import: {what} '{key}' reads a source of shape {c.shape} "
                         "without a Flatten")
    if float(w.shape[0]) * int(np.prod(c.src_shape)) > MAX_ELEMENTS:
        raise KdsnnError(f"NIR import: {what} '{key}' composes into a dense weight of "
                         f"{w.shape[0]} x {int(np.prod(c.src_shape))} (absurdly large)")
    if c.kind == "id":  # a Flatten, then the Affine: its own weight (no identity built)
        full = w
    elif c.kind == "dense":
        full = w @ c.weight
    else:  # dense after a convolution/pool: w through the convolution's transpose
        import torch
        import torch.nn.functional as tF
        cw, s, p = c.as_conv(key)
        rows = torch.as_tensor(w.reshape(w.shape[0], *c.grid))
        back = tF.conv_transpose2d(rows, torch.as_tensor(cw), stride=s, padding=p).numpy()
        full = np.zeros((w.shape[0], *c.src_shape))
        h, wd = min(back.shape[2], c.src_shape[1]), min(back.shape[3], c.src_shape[2])
        full[:, :, :h, :wd] = back[:, :, :h, :wd]
        full = full.reshape(w.shape[0], -1)
    c.kind, c.weight, c.shape = "dense", full, (w.shape[0],)
    c.grid = c.shape
    return c


def _lin_scale(c: _Chain, key: str, node) -> _Chain:
    s = f64(node.scale)
    while s.ndim > len(c.shape) and s.shape[0] == 1:  # a leading batch axis
        s = s[0]
    try:
        s = np.broadcast_to(s, c.shape)
    except ValueError:
        raise KdsnnError(f"NIR import: Scale node '{key}' has shape {np.shape(node.scale)}, "
                         f"its input {c.shape}") from None
    if c.kind == "pool" and c.pool == "sumpool" and np.allclose(
            s, 1.0 / (c.kernel[0] * c.kernel[1]), rtol=1e-12, atol=0):
        c.pool = "avgpool"  # SumPool2d + Scale(1/(kh*kw)): how kdsnn writes average pooling
        return c
    if c.kind == "dense" or len(c.shape) == 1:
        m = c.dense_matrix(key)
        if m is None:  # conv/pool then Flatten then Scale: as a dense map
            raise KdsnnError(f"NIR import: Scale node '{key}' after a Flatten of a "
                             "convolution (put it before the Flatten)")
        c.kind, c.weight = "dense", s.reshape(-1, 1) * m
        return c
    per_c = s.reshape(s.shape[0], -1)
    if not np.all(per_c == per_c[:, :1]):
        raise KdsnnError(f"NIR import: Scale node '{key}' scales positions of a (C,H,W) "
                         "input differently (only a scale per channel is a convolution)")
    if c.kind == "id":
        ch = c.shape[0]
        w = np.zeros((ch, ch, 1, 1))
        w[np.arange(ch), np.arange(ch), 0, 0] = per_c[:, 0]
        c.set_conv(w, (1, 1), (0, 0), c.shape)
        return c
    w, st, p = c.as_conv(key)
    c.set_conv(w * per_c[:, 0].reshape(-1, 1, 1, 1), st, p, c.shape)
    return c


#: NIR node type -> its converter (the linear nodes a connection may be made of)
_LINEAR = {nir.Conv2d: _lin_conv, nir.SumPool2d: _lin_pool, nir.AvgPool2d: _lin_pool,
           nir.Flatten: _lin_flatten, nir.Affine: _lin_dense, nir.Linear: _lin_dense,
           nir.Scale: _lin_scale}


def _node_apply(node, x):
    """One linear NIR node applied to a batch ``x`` (float64 torch): the reference."""
    import torch
    import torch.nn.functional as tF
    if isinstance(node, nir.Conv2d):
        b = None if node.bias is None else torch.as_tensor(
            np.broadcast_to(f64(node.bias).reshape(-1), (node.weight.shape[0],)).copy())
        return tF.conv2d(x, torch.as_tensor(f64(node.weight)), b,
                         stride=_pair(node.stride), padding=_pair(node.padding))
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        k = _pair(node.kernel_size)
        y = tF.avg_pool2d(x, k, k)
        return y * (k[0] * k[1]) if isinstance(node, nir.SumPool2d) else y
    if isinstance(node, nir.Flatten):
        return x.reshape(x.shape[0], -1)
    if isinstance(node, (nir.Affine, nir.Linear)):
        y = x.reshape(x.shape[0], -1) @ torch.as_tensor(f64(node.weight)).T
        if isinstance(node, nir.Affine) and node.bias is not None:
            y = y + torch.as_tensor(f64(node.bias).reshape(-1))
        return y
    s = f64(node.scale)
    while s.ndim > x.dim() - 1 and s.shape[0] == 1:
        s = s[0]
    return x * torch.as_tensor(s)


def linear_chain(keys: list, nodes: dict, src_shape: tuple, source: str) -> tuple:
    """The NIR nodes ``keys`` (a path of linear nodes from a neuron layer or the input
    ``source`` of ``src_shape``) as one exact kdsnn Connection: ``(connection, bias)``,
    ``bias`` the constant the chain adds (an array of the connection's output shape, or
    None when zero).  What is not one exact connection is a KdsnnError naming the path."""
    import torch
    c = _Chain(src_shape)
    for key in keys:
        node = nodes[key]
        conv = _LINEAR.get(type(node))
        if conv is None:
            if type(node).__name__ in WHY_NOT:
                raise why_not(key, node)
            path = " -> ".join(f"{k} ({type(nodes[k]).__name__})" for k in keys)
            raise KdsnnError(f"NIR import: the path {path} is not a connection kdsnn can "
                             "express (Conv2d, SumPool2d/AvgPool2d, Flatten, "
                             "Linear/Affine, Scale)")
        try:
            c = conv(c, key, node)
        except (ValueError, TypeError, IndexError, AttributeError, OverflowError):
            raise KdsnnError(f"NIR import: node '{key}' ({type(node).__name__}) has "
                             "parameters that do not fit its input of shape "
                             f"{c.shape}") from None
        c.keys.append(key)
    conn = c.connection(source)
    # the composition against the nodes one by one (float64, seeded random inputs)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((3, *src_shape), generator=gen, dtype=torch.float64)
    x[0] = 0
    ref = x
    for key in keys:
        ref = _node_apply(nodes[key], ref)
    ref = ref.reshape(3, -1)
    got = conn.apply(x).reshape(3, -1) if conn.out_shape(src_shape) == c.shape or \
        int(np.prod(conn.out_shape(src_shape))) == ref.shape[1] else None
    bias = ref[0]
    scale = float(ref.abs().max()) + 1.0
    if got is None or got.shape != ref.shape or not torch.allclose(
            got + bias, ref, rtol=0, atol=1e-9 * scale):
        path = " -> ".join(f"{k} ({type(nodes[k]).__name__})" for k in keys)
        raise KdsnnError(f"NIR import: the path {path} is not one exact connection (a "
                         "padded convolution after a convolution or pooling whose border "
                         "reads data, or pooling that drops rows before a padded "
                         "convolution), and no relay can split it: the values between the "
                         "nodes are graded sums, a relay neuron carries spikes")
    bias = bias.numpy().reshape(conn.out_shape(src_shape))
    return conn, (bias if np.any(bias != 0) else None)
