"""The quantizer's calibration (statistics, scale search, spike agreement) before and after
it stopped running the float pass and the final emulation twice.

    .venv/bin/python benchmarks/quantize_calib.py RUN --before DIR [--repeat 2]

``DIR``: a checkout of the code before the change (``git worktree add DIR 404a7b7``, the commit before it).
Each version quantizes the run's student (``export.targets.quantize_for_loihi``, 256
calibration samples) in a fresh interpreter, alternately, ``--repeat`` times; the
results (``QuantGraph.digest()`` and the whole quantization report) must be identical.
Writes ``benchmarks/results/quantize_calib.{json,md}``. Seconds depend on the machine and
its load; the ratio is measured side by side.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine_info, md_table, write_results  # noqa: E402

WORKER = r"""
import hashlib, json, sys, time
sys.path.insert(0, sys.argv[1])
from kd_snn.rundir import RunDir
run = RunDir(sys.argv[2])
try:  # the code since the Python API (issue 28)
    from export.fixed_point import json_default
    from export.targets import quantize_for_loihi
    from kd_snn.run import sample_inputs
    from kdsnn.runs import load_student
    _, _, graph = load_student(run)

    def quantize_run(run, graph, n):  # calibration inputs read inside the timing, as before
        return quantize_for_loihi(graph, sample_inputs(run.load_config(), "train", n)[0])
except ImportError:  # the code before it
    from export.pipeline import load_student, quantize_run
    from export.quantize import _json_default as json_default
    _, _, graph = load_student(run)
t = time.perf_counter()
_, q = quantize_run(run, graph, 256)
s = time.perf_counter() - t
report = json.dumps(q.metadata, sort_keys=True, default=json_default)
print(json.dumps({"seconds": s, "digest": q.digest(),
                  "report_sha256": hashlib.sha256(report.encode()).hexdigest()}))
"""


def measure(code: Path, run: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", WORKER, str(code), str(run)], cwd=code,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a run directory with a trained student")
    p.add_argument("--before", required=True, help="checkout of the code before the change")
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args()
    rows = {"before": [], "now": []}
    for _ in range(args.repeat):
        for name, code in (("before", Path(args.before)), ("now", ROOT)):
            rows[name].append(measure(code.resolve(), Path(args.run).resolve()))
            print(name, rows[name][-1], flush=True)
    same = len({(r["digest"], r["report_sha256"]) for rs in rows.values() for r in rs}) == 1
    best = {k: min(r["seconds"] for r in v) for k, v in rows.items()}
    result = {"machine": machine_info(), "run": args.run, "repeat": args.repeat,
              "command": " ".join(["python benchmarks/quantize_calib.py", *sys.argv[1:]]),
              "seconds": rows, "best_seconds": best, "identical_results": same,
              "ratio_before_over_now": best["before"] / best["now"]}
    md = "\n".join([
        "# Quantizer calibration: before / now (256 calibration samples)", "",
        f"`{result['command']}` — {result['machine']['cpu']}, "
        f"{result['machine']['cores']} cores, load {result['machine']['loadavg']}; best of "
        f"{args.repeat}, fresh interpreter each, alternating.", "",
        md_table(["version", "seconds (best)", "all runs"],
                 [[k, f"{best[k]:.1f}", ", ".join(f"{r['seconds']:.1f}" for r in rows[k])]
                  for k in ("before", "now")]), "",
        f"before / now: **{result['ratio_before_over_now']:.2f}x**; identical quantized graph "
        f"and report: **{'yes' if same else 'NO'}**.", ""])
    write_results(HERE / "results", "quantize_calib", result, md)
    print(md)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
