"""The paper's student through the whole chain on one GPU (a part of benchmarks/gpu_check.sh).

    gpu_chain.py --out DIR [--test-images 10000] [--device cuda]

ResNet-19 w8 (the paper's student; ``--model``/``--width`` for a dry run) on a synthetic data set in CIFAR-10's binary format
(``benchmarks/workflow.py``'s smooth random images: 256 training images, a test split of
CIFAR's size), every step a ``kdsnn`` command with ``--device``:

1. ``kdsnn teacher`` and ``kdsnn distill``, 1 epoch each, AMP on (the fused Triton neuron
   kernel runs on CUDA tensors);
2. ``kdsnn export RUN --target all``: calibration, the float pass and the integer emulation
   over the whole test split on the device (issue 31's goal: <= 1 minute on one GPU);
3. the emulation on the device against the CPU emulation on the same 64 test samples,
   readout and every layer's spikes, bit for bit;
4. ``kdsnn parity RUN --samples 32`` (Lava on the CPU, the rest on the device);
5. ``kdsnn report RUN --source both``.

Writes DIR/chain.json as each step ends (wall times, exit codes, the device's name);
``GPU_CHECK_DEVICE=cpu`` (or ``--device cpu``) is a dry run whose figures are CPU figures
and say so.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from workflow import kdsnn, write_synthetic_cifar10  # noqa: E402

TRAIN = ["--config", "cifar100_resnet19", "--set", "data.name=cifar10",
         "--set", "data.augment=false", "--set", "data.batch_size=32",
         "--set", "data.eval_batch_size=256", "--set", "teacher.epochs=1",
         "--set", "student.epochs=1", "--set", "amp=true"]


def emulation_equal(run: Path, device: str, n: int = 64) -> dict:
    """The run's quantized graph emulated on ``device`` and on the CPU, same samples."""
    import torch

    from export.emulate import emulate
    from export.fixed_point import encode_input
    from export.quant_nir import read_quant_nir
    from kd_snn.rundir import RunDir
    from kd_snn.run import sample_inputs

    rd = RunDir(run)
    q = read_quant_nir(rd.subdir("export") / "student.quant.nir")
    x, _ = sample_inputs(rd.load_config(), "test", n)
    x_int = encode_input(x)
    t0 = time.perf_counter()
    v_cpu, s_cpu = emulate(q, x_int, device="cpu")
    t_cpu = time.perf_counter() - t0
    t0 = time.perf_counter()
    v_dev, s_dev = emulate(q, x_int, device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t_dev = time.perf_counter() - t0
    same = torch.equal(v_cpu, v_dev) and all(torch.equal(s_cpu[k], s_dev[k]) for k in s_cpu)
    return {"samples": n, "bit_identical": bool(same), "layers": len(s_cpu),
            "cpu_s": round(t_cpu, 2), "device_s": round(t_dev, 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--test-images", type=int, default=10000)
    p.add_argument("--device", default=os.environ.get("GPU_CHECK_DEVICE", "cuda"))
    p.add_argument("--limit", type=float, default=240, help="seconds per command")
    p.add_argument("--model", default="resnet19", help="(a smaller one for a dry run)")
    p.add_argument("--width", type=int, default=8)
    a = p.parse_args()
    import torch

    a.out.mkdir(parents=True, exist_ok=True)
    work = a.out / "chain_run"
    run, log = work / "run", a.out / "chain.log"
    root = write_synthetic_cifar10(work / "cifar", test=a.test_images)
    name = (torch.cuda.get_device_name(0) if a.device.startswith("cuda")
            else f"{a.device} (dry run, not a GPU figure)")
    res = {"device": name, "model": f"{a.model} w{a.width}", "test_images": a.test_images,
           "steps": {}}
    model = [arg for stage in ("teacher", "student") for arg in
             ("--set", f"{stage}.model={a.model}", "--set", f"{stage}.width={a.width}")]

    def save():
        (a.out / "chain.json").write_text(json.dumps(res, indent=1))

    dev = ["--device", a.device, "--no-progress"]
    steps = [("teacher", ["teacher", run, *TRAIN, *model, "--set", f"data.root={root}", *dev]),
             ("distill", ["distill", run, *dev]),
             ("export", ["export", run, "--target", "all", *dev]),
             ("emulation_vs_cpu", None),
             ("parity", ["parity", run, "--samples", "32", *dev]),
             ("report", ["report", run, "--source", "both", *dev])]
    for step, args in steps:
        print(f"[gpu_chain] {step} ...", flush=True)
        try:
            r = emulation_equal(run, a.device) if args is None else kdsnn(ROOT, args, a.limit, log)
        except Exception as exc:  # recorded; the next steps may still run
            r = {"status": f"error: {type(exc).__name__}: {exc}"}
        res["steps"][step] = r
        save()
        print(f"[gpu_chain] {step}: {r}", flush=True)
        if r.get("status", "ok") != "ok" and step in ("teacher", "distill", "export"):
            break
    metrics = run / "metrics.json"
    if metrics.is_file():
        res["metrics"] = json.loads(metrics.read_text())
        save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
