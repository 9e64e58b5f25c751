"""--device after training (issue 31): every step computes where it is told, the integer
emulation is the same integers on every device, and a device the machine lacks is refused
before any work.

The device tests run on every device this machine has: the CPU always (the device path with
``device="cpu"`` against the default path), and CUDA when present (``benchmarks/gpu_check.sh``
runs this file on a GPU): there the emulation, the float pass, calibration and the counts
must equal the CPU's.  Bit equality is asserted only for integers (the emulation's spikes
and readout, the counts); float results are compared where they feed an integer decision.
"""
import numpy as np
import pytest
import torch

from export.accuracy import quantized_accuracy
from export.devices import exact_kernels
from export.emulate import emulate
from export.latency import balance_latency
from export.quantize import encode_input, quantize
from hardware.energy import analyze_graph
from kd_snn.errors import KdsnnError
from kdsnn.cli import main
from kdsnn.devices import lava_note, step_device
from tests.test_emulate_vs_lava import residual_graph, sequential_graph

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def _x(graph, n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(graph.time_steps, n, *graph.input_shape, generator=g,
                      dtype=torch.float64)


@pytest.fixture(scope="module")
def residual():
    graph = balance_latency(residual_graph(1))
    return graph, quantize(graph, _x(graph, 16))


def test_exact_kernels_turn_tf32_and_cudnn_off_on_cuda_only():
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    before = (matmul.allow_tf32, cudnn.enabled, cudnn.allow_tf32)
    with exact_kernels("cpu"):
        assert (matmul.allow_tf32, cudnn.enabled, cudnn.allow_tf32) == before
    with exact_kernels(torch.device("cuda")):
        assert (matmul.allow_tf32, cudnn.enabled, cudnn.allow_tf32) == (False, False, False)
    assert (matmul.allow_tf32, cudnn.enabled, cudnn.allow_tf32) == before


@pytest.mark.parametrize("device", DEVICES)
def test_emulation_is_the_same_integers_on_every_device(residual, device):
    graph, q = residual
    x_int = encode_input(_x(graph, 12, seed=1))
    v_ref, s_ref = emulate(q, x_int)
    v, s = emulate(q, x_int, device=device)
    assert v.device.type == "cpu" and torch.equal(v, v_ref)
    assert s.keys() == s_ref.keys() and all(torch.equal(s[k], s_ref[k]) for k in s)


@pytest.mark.parametrize("device", DEVICES)
def test_calibration_and_accuracy_pass_on_every_device(device):
    graph = balance_latency(sequential_graph(2))
    calib = _x(graph, 16)
    q_ref, q = quantize(graph, calib), quantize(graph, calib, device=device)
    assert q.digest() == q_ref.digest()  # same scales: the same quantized graph
    x, y = _x(graph, 20, seed=2), np.arange(20) % 10
    ref = quantized_accuracy(graph, q, x, y, batch=8)
    got = quantized_accuracy(graph, q, x, y, batch=8, device=device)
    assert got["quantized"] == ref["quantized"] and got["samples"] == 20
    assert abs(got["float"] - ref["float"]) <= 1 / 20  # float32 kernels may differ


@pytest.mark.parametrize("device", DEVICES)
def test_counts_are_the_same_on_every_device(residual, device):
    graph, q = residual
    x = _x(graph, 6, seed=3)
    ref = analyze_graph(graph, x, batch_size=4)
    got = analyze_graph(graph, x, batch_size=4, device=device)
    for a, b in zip(ref.layers, got.layers):  # float spikes: kernels may differ in last bits
        assert a.name == b.name
        assert (b.spikes, b.synops_in) == pytest.approx((a.spikes, a.synops_in), rel=0.01)
    _, spikes = emulate(q, encode_input(x))  # integer spikes: the counts are exact
    lava_like = analyze_graph(q, x, spikes=spikes, source="lava", device=device)
    assert lava_like.totals == analyze_graph(q, x, spikes=spikes, source="lava").totals
    assert [(s.spikes, s.synops_in, s.active_updates) for s in lava_like.layers] == \
        [(s.spikes, s.synops_in, s.active_updates) for s in
         analyze_graph(q, x, spikes=spikes, source="lava").layers]


def test_step_device_resolves_auto_and_says_where_lava_runs():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert step_device(None).type == expected and step_device("auto").type == expected
    assert step_device("cpu").type == "cpu" and lava_note(torch.device("cpu")) is None
    assert "Lava" in lava_note(torch.device("cuda"))
    with pytest.raises(KdsnnError, match="unknown device"):
        step_device("tpu")


@no_cuda
@pytest.mark.parametrize("command", [["export", "--target", "quant"], ["quantize"],
                                     ["parity"], ["report"]])
def test_a_device_the_machine_lacks_is_refused_before_any_work(tmp_path, capsys, command):
    run = tmp_path / "run"
    assert main([command[0], str(run), *command[1:], "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kdsnn: error:") and "cuda" in err[0].lower()
    assert not run.exists()


@no_cuda
def test_import_refuses_a_device_the_machine_lacks_before_reading_anything(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["import", str(tmp_path / "absent.nir"), str(run), "--data", "digits",
                 "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cuda" in err[0].lower() and not run.exists()


def test_emulate_runs_under_exact_kernels_however_the_device_is_passed(monkeypatch, residual):
    import export.devices as devices
    seen = []
    real = devices.exact_kernels

    def spy(device):
        seen.append(device)
        return real(device)
    monkeypatch.setattr(devices, "exact_kernels", spy)
    graph, q = residual
    x_int = encode_input(_x(graph, 2))
    emulate(q, x_int, device="cpu")
    emulate(q, x_int, True, None, "cpu")  # positionally
    emulate(q, x_int)
    assert seen == ["cpu", "cpu", None]
