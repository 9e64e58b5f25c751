"""The interop table (issue 30, item 5): NIR files written by other libraries and the NIR
paper's own networks, each taken through kdsnn -- measured, not claimed.

    .venv/bin/python benchmarks/nir_paper.py           # ~1 min: measure, write the results
    .venv/bin/python benchmarks/nir_paper.py --table   # the Markdown again, from the JSON

For every file: (1) does ``export.nir_io.nir_to_graph`` import it (else the one-sentence
refusal); (2) does kdsnn's float forward (``run_float``, float64) give the reference
forward's output spikes / readout: the writing library's own forward for the files the
tests' builders write (``tests/foreign_nir.py``: snntorch, norse, spikingjelly, sinabs,
on the digits images), norse 1.1's ``from_nir`` for the NIR paper's files (neuromorphs/NIR
``paper/``, copied in ``tests/data/nir_paper``; N-MNIST and Braille are not held here, so
seeded spike trains at batch 1, norse's Flatten(start_dim=0) flattening the batch);
(3) quantized (calibrated on those inputs), does Lava's stock fixed_pt run
(``hardware.lava_sim.LavaRunner``, ``conv_model="lava"``) equal the integer emulation bit
for bit, every layer's spikes and the readout.  Results: ``benchmarks/results/
nir_paper.{json,md}``; the Markdown is generated from the JSON (``--table``).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "benchmarks"))  # after ROOT: benchmarks/hardware.py is a script
sys.path.append(str(ROOT / "tests"))  # the library builders (tests/foreign_nir.py)

import lava.proc.lif.process  # noqa: E402,F401 - Lava first (multiprocessing start method)

from _common import machine_info, md_table, write_results  # noqa: E402

OUT = ROOT / "benchmarks" / "results"
PAPER = ROOT / "tests" / "data" / "nir_paper"
STEM = "nir_paper"
TOL = 1e-5  # readout agreement with float32 libraries

#: the NIR paper's files: name -> (file, import kwargs, input shape, T, seeds)
PAPER_FILES = {
    "cnn_sinabs.nir (NIR paper, N-MNIST CNN, sinabs)": (
        "cnn_sinabs.nir", {"dt": 1.0}, (2, 34, 34), 20, 3),
    "braille_noDelay_noBias_subtract.nir (NIR paper, Braille RNN, snntorch)": (
        "braille_noDelay_noBias_subtract.nir", {}, (12,), 40, 3),
    "braille_noDelay_bias_zero.nir (NIR paper, Braille RNN, snntorch)": (
        "braille_noDelay_bias_zero.nir", {}, (12,), 40, 3),
}
#: the tests' library builders: name -> builder name in tests/foreign_nir.py
LIBRARY_FILES = {
    "snntorch 1.0: Conv2d, Leaky, AvgPool2d, Linear, Synaptic": "snntorch_sequential",
    "snntorch 1.0: spiking output layer": "snntorch_spiking_output",
    "snntorch 1.0: RLeaky (recurrent)": "snntorch_recurrent",
    "snntorch 1.0: residual": "snntorch_residual",
    "norse 1.1: LIFBoxCell MLP": "norse_mlp",
    "spikingjelly 2.0: LIFNode conv net": "spikingjelly_net",
    "spikingjelly 2.0: residual": "spikingjelly_residual",
    "sinabs 3.1: IAF conv net": "sinabs_net",
}


def _recurrent_bias_into_fc1(g):
    """The Braille bias file with its recurrent Affine's bias added to fc1's: the same NIR
    graph (two constant currents into lif1.lif at every step).  norse's executor feeds a
    cycle nothing at its first step, the recurrent Affine's bias included, so on the file
    as it is norse drops that bias at t = 0 (snntorch's RSynaptic, which wrote the file,
    and kdsnn add it at every step)."""
    import numpy as np
    rec = g.nodes["lif1.w_rec"]
    g.nodes["fc1"].bias = g.nodes["fc1"].bias + rec.bias
    rec.bias = np.zeros_like(rec.bias)
    return g


#: NIR-paper files whose norse reference runs an equivalent rewrite of the file (and why)
NORSE_EQUIVALENT = {"braille_noDelay_bias_zero.nir": (
    _recurrent_bias_into_fc1, "with w_rec's bias moved into fc1, the same NIR graph: norse's "
    "executor drops a cycle's Affine bias at t = 0")}


def _norse_forward(path: Path, x: torch.Tensor, dt: float, rewrite=None) -> torch.Tensor:
    import nir
    import norse.torch as norse
    g = nir.read(str(path))
    if rewrite is not None:
        g = rewrite(g)
    logging.disable(logging.WARNING)
    try:
        module = norse.from_nir(g, dt=dt)
    finally:
        logging.disable(logging.NOTSET)
    state, outs = None, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            y, state = module(x[t], state)
            outs.append(y.reshape(1, -1))
    return torch.stack(outs)


def _lava_bit_exact(graph, x: torch.Tensor) -> dict:
    """Quantize on ``x`` (T, B, ...), emulate and run Lava's stock models on it."""
    from export.emulate import emulate
    from export.latency import balance_latency
    from export.quantize import encode_input, quantize
    from hardware.lava_sim import LavaRunner
    t0 = time.perf_counter()
    q = quantize(balance_latency(graph), x)
    xi = encode_input(x)
    v_emu, s_emu = emulate(q, xi)
    with LavaRunner(q, chunk_samples=max(1, x.shape[1] // 2), conv_model="lava") as runner:
        v_lava, s_lava = runner.run(xi)
    equal = bool(torch.equal(v_emu, v_lava) and set(s_emu) == set(s_lava)
                 and all(torch.equal(s_emu[k], s_lava[k]) for k in s_emu))
    return {"bit_exact": equal, "samples": int(x.shape[1]), "steps": int(x.shape[0]),
            "spikes": int(sum(int(s.sum()) for s in s_emu.values())),
            "seconds": round(time.perf_counter() - t0, 1)}


def _paper_row(name: str, spec: tuple) -> dict:
    from export.graph import run_float
    from export.imported import fit_to_data
    from export.nir_io import nir_to_graph
    from kd_snn.errors import KdsnnError
    file, kwargs, shape, T, seeds = spec
    path = PAPER / file
    row = {"file": name, "reference": "norse 1.1 from_nir", "kwargs": kwargs}
    try:
        graph = nir_to_graph(path, **kwargs)
    except KdsnnError as exc:
        row.update(imported=False, refusal=str(exc))
        return row
    row["imported"] = True
    row["layers"] = [[l.name, list(l.shape), [c.source for c in l.connections]]
                     for l in graph.layers]
    rewrite, why = NORSE_EQUIVALENT.get(file, (None, ""))
    equal, as_is, total = 0, 0, 0
    xs = []
    for seed in range(seeds):
        g = torch.Generator().manual_seed(seed)
        x = (torch.rand((T, 1, *shape), generator=g) < 0.3).float()
        xs.append(x)
        want = _norse_forward(path, x, kwargs.get("dt", 1e-4), rewrite)
        _, rec = run_float(graph, x.double(), record=True)
        got = rec[graph.layers[-1].name].float().reshape(want.shape)
        equal += int(torch.equal(got, want))
        if rewrite is not None:
            as_is += int(torch.equal(got, _norse_forward(path, x, kwargs.get("dt", 1e-4))))
        total += 1
    row["forward"] = {"equal_runs": equal, "runs": total, "what": "every output spike, "
                      f"T = {T}, batch 1, seeded spike trains (rate 0.3)"}
    if rewrite is not None:
        row["forward"].update(reference_file=why, equal_runs_file_as_is=as_is)
    classes = int(np.prod(graph.output.shape))
    fitted = fit_to_data(graph, graph.input_shape, classes, T, "direct")
    row["lava"] = _lava_bit_exact(fitted, torch.cat(xs, 1).double())
    return row


def _library_row(name: str, builder: str, work: Path) -> dict:
    import foreign_nir as F
    from export.graph import run_float
    from export.imported import fit_to_data
    from export.nir_io import nir_to_graph
    from kd_snn.errors import KdsnnError
    row = {"file": name, "reference": "the library's own forward", "builder": builder}
    try:
        if builder == "spikingjelly_residual":
            fe = F.spikingjelly_net(work, residual=True)
        elif builder in ("snntorch_sequential", "norse_mlp"):  # one value per layer (Loihi)
            fe = getattr(F, builder)(work, per_layer=True)
        else:
            fe = getattr(F, builder)(work)
    except F.LibraryMissing as exc:
        row.update(imported=None, refusal=f"library not usable here: {exc}")
        return row
    row["kwargs"] = fe.import_kwargs
    try:
        graph = nir_to_graph(fe.path, **fe.import_kwargs)
    except KdsnnError as exc:
        row.update(imported=False, refusal=str(exc))
        return row
    row["imported"] = True
    x = fe.inputs.double().reshape(fe.inputs.shape[0], fe.inputs.shape[1], *graph.input_shape)
    logits, rec = run_float(graph, x, record=True)
    spiking = [l for l in graph.layers if l.spiking]
    same = [bool(torch.equal(rec[l.name], s.double().reshape(rec[l.name].shape)))
            for l, s in zip(spiking, fe.spikes)]
    if graph.output.spiking:
        diff = float((rec[graph.output.name] - fe.readout.double().reshape(
            rec[graph.output.name].shape)).abs().max())
    else:
        diff = float((logits - fe.readout.double().mean(0)).abs().max())
    row["forward"] = {"layers_spike_equal": sum(same), "layers": len(same),
                      "readout_max_abs_diff": diff, "readout_ok": diff < TOL,
                      "what": f"{fe.inputs.shape[1]} digits images, T = {fe.inputs.shape[0]}"}
    fitted = fit_to_data(graph, graph.input_shape, F.CLASSES, fe.inputs.shape[0], "direct")
    try:
        row["lava"] = _lava_bit_exact(fitted, x[:, :4])
    except ValueError as exc:  # what Loihi cannot hold (named by the quantizer)
        row["lava"] = {"refused": str(exc).splitlines()[0]}
    return row


def _verdict(row: dict) -> tuple:
    if row.get("imported") is None:
        return "not measured", "-", "-"
    if not row["imported"]:
        return "refused: " + row["refusal"].replace("NIR import: ", ""), "-", "-"
    f = row["forward"]
    if "equal_runs" in f:
        fwd = f"{f['equal_runs']}/{f['runs']} runs spike-identical"
        if "reference_file" in f:
            fwd += (f" ({f['reference_file']}; on the file as is "
                    f"{f['equal_runs_file_as_is']}/{f['runs']})")
    else:
        fwd = (f"{f['layers_spike_equal']}/{f['layers']} layers spike-identical, readout "
               f"within {f['readout_max_abs_diff']:.1e}")
    lava = row["lava"]
    if "refused" in lava:
        return "yes", fwd, "refused: " + lava["refused"]
    lv = (f"{'yes' if lava['bit_exact'] else 'NO'} ({lava['samples']} samples x "
          f"{lava['steps']} steps)")
    return "yes", fwd, lv


def markdown(obj: dict) -> str:
    rows = []
    for row in obj["rows"]:
        imp, fwd, lv = _verdict(row)
        rows.append([row["file"], imp, f"{fwd} ({row['reference']})" if fwd != "-" else "-",
                     lv])
    info = obj["machine"]
    return ("# NIR files from other libraries and the NIR paper, through kdsnn\n\n"
            "Generated by `benchmarks/nir_paper.py` from `benchmarks/results/nir_paper.json` "
            f"({info['date']}, {info['cpu']}). Forward: kdsnn's float64 forward against the "
            "reference forward named; Lava: the quantized graph in Lava's stock fixed_pt "
            "models against kdsnn's integer emulation, every layer's spikes and the readout.\n\n"
            + md_table(["file (writer)", "kdsnn import", "forward = reference",
                        "Lava bit-exact"], rows) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", action="store_true",
                    help="regenerate the Markdown from the JSON only")
    args = ap.parse_args(argv)
    if args.table:
        obj = json.loads((OUT / f"{STEM}.json").read_text())
        (OUT / f"{STEM}.md").write_text(markdown(obj))
        print((OUT / f"{STEM}.md").read_text())
        return 0
    obj = {"machine": machine_info(), "rows": []}
    for name, spec in PAPER_FILES.items():
        print(f"{name} ...", flush=True)
        obj["rows"].append(_paper_row(name, spec))
    with tempfile.TemporaryDirectory() as tmp:
        for name, builder in LIBRARY_FILES.items():
            print(f"{name} ...", flush=True)
            obj["rows"].append(_library_row(name, builder, Path(tmp) / builder))
    write_results(OUT, STEM, obj, markdown(obj))
    print(markdown(obj))
    return 0


if __name__ == "__main__":
    sys.exit(main())
