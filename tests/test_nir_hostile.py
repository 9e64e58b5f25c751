"""Hostile NIR files (issue 30, item 4): every one refused at import with one sentence about
the file -- naming the node and the field where there is one -- never Python's own
exception text, and nothing written by ``kdsnn import``.

Each case edits one field of a good file (``_good``: conv -> LIF -> sum pool -> flatten ->
affine -> CubaLIF -> readout, fit for the ``digits`` data set) with h5py, as a damaged or
hand-made file would hold it: NaN, infinite or complex parameters, text where numbers
belong, wrong ranks, non-integer or infinite strides, broken metadata, a subtractive reset.
"""
import re
import time

import h5py
import nir
import numpy as np
import pytest

from export.nir_io import nir_to_graph
from kd_snn.errors import KdsnnError

#: what a user must never see: Python's own exception texts
RAW = re.compile(r"object has no attribute|index out of range|cannot convert|could not "
                 r"convert|operands could not|invalid literal|unsupported operand|not "
                 r"subscriptable|object is not|unhashable|Traceback|Error\b|argument must "
                 r"be|too many indices|NoneType|dtype\(")


def _good_graph(metadata=None) -> nir.NIRGraph:
    rng = np.random.default_rng(0)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([1, 8, 8])}),
        "conv": nir.Conv2d(input_shape=(8, 8), weight=rng.normal(0, 1, (2, 1, 3, 3)),
                           stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(2)),
        "lif": nir.LIF(tau=np.full((2, 8, 8), 5e-4), r=np.ones((2, 8, 8)),
                       v_leak=np.zeros((2, 8, 8)), v_threshold=np.full((2, 8, 8), 0.2),
                       v_reset=np.zeros((2, 8, 8))),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                              padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([2, 4, 4])}, start_dim=0),
        "fc": nir.Linear(weight=rng.normal(0, 1, (12, 32))),
        "cuba": nir.CubaLIF(tau_syn=np.full(12, 2e-4), tau_mem=np.full(12, 5e-4),
                            r=np.full(12, 5.0), v_leak=np.zeros(12),
                            v_threshold=np.ones(12), v_reset=np.zeros(12),
                            w_in=np.full(12, 2.0)),
        "out": nir.Affine(weight=rng.normal(0, 1, (10, 12)), bias=np.zeros(10)),
        "output": nir.Output(output_type={"output": np.array([10])}),
    }
    order = ["input", "conv", "lif", "pool", "flat", "fc", "cuba", "out", "output"]
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order, order[1:])),
                        metadata=dict(metadata or {"dt": 1e-4}), type_check=False)


def _good(path):
    nir.write(str(path), _good_graph())
    return path


def _put(field, value):
    """An edit replacing dataset ``field`` (under node/nodes/) by ``value``."""
    def edit(f):
        key = f"node/nodes/{field}" if not field.startswith("/") else field[1:]
        if key in f:
            del f[key]
        if value is not None:
            f[key] = value
    return edit


def _meta(key, value):
    return _put(f"/node/metadata/{key}", value)


NAN = np.array([[np.nan] * 32] + [[0.5] * 32] * 11)
CASES = {  # name -> (edit, words the message must contain)
    "NaN weight": (_put("fc/weight", NAN), ["'fc'", "'weight'", "NaN"]),
    "infinite conv weight": (_put("conv/weight", np.full((2, 1, 3, 3), np.inf)),
                             ["'conv'", "'weight'", "infinite"]),
    "complex weight": (_put("out/weight", np.ones((10, 12)) * (1 + 2j)),
                       ["'out'", "'weight'", "complex"]),
    "complex threshold": (_put("lif/v_threshold", np.ones((2, 8, 8)) * 1j),
                          ["'lif'", "'v_threshold'", "complex"]),
    "NaN bias": (_put("out/bias", np.full(10, np.nan)), ["'out'", "'bias'", "NaN"]),
    "infinite threshold": (_put("cuba/v_threshold", np.full(12, np.inf)),
                           ["'cuba'", "'v_threshold'", "infinite"]),
    "NaN tau": (_put("lif/tau", np.full((2, 8, 8), np.nan)), ["'lif'", "'tau'", "NaN"]),
    "text weight": (_put("fc/weight", "not a weight"), ["'fc'", "'weight'", "text"]),
    "text threshold": (_put("lif/v_threshold", "0.2"), ["'lif'", "'v_threshold'", "text"]),
    "weight of rank 1": (_put("fc/weight", np.ones(32)), ["'fc'", "'weight'", "rank 1"]),
    "weight of rank 0": (_put("out/weight", 3.0), ["'out'", "'weight'", "rank 0"]),
    "conv weight of rank 2": (_put("conv/weight", np.ones((2, 9))),
                              ["'conv'", "'weight'", "rank 2"]),
    "bias of rank 2": (_put("out/bias", np.zeros((10, 1))), ["'out'", "'bias'", "rank 2"]),
    "infinite stride": (_put("conv/stride", np.array([np.inf, np.inf])),
                        ["'conv'", "'stride'", "infinite"]),
    "infinite groups": (_put("conv/groups", np.inf), ["'conv'", "'groups'", "infinite"]),
    "fractional stride": (_put("conv/stride", np.array([1.5, 1.5])),
                          ["'conv'", "'stride'", "not integers"]),
    "stride 0": (_put("conv/stride", np.array([0, 0])), ["'conv'", "stride"]),
    "huge stride": (_put("conv/stride", np.array([1e30, 1e30])),
                    ["'conv'", "'stride'", "not integers"]),
    "pool kernel 0": (_put("pool/kernel_size", np.array([0, 0])), ["'pool'"]),
    "pool kernel text": (_put("pool/kernel_size", "2x2"), ["'pool'", "'kernel_size'", "text"]),
    "flatten start_dim text": (_put("flat/start_dim", "zero"),
                               ["'flat'", "'start_dim'", "text"]),
    "missing weight": (_put("fc/weight", None), ["'fc'", "no 'weight'"]),
    "missing tau": (_put("lif/tau", None), ["'lif'", "no 'tau'"]),
    "conv bias of the wrong size": (_put("conv/bias", np.zeros(5)), ["'conv'", "biases"]),
    "tau of the wrong size": (_put("lif/tau", np.full(7, 5e-4)), ["'lif'", "shape"]),
    "negative r": (_put("cuba/r", np.full(12, -5.0)), ["'cuba'", "r <= 0"]),
    "v_reset not zero": (_put("lif/v_reset", np.full((2, 8, 8), 0.1)),
                         ["'lif'", "v_reset"]),
    "input shape negative": (_put("input/shape", np.array([1, -8, 8])),
                             ["'input'", "non-positive"]),
    "input shape infinite": (_put("input/shape", np.array([1.0, np.inf, 8.0])),
                             ["'input'", "'shape'", "infinite"]),
    "input shape text": (_put("input/shape", "1x8x8"), ["'input'", "'shape'", "text"]),
    "metadata dt text": (_meta("dt", "1e-4s"), ["metadata dt", "not a number"]),
    "metadata dt NaN": (_meta("dt", np.nan), ["metadata dt", "not finite"]),
    "metadata dt negative": (_meta("dt", -1e-4), ["dt", "positive"]),
    "metadata time_steps infinite": (_meta("time_steps", np.inf),
                                     ["metadata time_steps", "not finite"]),
    "metadata time_steps text": (_meta("time_steps", "four"),
                                 ["metadata time_steps", "not a number"]),
    "metadata time_steps fractional": (_meta("time_steps", 2.5),
                                       ["time_steps", "whole number"]),
    "metadata dt of two values": (_meta("dt", np.array([1e-4, 2e-4])),
                                  ["metadata dt", "2 values"]),
    "no edges": (_put("/node/edges", None), ["'edges'", "(source, target)"]),
    "edges of numbers": (_put("/node/edges", np.arange(6).reshape(3, 2)),
                         ["'edges'", "(source, target)"]),
    "edges of three columns": (_put("/node/edges", np.array([["input", "conv", "x"]] * 3,
                                                            dtype="S")),
                               ["'edges'", "(source, target)"]),
    "layer named 'input' in metadata": (_put("lif/metadata/kdsnn_layer", "input"),
                                        ["'lif'", "cannot be a layer name"]),
    "subtractive reset in the graph's metadata": (_meta("reset_mechanism", "subtract"),
                                                  ["reset_mechanism", "subtractive"]),
    "subtractive reset in a node's metadata": (
        _put("lif/metadata/reset_mechanism", "subtract"),
        ["'lif'", "reset_mechanism", "subtractive"]),
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    files = {}
    for k, name in enumerate(CASES):
        path = _good(folder / f"case{k}.nir")
        with h5py.File(path, "r+") as f:
            CASES[name][0](f)
        files[name] = path
    return files


def test_the_good_file_imports(tmp_path):
    g = nir_to_graph(_good(tmp_path / "good.nir"))
    assert [l.name for l in g.layers] == ["lif", "cuba", "readout"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_file_is_one_sentence_naming_what(hostile, name):
    t0 = time.perf_counter()
    with pytest.raises(KdsnnError) as info:
        nir_to_graph(hostile[name])
    msg = str(info.value)
    assert time.perf_counter() - t0 < 5.0
    assert "\n" not in msg and not RAW.search(msg), msg
    for word in CASES[name][1]:
        assert word in msg, (word, msg)


def test_hostile_graphs_in_memory_refused_alike():
    """A NIRGraph object (not a file) with NaN, infinite or complex parameters."""
    for node, field, value, word in [("fc", "weight", np.full((12, 32), np.nan), "NaN"),
                                     ("out", "bias", np.full(10, np.inf), "infinite"),
                                     ("conv", "weight", np.ones((2, 1, 3, 3)) * 1j,
                                      "complex")]:
        g = _good_graph()
        setattr(g.nodes[node], field, value)
        with pytest.raises(KdsnnError, match=f"'{node}'.*'{field}'.*{word}"):
            nir_to_graph(g)


def test_hostile_files_at_the_command_line(hostile, tmp_path, capsys):
    """``kdsnn import``: one line ``kdsnn: error: ...``, exit 2, no run made."""
    from kdsnn.cli import main
    for name in ("NaN weight", "complex weight", "text weight", "weight of rank 0",
                 "infinite stride", "metadata time_steps infinite",
                 "subtractive reset in a node's metadata"):
        run = tmp_path / re.sub(r"\W", "_", name)
        assert main(["import", str(hostile[name]), str(run), "--data", "digits",
                     "--no-progress"]) == 2, name
        err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
        assert len(err) == 1 and err[0].startswith("kdsnn: error: "), (name, err)
        assert not RAW.search(err[0]) and not run.exists(), err
