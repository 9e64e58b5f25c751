"""Implementation options for the fused neuron, measured on the neuron-benchmark shape.

- cpp:      kd_snn.neurons.fused C++ kernel (chosen for CPU)
- torch:    the same autograd.Function with torch ops (the CUDA / no-compiler path)
- jit:      torch.jit.script of the forward and reverse loops (same math)
- compile:  torch.compile (inductor, CPU C++ codegen) of the reference cuba_multistep
- eager:    reference cuba_multistep (autograd through every step)

    .venv/bin/python benchmarks/fused_options.py   -> benchmarks/results/fused_options.md
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import torch  # noqa: E402

import _common as C  # noqa: E402
from kd_snn.neurons.functional import cuba_multistep  # noqa: E402
from kd_snn.neurons.fused import cuba_multistep_fused  # noqa: E402
from kd_snn.neurons.surrogate import get_surrogate  # noqa: E402

SHAPE = (4, 32, 128, 16, 16)


@torch.jit.script
def _jit_fwd(x: torch.Tensor, beta: float, thr: float):
    u = torch.empty_like(x)
    v = torch.zeros_like(x[0])
    for t in range(x.shape[0]):
        v = beta * v + x[t]
        u[t] = v - thr
        v = v * (u[t] <= 0).to(v.dtype)
    return (u > 0).to(x.dtype), u


@torch.jit.script
def _jit_bwd(u: torch.Tensor, gs: torch.Tensor, beta: float):
    direct = gs / (1 + (math.pi * u) ** 2)
    keep = (u <= 0).to(u.dtype)
    gx = torch.empty_like(u)
    g = torch.zeros_like(u[0])
    for t in range(u.shape[0] - 1, -1, -1):
        g = direct[t] + keep[t] * (beta * g)
        gx[t] = g
    return gx


class _Jit(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        s, u = _jit_fwd(x, 0.5, 1.0)
        ctx.save_for_backward(u)
        return s

    @staticmethod
    def backward(ctx, gs):
        return _jit_bwd(ctx.saved_tensors[0], gs.contiguous(), 0.5)


def main():
    info = C.machine_info()
    g = torch.Generator().manual_seed(0)
    x0 = 0.8 * torch.randn(SHAPE, generator=g) + 0.3
    gy = torch.randn(SHAPE, generator=g)
    ref = cuba_multistep(x0, 0.0, 0.5, 1.0)[0]
    spike = get_surrogate("atan", 1.0)

    def eager(x):
        return cuba_multistep(x, 0.0, 0.5, 1.0, None, spike)[0]

    fns = {
        "cpp": lambda x: cuba_multistep_fused(x, 0.0, 0.5, 1.0, backend="cpp"),
        "torch": lambda x: cuba_multistep_fused(x, 0.0, 0.5, 1.0, backend="torch"),
        "jit": _Jit.apply,
        "compile": None,
        "eager": eager,
    }
    rows = []
    for name, fn in fns.items():
        note = ""
        t0 = time.perf_counter()
        if name == "compile":
            try:
                fn = torch.compile(eager)
                x = x0.clone().requires_grad_()
                fn(x).backward(gy)
                note = f"first call (compile) {time.perf_counter() - t0:.1f} s"
            except Exception as exc:  # noqa: BLE001
                rows.append([name, "failed", "", f"{type(exc).__name__}: {str(exc)[:80]}"])
                continue
        x = x0.clone().requires_grad_()

        def step():
            x.grad = None
            fn(x).backward(gy)
        ms = C.time_iters(step, 20)
        same = torch.equal(fn(x0).detach(), ref)
        rows.append([name, f"{C.median(ms):.2f}", f"{min(ms):.2f}", "yes" if same else "NO", note])
    text = "\n".join([
        f"# Fused neuron implementation options, fwd + bwd on {SHAPE}", "",
        C.machine_md(info), C.md_table(["option", "median ms", "min ms", "spikes == reference",
                                        "note"], rows), ""])
    out = C.RESULTS / "fused_options.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
