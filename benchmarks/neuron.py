"""Neuron layer forward + backward: kdsnn (fused, reference) vs a plain loop and peers.

Shape (T=4, B=32, 128 channels, 16x16) = 4.19 M neuron-steps; beta 0.5, threshold 1,
reset to zero.  Each library runs in its own fresh interpreter (no shared allocator or
thread-pool state), rounds interleave the libraries (the machine may be shared), and
memory is measured in a further fresh interpreter per library (see METHOD below).

Peers (benchmarks only, not project dependencies):
    .venv/bin/pip install --no-deps -c scripts/constraints.txt spikingjelly loguru
A peer that cannot be imported is skipped with a note.

    .venv/bin/python benchmarks/neuron.py [--iters 40] [--rounds 3] [--libs a,b]
Writes benchmarks/results/neuron.md and prints it.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import _common as C  # noqa: E402
import peers  # noqa: E402

SHAPE = (4, 32, 128, 16, 16)
METHOD = """\
- CPU ms: process CPU time (user + sys, both threads) per step: what the step costs,
  much less sensitive than wall time to other processes on the shared cores.
- Time: median wall-clock ms of one forward + backward (`s = f(x); s.backward(g)`,
  input grad cleared each step), after 3 warm-up steps; each library in its own fresh
  interpreter, rounds interleaved over libraries; the median is over all rounds' steps.
  samples/s = B / median. Layout conversions to a peer's native layout (slayer: time
  last; norse: input x2) happen outside the timed region.
- Peak memory: in another fresh interpreter per library with `MALLOC_MMAP_THRESHOLD_=65536`
  (every tensor >= 64 KiB is its own mmap and goes back to the OS when freed, so RSS follows
  live tensors). After 2 warm-up steps (x.grad cleared; the input x and upstream grad g
  stay allocated) RSS is read, the kernel's peak-RSS mark is reset (`/proc/self/clear_refs` = 5) and one
  forward + backward runs; peak delta = VmHWM - RSS before. It includes the spikes
  (16.8 MB), x.grad (16.8 MB) and all temporaries. "saved" = distinct storages autograd
  saves for backward (saved_tensors_hooks), including the input when a library saves it.
- Spikes: each library's spikes on the same seeded input are compared with
  `kd_snn.neurons.functional.cuba_multistep` (mismatching elements / 4.19 M); input grads
  are compared where the surrogate is the same atan (kdsnn, torch-loop, snntorch, spikingjelly).
"""


def make_input(seed=0):
    import torch
    g = torch.Generator().manual_seed(seed)
    x = 0.8 * torch.randn(SHAPE, generator=g) + 0.3
    gy = torch.randn(SHAPE, generator=g)
    return x, gy


def worker(lib: str, mode: str, iters: int) -> dict:
    import torch
    from kd_snn.neurons.functional import cuba_multistep
    from kd_snn.neurons.surrogate import get_surrogate
    why = peers.available(lib)
    if why:
        return {"lib": lib, "skipped": why}
    p = peers.make(lib)
    x, gy = make_input()
    xn = p.to_native(x).detach().requires_grad_()
    gn = p.to_native(gy).detach().contiguous() if lib != "norse" else gy

    def step():
        xn.grad = None
        s = p.native(xn)
        s.backward(gn)
        return s

    res = {"lib": lib}
    if mode == "time":
        res["cpu_ms"] = []
        res["ms"] = C.time_iters(step, iters, cpu=res["cpu_ms"])
        # correctness vs the reference dynamics
        xr = x.clone().requires_grad_()
        s_ref, _ = cuba_multistep(xr, 0.0, peers.BETA, peers.THRESHOLD, None,
                                  get_surrogate("atan", 1.0))
        s_ref.backward(gy)
        s = step()
        s_t = p.from_native(s.detach())
        res["mismatch"] = int((s_t != s_ref).sum())
        res["spike_rate"] = float(s_ref.detach().mean())
        gx = p.from_native(xn.grad)
        if lib == "norse":
            gx = 2 * gx  # d/dx of the x2 pre-scaling
        res["grad_maxdiff"] = float((gx - xr.grad).abs().max())
    else:
        for _ in range(2):
            step()
        xn.grad = None
        gc.collect()
        res["peak_delta_mb"] = C.peak_delta_mb(step)
        xn.grad = None
        res["saved_mb"] = C.saved_bytes(lambda: p.native(xn))[0] / 1e6
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--worker")
    ap.add_argument("--mode", default="time")
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--libs", default=",".join(peers.LIBS))
    ap.add_argument("--out", default=str(C.RESULTS / "neuron.md"))
    a = ap.parse_args()
    if a.worker:
        print("RESULT " + json.dumps(worker(a.worker, a.mode, a.iters)), flush=True)
        return

    import torch
    info = C.machine_info()
    libs = a.libs.split(",")
    times = {lib: [] for lib in libs}
    cpus = {lib: [] for lib in libs}
    extra, skipped = {}, {}
    for r in range(a.rounds):
        for lib in libs:
            if lib in skipped:
                continue
            res = C.run_worker(Path(__file__), [lib, "--mode", "time", "--iters", str(a.iters)],
                               mem_mode=False)
            if res is None:
                skipped[lib] = "worker failed (see stderr)"
                continue
            if "skipped" in res:
                skipped[lib] = res["skipped"]
                continue
            times[lib] += res["ms"]
            cpus[lib] += res["cpu_ms"]
            extra.setdefault(lib, {}).update({k: res[k] for k in ("mismatch", "spike_rate",
                                                                  "grad_maxdiff")})
            print(f"round {r} {lib:16s} median {C.median(res['ms']):7.2f} ms", flush=True)
    for lib in libs:
        if lib in skipped:
            continue
        res = C.run_worker(Path(__file__), [lib, "--mode", "mem"], mem_mode=True)
        if res:
            extra[lib].update(peak_delta_mb=res["peak_delta_mb"], saved_mb=res["saved_mb"])
    info_end = " ".join(f"{x:.2f}" for x in __import__("os").getloadavg())

    ran = [lib for lib in libs if lib not in skipped]
    med = {lib: C.median(times[lib]) for lib in ran}
    cmed = {lib: C.median(cpus[lib]) for lib in ran}
    peer_libs = [lib for lib in ran if not lib.startswith("kdsnn")]
    fastest_peer = min(peer_libs, key=med.get) if peer_libs else None
    best_mem_peer = min(peer_libs, key=lambda l: extra[l].get("peak_delta_mb", 1e9)) \
        if peer_libs else None
    n = SHAPE[0] * SHAPE[1] * SHAPE[2] * SHAPE[3] * SHAPE[4]
    rows = []
    for lib in ran:
        e = extra[lib]
        same_sur = lib in ("kdsnn-fused", "kdsnn-reference", "torch-loop", "snntorch",
                           "spikingjelly")
        rows.append([
            f"`{lib}`", f"{med[lib]:.2f}", f"{min(times[lib]):.2f}",
            f"{SHAPE[1] / med[lib] * 1e3:,.0f}",
            f"{med[lib] / med['kdsnn-fused']:.2f}x" if "kdsnn-fused" in med else "-",
            f"{cmed[lib]:.2f}",
            f"{cmed[lib] / cmed['kdsnn-fused']:.2f}x" if "kdsnn-fused" in cmed else "-",
            f"{e.get('peak_delta_mb', float('nan')):.1f}", f"{e.get('saved_mb', float('nan')):.1f}",
            f"{e['mismatch']} ({e['mismatch'] / n:.1e})",
            f"{e['grad_maxdiff']:.1e}" if same_sur else f"n/a ({e['grad_maxdiff']:.1e})",
        ])
    table = C.md_table(["library", "median ms", "min ms", "samples/s", "time / kdsnn-fused",
                        "median CPU ms", "CPU / kdsnn-fused", "peak RSS delta MB", "saved for bwd MB", "spikes != reference",
                        "max |dx - dx_ref|"], rows)
    lines = [f"# Neuron layer forward + backward, (T, B, C, H, W) = {SHAPE}", "",
             C.machine_md(info) + f"- load average at end: {info_end}",
             f"- steps timed per library: {a.iters} x {a.rounds} rounds; spike rate "
             f"{extra[ran[0]]['spike_rate']:.3f}", "", table, ""]
    if "kdsnn-fused" in med and fastest_peer:
        sp = med[fastest_peer] / med["kdsnn-fused"]
        cfast = min(peer_libs, key=cmed.get)
        csp = cmed[cfast] / cmed["kdsnn-fused"]
        mem_ok = extra["kdsnn-fused"]["peak_delta_mb"] <= extra[best_mem_peer]["peak_delta_mb"]
        lines += [f"**kdsnn-fused vs fastest peer ({fastest_peer}): {sp:.2f}x** "
                  f"(target >= 3x: {'met' if sp >= 3 else 'NOT met'}); by CPU time vs {cfast}: "
                  f"{csp:.2f}x ({'met' if csp >= 3 else 'NOT met'}). Peak memory "
                  f"{extra['kdsnn-fused']['peak_delta_mb']:.1f} MB vs best peer "
                  f"({best_mem_peer}) {extra[best_mem_peer]['peak_delta_mb']:.1f} MB "
                  f"(target <=: {'met' if mem_ok else 'NOT met'}).", ""]
    if skipped:
        lines += ["Skipped:", *[f"- `{k}`: {v}" for k, v in skipped.items()], ""]
    lines += ["## Libraries", *[f"- `{k}`: {peers.NOTES[k]}" for k in ran], "",
              "## Method", METHOD]
    text = "\n".join(lines)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(text)
    print(text)
    json_path = Path(a.out).with_suffix(".json")
    json_path.write_text(json.dumps({"info": info, "median_ms": med, "extra": extra,
                                     "skipped": skipped}, indent=1))


if __name__ == "__main__":
    main()
