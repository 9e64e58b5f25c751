"""Deployment of a spiking student: fold it into a :class:`DeployGraph` (frozen dataclasses,
the interchange vocabulary), balance latency, quantize to Loihi fixed point
(:class:`QuantGraph`), emulate Loihi's integer arithmetic bit for bit, and read or write NIR,
ONNX and netx HDF5::

    from export import fold_student, balance_latency, quantize, encode_input, emulate
    graph = fold_student(model.double().eval(), (1, 8, 8), time_steps=4)
    qgraph = quantize(balance_latency(graph), calib_x)       # calib_x: (T, N, C, H, W)
    readout, spikes = emulate(qgraph, encode_input(x_seq))   # Loihi's integers

``export.quantize`` and ``export.emulate`` are these functions; their modules' other names
are imported by module path (``from export.quantize import calib_chunk``).
"""
from .accuracy import accuracy_over, float_accuracy, quantized_accuracy, split_accuracy
from .emulate import emulate
from .fixed_point import (QuantConnection, QuantGraph, QuantLayer, encode_input, load_quant,
                          save_quant)
from .fold import fold_student
from .graph import INPUT, Connection, DeployGraph, NeuronLayer, float_logits, run_float
from .latency import balance_latency
from .manifest import read_manifest, update_manifest
from .netx import netx_problems, quantize_for_netx, write_netx
from .nir_io import graph_to_nir, nir_to_graph, read_nir, write_nir
from .onnx_export import check_onnx, export_onnx_student, export_onnx_teacher
from .quant_nir import quant_from_nir, quant_to_nir, read_quant_nir, write_quant_nir
from .quantize import quantize
from .targets import TARGETS, check_targets, quantize_for_loihi

__all__ = [
    # the graph and its float forward
    "DeployGraph", "NeuronLayer", "Connection", "INPUT", "run_float", "float_logits",
    "fold_student", "balance_latency",
    # Loihi fixed point and its integer emulation
    "quantize", "quantize_for_loihi", "QuantGraph", "QuantLayer", "QuantConnection",
    "encode_input", "emulate", "save_quant", "load_quant",
    "quantized_accuracy", "split_accuracy", "accuracy_over", "float_accuracy",
    # NIR, ONNX, netx
    "graph_to_nir", "nir_to_graph", "read_nir", "write_nir", "quant_to_nir", "quant_from_nir",
    "write_quant_nir", "read_quant_nir", "export_onnx_student", "export_onnx_teacher",
    "check_onnx", "quantize_for_netx", "write_netx", "netx_problems",
    # export targets and their manifest
    "TARGETS", "check_targets", "read_manifest", "update_manifest",
]
