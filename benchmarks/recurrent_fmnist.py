"""Worked example (issue 30, item 2): a recurrent spiking network trained in snntorch on a
sequence task made from data we hold -- Fashion-MNIST read row by row (28 steps of 28
pixels) -- exported by snntorch's own ``export_to_nir``, imported by kdsnn, quantized for
Loihi and run in Lava, its accuracy kept.

    .venv/bin/python benchmarks/recurrent_fmnist.py           # ~8 min on 2 idle cores
    .venv/bin/python benchmarks/recurrent_fmnist.py --table   # the Markdown from the JSON

The network: Linear(28 -> 64) -> RLeaky(64, all-to-all recurrent Linear, beta 0.9,
threshold 1, reset to zero) -> Linear(64 -> 10); the class is the argmax of the readout's
mean over the 28 steps (kdsnn's readout).  snntorch feeds step t with the layer's spikes
of step t - 1; the NIR file holds that recurrence as the cycle lif.lif -> lif.w_rec ->
lif.lif, which kdsnn imports as a recurrent connection (``export.graph``).  The pixel rows
are k/255, so Loihi's 8-bit graded input carries them exactly.

Measured: snntorch's test accuracy (its own forward), kdsnn's float forward of the
imported file, kdsnn's Loihi integer emulation of the quantized graph (full test split),
and Lava's stock fixed_pt models (LIF, Dense: the recurrent one included) against that
emulation, bit for bit, on a subset.  Results: ``benchmarks/results/recurrent_fmnist.
{json,md}``.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "benchmarks"))  # after ROOT: benchmarks/hardware.py is a script

import lava.proc.lif.process  # noqa: E402,F401 - Lava first (multiprocessing start method)

from _common import machine_info, md_table, write_results  # noqa: E402

OUT = ROOT / "benchmarks" / "results"
STEM = "recurrent_fmnist"
HIDDEN, T, CLASSES = 64, 28, 10
TRAIN, EPOCHS, BATCH, LR, SEED = 20000, 4, 128, 2e-3, 0
CALIB, LAVA_SAMPLES = 256, 32


def _rows(images: np.ndarray) -> torch.Tensor:
    """(N, 28, 28) uint8 -> (T = 28, N, 28) float32 in [0, 1]: row t at step t."""
    return torch.from_numpy(images).float().div(255.0).permute(1, 0, 2).contiguous()


def _net():
    import snntorch as snn
    nn = torch.nn

    class RowRNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(28, HIDDEN)
            self.lif = snn.RLeaky(beta=torch.full((HIDDEN,), 0.9),
                                  threshold=torch.full((HIDDEN,), 1.0),
                                  linear_features=HIDDEN, init_hidden=True,
                                  reset_mechanism="zero", reset_delay=False)
            self.out = nn.Linear(HIDDEN, CLASSES)

        def forward(self, x):
            s = self.lif(self.fc(x))
            return self.out(s[0] if isinstance(s, tuple) else s)

    return RowRNN()


def _run(net, x: torch.Tensor) -> torch.Tensor:
    """snntorch's forward over the steps: mean readout (B, 10)."""
    from snntorch import utils
    utils.reset(net)
    return torch.stack([net(x[t]) for t in range(x.shape[0])]).mean(0)


def train(x_tr, y_tr, log) -> torch.nn.Module:
    torch.manual_seed(SEED)
    net = _net()
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    n = x_tr.shape[1]
    for epoch in range(EPOCHS):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(SEED + epoch))
        total, correct = 0.0, 0
        for a in range(0, n, BATCH):
            idx = perm[a:a + BATCH]
            logits = _run(net, x_tr[:, idx])
            loss = torch.nn.functional.cross_entropy(logits, y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y_tr[idx]).sum())
        log(f"epoch {epoch + 1}/{EPOCHS}: loss {total / n:.3f}, train accuracy "
            f"{correct / n:.4f}")
    return net


def measure(log=print) -> dict:
    from export.emulate import emulate
    from export.graph import run_float
    from export.imported import fit_to_data
    from export.nir_io import nir_to_graph
    from export.quantize import encode_input, quantize
    from hardware.lava_sim import LavaRunner
    from kd_snn.data.static import idx_arrays
    from snntorch.export_nir import export_to_nir

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    tr_img, tr_lab = idx_arrays("fashion_mnist", "train")
    te_img, te_lab = idx_arrays("fashion_mnist", "test")
    x_tr, y_tr = _rows(tr_img[:TRAIN]), torch.from_numpy(tr_lab[:TRAIN])
    x_te, y_te = _rows(te_img), torch.from_numpy(te_lab)
    net = train(x_tr, y_tr, log)
    t_train = time.perf_counter() - t0
    with torch.no_grad():
        snn_acc = float((torch.cat([_run(net, x_te[:, a:a + 1000]).argmax(1)
                                    for a in range(0, x_te.shape[1], 1000)]) == y_te)
                        .double().mean())
    log(f"snntorch test accuracy {snn_acc:.4f}")
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import nir
        path = Path(tmp) / "row_rnn.nir"
        nir.write(str(path), export_to_nir(net, x_tr[0, :1], ignore_dims=[0]))
        nir_bytes = path.stat().st_size
        graph = nir_to_graph(path)
    graph = fit_to_data(graph, (28,), CLASSES, T, "direct")
    xd = x_te.double()
    with torch.no_grad():
        float_pred = torch.cat([run_float(graph, xd[:, a:a + 1000])[0].argmax(1)
                                for a in range(0, xd.shape[1], 1000)])
        snn_pred = torch.cat([_run(net, x_te[:, a:a + 1000]).argmax(1)
                              for a in range(0, x_te.shape[1], 1000)])
    float_acc = float((float_pred == y_te).double().mean())
    same_pred = float((float_pred == snn_pred).double().mean())
    log(f"kdsnn float forward of the imported file: {float_acc:.4f} "
        f"(same class as snntorch on {same_pred:.4f})")
    q = quantize(graph, x_tr[:, :CALIB].double())
    xi = encode_input(xd)
    pixels = torch.from_numpy(te_img.astype(np.int64)).permute(1, 0, 2)
    assert torch.equal(xi, pixels), "Loihi's graded input is the image's own bytes"
    v_emu = torch.cat([emulate(q, xi[:, a:a + 1000], record=False)[0]
                       for a in range(0, xi.shape[1], 1000)])
    loihi_pred = torch.as_tensor(q.logits(v_emu.numpy())).argmax(1)
    loihi_acc = float((loihi_pred == y_te).double().mean())
    log(f"Loihi integer emulation: {loihi_acc:.4f}")
    sub = xi[:, :LAVA_SAMPLES]
    t1 = time.perf_counter()
    v_sub, s_sub = emulate(q, sub)
    with LavaRunner(q, chunk_samples=16, conv_model="lava") as runner:
        v_lava, s_lava = runner.run(sub)
    t_lava = time.perf_counter() - t1
    bit_exact = bool(torch.equal(v_sub, v_lava) and all(torch.equal(s_sub[k], s_lava[k])
                                                         for k in s_sub))
    log(f"Lava (stock fixed_pt) == emulation on {LAVA_SAMPLES} test samples: {bit_exact}")
    lif = q.layer(graph.layers[0].name)
    return {
        "machine": machine_info(),
        "setup": {"hidden": HIDDEN, "steps": T, "train_samples": TRAIN, "epochs": EPOCHS,
                  "batch": BATCH, "lr": LR, "seed": SEED, "calibration_samples": CALIB,
                  "test_samples": int(x_te.shape[1]), "nir_bytes": nir_bytes},
        "accuracy": {"snntorch": snn_acc, "kdsnn_float": float_acc,
                     "kdsnn_float_same_class_as_snntorch": same_pred,
                     "loihi_emulation": loihi_acc},
        "lava": {"samples": LAVA_SAMPLES, "bit_exact": bit_exact,
                 "seconds": round(t_lava, 1)},
        "loihi_layer": {"du": lif.du, "dv": lif.dv, "vth": lif.vth,
                        "recurrent_weight_exp": int(lif.connections[1].weight_exp)},
        "seconds": {"train": round(t_train, 1), "total": round(time.perf_counter() - t0, 1)},
    }


def markdown(obj: dict) -> str:
    a, s, lv = obj["accuracy"], obj["setup"], obj["lava"]
    rows = [["snntorch 1.0 (its own forward)", f"{100 * a['snntorch']:.2f} %"],
            ["kdsnn float forward of the imported NIR file",
             f"{100 * a['kdsnn_float']:.2f} % (same class as snntorch on "
             f"{100 * a['kdsnn_float_same_class_as_snntorch']:.2f} %)"],
            ["Loihi fixed point (kdsnn's integer emulation)",
             f"{100 * a['loihi_emulation']:.2f} %"],
            [f"Lava stock fixed_pt vs the emulation ({lv['samples']} test samples)",
             "bit-exact" if lv["bit_exact"] else "DIFFERS"]]
    info = obj["machine"]
    return ("# A recurrent SNN from snntorch to Loihi: Fashion-MNIST read row by row\n\n"
            "Generated by `benchmarks/recurrent_fmnist.py` from `benchmarks/results/"
            f"recurrent_fmnist.json` ({info['date']}, {info['cpu']}). snntorch RLeaky "
            f"(28 -> {s['hidden']} recurrent -> 10), {s['steps']} steps (one image row each), "
            f"trained {s['epochs']} epochs on {s['train_samples']} training images; exported "
            "with snntorch's `export_to_nir`, imported with `export.nir_io.nir_to_graph` "
            f"(the recurrence as a cycle), quantized on {s['calibration_samples']} training "
            f"images; accuracies on the {s['test_samples']} test images.\n\n"
            + md_table(["forward", "test accuracy"], rows) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", action="store_true",
                    help="regenerate the Markdown from the JSON only")
    args = ap.parse_args(argv)
    if args.table:
        obj = json.loads((OUT / f"{STEM}.json").read_text())
    else:
        obj = measure(lambda m: print(m, flush=True))
    write_results(OUT, STEM, obj, markdown(obj))
    print(markdown(obj))
    return 0


if __name__ == "__main__":
    sys.exit(main())
