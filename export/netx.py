"""Write a ``QuantGraph`` as a Lava-dl netx HDF5 network (``.net``).

Only sequential graphs (each layer reads the previous one; conv / dense, pools as
depthwise convs) can be expressed: netx has no fan-in.  Layout written (read by
``lava.lib.dl.netx.utils.NetDict`` / ``hdf5.Network``):

    layer/0: type=input, shape=(C, H, W)             (no neuron: the input is fed
                                                       straight into layer 1's synapse)
    layer/i: type=conv,  shape=(C, H, W), weight (Co, Ci/g, kh, kw) torch layout, ints,
             stride, padding, dilation (h, w), groups, bias, neuron
             type=flatten                             (before the first dense after conv)
             type=dense, shape=(N,), weight (N, M) ints, bias, neuron
    neuron: type=CUBA, iDecay=du+1, vDecay=dv, vThMant=vth, refDelay=1, gradedSpike=0

Exactness constraints (checked by ``netx_problems``; ``quantize_for_netx`` satisfies them):

* netx maps the neuron bias to ``bias_mant`` with a fixed ``bias_exp = 6``, so the bias
  must be a multiple of 64 in v units (quantize with ``bias_exp_min = 6``); a conv
  layer's bias is written per channel when uniform per channel, else per neuron in
  netx's (W, H, C) order.
* netx conv weights are used as given (Lava's Conv has no exponent): ``m << e``, e >= 0.
* netx dense weights go through ``netx.utils.optimize_weight_bits``, exact for integer
  weights in [-256, 254] (mixed sign; it clips beyond) and for an all-negative matrix
  only above -256 (Lava clips inhibitory weights at -255): ``m << e`` with 0 <= e <= 1.
* The readout is an integrator neuron: iDecay = 4096 (du = 4095), vDecay = 0,
  vThMant = 2**17 - 1.

Run it with ``netx.hdf5.Network(net_config=path, input_message_bits=8,
reset_interval=T, reset_offset=1)`` (see ``hardware.lava_sim.run_netx``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from export.graph import INPUT, DeployGraph
from export.fixed_point import QuantGraph, QuantLayer
from export.quantize import quantize
from kd_snn.io import hdf5_bytes, write_bytes

NETX_DENSE_EXP = (0, 1)
NETX_BIAS_EXP_MIN = 6


def quantize_for_netx(graph: DeployGraph, calib_x=None, **kwargs) -> QuantGraph:
    """``quantize`` with the encoding netx can express exactly."""
    kwargs.setdefault("dense_exp_range", NETX_DENSE_EXP)
    kwargs.setdefault("bias_exp_min", NETX_BIAS_EXP_MIN)
    return quantize(graph, calib_x, **kwargs)


def netx_bias(layer: QuantLayer) -> np.ndarray:
    """Bias in synaptic units (netx multiplies by 2**6); raises if not a multiple of 64."""
    eff = layer.bias_effective()
    if (eff % 64).any():
        raise ValueError(f"layer '{layer.name}': bias not a multiple of 64 "
                         "(quantize with bias_exp_min=6 for netx)")
    return eff // 64


def netx_problems(q: QuantGraph) -> list:
    """Reasons ``q`` cannot be written exactly as netx HDF5 (empty list: it can)."""
    probs = []
    if not q.is_sequential():
        probs.append("graph is not sequential (netx has no fan-in / skip connections)")
    for layer in q.layers:
        try:
            netx_bias(layer)
        except ValueError as err:
            probs.append(str(err))
        for c in layer.connections:
            if c.kind == "dense":
                w = c.weight << c.weight_exp
                if c.weight_exp < 0 or w.max() > 254 or w.min() < -256:
                    probs.append(f"layer '{layer.name}': dense weights m << e must lie in "
                                 "[-256, 254] with e >= 0")
                elif w.max() < 0 and w.min() <= -256:
                    probs.append(f"layer '{layer.name}': all-negative dense weight -256")
                elif not w.any():
                    probs.append(f"layer '{layer.name}': all-zero dense weight")
            if c.kind == "conv" and c.source != INPUT and len(q.source_shape(c.source)) != 3:
                probs.append(f"layer '{layer.name}': conv after a 1-D layer")
    return probs


def _str(group, key: str, value: str) -> None:
    group.create_dataset(key, data=np.bytes_(value))


def _neuron(group, layer: QuantLayer) -> None:
    n = group.create_group("neuron")
    _str(n, "type", "CUBA")
    n.create_dataset("iDecay", data=np.int64(layer.du + 1))
    n.create_dataset("vDecay", data=np.int64(layer.dv))
    n.create_dataset("vThMant", data=np.int64(layer.vth))
    n.create_dataset("refDelay", data=np.int64(1))
    n.create_dataset("gradedSpike", data=np.int64(0))


def write_netx(q: QuantGraph, path, description: Optional[str] = None) -> Path:
    """Write ``q`` to ``path`` (netx HDF5) atomically; raises ``ValueError`` listing the
    reasons when ``q`` cannot be expressed exactly."""
    probs = netx_problems(q)
    if probs:
        raise ValueError("cannot write netx: " + "; ".join(probs))
    path = Path(path)

    def fill(f):
        if description:
            f.attrs["description"] = description
        f.attrs["time_steps"] = q.time_steps
        f.attrs["input_levels"] = q.input_levels
        layers = f.create_group("layer")
        idx = 0

        def new(kind):
            nonlocal idx
            g = layers.create_group(str(idx))
            _str(g, "type", kind)
            idx += 1
            return g

        g = new("input")
        g.create_dataset("shape", data=np.asarray(q.input_shape, dtype=np.int64))
        prev_shape = q.input_shape
        for layer in q.layers:
            conn = layer.connections[0]
            weight, groups = conn.grouped_weight()  # netx's Conv: groups is int8
            w = (weight << conn.weight_exp).astype(np.float64)
            bias = netx_bias(layer)
            if conn.kind == "conv":
                g = new("conv")
                g.create_dataset("shape", data=np.asarray(layer.shape, dtype=np.int64))
                g.create_dataset("weight", data=w)
                g.create_dataset("stride", data=np.asarray(conn.stride, dtype=np.int64))
                g.create_dataset("padding", data=np.asarray(conn.padding, dtype=np.int64))
                g.create_dataset("dilation", data=np.asarray((1, 1), dtype=np.int64))
                g.create_dataset("groups", data=np.int64(groups))
                per_ch = bias.reshape(bias.shape[0], -1)
                if (per_ch == per_ch[:, :1]).all():
                    b = per_ch[:, 0]
                else:
                    b = bias.transpose(2, 1, 0)  # netx neuron order (W, H, C)
            else:
                if len(prev_shape) == 3:
                    new("flatten")
                g = new("dense")
                g.create_dataset("shape", data=np.asarray(layer.shape, dtype=np.int64))
                g.create_dataset("weight", data=w)
                b = bias
            g.create_dataset("bias", data=np.asarray(b, dtype=np.float64))
            _neuron(g, layer)
            prev_shape = layer.shape

    write_bytes(path, hdf5_bytes(fill))  # built in memory: see kd_snn.io.hdf5_bytes
    return path
