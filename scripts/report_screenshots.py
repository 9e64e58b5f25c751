"""Regenerate the energy report at three scales and screenshot each page in headless Chromium.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/report_screenshots.py [--out runs/report_screenshots]
        [--only cnn resnet20 resnet19] [--samples 3]

For each student of ``benchmarks/hardware.py`` (digits CNN, ResNet-20 w1, ResNet-19 w8;
random init, folded, thresholds calibrated to ~15 % firing, latency-balanced and quantized
as that benchmark does) it writes ``OUT/NAME/`` with the report (torch spikes of the
unbalanced float graph beside the integer emulation's spikes of the quantized graph, whose
relay layers are what a Lava run records; the teacher is the same architecture as an ANN),
``OUT/NAME/page.png`` (the whole page), ``OUT/NAME/first_screen.png`` (what a reader sees
before scrolling: the summary card) and the report's own figures (PNG at 300 dpi, SVG,
PDF), so the plots can be looked at as a reader sees them.  Needs Chromium (Debian: ``apt-get install -y chromium``);
without it the reports are still written and the screenshots skipped.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "benchmarks"))  # after ROOT: the package 'hardware' stays first
sys.path.append(str(ROOT / "scripts"))


def _bench():
    """benchmarks/hardware.py (its name shadows the package, so loaded from its path)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_hardware",
                                                  ROOT / "benchmarks" / "hardware.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build_student(name: str, samples: int):
    """(float graph, quantized balanced graph, x_seq, teacher, input shape) of one row."""
    import torch

    from export.fold import fold_student
    from export.latency import balance_latency
    from export.quantize import quantize
    from kd_snn.data.encoding import encode
    from kd_snn.models import create_model
    from kd_snn.models.synthetic import randomise_batchnorm

    bench = _bench()
    row = bench.ROWS[name]
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    kw = dict(num_classes=row["classes"], in_channels=row["input_shape"][0],
              width=row["width"])
    model = create_model(row["model"], spiking=True, **kw)
    randomise_batchnorm(model, gen)
    graph = fold_student(model.double().eval(), row["input_shape"], time_steps=bench.T)
    x, _ = bench._images(row, 8)
    graph = bench.calibrate_thresholds(graph, encode(x, bench.T, "direct").double(), 0.15)
    x_seq = encode(bench._images(row, samples, offset=8)[0], bench.T, "direct").double()
    q = quantize(balance_latency(graph), encode(x, bench.T, "direct").double())
    teacher = create_model(row["model"], spiking=False, **kw).eval()
    return graph, q, x_seq, teacher, tuple(row["input_shape"])


def write_report(name: str, out: Path, samples: int) -> Path:
    from export.emulate import emulate
    from export.fixed_point import encode_input
    from hardware.energy import analyze_graph, count_teacher
    from hardware.report import build_report

    t0 = time.perf_counter()
    graph, q, x_seq, teacher, shape = build_student(name, samples)
    _, spikes = emulate(q, encode_input(x_seq), record=True)
    stats = {"torch": analyze_graph(graph, x_seq, source="torch"),
             "emulate": analyze_graph(q, x_seq, spikes=spikes, source="emulate")}
    tstats = count_teacher(teacher.double(), shape, x=x_seq[0])
    build_report(out, stats, teacher_macs=tstats, html=True,
                 title=f"kdsnn energy report: {name} (random init, screenshot check)",
                 meta={"student": name, "samples": int(x_seq.shape[1]),
                       "layers": len(graph.layers), "relays": len(q.metadata.get("relays", ()))
                       if hasattr(q, "metadata") else None})
    print(f"[{name}] report in {time.perf_counter() - t0:.1f} s: {out}", flush=True)
    return out / "report.html"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "report_screenshots")
    p.add_argument("--only", nargs="+", default=["cnn", "resnet20", "resnet19"])
    p.add_argument("--samples", type=int, default=3)
    args = p.parse_args(argv)
    import check_report_html as chk
    for name in args.only:
        page = write_report(name, args.out / name, args.samples)
        try:
            _, problems, _ = chk.check(page, shot=args.out / name / "page.png",
                                       fold=args.out / name / "first_screen.png")
        except chk.CheckError as exc:
            print(f"[{name}] no screenshot: {exc}")
            continue
        print(f"[{name}] browser check {'FAILED: ' + str(problems) if problems else 'passed'}; "
              f"screenshot {args.out / name / 'page.png'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
