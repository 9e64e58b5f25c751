"""The netx code block of docs/guides/export-parity.md, run as written: bit-exact with kdsnn's
integer emulation (tests/test_docs.py leaves this block, marked ``readme-test: netx``, to this test)."""
import re
from pathlib import Path

import numpy as np
import torch

from export.emulate import emulate
from export.graph import Connection, DeployGraph, NeuronLayer
from export.netx import netx_problems, quantize_for_netx, write_netx
from export.quantize import encode_input
from kd_snn.data import build_dataset
from kd_snn.data.encoding import encode

PAGE = Path(__file__).resolve().parents[1] / "docs" / "guides" / "export-parity.md"
MARKER = "<!-- readme-test: netx -->"
NETX_PATH = Path("runs/demo/export/student.net")  # where the block loads it from


def readme_python_block(marker: str) -> str:
    """The ```python block that directly follows ``marker`` in the page."""
    found = re.search(re.escape(marker) + r"\s*```python\n(.*?)\n```", PAGE.read_text(), re.S)
    assert found, f"{PAGE.name} has no python code block right after {marker}"
    return found.group(1)


def digits_sized_student(T=4):
    """A small sequential student for 1x8x8 digits (conv -> conv stride 2 -> dense readout),
    which netx can express; Lava runs it in seconds."""
    rng = np.random.default_rng(0)
    c1 = Connection("input", "conv", rng.normal(0, 0.8, (4, 1, 3, 3)), (1, 1), (1, 1))
    l1 = NeuronLayer("c1", (4, 8, 8), (c1,), rng.normal(0, 0.1, (4, 1, 1)), 0.0, 0.75, 1.0)
    c2 = Connection("c1", "conv", rng.normal(0, 0.5, (6, 4, 3, 3)), (2, 2), (1, 1))
    l2 = NeuronLayer("c2", (6, 4, 4), (c2,), 0.05, 0.0, 0.5, 0.8)
    c3 = Connection("c2", "dense", rng.normal(0, 0.4, (10, 96)))
    l3 = NeuronLayer("fc", (10,), (c3,), rng.normal(0, 0.1, 10), 0.0, 1.0, 1.0, spiking=False)
    return DeployGraph((1, 8, 8), (l1, l2, l3), T)


def test_readme_netx_block_is_bit_exact_with_the_emulation(tmp_path, monkeypatch):
    code = readme_python_block(MARKER)
    graph = digits_sized_student()
    test = build_dataset("digits", "test")
    images = torch.stack([test[i][0] for i in range(10)])  # what the block feeds
    x_seq = encode(images, graph.time_steps, "direct").to(torch.float64)
    qgraph = quantize_for_netx(graph, x_seq)
    assert netx_problems(qgraph) == []
    (tmp_path / NETX_PATH).parent.mkdir(parents=True)
    write_netx(qgraph, tmp_path / NETX_PATH)

    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, f"{PAGE.name} {MARKER}", "exec"), namespace)

    v_emu, spikes = emulate(qgraph, encode_input(x_seq))
    assert namespace["T"] == graph.time_steps
    assert int(spikes["c1"].sum()) > 0 and int(spikes["c2"].sum()) > 0  # non-trivial run
    np.testing.assert_array_equal(namespace["logits"], v_emu.numpy())
