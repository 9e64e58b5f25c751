"""What third-party NIR importers do with kdsnn's NIR files, measured.

    bash scripts/nir_peers.sh                      # once: one venv per peer under runs/nir_peers/
    .venv/bin/python benchmarks/nir_backends.py    # ~1-2 min: measure, write results
    .venv/bin/python benchmarks/nir_backends.py --readme   # the docs block from the JSON

(a) In the main venv: a small set of kdsnn graphs covering the node kinds kdsnn writes
(Affine/Linear, Conv2d, Flatten(-3,-1), LIF, CubaLIF, IF, SumPool2d + Scale, fan-in, a
non-spiking readout into Output), written with ``export.nir_io.write_nir``, seeded inputs
(T x B, B = 1 and 4) and kdsnn's own forward (``export.graph.run_float`` in float64: the
Output stream per step, the logits = its mean over T, every layer's spikes).
(b) For each peer, ``benchmarks/nir_peers/<peer>_worker.py`` runs with that peer's python
(snntorch and norse: the main venv; sinabs, rockpool, spyx: ``runs/nir_peers/<peer>/venv``
made by ``scripts/nir_peers.sh``), imports each file with the peer's NIR import function,
runs the inputs and writes its outputs (npz) or the exception with the peer's frame.
(c) Compares with kdsnn's forward and writes ``benchmarks/results/nir_backends.{json,md}``.
The cause of each failure or mismatch is in ``CAUSES`` below, read from the peer's source
in its venv (file and function named); the failing frame itself comes from the traceback.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import machine_info, md_table, write_readme_block, write_results  # noqa: E402

OUT = ROOT / "benchmarks" / "results"
WORK = ROOT / "runs" / "nir_backends"
PEER_DIR = ROOT / "runs" / "nir_peers"
T = 6
BATCHES = (1, 4)
TOL = 1e-5  # max abs diff of the readout below which a peer "agrees" (float32 weights)

# peer -> (python, import function, distribution names whose versions are recorded)
PEERS = {
    "snntorch": ("main", "snntorch.import_nir.import_from_nir", ("snntorch", "nir", "nirtorch", "torch")),
    "norse": ("main", "norse.torch.from_nir(g, dt=metadata['dt'])", ("norse", "nir", "nirtorch", "torch")),
    "sinabs": ("venv", "sinabs.from_nir(g, batch_size=B)", ("sinabs", "nir", "nirtorch", "torch")),
    "rockpool": ("venv", "rockpool.nn.modules.from_nir", ("rockpool", "nir", "nirtorch", "torch")),
    "spyx": ("venv", "spyx.nir.from_nir", ("spyx", "nir", "jax", "numpy")),
}


# --------------------------------------------------------------------------- graphs
def _layer(name, shape, conns, alpha=0.0, beta=0.5, thr=1.0, bias=0.0, spiking=True):
    from export.graph import NeuronLayer
    return NeuronLayer(name, shape, tuple(conns), bias=bias, alpha=alpha, beta=beta,
                       threshold=thr, spiking=spiking)


def _chan(rng, c, hw, scale=0.2):
    return np.repeat(rng.normal(0, scale, c), hw[0] * hw[1]).reshape(c, *hw)


def graphs() -> dict:
    """name -> (DeployGraph, one-line description).  Thresholds are one value per layer
    (what every peer can hold); the file still carries them as per-neuron arrays."""
    from export.graph import Connection as C
    from export.graph import DeployGraph
    rng = np.random.default_rng(19)
    w = lambda s, *shape: rng.normal(0, s, shape)  # noqa: E731
    out = {}
    # dense LIF MLP, biases in the Affine nodes
    out["lif_mlp"] = (DeployGraph((16,), (
        _layer("fc1", (20,), [C("input", "dense", w(0.6, 20, 16))], beta=0.5, thr=0.8,
               bias=rng.normal(0.1, 0.2, 20)),
        _layer("fc2", (12,), [C("fc1", "dense", w(0.5, 12, 20))], beta=0.75, thr=0.7,
               bias=rng.normal(0.1, 0.2, 12)),
        _layer("readout", (5,), [C("fc2", "dense", w(0.5, 5, 12))], bias=rng.normal(0, .2, 5),
               spiking=False)), time_steps=T), "Affine -> LIF -> Affine -> LIF -> Affine readout")
    # dense LIF, spikes out (no readout): the output itself is spikes
    out["lif_spikes"] = (DeployGraph((16,), (
        _layer("fc1", (20,), [C("input", "dense", w(0.6, 20, 16))], beta=0.5, thr=0.8),
        _layer("fc2", (10,), [C("fc1", "dense", w(0.6, 10, 20))], beta=0.6, thr=0.5)),
        time_steps=T), "Linear -> LIF -> Linear -> LIF, spikes to Output")
    # conv + LIF, Flatten(-3,-1) + dense
    out["conv_lif"] = (DeployGraph((2, 8, 8), (
        _layer("conv1", (4, 8, 8), [C("input", "conv", w(0.5, 4, 2, 3, 3), padding=(1, 1))],
               beta=0.5, thr=0.8, bias=_chan(rng, 4, (8, 8))),
        _layer("conv2", (6, 4, 4), [C("conv1", "conv", w(0.5, 6, 4, 3, 3), stride=(2, 2),
                                      padding=(1, 1))], beta=0.6, thr=0.7,
               bias=_chan(rng, 6, (4, 4))),
        _layer("fc1", (12,), [C("conv2", "dense", w(0.3, 12, 96))], beta=0.5, thr=0.6,
               bias=rng.normal(0, .2, 12)),
        _layer("readout", (5,), [C("fc1", "dense", w(0.5, 5, 12))], bias=rng.normal(0, .2, 5),
               spiking=False)), time_steps=T),
        "Conv2d -> LIF -> Conv2d(s2) -> LIF -> Flatten -> Affine -> LIF -> Affine readout")
    # CubaLIF (no bias: v_leak = 0)
    out["cuba_mlp"] = (DeployGraph((16,), (
        _layer("fc1", (20,), [C("input", "dense", w(0.5, 20, 16))], alpha=0.4, beta=0.5,
               thr=0.8),
        _layer("fc2", (12,), [C("fc1", "dense", w(0.5, 12, 20))], alpha=0.6, beta=0.7, thr=0.7),
        _layer("readout", (5,), [C("fc2", "dense", w(0.5, 5, 12))], bias=rng.normal(0, .2, 5),
               spiking=False)), time_steps=T), "Linear -> CubaLIF -> Linear -> CubaLIF -> Affine readout")
    # IF (beta = 1), bias in the Affine
    out["if_mlp"] = (DeployGraph((16,), (
        _layer("fc1", (20,), [C("input", "dense", w(0.4, 20, 16))], beta=1.0, thr=1.0,
               bias=rng.normal(0.05, 0.1, 20)),
        _layer("readout", (5,), [C("fc1", "dense", w(0.5, 5, 20))], bias=rng.normal(0, .2, 5),
               spiking=False)), time_steps=T), "Affine -> IF -> Affine readout")
    # residual fan-in (two edges into one LIF)
    out["residual"] = (DeployGraph((2, 8, 8), (
        _layer("stem", (4, 8, 8), [C("input", "conv", w(0.5, 4, 2, 3, 3), padding=(1, 1))],
               beta=0.5, thr=0.8, bias=_chan(rng, 4, (8, 8))),
        _layer("a", (4, 8, 8), [C("stem", "conv", w(0.5, 4, 4, 3, 3), padding=(1, 1))],
               beta=0.5, thr=0.9, bias=_chan(rng, 4, (8, 8))),
        _layer("b", (4, 8, 8), [C("a", "conv", w(0.5, 4, 4, 3, 3), padding=(1, 1)),
                                C("stem", "conv", w(0.5, 4, 4, 1, 1))],
               beta=0.5, thr=0.7, bias=_chan(rng, 4, (8, 8))),
        _layer("readout", (5,), [C("b", "dense", w(0.3, 5, 256))], bias=rng.normal(0, .2, 5),
               spiking=False)), time_steps=T),
        "Conv2d -> LIF -> Conv2d -> LIF; LIF <- (Conv2d + 1x1 Conv2d shortcut): fan-in")
    # average pooling = SumPool2d + Scale
    out["avgpool"] = (DeployGraph((2, 8, 8), (
        _layer("conv1", (4, 8, 8), [C("input", "conv", w(0.5, 4, 2, 3, 3), padding=(1, 1))],
               beta=0.5, thr=0.6, bias=_chan(rng, 4, (8, 8))),
        _layer("pool", (4, 4, 4), [C("conv1", "avgpool", kernel=(2, 2))], beta=0.5, thr=0.3),
        _layer("readout", (5,), [C("pool", "dense", w(0.5, 5, 64))], bias=rng.normal(0, .2, 5),
               spiking=False)), time_steps=T),
        "Conv2d -> LIF -> SumPool2d -> Scale(1/4) -> LIF -> Flatten -> Affine readout")
    return out


def reference(graph, x):
    """kdsnn's forward (float64): the Output stream per step, logits, spikes per layer."""
    import torch

    from export.graph import run_float
    xs = torch.from_numpy(x)
    logits, spikes = run_float(graph, xs, record=True)
    out = graph.output
    if out.spiking:
        stream = spikes[out.name]
    else:
        steps = []
        for t in range(x.shape[0]):
            acts = {"input": xs[t], **{k: v[t] for k, v in spikes.items()}}
            cur = sum(c.apply(acts[c.source]) for c in out.connections)
            steps.append(cur.reshape(cur.shape[0], -1) + torch.from_numpy(out.bias))
        stream = torch.stack(steps)
    return {"out": stream.numpy(), "logits": logits.numpy(),
            "spikes": {k: v.numpy() for k, v in spikes.items()}}


def prepare(work: Path) -> tuple[dict, dict]:
    """Write NIR files, inputs, and the reference; return (manifest, refs)."""
    from export.nir_io import graph_to_nir, write_nir
    work.mkdir(parents=True, exist_ok=True)
    manifest = {"T": T, "graphs": []}
    refs = {}
    for gi, (name, (graph, desc)) in enumerate(graphs().items()):
        path = write_nir(graph, work / f"{name}.nir")
        ng = graph_to_nir(graph)
        spiking = [lay.name for lay in graph.layers if lay.spiking]
        entry = {"name": name, "nir": str(path), "inputs": {}, "record": spiking,
                 "description": desc,
                 "nodes": sorted({type(n).__name__ for n in ng.nodes.values()})}
        rng = np.random.default_rng(1000 + gi)
        for b in BATCHES:
            x = rng.uniform(0, 1.5, (T, b) + graph.input_shape)
            npz = work / f"{name}.in.b{b}.npz"
            np.savez(npz, x=x)
            entry["inputs"][f"b{b}"] = str(npz)
            refs[(name, f"b{b}")] = reference(graph, x)
        manifest["graphs"].append(entry)
    (work / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest, refs


# --------------------------------------------------------------------------- variant
def variant_alt(ng):
    """The choices NIR leaves open, made the other way, to measure whether they would make
    more readers right (see ``VARIANTS``): every LIF gets snntorch's own export convention
    ``r = tau/dt``, ``v_threshold = threshold`` (instead of ``r = 1``, ``v_threshold =
    (1-beta)*threshold``; the same Euler dynamics), and every bias-free ``Linear`` becomes
    an ``Affine`` with a zero bias.  kdsnn's metadata is dropped (it describes the default)."""
    import nir
    dt = float(ng.metadata["dt"])
    nodes = {}
    for k, n in ng.nodes.items():
        if isinstance(n, nir.LIF):
            beta = 1.0 - dt / np.asarray(n.tau)
            n = nir.LIF(tau=np.asarray(n.tau), r=np.asarray(n.tau) / dt,
                        v_leak=np.asarray(n.v_leak) / (1.0 - beta),
                        v_threshold=np.asarray(n.v_threshold) / (1.0 - beta),
                        v_reset=np.asarray(n.v_reset))
        elif isinstance(n, nir.Linear):
            n = nir.Affine(weight=np.asarray(n.weight), bias=np.zeros(n.weight.shape[0]))
        nodes[k] = n
    md = {k: v for k, v in ng.metadata.items() if k in ("dt", "reset", "time_steps")}
    return nir.NIRGraph(nodes=nodes, edges=list(ng.edges), metadata=md, type_check=True)


VARIANTS = {"default": None, "alt": variant_alt}


def write_variant(manifest: dict, work: Path, variant: str) -> dict:
    """The manifest of ``variant``'s files (the default files rewritten)."""
    import nir
    if VARIANTS[variant] is None:
        return manifest
    vdir = work / variant
    vdir.mkdir(parents=True, exist_ok=True)
    graphs_ = []
    for g in manifest["graphs"]:
        path = vdir / Path(g["nir"]).name
        nir.write(str(path), VARIANTS[variant](nir.read(g["nir"])))
        graphs_.append({**g, "nir": str(path)})
    out = {**manifest, "graphs": graphs_}
    (vdir / "manifest.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


# --------------------------------------------------------------------------- peers
def peer_python(peer: str):
    """(python executable or None, reason when missing)."""
    if PEERS[peer][0] == "main":
        return sys.executable, ""
    d = PEER_DIR / peer
    py = d / "venv" / "bin" / "python"
    if (d / "ok").is_file() and py.is_file():
        return str(py), ""
    log = d / "install.log"
    last = log.read_text().strip().splitlines()[-1:] if log.is_file() else []
    return None, ("not installed: run `bash scripts/nir_peers.sh " + peer + "`"
                  + (f" (last install line: {last[0][:200]})" if last else ""))


def peer_versions(py: str, dists) -> dict:
    code = ("import json, importlib.metadata as m\nout = {}\nfor d in %r:\n    try: out[d] = "
            "m.version(d)\n    except Exception: out[d] = None\nprint(json.dumps(out))" % (dists,))
    res = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=120)
    return json.loads(res.stdout) if res.returncode == 0 else {}


def run_peer(peer: str, manifest_path: Path, out_dir: Path) -> list:
    py, _ = peer_python(peer)
    script = ROOT / "benchmarks" / "nir_peers" / f"{peer}_worker.py"
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONHASHSEED"] = "0"  # nirtorch's executor picks a start node from a set
    res = subprocess.run([py, str(script), str(manifest_path), str(out_dir)],
                         capture_output=True, text=True, timeout=1800, env=env, cwd=ROOT)
    path = out_dir / "result.json"
    if res.returncode != 0 or not path.is_file():
        raise RuntimeError(f"{peer} worker failed (rc {res.returncode}): {res.stderr[-2000:]}")
    return json.loads(path.read_text())


def compare(rec: dict, ref: dict, graph_meta: dict) -> dict:
    """Peer output vs kdsnn's forward."""
    got = np.load(rec["file"])
    out, want = got["out"], ref["out"]
    row = {"out_shape": list(out.shape), "want_shape": list(want.shape)}
    if out.shape != want.shape:
        row.update(agree=False, shape_mismatch=True)
        return row
    row["max_abs_diff_stream"] = float(np.max(np.abs(out - want)))
    spike_eq, spike_n, per_layer = 0, 0, {}
    layers = dict(ref["spikes"])
    for name, s in layers.items():
        key = f"spk__{name}"
        peer_s = got[key] if key in got.files else (out if name == graph_meta["output"] and
                                                    graph_meta["output_spiking"] else None)
        if peer_s is None or peer_s.shape != s.shape:
            continue
        eq = int(np.sum(peer_s == s))
        per_layer[name] = eq / s.size
        spike_eq, spike_n = spike_eq + eq, spike_n + s.size
    row["spike_agreement"] = spike_eq / spike_n if spike_n else None
    row["spike_agreement_per_layer"] = per_layer
    if graph_meta["output_spiking"]:
        row["max_abs_diff_logits"] = None
        row["agree"] = bool(row["spike_agreement"] == 1.0)
    else:
        row["max_abs_diff_logits"] = float(np.max(np.abs(out.mean(0) - ref["logits"])))
        row["agree"] = bool(row["max_abs_diff_logits"] <= TOL and
                            (row["spike_agreement"] in (None, 1.0)))
    return row


def measure(work: Path = WORK, peers=tuple(PEERS), variants=tuple(VARIANTS)) -> dict:
    manifest, refs = prepare(work)
    gmeta = {}
    for (name, (graph, _desc)) in graphs().items():
        gmeta[name] = {"output": graph.output.name, "output_spiking": bool(graph.output.spiking)}
    results = {"T": T, "batches": [f"b{b}" for b in BATCHES], "tolerance": TOL,
               "graphs": {g["name"]: {"description": g["description"], "nodes": g["nodes"]}
                          for g in manifest["graphs"]},
               "graph_order": [g["name"] for g in manifest["graphs"]],
               "peer_order": list(peers), "peers": {}, "cases": {}}
    for peer in peers:
        py, why = peer_python(peer)
        info = {"import_function": PEERS[peer][1], "installed": py is not None,
                "reason": why, "python": "main .venv" if PEERS[peer][0] == "main"
                else f"runs/nir_peers/{peer}/venv"}
        if py is not None:
            info["versions"] = peer_versions(py, PEERS[peer][2])
        results["peers"][peer] = info
        if py is None:
            continue
        for variant in variants:
            vman = write_variant(manifest, work, variant)
            vdir = work / variant
            vdir.mkdir(parents=True, exist_ok=True)
            mpath = vdir / "manifest.json"
            if not mpath.is_file():
                mpath.write_text(json.dumps(vman, indent=1) + "\n")
            for rec in run_peer(peer, mpath, vdir / peer):
                row = {k: v for k, v in rec.items() if k not in ("file", "recorded")}
                if rec["status"] == "ok":
                    row.update(compare(rec, refs[(rec["graph"], rec["batch"])],
                                       gmeta[rec["graph"]]))
                key = f"{peer}/{variant}/{rec['graph']}/{rec['batch']}"
                results["cases"][key] = row
                print(key, {k: row.get(k) for k in ("status", "type", "peer_frame",
                                                    "max_abs_diff_logits", "spike_agreement",
                                                    "agree", "out_shape")}, flush=True)
    return results


# --------------------------------------------------------------------------- causes
# Read from each peer's source in its venv (paths relative to site-packages).  Key: (peer,
# graph) or (peer, "*"); the text is shown where that case fails or disagrees.
CAUSES = {
    ("snntorch", "if_mlp"): "`snntorch/import_nir.py` `_nir_to_snntorch_module`: asserts `r == 1` "
    "on `nir.IF` (kdsnn writes r = 1/dt, so that dt·r·x = x) and would build `Leaky(beta=0.9)`, "
    "not an IF; no r makes it right",
    ("snntorch", "avgpool"): "`nirtorch/nir_interpreter.py` `_map_nir_node_to_torch`: no mapping "
    "for `nir.Scale` (snntorch's map has none): average pooling cannot be read",
    ("norse", "residual"): "`norse/torch/utils/import_nir.py` `from_nir` uses nirtorch's deprecated "
    "`GraphExecutor` (`nirtorch/graph_executor.py`): nodes run in DFS pre-order and it returns "
    "the last node run (the 1x1 shortcut conv, shape (B,4,8,8)); a fan-in branch is read one step late",
    ("norse", "avgpool"): "`norse/torch/utils/import_nir.py` `_import_norse_module` has no "
    "`nir.Scale` case (returns None); nirtorch's `GraphExecutor` then sees two root nodes and "
    "starts from an arbitrary one ('Multiple input nodes found'): wrong shape or a crash in "
    "`norse/torch/functional/lif_box.py` depending on set order",
    ("sinabs", "lif_mlp"): "`sinabs/nir.py` `_import_sinabs_module`: `nir.LIF` -> `LIFSqueeze(tau_mem="
    "tau)` with tau in time steps (dt ignored: exp(-1/2e-4) = 0, no memory), no r·dt/tau input "
    "factor while v_threshold = (1-β)θ is kept, multi-spike with subtractive reset (the file "
    "says v_reset = 0)",
    ("sinabs", "lif_spikes"): "`sinabs/nir.py` `_import_sinabs_module` has no `nir.Linear` case "
    "(returns None; `nirtorch/graph.py` `_discover_inputs` then raises KeyError)",
    ("sinabs", "cuba_mlp"): "`sinabs/nir.py` `_import_sinabs_module`: no `nir.Linear` and no "
    "`nir.CubaLIF` case (KeyError in `nirtorch/graph.py` `_discover_inputs`)",
    ("sinabs", "*"): "`sinabs/nir.py` `_import_sinabs_module`: `any(node.v_leak) != 0` on a "
    "(C,H,W) array raises (truth value of a row); 1-D arrays pass, and a scalar v_leak fails "
    "too (`.unsqueeze` on a numpy array)",
    ("sinabs", "if_mlp"): "`sinabs/nir.py` `_import_sinabs_module`: `nir.IF` -> `IAFSqueeze` ignores r "
    "(v += x: right) but spikes several times per step (MultiSpike), resets by subtraction, "
    "floors v at -θ and fires at v >= θ",
    ("rockpool", "*"): "`rockpool/nn/modules/torch/nir.py` `_convert_nir_to_rockpool` reads "
    "`node.tau_mem` on `nir.LIF` (which has `tau`): AttributeError",
    ("rockpool", "if_mlp"): "`rockpool/nn/modules/torch/nir.py` `_convert_nir_to_rockpool`: no "
    "`nir.IF` case (NotImplementedError)",
    ("rockpool", "cuba_mlp"): "`rockpool/nn/modules/torch/nir.py` `_convert_nir_to_rockpool`: "
    "`nir.CubaLIF` -> `LIFTorch` with dt = min(tau_mem/(1+r)) (not the file's dt), w_in and r "
    "otherwise ignored; `lif_torch.py` decays by exp(-dt/tau), multi-spike, subtractive reset",
    ("spyx", "*"): "`spyx/nir.py` `_build_model`: β = 1-dt/τ (right with dt = metadata['dt']), but "
    "`spyx/nn.py` `LIF.__call__` spikes from the previous step's V, resets by subtraction and "
    "has no r·dt/τ input factor while v_threshold = (1-β)θ is kept",
    ("spyx", "cuba_mlp"): "`spyx/nir.py` `_build_model`: `CuBaLIF` drops w_in, r and v_leak; "
    "`spyx/nn.py` `CuBaLIF.__call__` spikes from the previous step's V, subtractive reset",
    ("spyx", "if_mlp"): "`spyx/nn.py` `IF.__call__`: r ignored (v += x: right) but spikes from "
    "the previous step's V and resets by subtraction",
    ("spyx", "conv_lif"): "as lif_mlp, and `spyx/nn.py` `Flatten` flattens channels-last "
    "(H,W,C) while `spyx/nir.py` keeps NIR's (C,H,W)-ordered dense weights",
    ("spyx", "residual"): "as lif_mlp, and `spyx/nir.py` `_build_model._order_edge_list` follows "
    "only the first out-edge of each node: the shortcut branch is dropped",
    ("spyx", "avgpool"): "as lif_mlp, and `spyx/nir.py` `_nir_node_to_spyx_module` has no "
    "`nir.Scale` case (skipped: a sum instead of an average)",
}


def cause(peer: str, graph: str) -> str:
    return CAUSES.get((peer, graph)) or CAUSES.get((peer, "*"), "")


def summarize(results: dict, variant: str = "default") -> dict:
    """(peer, graph) -> one cell of the table, over both batches."""
    cells = {}
    for peer in results["peer_order"]:
        info = results["peers"][peer]
        for graph in results["graph_order"]:
            rows = [results["cases"].get(f"{peer}/{variant}/{graph}/{b}")
                    for b in results["batches"]]
            if not info["installed"] or any(r is None for r in rows):
                cells[(peer, graph)] = {"verdict": "not installed", "text": "not installed"}
                continue
            ok = [r for r in rows if r["status"] == "ok"]
            failed = [r for r in rows if r["status"] != "ok"]
            agree = bool(ok) and not failed and all(r.get("agree") for r in ok)
            diffs = [r["max_abs_diff_logits"] for r in ok if r.get("max_abs_diff_logits") is not None]
            agr = [r["spike_agreement"] for r in ok if r.get("spike_agreement") is not None]
            parts = []
            if failed and not ok:
                r = failed[0]
                stage = "at import" if r["status"] == "import_error" else "at run"
                parts.append(f"{stage}: {r['type']}")
            else:
                if any(r.get("shape_mismatch") for r in ok):
                    r = next(r for r in ok if r.get("shape_mismatch"))
                    parts.append(f"wrong output shape {tuple(r['out_shape'][1:])} "
                                 f"(want {tuple(r['want_shape'][1:])})")
                if diffs:
                    parts.append(f"logits Δ {max(diffs):.1e}")
                if agr:
                    parts.append(f"spikes {100 * min(agr):.1f}% equal")
                if failed:
                    parts.append(f"{failed[0]['batch']}: {failed[0]['status'].replace('_', ' ')}")
            verdict = "exact" if agree else ("fails" if not ok else "differs")
            cells[(peer, graph)] = {"verdict": verdict, "text": "; ".join(parts),
                                    "cause": "" if agree else cause(peer, graph)}
    return cells


def markdown(results: dict) -> str:
    m = results["meta"]
    graphs_ = results["graph_order"]  # the JSON's dicts are key-sorted
    peers = results["peer_order"]
    cells = summarize(results)
    head = ["importer"] + [f"`{g}`" for g in graphs_]
    rows = []
    for p in peers:
        info = results["peers"][p]
        ver = (info.get("versions") or {}).get(p)
        label = f"{p} {ver}" if ver else f"{p} (not installed)"
        rows.append([label] + [f"**{cells[(p, g)]['verdict']}**" +
                               (f" ({cells[(p, g)]['text']})" if cells[(p, g)]['text'] else "")
                               for g in graphs_])
    lines = [
        f"Measured by `{m['command']}` ({m['machine']['cpu']}, {m['machine']['date']}); "
        f"each kdsnn NIR file (dt = {m['dt']}) was imported with the library's own NIR "
        f"importer in its own venv (`scripts/nir_peers.sh`) and run on seeded inputs, T = "
        f"{results['T']}, batch 1 and 4, against kdsnn's float64 forward (`run_float`). "
        "**exact** = every spike of every layer the importer exposes equal and the logits "
        f"(mean over T of the Output stream) within {results['tolerance']:g}, at both batch "
        "sizes; **differs** = it runs but disagrees; "
        "**fails** = import or run raises. Logits Δ = max abs diff of the logits, spikes = "
        "fraction of equal spikes over the layers the importer exposes (spyx: only a "
        "spiking Output), worst over both batches.", "",
        md_table(head, rows), "",
        "Graphs: " + "; ".join(f"`{g}` = {results['graphs'][g]['description']}" for g in graphs_)
        + ".", "",
        "Causes (read in each importer's source, paths relative to site-packages; the "
        "failing frame of each case is in `benchmarks/results/nir_backends.json`):", ""]
    seen = set()
    for p in peers:
        for g in graphs_:
            c = cells[(p, g)].get("cause")
            if c and (p, c) not in seen:
                seen.add((p, c))
                same = [h for h in graphs_ if cells[(p, h)].get("cause") == c]
                lines.append(f"- {p} ({', '.join(f'`{h}`' for h in same)}): {c}.")
    versions = "; ".join(
        f"{p}: " + ", ".join(f"{k} {i['versions'][k]}" for k in PEERS[p][2]
                             if (i.get("versions") or {}).get(k))
        if i["installed"] else f"{p}: {i['reason']}"
        for p, i in ((p, results["peers"][p]) for p in peers))
    alt = summarize(results, "alt") if any("/alt/" in k for k in results["cases"]) else {}
    changed = [f"{p} `{g}`: {cells[(p, g)]['verdict']} -> {alt[(p, g)]['verdict']}"
               for p in peers for g in graphs_
               if alt and (p, g) in alt and alt[(p, g)]["verdict"] != cells[(p, g)]["verdict"]]
    lines += [
        "", "Choices NIR leaves open, measured the other way (files rewritten with every LIF "
        "as r = τ/dt, v_threshold = θ — snntorch's own export convention, the same Euler "
        "dynamics — and every bias-free `Linear` as an `Affine` with zero bias): "
        + ("; ".join(changed) if changed else "no verdict changes")
        + ". No importer that is wrong with kdsnn's default becomes exact, and norse, exact "
        "on LIF with r = 1, becomes wrong (it ignores r), so the default stays. The other "
        "mismatches are importer behaviour NIR does not leave open (reset by subtraction "
        "where the file says v_reset = 0, tau in steps, spikes from the previous step, "
        "missing node kinds).", "",
        f"Versions: {versions}. snntorch, norse and sinabs ran in float64 (the model and its "
        "inputs cast), rockpool and spyx in float32 (their parameters stay float32), all "
        "reading the file's float64 arrays (snntorch and sinabs keep float32 copies of the "
        "weights). Spike agreement and the verdicts do not depend on the CPU here; the "
        "logits' max abs diff of an exact row (~1e-8, float32 weights against kdsnn's "
        "float64) and of float32 rows may differ in the last digits from one CPU to another "
        "(BLAS/oneDNN kernels). `PYTHONHASHSEED=0` in the workers: nirtorch's executor picks a "
        "start node from a set (norse `avgpool`).", ""]
    return "# Third-party NIR importers on kdsnn's NIR files\n\n" + "\n".join(lines)


def write_readme(results: dict,
                 readme: Path = ROOT / "docs" / "results" / "nir-importers.md") -> int:
    """docs/results/nir-importers.md's block between the nir-backends markers =
    nir_backends.md without its title."""
    return write_readme_block(markdown(results), "nir-backends", readme)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--readme", action="store_true",
                   help="only write docs/results/nir-importers.md's block from nir_backends.json")
    p.add_argument("--peers", nargs="+", default=list(PEERS), choices=list(PEERS))
    args = p.parse_args()
    if args.readme:
        return write_readme(json.loads((OUT / "nir_backends.json").read_text()))
    from export.nir_io import DT
    results = measure(peers=tuple(args.peers))
    results["meta"] = {"command": "python benchmarks/nir_backends.py " + " ".join(sys.argv[1:]),
                       "machine": machine_info(), "dt": DT}
    results = json.loads(json.dumps(results))  # the markdown is rendered from what the JSON holds
    write_results(OUT, "nir_backends", results, markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
