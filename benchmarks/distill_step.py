"""One full distillation step with each library's neuron in the student.

Teacher forward (ANN ResNet-20, ReLU, eval, no grad) + student forward and backward
(spiking ResNet-20, width 1, T=4, direct encoding) + loss + SGD step, batch 32 of
32x32x3.  The student is a local ResNet-20 that mirrors kd_snn.models.resnet20 (conv3x3
stem 16 + BN + neuron; 3 stages x 3 BasicBlocks 16/32/64, strides 1/2/2, shortcut
AvgPool + conv1x1 + BN; GAP + fc, mean over T) built from a neuron factory, so every
library gets the identical network.  Loss: kd_snn.losses.DistillLoss() (the paper's
CE + SAMD + NLD) when kd_snn.losses exists, else a CE + KL(tau 4) stand-in.

Peers (benchmarks only):
    .venv/bin/pip install --no-deps -c scripts/constraints.txt spikingjelly loguru
    .venv/bin/python benchmarks/distill_step.py [--iters 8] [--rounds 2] [--libs a,b]
Writes benchmarks/results/distill_step.md and prints it.
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

T, B, K = 4, 32, 100


def build_nets(neuron_factory):
    import torch
    from torch import nn

    def over_time(fn, x):
        return fn(x.flatten(0, 1)).unflatten(0, x.shape[:2])

    class ConvBN(nn.Module):
        def __init__(self, cin, cout, k=3, stride=1, pool=1, spiking=True):
            super().__init__()
            self.pool, self.spiking = pool, spiking
            self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)
            self.bn = nn.BatchNorm2d(cout)

        def f(self, x):
            if self.pool > 1:
                x = nn.functional.avg_pool2d(x, self.pool)
            return self.bn(self.conv(x))

        def forward(self, x):
            return over_time(self.f, x) if self.spiking else self.f(x)

    def act(spiking):
        return neuron_factory() if spiking else nn.ReLU()

    class Block(nn.Module):
        def __init__(self, cin, cout, stride, spiking):
            super().__init__()
            self.c1 = ConvBN(cin, cout, 3, stride, spiking=spiking)
            self.a1 = act(spiking)
            self.c2 = ConvBN(cout, cout, 3, 1, spiking=spiking)
            self.sc = (ConvBN(cin, cout, 1, 1, pool=stride, spiking=spiking)
                       if stride != 1 or cin != cout else nn.Identity())
            self.a2 = act(spiking)

        def forward(self, x):
            return self.a2(self.c2(self.a1(self.c1(x))) + self.sc(x))

    class ResNet20(nn.Module):
        def __init__(self, spiking):
            super().__init__()
            self.spiking = spiking
            layers = [ConvBN(3, 16, 3, 1, spiking=spiking), act(spiking)]
            cin = 16
            for cout, stride in zip((16, 32, 64), (1, 2, 2)):
                for b in range(3):
                    layers.append(Block(cin, cout, stride if b == 0 else 1, spiking))
                    cin = cout
            self.body = nn.Sequential(*layers)
            self.fc = nn.Linear(64, K)

        @property
        def classifier_weight(self):
            return self.fc.weight

        def forward_features(self, x):
            f = self.body(x)
            y = self.fc(f.mean((-2, -1)))
            return (y.mean(0) if self.spiking else y), f

    torch.manual_seed(0)
    student = ResNet20(True)
    teacher = ResNet20(False).eval()
    return student, teacher


def make_loss():
    import torch
    import torch.nn.functional as F
    try:
        from kd_snn.losses import DistillLoss
        loss = DistillLoss()  # paper preset: CE + SAMD + NLD (weights 1, 1, 1)

        def fn(s_logits, s_spikes, t_logits, t_fmap, t_w, y):
            return loss(s_logits, target=y, teacher_logits=t_logits, student_spikes=s_spikes,
                        teacher_fmap=t_fmap, teacher_classifier_weight=t_w)[0]
        return fn, f"kd_snn.losses.DistillLoss() ({', '.join(loss.active())})"
    except ImportError:
        def fn(s_logits, s_spikes, t_logits, t_fmap, t_w, y):
            tau = 4.0
            kl = F.kl_div(F.log_softmax(s_logits / tau, 1), F.softmax(t_logits / tau, 1),
                          reduction="batchmean") * tau * tau
            return F.cross_entropy(s_logits, y) + kl
        return fn, "stand-in CE + KL(tau 4) (kd_snn.losses not present)"


def worker(lib, mode, iters, profile):
    import torch
    why = peers.available(lib)
    if why:
        return {"lib": lib, "skipped": why}
    p = peers.make(lib)
    student, teacher = build_nets(p.module)
    loss_fn, loss_name = make_loss()
    opt = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(1)
    img = torch.randn(B, 3, 32, 32, generator=g)
    y = torch.randint(0, K, (B,), generator=g)

    def step():
        with torch.no_grad():
            t_logits, t_fmap = teacher.forward_features(img)
        x_seq = img.unsqueeze(0).expand(T, *img.shape)  # direct encoding
        s_logits, s_spikes = student.forward_features(x_seq)
        loss = loss_fn(s_logits, s_spikes, t_logits, t_fmap, teacher.classifier_weight, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    res = {"lib": lib, "loss": loss_name}
    if mode == "time":
        res["cpu_ms"] = []
        res["ms"] = C.time_iters(step, iters, warmup=2, cpu=res["cpu_ms"])
        if profile:
            from torch.profiler import ProfilerActivity, profile as prof
            with prof(activities=[ProfilerActivity.CPU]) as pr:
                for _ in range(2):
                    step()
            res["profile"] = pr.key_averages().table(sort_by="self_cpu_time_total",
                                                     row_limit=14, max_name_column_width=40)
    else:
        step()
        step()
        gc.collect()
        res["peak_delta_mb"] = C.peak_delta_mb(step)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--worker")
    ap.add_argument("--mode", default="time")
    ap.add_argument("--iters", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--libs", default=",".join(peers.LIBS))
    ap.add_argument("--out", default=str(C.RESULTS / "distill_step.md"))
    a = ap.parse_args()
    if a.worker:
        print("RESULT " + json.dumps(worker(a.worker, a.mode, a.iters, a.profile)), flush=True)
        return
    import os
    info = C.machine_info()
    libs = a.libs.split(",")
    times = {lib: [] for lib in libs}
    cpus = {lib: [] for lib in libs}
    extra, skipped, profiles = {}, {}, {}
    for r in range(a.rounds):
        for lib in libs:
            if lib in skipped:
                continue
            args = [lib, "--mode", "time", "--iters", str(a.iters)]
            if r == 0 and lib in ("kdsnn-fused", "spikingjelly", "torch-loop"):
                args.append("--profile")
            res = C.run_worker(Path(__file__), args, mem_mode=False, timeout=3600)
            if res is None or "skipped" in res:
                skipped[lib] = res["skipped"] if res else "worker failed (see stderr)"
                continue
            times[lib] += res["ms"]
            cpus[lib] += res["cpu_ms"]
            extra.setdefault(lib, {})["loss"] = res["loss"]
            if "profile" in res:
                profiles[lib] = res["profile"]
            print(f"round {r} {lib:16s} median {C.median(res['ms']):8.1f} ms", flush=True)
    for lib in libs:
        if lib in skipped:
            continue
        res = C.run_worker(Path(__file__), [lib, "--mode", "mem"], mem_mode=True, timeout=3600)
        if res:
            extra[lib]["peak_delta_mb"] = res["peak_delta_mb"]
    load_end = " ".join(f"{x:.2f}" for x in os.getloadavg())
    ran = [lib for lib in libs if lib not in skipped]
    med = {lib: C.median(times[lib]) for lib in ran}
    cmed = {lib: C.median(cpus[lib]) for lib in ran}
    peer_libs = [lib for lib in ran if not lib.startswith("kdsnn")]
    fastest = min(peer_libs, key=med.get) if peer_libs else None
    rows = [[f"`{lib}`", f"{med[lib]:.1f}", f"{min(times[lib]):.1f}",
             f"{B / med[lib] * 1e3:.1f}",
             f"{med[lib] / med['kdsnn-fused']:.2f}x" if "kdsnn-fused" in med else "-",
             f"{cmed[lib]:.0f}",
             f"{cmed[lib] / cmed['kdsnn-fused']:.2f}x" if "kdsnn-fused" in cmed else "-",
             f"{extra[lib].get('peak_delta_mb', float('nan')):.0f}"] for lib in ran]
    table = C.md_table(["student neuron", "median ms/step", "min ms", "samples/s",
                        "time / kdsnn-fused", "median CPU ms",
                        "CPU / kdsnn-fused", "peak RSS delta MB"], rows)
    lines = [f"# Full distillation step: spiking ResNet-20 (w1) student, T={T}, B={B}, "
             f"32x32x3, {K} classes", "", C.machine_md(info) + f"- load average at end: {load_end}",
             f"- loss: {extra[ran[0]]['loss']}; teacher: ANN ResNet-20 (ReLU twin), eval, "
             f"no grad; optimizer SGD(momentum 0.9, wd 5e-4)",
             f"- steps timed per library: {a.iters} x {a.rounds} rounds (after 2 warm-up)", "",
             table, ""]
    if "kdsnn-fused" in med and fastest:
        sp = med[fastest] / med["kdsnn-fused"]
        cfast = min(peer_libs, key=cmed.get)
        csp = cmed[cfast] / cmed["kdsnn-fused"]
        best_mem = min(peer_libs, key=lambda l: extra[l].get("peak_delta_mb", 1e12))
        lines += [f"**kdsnn-fused vs fastest peer ({fastest}): {sp:.2f}x** (target >= 1.5x: "
                  f"{'met' if sp >= 1.5 else 'NOT met'}); by CPU time vs {cfast}: {csp:.2f}x "
                  f"({'met' if csp >= 1.5 else 'NOT met'}). Peak memory "
                  f"{extra['kdsnn-fused']['peak_delta_mb']:.0f} MB vs best peer ({best_mem}) "
                  f"{extra[best_mem]['peak_delta_mb']:.0f} MB.", ""]
    if skipped:
        lines += ["Skipped:", *[f"- `{k}`: {v}" for k, v in skipped.items()], ""]
    lines += ["## Method",
              "Each library in its own fresh interpreter; median over all timed steps of all "
              "rounds; CPU ms = process CPU time (user + sys, all threads) per step, robust "
              "to other processes on the shared cores. Peak memory: fresh interpreter with `MALLOC_MMAP_THRESHOLD_=65536`, "
              "2 warm-up steps, then VmHWM - RSS over one step (activations, grads, "
              "temporaries; parameters and optimizer state exist before).", ""]
    for lib, prof in profiles.items():
        lines += [f"## Profile: `{lib}` (torch.profiler, 2 steps, top ops by self CPU time)",
                  "```", prof.rstrip(), "```", ""]
    text = "\n".join(lines)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(text)
    print(text)
    Path(a.out).with_suffix(".json").write_text(json.dumps(
        {"info": info, "median_ms": med, "extra": extra, "skipped": skipped}, indent=1))


if __name__ == "__main__":
    main()
