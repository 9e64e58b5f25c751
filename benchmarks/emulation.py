"""The pieces this session's chain work changed, each beside the code before it, in one run.

    .venv/bin/python benchmarks/emulation.py            # ~5 min on 2 cores

On the ResNet-20 w1 student of ``benchmarks/workflow.py`` (run it first: its trained run and
export are reused), same machine, same inputs, alternating repetitions:

1. ``accuracy pass``: export's float forward + integer emulation over 1,024 test images,
   with the code of ``--before-ref`` (the landed commit before these changes, extracted
   with ``git archive``, run in its own process) and with this checkout; both must give the
   same integer emulation accuracy.
2. ``LIF kernel``: the emulation's C++ LIF kernel of ``--before-ref`` (int64 scalar loop)
   and this checkout's (32-bit lanes), on one ResNet-20 layer's synaptic input (T = 4, 256
   images, 16x28x28), outputs asserted equal.
3. ``stock re-check``: parity's re-check of 2 samples with Lava's stock models, as a
   second process network (the former method, ``hardware.parity.run_parity`` with
   ``conv_model="lava"``) and synapse by synapse (``hardware.stock_check``); both must
   agree (bit-exact).

Results: ``benchmarks/results/emulation.{json,md}``, rewritten after every measurement.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _common import machine_info, md_table, write_results  # noqa: E402
from workflow import before_code, code_version  # noqa: E402

sys.path.insert(0, str(ROOT))  # the project's 'hardware' package, not benchmarks/hardware.py

OUT = HERE / "results"
STEM = "emulation"
BEFORE_REF = "842c0a2"

#: runs quantized_accuracy with whatever code is first on sys.path; prints JSON
_ACCURACY = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from kd_snn.rundir import RunDir
try:  # the code since the Python API (issue 28)
    from kdsnn.deploy import quantized_network
    from kd_snn.run import sample_inputs
    from export.accuracy import quantized_accuracy
except ImportError:  # the code before it
    from kdsnn.common import _load_quant_or_make as quantized_network
    from export.pipeline import quantized_accuracy, sample_inputs
run = RunDir(sys.argv[2])
_, balanced, qgraph = quantized_network(run, False)
x, y = sample_inputs(run.load_config(), "test", int(sys.argv[3]))
quantized_accuracy(balanced, qgraph, x[:, :256], y[:256])  # warm-up (kernel build, caches)
t0 = time.perf_counter()
acc = quantized_accuracy(balanced, qgraph, x, y)
print(json.dumps({"seconds": time.perf_counter() - t0, "quantized": acc["quantized"]}))
"""


def accuracy_pass(code: Path, run: Path, n: int) -> dict:
    out = subprocess.run([sys.executable, "-c", _ACCURACY, str(code), str(run), str(n)],
                         cwd=code, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def lif_kernels(before: Path, reps: int) -> dict:
    """Old and new kernel on the same input; outputs equal; best of ``reps``."""
    import importlib.util

    import torch

    from export import lif_kernel as new

    spec = importlib.util.spec_from_file_location("lif_kernel_before",
                                                  before / "export" / "lif_kernel.py")
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    g = torch.Generator().manual_seed(0)
    a = (torch.randn(4, 256, 16, 28, 28, generator=g) * 300).round()
    bias = torch.randint(-100, 100, (16, 28, 28), generator=g)
    ref = old.lif_layer_native(a, 100, 200, bias, 200, {})
    got = new.lif_layer_native(a, 100, 200, bias, 200, {})
    assert all(torch.equal(p, q) for p, q in zip(ref, got)), "kernels differ"
    times = {"before": [], "now": []}
    for _ in range(reps):
        for name, mod in (("before", old), ("now", new)):
            t0 = time.perf_counter()
            mod.lif_layer_native(a, 100, 200, bias, 200, {})
            times[name].append(time.perf_counter() - t0)
    return {k: min(v) for k, v in times.items()}


def stock_checks(run: Path) -> dict:
    import lava.proc.lif.process  # noqa: F401  (fork start method first)

    from export.quantize import encode_input
    from hardware import parity
    from hardware.stock_check import check_synapses
    from kd_snn.rundir import RunDir
    from kd_snn.run import sample_inputs
    from kdsnn.deploy import quantized_network

    r = RunDir(run)
    _, balanced, qgraph = quantized_network(r, False)
    x, y = sample_inputs(r.load_config(), "test", 2)
    fast = parity.run_parity(balanced, qgraph, x, y, progress=False, conv_model="fast",
                             keep_spikes=2)
    t0 = time.perf_counter()
    net = parity.run_parity(balanced, qgraph, x, y, batch=2, progress=False,
                            conv_model="lava")
    t1 = time.perf_counter()
    _, spikes = fast.record.first(2)
    syn = check_synapses(qgraph, encode_input(x), spikes, "fast")
    t2 = time.perf_counter()
    assert net.result["bit_exact_emulation_vs_lava"] and syn["bit_exact"]
    return {"network_s": t1 - t0, "synapses_s": t2 - t1, "synapses": syn["synapses"]}


def markdown(r: dict) -> str:
    rows = []
    acc = r.get("accuracy_pass")
    if acc:
        rows.append([f"accuracy pass, {acc['samples']} images (float + emulation)",
                     f"{acc['before_s']:.1f}", f"{acc['now_s']:.1f}",
                     f"{acc['before_s'] / acc['now_s']:.2f}x"])
    k = r.get("lif_kernel")
    if k:
        rows.append(["LIF kernel, one layer (4 x 256 x 16x28x28)", f"{k['before'] * 1e3:.1f} ms",
                     f"{k['now'] * 1e3:.1f} ms", f"{k['before'] / k['now']:.2f}x"])
    s = r.get("stock_check")
    if s:
        rows.append([f"stock re-check, 2 samples ({s['synapses']} synapses): second network "
                     "(before) vs synapse by synapse (now)", f"{s['network_s']:.1f}",
                     f"{s['synapses_s']:.1f}", f"{s['network_s'] / s['synapses_s']:.2f}x"])
    m = r["meta"]
    return "\n".join([
        "# Emulation and parity pieces, before and now (ResNet-20 w1)", "",
        f"`{m['command']}` — {m['machine']['cpu']}, {m['machine']['cores']} cores, "
        f"{m['machine']['date']}; load average at start {m['machine']['loadavg']}. "
        f"'before' = commit {m['before_ref']}, 'now' = {m['now']}; one invocation, same "
        "inputs, results asserted equal (the accuracy pass: same integer emulation accuracy; "
        "the kernels: same spikes and v; the re-checks: both bit-exact). Seconds unless "
        "stated; they depend on the machine and its load.", "",
        md_table(["piece", "before", "now", "before / now"], rows), ""])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before-ref", default=BEFORE_REF)
    p.add_argument("--run", default=str(ROOT / "runs" / "workflow" / "resnet20" / "now"),
                   help="an exported ResNet-20 run (benchmarks/workflow.py makes it)")
    p.add_argument("--samples", type=int, default=1024)
    p.add_argument("--reps", type=int, default=2)
    args = p.parse_args()
    run = Path(args.run)
    if not (run / "export" / "student.quant.nir").is_file():
        print(f"{run} has no export: run benchmarks/workflow.py --rows resnet20 first")
        return 2
    before = before_code(args.before_ref, ROOT / "runs" / "workflow")
    r = {"meta": {"command": "python benchmarks/emulation.py " + " ".join(sys.argv[1:]),
                  "machine": machine_info(), "before_ref": args.before_ref,
                  "now": code_version("now", args.before_ref)}}
    times = {"before": [], "now": []}
    for _ in range(args.reps):  # alternating, so drift of the machine hits both
        for name, code in (("before", before), ("now", ROOT)):
            res = accuracy_pass(code, run, args.samples)
            times[name].append(res["seconds"])
            times.setdefault(f"{name}_quantized", res["quantized"])
    assert times["before_quantized"] == times["now_quantized"], "emulation accuracy differs"
    r["accuracy_pass"] = {"samples": args.samples, "before_s": min(times["before"]),
                          "now_s": min(times["now"])}
    write_results(OUT, STEM, r, markdown(r))
    r["lif_kernel"] = lif_kernels(before, max(3, args.reps))
    write_results(OUT, STEM, r, markdown(r))
    r["stock_check"] = stock_checks(run)
    write_results(OUT, STEM, r, markdown(r))
    print(markdown(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
