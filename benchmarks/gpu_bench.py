"""The parts of benchmarks/gpu_check.sh (one CUDA GPU; nothing downloaded).

    gpu_bench.py env|exact|neuron|distill|digits|report --out DIR [--workload small|large] [--amp]

- ``env``: device, versions, which peers import; refuses to go on without CUDA + Triton.
- ``exact``: the Triton kernel vs ``functional.cuba_multistep`` on CUDA at the benchmark
  shape, every dtype / reset / parameter layout: spikes equal, gradient differences.
- ``neuron``: the workload of benchmarks/neuron.py (same shape, input, neuron) on CUDA.
- ``distill``: one full distillation step, ``small`` = benchmarks/distill_step.py's
  (ResNet-20 w1, B 32), ``large`` = ResNet-19 w8 (128/256/512), B 128, 32x32, T 4, 100
  classes; every library's neuron in the same network.  ``--amp``: fp16 autocast +
  GradScaler, as ``kdsnn distill`` trains on CUDA.
- ``digits``: ``kdsnn teacher`` + 2-epoch ``kdsnn distill`` on digits with CUDA + AMP;
  a distillation SIGKILLed after its first checkpoint and ``--resume``d must end with the
  weights of an uninterrupted run (and two uninterrupted runs are compared too).
- ``report``: gpu.md + gpu.json in DIR from the parts' JSON files.

Each library runs in its own fresh interpreter; GPU time = wall time of a step ended by
``torch.cuda.synchronize()``; peak memory = ``torch.cuda.max_memory_allocated`` over one
step minus what was allocated before it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import _common as C  # noqa: E402
import peers  # noqa: E402

NEURON_LIBS = ["kdsnn-fused", "kdsnn-torch", "kdsnn-reference", "torch-loop", "snntorch",
               "norse", "spikingjelly", "spikingjelly-cupy"]
DISTILL_LIBS = ["kdsnn-fused", "kdsnn-torch", "torch-loop", "snntorch", "norse",
                "spikingjelly", "spikingjelly-cupy"]
# GPU_CHECK_DEVICE=cpu: a dry run of the script's own logic on a machine without a GPU
# (its figures are CPU figures and say so); never what gpu_check.sh runs.
DEVICE = os.environ.get("GPU_CHECK_DEVICE", "cuda")
LARGE = {"model": "resnet19", "width": 8, "B": 128, "T": 4, "K": 100}
NOTES = {"kdsnn-torch": "cuba_multistep_fused(backend='torch'): kdsnn on CUDA before the "
                        "Triton kernel (Python loop over T)",
         "spikingjelly-cupy": "LIFNode as spikingjelly, backend='cupy' (fused CUDA kernels)",
         "kdsnn-fused": "CubaLIF(backend='fused'): on CUDA the Triton kernel",
         "spikingjelly": "LIFNode(tau=2, decay_input=False, v_reset=0, detach_reset=True, "
                         "ATan, step_mode='m'), backend='torch'"}


def _sync():
    import torch
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _peer(lib: str):
    """peers.make(lib), plus the two CUDA-only entries of this benchmark."""
    from torch import nn
    if lib == "kdsnn-torch":
        from kd_snn.neurons.fused import cuba_multistep_fused

        class KdsnnTorch(nn.Module):
            def forward(self, x):
                return cuba_multistep_fused(x, 0.0, peers.BETA, peers.THRESHOLD, None, "atan",
                                            1.0, backend="torch")
        return peers.Peer(KdsnnTorch(), peers._ident, peers._ident, KdsnnTorch), None
    if lib == "spikingjelly-cupy":
        try:
            import cupy  # noqa: F401
        except Exception as exc:  # noqa: BLE001
            return None, f"cupy not importable ({type(exc).__name__}); not installed by kdsnn"
        why = peers.available("spikingjelly")
        if why:
            return None, why
        p = peers.make("spikingjelly")

        def mk():
            m = p.module()
            m.node.backend = "cupy"
            return m
        m = mk()
        return peers.Peer(m, peers._ident, peers._ident, mk), None
    why = peers.available(lib)
    return (None, why) if why else (peers.make(lib), None)


def _peak_mb(step) -> float:
    import torch
    if DEVICE != "cuda":
        return float("nan")
    _sync()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    _sync()
    return (torch.cuda.max_memory_allocated() - base) / 1e6


def _backend_used() -> str:
    import torch
    from kd_snn.neurons import fused
    return fused._select(DEVICE, torch.float32, "auto")


# --------------------------------------------------------------------------- workers
def neuron_worker(lib: str, iters: int) -> dict:
    import torch
    import neuron as NB
    from kd_snn.neurons.functional import cuba_multistep
    from kd_snn.neurons.surrogate import get_surrogate
    p, why = _peer(lib)
    if why:
        return {"lib": lib, "skipped": why}
    dev = torch.device(DEVICE)
    native = p.native.to(dev) if isinstance(p.native, torch.nn.Module) else p.native
    x, gy = (t.to(dev) for t in NB.make_input())
    xn = p.to_native(x).detach().requires_grad_()
    gn = p.to_native(gy).detach().contiguous() if lib != "norse" else gy

    def step():
        xn.grad = None
        s = native(xn)
        s.backward(gn)
        _sync()
        return s

    res = {"lib": lib, "ms": C.time_iters(step, iters, warmup=5), "backend": _backend_used()}
    xr = x.clone().requires_grad_()
    s_ref, _ = cuba_multistep(xr, 0.0, peers.BETA, peers.THRESHOLD, None, get_surrogate("atan"))
    s_ref.backward(gy)
    s = p.from_native(step().detach())
    gx = p.from_native(xn.grad) * (2 if lib == "norse" else 1)
    res.update(mismatch=int((s != s_ref).sum()), spike_rate=float(s_ref.mean()),
               grad_maxdiff=float((gx - xr.grad).abs().max()))
    xn.grad = None
    res["peak_mb"] = _peak_mb(step)
    return res


def _swap_neurons(model, factory):
    """Every CubaLIF of a kdsnn model replaced by ``factory()`` (the library's neuron)."""
    from kd_snn.neurons import CubaLIF
    for mod in list(model.modules()):
        for name, child in list(mod.named_children()):
            if isinstance(child, CubaLIF):
                setattr(mod, name, factory())
    return model


def distill_worker(lib: str, iters: int, workload: str, amp: bool) -> dict:
    import torch
    import distill_step as DS
    p, why = _peer(lib)
    if why:
        return {"lib": lib, "skipped": why}
    dev = torch.device(DEVICE)
    if workload == "small":
        student, teacher = DS.build_nets(p.module)
        T, B, K = DS.T, DS.B, DS.K
    else:
        from kd_snn.models import create_model
        T, B, K = LARGE["T"], LARGE["B"], LARGE["K"]
        torch.manual_seed(0)
        student = _swap_neurons(create_model(LARGE["model"], K, 3, True, LARGE["width"]),
                                p.module)
        teacher = create_model(LARGE["model"], K, 3, False, LARGE["width"]).eval()
    student, teacher = student.to(dev), teacher.to(dev)
    loss_fn, loss_name = DS.make_loss()
    opt = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    scaler = torch.amp.GradScaler(DEVICE, enabled=amp)
    g = torch.Generator().manual_seed(1)
    img = torch.randn(B, 3, 32, 32, generator=g).to(dev)
    y = torch.randint(0, K, (B,), generator=g).to(dev)

    def step():
        with torch.autocast(DEVICE, enabled=amp):
            with torch.no_grad():
                t_logits, t_fmap = teacher.forward_features(img)
            x_seq = img.unsqueeze(0).expand(T, *img.shape)
            s_logits, s_spikes = student.forward_features(x_seq)
            loss = loss_fn(s_logits, s_spikes, t_logits, t_fmap, teacher.classifier_weight, y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        _sync()

    res = {"lib": lib, "loss": loss_name, "ms": C.time_iters(step, iters, warmup=3),
           "backend": _backend_used()}
    res["peak_mb"] = _peak_mb(step)
    return res


def _run_libs(part: str, libs, rounds: int, extra_args) -> dict:
    times, info, skipped = {lib: [] for lib in libs}, {}, {}
    for r in range(rounds):
        for lib in libs:
            if lib in skipped:
                continue
            res = C.run_worker(Path(__file__), [lib, "--part", part, *extra_args],
                               mem_mode=False, timeout=240)
            if res is None or "skipped" in res:
                skipped[lib] = res["skipped"] if res else "worker failed (see the log)"
                continue
            times[lib] += res.pop("ms")
            info[lib] = res
            print(f"{part} round {r} {lib:18s} median {C.median(times[lib]):8.2f} ms", flush=True)
    med = {lib: C.median(times[lib]) for lib in libs if lib not in skipped}
    return {"median_ms": med, "min_ms": {k: min(times[k]) for k in med}, "extra": info,
            "skipped": skipped}


# --------------------------------------------------------------------------- exactness
def exact() -> dict:
    """Kernel vs reference on CUDA at the neuron benchmark's shape."""
    import torch
    import neuron as NB
    from kd_snn.neurons.functional import cuba_multistep
    from kd_snn.neurons.fused import cuba_multistep_fused
    from kd_snn.neurons.surrogate import get_surrogate
    dev = torch.device("cuda")
    x0, gy = (t.to(dev) for t in NB.make_input())
    C_ = NB.SHAPE[2]
    gen = torch.Generator().manual_seed(5)
    layouts = {"lif": (0.0, 0.5, 1.0, None),
               "cuba-channel": ((0.5 * torch.rand(C_, 1, 1, generator=gen)).to(dev),
                                torch.rand(C_, 1, 1, generator=gen).to(dev), 1.0,
                                (0.2 * torch.randn(C_, 1, 1, generator=gen)).to(dev))}
    rows = []
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        x = x0.to(dtype)
        for lname, (a, b, th, bias) in layouts.items():
            for sur in ("atan", "sigmoid", "triangle"):
                for detach in (True, False):
                    out = []
                    for run_kernel in (False, True):
                        xi = (x if run_kernel else x.float()).detach().clone().requires_grad_()
                        if run_kernel:
                            s = cuba_multistep_fused(xi, a, b, th, bias, sur, 1.0,
                                                     backend="triton", detach_reset=detach)
                        else:
                            s, _ = cuba_multistep(xi, a, b, th, bias, get_surrogate(sur, 1.0),
                                                  detach_reset=detach)
                        s.backward(gy.to(s.dtype))
                        out.append((s.detach().float(), xi.grad.float()))
                    (s_ref, g_ref), (s, g) = out
                    rel = float(((g - g_ref).abs() / (g_ref.abs() + 1e-3)).max())
                    rows.append({"dtype": str(dtype).split(".")[1], "params": lname,
                                 "surrogate": sur, "detach_reset": detach,
                                 "spike_mismatch": int((s != s_ref).sum()),
                                 "grad_max_abs": float((g - g_ref).abs().max()),
                                 "grad_max_rel": rel})
    return {"shape": list(NB.SHAPE), "rows": rows,
            "all_spikes_equal": all(r["spike_mismatch"] == 0 for r in rows)}


# --------------------------------------------------------------------------- digits
def _weights_equal(a: Path, b: Path) -> bool:
    import torch
    from safetensors.torch import load_file
    x, y = load_file(a), load_file(b)
    return set(x) == set(y) and all(torch.equal(x[k], y[k]) for k in x)


def digits(out: Path) -> dict:
    """teacher + 2-epoch distill on CUDA with AMP; SIGKILL + --resume == uninterrupted."""
    base = out / "digits_runs"
    shutil.rmtree(base, ignore_errors=True)
    env = dict(os.environ, PYTHONHASHSEED="0")
    kd = [sys.executable, "-m", "kdsnn"]
    common = ["--device", DEVICE, "--no-progress"]
    res = {}

    def cli(*args, timeout=300):
        t0 = time.time()
        p = subprocess.run([*kd, *map(str, args)], capture_output=True, text=True, env=env,
                           cwd=HERE.parent, timeout=timeout)
        if p.returncode:
            raise RuntimeError(f"kdsnn {' '.join(map(str, args[:2]))} failed: {p.stderr[-800:]}")
        return round(time.time() - t0, 1)

    a, b, k = base / "a", base / "b", base / "killed"
    over = ["--set", "teacher.epochs=2", "--set", "student.epochs=2",
            "--set", "student.checkpoint_every=5", "--set", "amp=true"]
    res["teacher_s"] = cli("teacher", "--config", "digits", a, *over, *common)
    teacher = a / "teacher"
    res["distill_s"] = cli("distill", a, *common)
    metrics = json.loads((a / "metrics.json").read_text())
    res["student_metrics"] = metrics.get("student")
    cli("distill", "--config", a / "config.yaml", b, "--teacher", teacher, *common)
    res["two_runs_identical"] = _weights_equal(a / "student" / "model.safetensors",
                                               b / "student" / "model.safetensors")
    # SIGKILL after the first checkpoint, then --resume
    proc = subprocess.Popen([*kd, "distill", "--config", str(a / "config.yaml"), str(k),
                             "--teacher", str(teacher), *common], env=env, cwd=HERE.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = k / "student" / "state.safetensors"
    t0 = time.time()
    while not state.exists() and proc.poll() is None and time.time() - t0 < 120:
        time.sleep(0.05)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    res["killed_mid_run"] = killed
    res["resume_s"] = cli("distill", k, "--resume", "--teacher", teacher, *common)
    res["resume_identical"] = _weights_equal(a / "student" / "model.safetensors",
                                             k / "student" / "model.safetensors")
    return res


# --------------------------------------------------------------------------- report
def _speed_table(d: dict, unit: str) -> list[str]:
    med = d["median_ms"]
    peers_ = [lib for lib in med if not lib.startswith("kdsnn")]
    fastest = min(peers_, key=med.get) if peers_ else None
    rows = [[f"`{lib}`", f"{med[lib]:.2f}", f"{d['min_ms'][lib]:.2f}",
             f"{med[lib] / med['kdsnn-fused']:.2f}x" if "kdsnn-fused" in med else "-",
             f"{d['extra'][lib].get('peak_mb', float('nan')):.0f}",
             str(d["extra"][lib].get("mismatch", "-"))] for lib in med]
    lines = [C.md_table(["library", f"median {unit}", "min", "time / kdsnn-fused",
                         "peak GPU MB", "spikes != reference"], rows), ""]
    if fastest and "kdsnn-fused" in med:
        lines.append(f"**kdsnn-fused vs fastest peer ({fastest}): "
                     f"{med[fastest] / med['kdsnn-fused']:.2f}x**; kdsnn-fused ran the "
                     f"`{d['extra']['kdsnn-fused'].get('backend')}` backend.")
    if d["skipped"]:
        lines += ["", "Skipped:", *[f"- `{k}`: {v}" for k, v in d["skipped"].items()]]
    return lines + [""]


def report(out: Path) -> str:
    def load(name):
        f = out / f"{name}.json"
        return json.loads(f.read_text()) if f.exists() else None
    parts = {}
    if (out / "parts.txt").exists():
        for line in (out / "parts.txt").read_text().splitlines():
            name, rc, secs = line.split()
            parts[name] = {"rc": int(rc), "seconds": int(secs)}
    env = load("env") or {}
    lines = ["# GPU check (benchmarks/gpu_check.sh)", "",
             f"- device: {env.get('device')}, CUDA {env.get('cuda')}, torch {env.get('torch')}, "
             f"triton {env.get('triton')}, date {env.get('date')}",
             *(["", "**Dry run on CPU (GPU_CHECK_DEVICE=cpu): none of these is a GPU figure.**"]
               if DEVICE != "cuda" else []),
             "- parts (exit code, seconds): " + ", ".join(
                 f"{k} {v['rc']} ({v['seconds']} s)" for k, v in parts.items()), ""]
    if (out / "tests.log").exists():
        tail = [ln for ln in (out / "tests.log").read_text().splitlines() if ln.strip()][-1:]
        lines += ["## Kernel tests on CUDA (tests/test_triton_kernel.py, tests/test_fused.py)",
                  "", f"`{tail[0] if tail else 'no output'}`", ""]
    ex = load("exact")
    if ex:
        worst = max(ex["rows"], key=lambda r: r["grad_max_rel"])
        lines += [f"## Kernel exactness on CUDA, shape {tuple(ex['shape'])}", "",
                  f"- {len(ex['rows'])} cases (float32/bfloat16/float16 x LIF/CUBA-per-channel "
                  f"x 3 surrogates x detached/undetached reset): spikes equal to the reference "
                  f"(on x.float()) in all: **{ex['all_spikes_equal']}**; mismatching elements "
                  f"in total: {sum(r['spike_mismatch'] for r in ex['rows'])}",
                  f"- largest gradient difference: {worst['grad_max_rel']:.2e} relative "
                  f"({worst['dtype']}, {worst['params']}, {worst['surrogate']}, "
                  f"detach_reset={worst['detach_reset']})", ""]
    for name, title in (("neuron", "Neuron layer forward + backward, (T, B, C, H, W) = "
                                   "(4, 32, 128, 16, 16), float32"),
                        ("distill_small", "Full distillation step, spiking ResNet-20 w1, "
                                          "B 32, T 4, float32 (benchmarks/distill_step.py)"),
                        ("distill_large", "Full distillation step, spiking ResNet-19 w8 "
                                          "(128/256/512), B 128, 32x32, T 4, AMP fp16")):
        d = load(name)
        if d:
            lines += [f"## {title}", "", *_speed_table(d, "ms")]
    ch = load("chain")
    if ch:
        steps = ch.get("steps", {})
        emu = steps.get("emulation_vs_cpu", {})
        lines += [f"## The paper's student through the chain on {ch.get('device')} "
                  f"({ch.get('model')}, {ch.get('test_images')} test images; "
                  "benchmarks/gpu_chain.py)", "",
                  C.md_table(["step", "status", "wall s"],
                             [[k, v.get("status", "ok"), str(v.get("wall_s", "-"))]
                              for k, v in steps.items() if k != "emulation_vs_cpu"]), "",
                  f"- integer emulation on the device vs the CPU on the same "
                  f"{emu.get('samples')} test samples, readout and every layer's spikes: "
                  f"bit-identical **{emu.get('bit_identical')}** ({emu.get('device_s')} s vs "
                  f"{emu.get('cpu_s')} s on the CPU)", ""]
    dg = load("digits")
    if dg:
        lines += ["## digits on CUDA with AMP (2 epochs), kill + --resume", "",
                  f"- teacher {dg['teacher_s']} s, distill {dg['distill_s']} s, student "
                  f"{dg.get('student_metrics')}",
                  f"- two uninterrupted runs bit-identical: **{dg['two_runs_identical']}**",
                  f"- SIGKILLed after its first checkpoint (killed mid-run: "
                  f"{dg['killed_mid_run']}), `--resume` ends bit-identical to the "
                  f"uninterrupted run: **{dg['resume_identical']}**", ""]
    lines += ["## Libraries", *[f"- `{k}`: {NOTES.get(k) or peers.NOTES.get(k, '')}"
                                for k in NEURON_LIBS], "",
              "## Method", __doc__.strip().split("\n\n")[-1], ""]
    text = "\n".join(lines)
    (out / "gpu.md").write_text(text)
    (out / "gpu.json").write_text(json.dumps(
        {"parts": parts, **{n: load(n) for n in ("env", "exact", "neuron", "distill_small",
                                                  "distill_large", "digits", "chain")}},
        indent=1))
    return text


def env_info() -> dict:
    import datetime as dt
    import torch
    info = {"date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    if DEVICE != "cuda":
        return dict(info, device=f"{DEVICE} (dry run of the script, not a GPU figure)")
    if not info["cuda_available"]:
        raise SystemExit("gpu_check: no CUDA device (torch.cuda.is_available() is False)")
    info["device"] = torch.cuda.get_device_name(0)
    from kd_snn.neurons import fused
    if fused.load_triton() is None or fused._TRITON.interpreted():
        why = fused._TRITON_ERROR or "TRITON_INTERPRET is set"
        raise SystemExit(f"gpu_check: the Triton kernel is unusable ({why}); install: "
                         f"{fused.TRITON_INSTALL}")
    import triton
    info["triton"] = triton.__version__
    info["peers"] = {lib: _peer(lib)[1] or "ok" for lib in NEURON_LIBS}
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("part", nargs="?", choices=["env", "exact", "neuron", "distill", "digits",
                                                "report"])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--worker")
    ap.add_argument("--part", dest="wpart")
    ap.add_argument("--workload", default="small", choices=["small", "large"])
    ap.add_argument("--amp", action="store_true")
    ap.add_argument("--iters", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--libs", help="comma-separated subset of the libraries")
    a = ap.parse_args()
    if a.worker:
        res = (neuron_worker(a.worker, a.iters or 50) if a.wpart == "neuron" else
               distill_worker(a.worker, a.iters or 10, a.workload, a.amp))
        print("RESULT " + json.dumps(res), flush=True)
        return
    if a.out is None or a.part is None:
        ap.error("a part and --out DIR are needed")
    a.out.mkdir(parents=True, exist_ok=True)
    libs = a.libs.split(",") if a.libs else None
    if a.part == "env":
        res, name = env_info(), "env"
    elif a.part == "exact":
        res, name = exact(), "exact"
    elif a.part == "neuron":
        res, name = _run_libs("neuron", libs or NEURON_LIBS, a.rounds, ["--iters", str(a.iters or 50)]), \
            "neuron"
    elif a.part == "distill":
        args = ["--workload", a.workload, "--iters", str(a.iters or 10)] + (["--amp"] if a.amp else [])
        res, name = _run_libs("distill", libs or DISTILL_LIBS, a.rounds, args), f"distill_{a.workload}"
        res.update(workload=a.workload, amp=a.amp)
    elif a.part == "digits":
        res, name = digits(a.out), "digits"
    else:
        print(report(a.out))
        return
    (a.out / f"{name}.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1)[:3000])


if __name__ == "__main__":
    main()
