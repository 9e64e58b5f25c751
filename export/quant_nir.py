"""The Loihi fixed-point network as a NIR file: what Lava is built from.

``student.quant.nir`` is a plain NIR graph that any NIR reader runs (``quant_to_deploy``:
integer weights ``m * 2**e`` as float64, thresholds ``vth``, decays from ``du``/``dv``,
biases ``(mant << exp) / 64``, all in Loihi activation units). What NIR has no word for is
kept beside it, and only that: the graph's metadata holds the Loihi fields of every layer
and connection (``vth``, ``du``, ``dv``, weight exponents, groups, graded-input bits,
scales; the JSON of ``QuantGraph.to_arrays``) and each neuron node the per-neuron bias
exponents. Everything with a NIR meaning is read from the NIR parameters:
``read_quant_nir`` takes the weights and biases from the nodes (``nir.read``) and
decomposes them with the stored exponents, refusing a value that is not the integer the
Loihi fields say, and checks the nodes' thresholds and decays against ``vth``/``du``/``dv``.
So an edited weight changes what Lava runs (or is refused), and an edited threshold that
disagrees with the Loihi fields is refused: the NIR file is the network.
"""
from __future__ import annotations

import json
from pathlib import Path

import nir
import numpy as np

from kd_snn.errors import KdsnnError

from .fixed_point import QuantConnection, QuantGraph, QuantLayer
from .nir_io import graph_to_nir, nir_to_graph, read_nir, write_nir

FORMAT = "kdsnn-quant-nir/1"
_DESC = "kdsnn_quantgraph"


def _layer_nodes(g: nir.NIRGraph) -> dict:
    """kdsnn layer name -> the NIR node carrying its neuron parameters (or the Output)."""
    found = {}
    for key, node in g.nodes.items():
        meta = getattr(node, "metadata", None) or {}
        if "kdsnn_layer" in meta:
            found[str(np.asarray(meta["kdsnn_layer"]).item()
                      if isinstance(meta["kdsnn_layer"], np.ndarray)
                      else meta["kdsnn_layer"])] = node
    return found


def quant_to_nir(q: QuantGraph) -> nir.NIRGraph:
    """The NIR graph of ``q`` (see the module docstring)."""
    from .quantize import quant_to_deploy

    g = graph_to_nir(quant_to_deploy(q))
    by_name = _layer_nodes(g)
    for layer in q.layers:
        node = by_name.get(layer.name)
        if node is None:  # a spiking output layer's node always exists; a readout's is Output
            raise KdsnnError(f"quantized NIR: no node for layer '{layer.name}'")
        node.metadata["kdsnn_bias_exp"] = layer.bias_exp.astype(np.int64)
    _, desc = q.to_arrays()
    g.metadata["format_quant"] = FORMAT
    g.metadata[_DESC] = json.dumps(desc, sort_keys=True)
    return g


def write_quant_nir(path, q: QuantGraph) -> Path:
    """Write ``q`` as NIR (atomic, byte-deterministic as ``write_nir``)."""
    return write_nir(quant_to_nir(q), path)


def _ungroup(w: np.ndarray, groups: int) -> np.ndarray:
    """The grouped weight (co, ci/groups, kh, kw) of a full block-diagonal weight."""
    if groups == 1:
        return w
    co, ci, kh, kw = w.shape
    if groups < 1 or ci % groups or co % groups:
        raise KdsnnError(f"quantized NIR: {groups} groups do not divide a conv of {ci} -> "
                         f"{co} channels")
    cig, per = ci // groups, co // groups
    out = np.empty((co, cig, kh, kw), dtype=w.dtype)
    rest = w.copy()
    for g in range(groups):
        out[g * per:(g + 1) * per] = w[g * per:(g + 1) * per, g * cig:(g + 1) * cig]
        rest[g * per:(g + 1) * per, g * cig:(g + 1) * cig] = 0
    if np.any(rest != 0):
        raise KdsnnError("quantized NIR: a grouped conv weight has taps outside its groups")
    return out


def _integers(values: np.ndarray, what: str) -> np.ndarray:
    r = np.round(values)
    if not np.all(np.isfinite(values)) or np.any(r != values):
        raise KdsnnError(f"quantized NIR: {what} are not the integers the Loihi fields say "
                         "(edited file?)")
    return r.astype(np.int64)


def quant_from_nir(g: nir.NIRGraph, source: str = "NIR graph") -> QuantGraph:
    """The QuantGraph a ``quant_to_nir`` graph describes, read from its NIR parameters."""
    meta = g.metadata or {}
    raw = meta.get(_DESC)
    if raw is None or meta.get("format_quant") != FORMAT:
        raise KdsnnError(f"{source} is not a kdsnn quantized NIR file (no Loihi fields; "
                         "a float NIR model enters with 'kdsnn import')")
    try:
        desc = json.loads(raw if isinstance(raw, str) else bytes(raw).decode())
        float_graph = nir_to_graph(g)
        layers_f = {layer.name: layer for layer in float_graph.layers}
        by_name = _layer_nodes(g)
        levels = int(desc["input_levels"])
        layers = []
        for ld in desc["layers"]:
            name = ld["name"]
            fl = layers_f.get(name)
            if fl is None or len(fl.connections) != len(ld["connections"]):
                raise KdsnnError(f"quantized NIR: layer '{name}' differs from its Loihi fields")
            conns, pool = [], list(fl.connections)  # matched by source and kind, in order
            for cd in ld["connections"]:
                fc = next((c for c in pool if (c.source, c.kind) == (cd["source"], cd["kind"])),
                          None)
                if fc is None:
                    raise KdsnnError(f"quantized NIR: a connection of '{name}' differs from "
                                     "its Loihi fields")
                pool.remove(fc)
                w = np.asarray(fc.weight, dtype=np.float64) / 2.0 ** int(cd["weight_exp"])
                if int(cd["message_bits"]) > 0:
                    w = w / levels
                if cd["kind"] == "conv":
                    w = _ungroup(w, int(cd["groups"]))
                conns.append(QuantConnection(
                    cd["source"], cd["kind"], _integers(w, f"weights into '{name}'"),
                    cd["weight_exp"], tuple(cd["stride"]), tuple(cd["padding"]), cd["groups"],
                    cd["message_bits"], cd["scale"], cd["origin"]))
            node_meta = by_name[name].metadata
            bias_exp = np.asarray(node_meta["kdsnn_bias_exp"], dtype=np.int64)
            eff = _integers(np.asarray(fl.bias, dtype=np.float64) * 64.0, f"biases of '{name}'")
            mant = eff >> np.broadcast_to(bias_exp, eff.shape)
            if np.any(np.left_shift(mant, bias_exp) != eff):
                raise KdsnnError(f"quantized NIR: biases of '{name}' do not fit their exponents")
            ql = QuantLayer(name, tuple(ld["shape"]), tuple(conns), ld["vth"], ld["du"],
                            ld["dv"], mant, bias_exp, ld["spiking"], ld["scale"])
            _check_neurons(ql, fl)
            layers.append(ql)
        return QuantGraph(tuple(desc["input_shape"]), tuple(layers), int(desc["time_steps"]),
                          levels, dict(desc.get("metadata", {})))
    except KdsnnError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise KdsnnError(f"{source}: damaged Loihi fields ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def _check_neurons(ql: QuantLayer, fl) -> None:
    """The NIR node's threshold and decays must be those of ``vth``/``du``/``dv``."""
    if not ql.spiking:
        return
    expect = {"alpha": (4096 - ql.du - 1) / 4096, "beta": (4096 - ql.dv) / 4096,
              "threshold": float(ql.vth)}
    for key, value in expect.items():
        if not np.allclose(np.asarray(getattr(fl, key), dtype=np.float64), value,
                           rtol=1e-9, atol=1e-12):
            raise KdsnnError(f"quantized NIR: {key} of '{ql.name}' disagrees with its Loihi "
                             "fields (edited file?)")


def read_quant_nir(path) -> QuantGraph:
    """``nir.read`` a ``student.quant.nir`` file and rebuild the integer network."""
    return quant_from_nir(read_nir(path), source=f"'{path}'")
