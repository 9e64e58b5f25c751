"""What a NIR file must be before kdsnn builds anything from it, and the refusal wording.

A file may come from any tool, or be hostile (truncated, absurd sizes, text or NaN where
numbers go): ``read_nir`` checks its HDF5 structure, declared sizes and every node's fields
before ``nir.read`` allocates a byte, so no file reaches numpy or torch as an exception of
theirs.  The reader (``export.nir_read``) and the chain composer (``export.nir_chains``)
share these checks and sentences, so each refusal is worded once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

import nir

from kd_snn.errors import KdsnnError

__all__ = ["MAX_NIR_BYTES", "MAX_ELEMENTS", "MAX_NODES", "f64", "scalar", "read_nir",
           "check_fields", "WHY_NOT", "why_not", "meta_number", "check_reset_semantics",
           "shape_of", "check_neuron"]


# Limits checked before anything is read or allocated (a file may declare any size)
MAX_NIR_BYTES = 1 << 30  # all arrays of one file together
MAX_ELEMENTS = 1 << 27  # one array, the input, or one layer of neurons
MAX_NODES = 100_000  # HDF5 objects in one file


def f64(a) -> np.ndarray:
    """``a`` as a contiguous float64 array: the precision every parameter is read, checked
    and written in (kdsnn's float forward is float64)."""
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64))


def scalar(x):
    """A metadata value as a Python scalar (h5py hands back 0-d arrays)."""
    return x.item() if isinstance(x, np.ndarray) else x


def read_nir(path, type_check: bool = True) -> nir.NIRGraph:
    """``nir.read`` (with NIR's type inference and checks unless ``type_check=False``)
    after ``_check_file`` (HDF5, a NIR graph, declared sizes); errors become KdsnnError."""
    path = Path(path)
    if not path.is_file():
        raise KdsnnError(f"NIR file not found: {path}")
    _check_file(path)
    try:
        return nir.read(str(path), type_check=type_check)
    except Exception:  # noqa: BLE001 - any parse error is a bad file
        where = _unreadable_node(path)
        raise KdsnnError(f"cannot read NIR file {path}: nir's reader cannot build "
                         f"{where or 'a graph from it'} (its fields do not have NIR 1.0's "
                         "form)") from None


def _unreadable_node(path: Path) -> str:
    """"node 'k' (Type)" for the first node nir's reader fails on ('' if none alone)."""
    import h5py
    from nir.serialization import read_node
    try:
        with h5py.File(str(path), "r") as f:
            for key, group in f["node/nodes"].items():
                try:
                    read_node(group)
                except Exception:  # noqa: BLE001
                    typ = group["type"][()]
                    typ = typ.decode(errors="replace") if isinstance(typ, bytes) else typ
                    return f"node '{key}' ({typ})"
    except Exception:  # noqa: BLE001
        return ""
    return ""


def _check_file(path: Path) -> None:
    """Reject, before ``nir.read`` reads a byte of data, what is not an HDF5 file, not a
    NIR graph, truncated, or declares arrays larger than the limits above."""
    import h5py
    if path.stat().st_size == 0:
        raise KdsnnError(f"cannot read NIR file {path}: it is empty")
    try:
        is_h5 = h5py.is_hdf5(str(path))
    except Exception:  # noqa: BLE001
        is_h5 = False
    if not is_h5:
        raise KdsnnError(f"cannot read NIR file {path}: not an HDF5 file")
    objects: list = []

    def visit(_name, obj):
        objects.append(obj)
        if len(objects) > MAX_NODES:
            return True  # stops the walk
        return None

    try:
        with h5py.File(str(path), "r") as f:
            root = f.get("node")
            if not isinstance(root, h5py.Group) or "type" not in root or \
                    not isinstance(root["type"], h5py.Dataset) or \
                    root["type"].size > 64:
                raise KdsnnError(f"cannot read NIR file {path}: an HDF5 file but not "
                                 "a NIR graph (no 'node' group with a type)")
            kind = root["type"][()]
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            if kind != "NIRGraph":
                raise KdsnnError(f"cannot read NIR file {path}: an HDF5 file but not "
                                 f"a NIR graph (top node type {kind!r:.40})")
            nodes = root.get("nodes")
            if not isinstance(nodes, h5py.Group):
                raise KdsnnError(f"cannot read NIR file {path}: the graph has no 'nodes'")
            edges = root.get("edges")
            if not isinstance(edges, h5py.Dataset) or edges.ndim != 2 or \
                    edges.shape[-1] != 2 or edges.dtype.kind not in "SOU":
                raise KdsnnError(f"cannot read NIR file {path}: the graph's 'edges' are not a "
                                 "list of (source, target) node names")
            known = {n for n in dir(nir) if isinstance(getattr(nir, n), type)
                     and issubclass(getattr(nir, n), nir.NIRNode)}
            kinds: dict = {}
            for key, node in nodes.items():
                typ = node.get("type") if isinstance(node, h5py.Group) else None
                if not isinstance(typ, h5py.Dataset) or typ.size > 64:
                    raise KdsnnError(f"cannot read NIR file {path}: node '{key}' has no type")
                typ = typ[()]
                typ = typ.decode(errors="replace") if isinstance(typ, bytes) else str(typ)
                if typ not in known:
                    raise KdsnnError(f"cannot read NIR file {path}: node '{key}' has unknown "
                                     f"type {typ!r:.40} (not a NIR node type)")
                kinds[key] = typ
            root.visititems(visit)
            if len(objects) > MAX_NODES:
                raise KdsnnError(f"cannot read NIR file {path}: more than {MAX_NODES} objects")
            total = 0
            for obj in objects:
                if not isinstance(obj, h5py.Dataset) or obj.shape is None:
                    continue
                n = float(np.prod([float(d) for d in obj.shape])) if obj.shape else 1.0
                total += n * max(int(obj.dtype.itemsize), 1)
                if n > MAX_ELEMENTS or total > MAX_NIR_BYTES:
                    raise KdsnnError(f"cannot read NIR file {path}: dataset {obj.name} declares shape "
                                     f"{obj.shape} (absurdly large; limits "
                                     f"{MAX_ELEMENTS} elements, {MAX_NIR_BYTES} bytes)")
            for key, typ in kinds.items():
                if typ != "NIRGraph":
                    check_fields(nodes[key], str(key), typ, f"NIR file {path}")
    except KdsnnError:
        raise
    except Exception:  # noqa: BLE001 - truncated / corrupt HDF5
        raise KdsnnError(f"cannot read NIR file {path}: truncated or corrupt HDF5 (h5py "
                         "cannot read its objects)") from None


#: the array fields of each NIR node type kdsnn reads: name -> (ranks allowed, kind);
#: kind 'num' (finite real numbers), 'int' (finite integers), 'pos' (integers >= 1), 'pad'
#: (integers or a string),
#: optional fields marked by a trailing '?' on the name
_FIELDS = {
    "Affine": {"weight": ((2,), "num"), "bias?": ((0, 1), "num")},
    "Linear": {"weight": ((2,), "num")},
    "Conv2d": {"weight": ((4,), "num"), "bias?": ((0, 1), "num"), "stride": ((0, 1), "pos"),
               "padding": ((0, 1), "pad"), "dilation": ((0, 1), "pos"),
               "groups": ((0, 1), "pos"), "input_shape?": ((0, 1), "pos")},
    "Conv1d": {"weight": ((3,), "num"), "bias?": ((0, 1), "num")},
    "SumPool2d": {"kernel_size": ((0, 1), "pos"), "stride": ((0, 1), "pos"),
                  "padding": ((0, 1), "int")},
    "AvgPool2d": {"kernel_size": ((0, 1), "pos"), "stride": ((0, 1), "pos"),
                  "padding": ((0, 1), "int")},
    "Flatten": {"start_dim": ((0, 1), "int"), "end_dim": ((0, 1), "int"),
                "input_type?": ((0, 1), "int")},
    "Scale": {"scale": ((0, 1, 2, 3, 4), "num")},
    "IF": {"r": ((0, 1, 2, 3), "num"), "v_threshold": ((0, 1, 2, 3), "num"),
           "v_reset?": ((0, 1, 2, 3), "num")},
    "LIF": {k: ((0, 1, 2, 3), "num") for k in ("tau", "r", "v_leak", "v_threshold",
                                               "v_reset?")},
    "CubaLIF": {k: ((0, 1, 2, 3), "num") for k in ("tau_syn", "tau_mem", "r", "v_leak",
                                                   "v_threshold", "v_reset?", "w_in?")},
    "Input": {"shape?": ((0, 1), "int")},
    "Output": {"shape?": ((0, 1), "int")},
}
_INT_LIMIT = 2 ** 31


def _field_problem(value, name: str, ranks: tuple, kind: str) -> Optional[str]:
    """Why the array ``value`` cannot be the field ``name`` (None when it can)."""
    arr = np.asarray(value) if not isinstance(value, np.ndarray) else value
    if isinstance(value, (str, bytes)) or arr.dtype.kind in "SUO":
        if kind == "pad" and isinstance(value, (str, bytes)) or (
                kind == "pad" and arr.ndim == 0 and arr.dtype.kind in "SUO"):
            return None
        return f"{name} is text ({str(value)[:20]!r}), not numbers"
    if arr.dtype.kind == "c":
        return f"{name} holds complex numbers (NIR parameters are real)"
    if arr.dtype.kind not in "biuf":
        return f"{name} has data type {arr.dtype}, not numbers"
    if arr.ndim not in ranks:
        return (f"{name} has rank {arr.ndim} (shape {arr.shape}); NIR's field has rank "
                f"{' or '.join(str(r) for r in ranks)}")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            what = "NaN" if np.isnan(arr).any() else "infinite values"
            return f"{name} holds {what} ({int(bad.sum())} of {arr.size})"
    if kind in ("int", "pad", "pos"):
        if np.any(arr != np.round(arr)) or np.any(np.abs(arr) >= _INT_LIMIT):
            return f"{name} holds {arr.reshape(-1)[:4].tolist()}, not integers"
    if kind == "pos" and np.any(arr < 1):
        return f"{name} holds {arr.reshape(-1)[:4].tolist()}; it must be at least 1"
    return None


def check_fields(node, key: str, typ: str, where: str) -> None:
    """The node's stored fields against ``_FIELDS`` (HDF5 group before ``nir.read``, or a
    node object): present, numbers (not text or complex), finite, of NIR's rank."""
    schema = _FIELDS.get(typ, {})
    is_group = not isinstance(node, nir.NIRNode)
    names = set(node.keys()) if is_group else set(vars(node))
    for field, (ranks, kind) in schema.items():
        name = field.rstrip("?")
        if name not in names or (not is_group and getattr(node, name) is None):
            if field.endswith("?"):
                continue
            raise KdsnnError(f"NIR import: node '{key}' ({typ}) has no '{name}' (a {typ} "
                             f"needs it); the {where} does not follow NIR 1.0")
        value = node[name] if is_group else getattr(node, name)
        if isinstance(value, dict):  # a type dict of a node object (checked where read)
            continue
        if is_group:
            import h5py
            if not isinstance(value, h5py.Dataset):
                raise KdsnnError(f"NIR import: node '{key}' ({typ}) field '{name}' is a "
                                 "group, not an array")
            value = value[()]
        problem = _field_problem(value, f"'{name}'", ranks, kind)
        if problem:
            raise KdsnnError(f"NIR import: node '{key}' ({typ}) cannot be imported: its "
                             f"{problem}")
    if typ in ("IF", "LIF", "CubaLIF"):  # nir asserts one shape for all parameters
        shapes = {}
        for field in schema:
            name = field.rstrip("?")
            if name in names:
                value = node[name] if is_group else getattr(node, name)
                shapes[name] = tuple(np.shape(value))
        if len(set(shapes.values())) > 1:
            listed = ", ".join(f"{n} {s}" for n, s in shapes.items())
            raise KdsnnError(f"NIR import: node '{key}' ({typ}) cannot be imported: its "
                             f"parameters have different shapes ({listed})")
    # fields outside the table (other node types, extra arrays): numbers must be real, finite
    for name in sorted(names - {f.rstrip("?") for f in schema} - {"type", "metadata",
                                                                  "input_type",
                                                                  "output_type"}):
        value = node[name] if is_group else getattr(node, name)
        if is_group:
            import h5py
            if not isinstance(value, h5py.Dataset):
                continue
            value = value[()]
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "fc":
            continue
        problem = _field_problem(value, f"'{name}'", (value.ndim,), "num")
        if problem:
            raise KdsnnError(f"NIR import: node '{key}' ({typ}) cannot be imported: its "
                             f"{problem}")


#: NIR node type -> why kdsnn cannot import it (the end of the refusal's one sentence)
WHY_NOT = {
    "LI": "a leaky-integrator readout has no kdsnn counterpart (kdsnn's readout is the "
          "mean over the T steps of a Linear/Affine into Output)",
    "CubaLI": "a leaky-integrator readout has no kdsnn counterpart (kdsnn's readout is the "
              "mean over the T steps of a Linear/Affine into Output)",
    "I": "an integrator readout has no kdsnn counterpart (kdsnn's readout is the mean over "
         "the T steps of a Linear/Affine into Output)",
    "Delay": "synaptic delays are not supported",
    "Threshold": "a stateless threshold is not a kdsnn neuron",
    "Conv1d": "1-d convolutions are not supported (kdsnn has Conv2d)",
    "Identity": "identity nodes are not supported",
    "NIRGraph": "nested graphs (e.g. snntorch's recurrent RLeaky) are not supported",
}


def why_not(key: str, node) -> KdsnnError:
    """The refusal of node ``key``: its name, its type and ``WHY_NOT``'s reason."""
    kind = type(node).__name__
    why = WHY_NOT.get(kind, "kdsnn has no such connection")
    return KdsnnError(f"NIR import: node '{key}' ({kind}) cannot be imported: {why}")


def meta_number(meta: dict, key: str) -> float:
    """A finite real number from the graph's metadata, or a KdsnnError naming it."""
    raw = meta[key]
    if isinstance(raw, np.ndarray) and raw.size != 1:
        raise KdsnnError(f"NIR import: the file's metadata {key} holds {raw.size} values, "
                         "not one number")
    raw = raw.reshape(()).item() if isinstance(raw, np.ndarray) else raw
    try:
        val = float(raw.decode() if isinstance(raw, bytes) else raw)
    except (TypeError, ValueError):
        raise KdsnnError(f"NIR import: the file's metadata {key} = {str(raw)[:30]!r} is "
                         "not a number") from None
    if not np.isfinite(val):
        raise KdsnnError(f"NIR import: the file's metadata {key} = {val} is not finite")
    return val


_RESET_KEYS = ("reset", "reset_mechanism", "reset_method", "reset_mode")


def check_reset_semantics(meta: dict, where: str, key: Optional[str] = None) -> None:
    """A reset the metadata states as subtractive (``reset_mechanism = "subtract"``, ...):
    Loihi's LIF (and kdsnn's neuron) resets the membrane to zero."""
    for k in _RESET_KEYS:
        if k in (meta or {}):
            val = scalar(meta[k])
            val = val.decode(errors="replace") if isinstance(val, bytes) else str(val)
            if "subtract" in val.lower() or "soft" in val.lower():
                node = f"node '{key}' " if key else ""
                raise KdsnnError(f"NIR import: {node}{where} field '{k}' = {val[:20]!r}: a "
                                 "subtractive reset; Loihi's LIF (and kdsnn) reset the "
                                 "membrane to zero")


def shape_of(value, what: str) -> tuple:
    """A validated shape: positive ints, at most MAX_ELEMENTS elements."""
    arr = np.asarray(value)
    if arr.dtype == object or arr.ndim > 1 or arr.size > 8:
        raise KdsnnError(f"NIR import: {what} is not a shape ({arr!r:.60})")
    if not np.issubdtype(arr.dtype, np.number):
        raise KdsnnError(f"NIR import: {what} is not a shape")
    shape = tuple(int(s) for s in arr.reshape(-1))
    if any(s <= 0 for s in shape) or np.any(arr.reshape(-1) != np.asarray(shape)):
        raise KdsnnError(f"NIR import: {what} {shape} has a non-positive or fractional size")
    if float(np.prod([float(s) for s in shape])) > MAX_ELEMENTS:
        raise KdsnnError(f"NIR import: {what} {shape} is absurdly large "
                         f"(more than {MAX_ELEMENTS} elements)")
    return shape


def check_neuron(key: str, node) -> None:
    """A neuron node kdsnn can run: reset to zero (not subtractive), finite parameters,
    positive time constants, ``r`` and ``w_in``."""
    check_reset_semantics(getattr(node, "metadata", None) or {}, "metadata", key)
    reset = getattr(node, "v_reset", None)
    if reset is not None and np.any(f64(reset) != 0):
        raise KdsnnError(f"NIR import: node '{key}' ({type(node).__name__}) resets to "
                         f"v_reset = {float(np.max(np.abs(f64(reset)))):g} != 0; kdsnn's "
                         "neurons reset to zero")
    for attr, val in vars(node).items():
        if isinstance(val, np.ndarray) and val.dtype != object and not np.all(
                np.isfinite(f64(val))):
            raise KdsnnError(f"NIR import: node '{key}' has non-finite {attr}")
    for attr in ("r", "tau", "tau_mem", "tau_syn", "w_in"):
        if hasattr(node, attr) and np.any(f64(getattr(node, attr)) <= 0):
            raise KdsnnError(f"NIR import: node '{key}' has {attr} <= 0")
