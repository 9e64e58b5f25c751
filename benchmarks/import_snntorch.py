"""A network trained with snntorch, through kdsnn's chain: import -> export -> Lava -> report.

    .venv/bin/python benchmarks/import_snntorch.py            # ~2 min on 2 cores
    .venv/bin/python benchmarks/import_snntorch.py --readme   # the docs block from the JSON

Trains, with snntorch's own layers and surrogate gradient, a small spiking CNN on the
embedded digits data (Conv2d 1->8 -> Leaky -> AvgPool 2 -> Flatten -> Linear 128->10,
T = 4, reset to zero, one beta and threshold per layer as Loihi needs), and a small ANN
teacher in plain torch exported to ONNX; writes the student with snntorch's NIR exporter;
then runs ``kdsnn import`` (with the ONNX teacher), ``kdsnn export --target all``,
``kdsnn parity`` over the whole test split and ``kdsnn report --source both``, and writes
``benchmarks/results/import_snntorch.{json,md}``: snntorch's own test accuracy beside
kdsnn's float forward of the file, the Loihi fixed point, Lava, the spike-level agreement
and the energy ratio against the teacher. Accuracies depend on the machine (float training);
the equalities (emulation == Lava bit for bit) do not.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks._common import machine_info, write_readme_block, write_results  # noqa: E402
from hardware.report_format import stock_words  # noqa: E402

OUT = HERE / "results"
STEM = "import_snntorch"
T, EPOCHS, SEED = 4, 30, 0
ACCURACY_ORDER = ("snntorch (its own forward)", "kdsnn float forward of the NIR file",
                  "Loihi fixed point (integer emulation)", "Lava fixed_pt", "teacher (torch, ONNX)")
STEPS = ("import", "export", "parity", "report")


def _digits():
    from kd_snn.data.static import digits_arrays
    (xtr, ytr), (xte, yte) = digits_arrays("train"), digits_arrays("test")
    return (torch.from_numpy(xtr.copy()), torch.from_numpy(ytr.copy()),
            torch.from_numpy(xte.copy()), torch.from_numpy(yte.copy()))


def _student():
    import snntorch as snn
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 8, 3, padding=1)
            self.lif = snn.Leaky(beta=torch.full((8, 8, 8), 0.5),
                                 threshold=torch.full((8, 8, 8), 1.0), init_hidden=True,
                                 reset_mechanism="zero", reset_delay=False)
            self.pool = nn.AvgPool2d(2)
            self.flat = nn.Flatten()
            self.fc = nn.Linear(128, 10)

        def forward(self, x):
            return self.fc(self.flat(self.pool(self.lif(self.conv(x)))))

    return Net()


def _logits(net, x):
    from snntorch import utils
    utils.reset(net)
    return torch.stack([net(x) for _ in range(T)]).mean(0)


def train_student(xtr, ytr, xte, yte) -> tuple:
    torch.manual_seed(SEED)
    net = _student()
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(SEED)
    for epoch in range(EPOCHS):
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), 64):
            idx = perm[i:i + 64]
            loss = torch.nn.functional.cross_entropy(_logits(net, xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch % 10 == 9 or epoch == EPOCHS - 1:
            with torch.no_grad():
                acc = float((_logits(net, xte).argmax(1) == yte).double().mean())
            print(f"snntorch student epoch {epoch + 1}/{EPOCHS}: test {acc * 100:.2f}%",
                  flush=True)
    with torch.no_grad():
        acc = float((_logits(net, xte).argmax(1) == yte).double().mean())
    return net.eval(), acc


def train_teacher(xtr, ytr, xte, yte) -> tuple:
    torch.manual_seed(SEED)
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(512, 10))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(SEED + 1)
    for _ in range(EPOCHS):
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), 64):
            idx = perm[i:i + 64]
            loss = torch.nn.functional.cross_entropy(net(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = float((net(xte).argmax(1) == yte).double().mean())
    print(f"torch teacher: test {acc * 100:.2f}%", flush=True)
    return net, acc


def run(work: Path) -> dict:
    import nir
    from snntorch.export_nir import export_to_nir

    from export.onnx_export import export_onnx_teacher
    from kdsnn.cli import main as kdsnn

    xtr, ytr, xte, yte = _digits()
    t0 = time.perf_counter()
    student, acc_snntorch = train_student(xtr, ytr, xte, yte)
    teacher, acc_teacher = train_teacher(xtr, ytr, xte, yte)
    train_s = time.perf_counter() - t0
    work.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = export_to_nir(student, xte[:1], ignore_dims=[0])
    nir.write(str(work / "snntorch_digits.nir"), graph)
    export_onnx_teacher(teacher, (1, 8, 8), work / "teacher.onnx")
    run_dir = work / "run"
    steps, walls = [
        ["import", work / "snntorch_digits.nir", run_dir, "--data", "digits", "--teacher",
         work / "teacher.onnx"],
        ["export", run_dir, "--target", "all"],
        ["parity", run_dir, "--samples", "360"],
        ["report", run_dir, "--source", "both"],
    ], {}
    for step in steps:
        t = time.perf_counter()
        rc = kdsnn([str(a) for a in step] + ["--no-progress"])
        walls[step[0]] = round(time.perf_counter() - t, 1)
        if rc != 0:
            raise SystemExit(f"kdsnn {step[0]} failed (exit {rc})")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    parity = json.loads((run_dir / "parity/parity.json").read_text())
    report = json.loads((run_dir / "report/report.json").read_text())
    layers = parity["layers"]
    agree = sum(sum(l["agreement"]["float_vs_lava"]) / len(l["agreement"]["float_vs_lava"])
                * l["neurons"] for l in layers) / sum(l["neurons"] for l in layers)
    return {
        "format": "kdsnn-import-example/1", "machine": machine_info(),
        "command": "python benchmarks/import_snntorch.py",
        "setup": {"data": "digits (360 test images)", "time_steps": T, "epochs": EPOCHS,
                  "student": "snntorch Conv2d(1,8,3) -> Leaky -> AvgPool2d(2) -> Linear(128,10)",
                  "teacher": "torch CNN 16-32 channels, exported to ONNX"},
        "train_seconds": round(train_s, 1), "step_seconds": walls,
        "accuracy": {"snntorch (its own forward)": acc_snntorch,
                     "kdsnn float forward of the NIR file": metrics["student"]["test_accuracy"],
                     "Loihi fixed point (integer emulation)": metrics["quantized"]["quantized"],
                     "Lava fixed_pt": parity["accuracy"]["lava"],
                     "teacher (torch, ONNX)": acc_teacher},
        "bit_exact_emulation_vs_lava": parity["bit_exact_emulation_vs_lava"],
        "stock_check": parity.get("stock_conv_check"),
        "spike_agreement_float_vs_lava": agree,
        "parity_samples": parity["samples"],
        "energy_ratio": _ratio(report),
    }


def _ratio(report: dict) -> dict:
    """Teacher/student energy per profile and spike source under the default conventions,
    and the range over every convention (``report.json``)."""
    out = {"default": {}, "range_over_conventions": report.get("ratio_range", {})}
    for profile, e in report.get("energy", {}).items():
        out["default"][profile] = {row["label"]: row.get("teacher_over_student")
                                   for row in e.get("student", [])}
    return out


def markdown(r: dict) -> str:
    acc = r["accuracy"]
    lines = ["# A network trained with snntorch, through kdsnn's chain", "",
             "| | test accuracy (digits, 360 images) |", "|---|---|"]
    lines += [f"| {k} | {acc[k] * 100:.2f} % |" for k in ACCURACY_ORDER if k in acc]
    stock = r.get("stock_check") or {}
    lines += ["", f"Emulation == Lava fixed_pt bit for bit on all {r['parity_samples']} test "
              f"images: **{'yes' if r['bit_exact_emulation_vs_lava'] else 'NO'}** (Lava's "
              f"stock Conv/Dense models {stock_words(stock) if stock else 'not run'}: "
              f"{'bit-exact' if stock.get('bit_exact') else 'not bit-exact'}); spike agreement "
              f"float vs Lava {r['spike_agreement_float_vs_lava'] * 100:.2f} % of neuron-steps.",
              "", "Teacher/student energy per inference (default conventions; the range over "
              "every convention in brackets): " + "; ".join(
                  f"{prof} {by.get('lava') or by.get('torch'):.1f}x "
                  f"[{r['energy_ratio']['range_over_conventions'][prof][0]:.1f}-"
                  f"{r['energy_ratio']['range_over_conventions'][prof][1]:.1f}x]"
                  for prof, by in r["energy_ratio"]["default"].items()) +
              " (the Lava spike counts; see the report for what each profile charges).",
              "", "Wall seconds: " + ", ".join(f"{k} {r['step_seconds'][k]}" for k in STEPS if k in r["step_seconds"])
              + f" (training in snntorch and torch: {r['train_seconds']} s). "
              f"Generated by `{r['command']}`; accuracies and seconds depend on the machine "
              f"({r['machine'].get('cpu', 'CPU')}), the bit-exactness does not.", ""]
    return "\n".join(lines)


def write_readme(results: dict, readme: Path = ROOT / "docs" / "guides" / "import-nir.md") -> int:
    """docs/guides/import-nir.md's block between the import-example markers =
    import_snntorch.md without its title."""
    return write_readme_block(markdown(results), "import-example", readme)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--readme", action="store_true",
                   help="only rewrite the Markdown table and the docs block from the JSON")
    p.add_argument("--work", default="runs/import_snntorch", help="working directory")
    args = p.parse_args()
    if args.readme:
        results = json.loads((OUT / f"{STEM}.json").read_text())
        (OUT / f"{STEM}.md").write_text(markdown(results))
        return write_readme(results)
    results = run(Path(args.work))
    write_results(OUT, STEM, results, markdown(results))
    print(markdown(results))
    return write_readme(results)


if __name__ == "__main__":
    sys.exit(main())
