"""Report files: schema, valid PNG/SVG/PDF figures, self-contained HTML, byte-identical
re-runs."""
import base64
import json
import re

import numpy as np
import pytest
import torch
import torch.nn as nn

from export.graph import Connection, DeployGraph, NeuronLayer, run_float
from hardware.energy import (Conventions, analyze_graph, count_teacher, load_profile,
                             teacher_macs)
from hardware.report import (PLOT_FILES, SCHEMA, build_report, make_report, run_entry,
                             written_files)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tiny_graph():
    rng = np.random.default_rng(0)
    mk = lambda name, shape, conns, spiking=True: NeuronLayer(  # noqa: E731
        name, shape, tuple(conns), 0.0, 0.0, 0.5, 0.4, spiking)
    a = mk("conv1", (4, 6, 6), [Connection("input", "conv", rng.normal(size=(4, 1, 3, 3)),
                                           (1, 1), (1, 1))])
    b = mk("conv2", (4, 6, 6), [Connection("conv1", "conv", rng.normal(size=(4, 4, 3, 3)),
                                           (1, 1), (1, 1)),
                                Connection("conv1", "conv", np.eye(4)[:, :, None, None])])
    p = mk("pool", (4, 3, 3), [Connection("conv2", "avgpool", kernel=(2, 2))])
    out = mk("fc", (3,), [Connection("pool", "dense", rng.normal(size=(3, 36)))], False)
    return DeployGraph((1, 6, 6), (a, b, p, out), time_steps=4)


def teacher():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                         nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(36, 3))


def inputs():
    g = torch.Generator().manual_seed(3)
    img = torch.rand(1, 6, 1, 6, 6, generator=g, dtype=torch.float64)
    return img.repeat(4, 1, 1, 1, 1)  # direct encoding: the image at every step


def png_size(data: bytes):
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def figure_files(plots):
    """Every file of the figures whose PNGs are ``plots``: PNG, SVG and PDF."""
    return [p[:-4] + ext for p in plots for ext in (".png", ".svg", ".pdf")]


def run(out, **kw):
    g = tiny_graph()
    x = inputs()
    _, rec = run_float(g, x, record=True)
    args = dict(teacher=teacher(), accuracy={"student": 0.9, "teacher": 0.95},
                records={"lava": rec},
                runs=[{"name": "baseline", "accuracy": 0.8,
                       "energy_pj": {"cmos45nm_fp32": 2.0e4, "loihi": 9.0e4}}],
                meta={"run": "test", "dataset": "digits"}, html=True)
    args.update(kw)
    return make_report(out, g, x, **args)


def test_report_files_and_schema(tmp_path):
    rep = run(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["report.json", "report.md", "report.html",
                            *figure_files(PLOT_FILES)])
    assert sorted(rep["files"]["written"]) == names
    assert written_files(rep, tmp_path) == [tmp_path / n for n in rep["files"]["written"]]
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(rep))
    assert on_disk["schema"] == SCHEMA == "kdsnn.report/2"
    for key in ("title", "meta", "conventions", "profile_order", "student", "teacher",
                "layer_match", "accuracy", "energy", "by_convention", "ratio_range", "runs",
                "files"):
        assert key in on_disk
    assert on_disk["conventions"]["applied"] == Conventions().to_dict()
    assert [s["label"] for s in on_disk["student"]] == ["float", "lava"]
    fl = on_disk["student"][0]
    assert [l["name"] for l in fl["layers"]] == ["conv1", "conv2", "pool", "fc"]
    for key in ("neurons", "spikes", "spikes_per_step", "firing_rate", "synops_in", "macs_in",
                "neuron_updates", "active_updates", "synops_by_source", "spikes_by_step",
                "rate_histogram", "raster"):
        assert key in fl["layers"][0]
    assert len(fl["layers"][0]["spikes_by_step"]) == 4
    hist = fl["layers"][0]["rate_histogram"]
    assert sum(hist["counts"]) == fl["layers"][0]["neurons"]
    # 6x6 input, 3x3 pad 1, 1 -> 4 channels: 4 * (2+3+3+3+3+2)**2 = 1024 in-bounds taps,
    # charged once (the input repeats); the teacher's first conv is the same layer
    assert fl["totals"]["macs"] == fl["layers"][0]["macs_in"] == 1024
    first = on_disk["teacher"]["layers"][0]
    assert (first["in_bounds"], first["padded"]) == (1024, 36 * 4 * 9)
    assert on_disk["teacher"]["macs"] == sum(teacher_macs(teacher(), (1, 6, 6)).values())
    assert on_disk["teacher"]["macs_padded"] == sum(
        teacher_macs(teacher(), (1, 6, 6), Conventions(padding="counted")).values())
    assert on_disk["profile_order"] == ["cmos45nm_fp32", "cmos45nm_int8", "loihi"]
    for prof in on_disk["profile_order"]:
        blk = on_disk["energy"][prof]
        assert blk["profile"]["source"] == load_profile(prof).source
        charged = "cmos45nm_fp32" if prof == "loihi" else prof
        assert blk["teacher"]["charged_as"] == charged
        assert blk["teacher"]["total_pj"] == pytest.approx(
            on_disk["teacher"]["macs"] * load_profile(charged).e_mac_pj)
        st = blk["student"][0]
        assert st["teacher_over_student"] == pytest.approx(
            blk["teacher"]["total_pj"] / st["total_pj"])
    grid = on_disk["by_convention"]
    assert len(grid) == 8 and grid[0]["conventions"] == Conventions().to_dict()
    per_step = next(g for g in grid if g["conventions"]["first_layer"] == "per_step"
                    and g["conventions"]["padding"] == "in_bounds"
                    and g["conventions"]["zero_input"] == "counted")
    assert per_step["student_macs"] == 4 * 1024
    lo, hi = on_disk["ratio_range"]["cmos45nm_fp32"]
    assert lo < hi
    match = {r["layer"]: r["teacher"] for r in on_disk["layer_match"]}
    assert list(match)[:4] == ["conv1", "conv2", "pool", "fc"]
    assert on_disk["files"]["plots"] == list(PLOT_FILES)
    md = (tmp_path / "report.md").read_text()
    assert md.index("## Summary") < md.index("## Contents") < md.index("## Accuracy")
    assert "| conv2 |" in md and "student SynOps vs teacher MACs" in md and "| loihi |" in md
    assert "Spike records side by side" in md and "Teacher / student by convention" in md
    assert "### Profile loihi" in md and "27.1" in md  # the profile's notes are printed
    assert "| ANN teacher | cmos45nm_fp32 |" in md  # the teacher bar says what it is
    assert "[definitions](#conventions)" in md and "\n## Conventions\n" in md
    for name in on_disk["files"]["plots"]:
        w, h = png_size((tmp_path / name).read_bytes())
        assert w > 300 and h > 300
        assert (tmp_path / name.replace(".png", ".svg")).read_bytes().startswith(b"<?xml")
        assert (tmp_path / name.replace(".png", ".pdf")).read_bytes().startswith(b"%PDF")


def test_pngs_decode_and_html_self_contained(tmp_path):
    import matplotlib.image as mpimg
    rep = run(tmp_path)
    for name in rep["files"]["plots"]:
        img = mpimg.imread(tmp_path / name)
        assert img.ndim == 3 and img.shape[0] > 100
    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"(src|href)\s*=\s*[\"'](?!data:|#)", page)  # nothing external
    assert "http://" not in page and "https://" not in page
    srcs = re.findall(r'src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(srcs) == len(rep["files"]["plots"]) == page.count("<figcaption>")
    assert {base64.b64decode(b) for b in srcs} == {
        (tmp_path / n.replace(".png", ".svg")).read_bytes() for n in rep["files"]["plots"]}
    assert "<table>" in page and "conv2" in page
    assert (page.index('id="summary"') < page.index("Conventions: padding in_bounds") <
            page.index("<nav class=\"toc\">") < page.index('id="accuracy"'))
    assert "Profile loihi" in page and "Davies" in page


def test_byte_identical_rerun(tmp_path):
    run(tmp_path / "a")
    run(tmp_path / "b")
    run(tmp_path / "a")  # overwrite in place
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".")]  # no temp files
    for name in files:
        data = (tmp_path / "a" / name).read_bytes()
        if name.endswith(".png"):
            assert b"Software" not in data and b"tIME" not in data
        if name.endswith(".pdf"):
            assert b"/CreationDate" not in data
        if name.endswith(".svg"):
            assert b"<dc:date>" not in data


def test_minimal_report_and_stale_files(tmp_path):
    run(tmp_path)
    g = tiny_graph()
    stats = analyze_graph(g, inputs())
    rep = build_report(tmp_path, stats, profiles=["cmos45nm"])  # the old name still works
    assert rep["teacher"] is None and rep["accuracy"] == {} and rep["files"]["html"] is None
    assert rep["energy"]["cmos45nm_fp32"]["student"][0]["teacher_over_student"] is None
    assert rep["by_convention"] == []
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(figure_files(["energy.png", "firing_rate.png", "ops_per_layer.png",
                                         "firing_heatmap.png", "spike_raster.png",
                                         "rate_distribution.png"]) +
                           ["report.json", "report.md"])
    assert sorted(rep["files"]["written"]) == names
    assert "Lava == emulation bit for bit: not checked" in (tmp_path / "report.md").read_text()


def test_run_entry_and_validation(tmp_path, tmp_path_factory):
    rep = run(tmp_path)
    entry = run_entry(json.loads((tmp_path / "report.json").read_text()), "kd-T4")
    assert entry["accuracy"] == 0.9
    assert entry["energy_pj"]["loihi"] == rep["energy"]["loihi"]["student"][0]["total_pj"]
    old = run_entry({"schema": "kdsnn.report/1", "accuracy": {"student": 0.7},  # older runs
                     "energy": {"cmos45nm": {"student": [{"total_pj": 5.0}]}}}, "old")
    assert old == {"name": "old", "accuracy": 0.7, "energy_pj": {"cmos45nm_fp32": 5.0}}
    with pytest.raises(ValueError):
        run_entry({"schema": "other/1"}, "x")
    with pytest.raises(ValueError, match="fraction"):
        run(tmp_path_factory.mktemp("bad"), accuracy={"student": 93.0})


def test_neurobench_block_and_preset(tmp_path):
    from hardware.energy import neurobench_metrics, parse_conventions
    conv = parse_conventions(["neurobench"])
    rep = run(tmp_path / "r", html=False, runs=None, conventions=conv)
    nb = rep["neurobench"]
    assert nb["record"] == "float" and nb["version"] == "2.3.0"
    want = neurobench_metrics(analyze_graph(tiny_graph(), inputs()))
    assert nb["layers"] == json.loads(json.dumps(want["layers"]))
    assert nb["total"]["Dense"] == sum(l["Dense"] for l in nb["layers"])
    assert set(nb["other_records"]) == {"lava"}
    assert nb["other_records"]["lava"]["Effective_ACs"] == nb["total"]["Effective_ACs"]
    md = (tmp_path / "r" / "report.md").read_text()
    assert "## NeuroBench" in md and "Effective_MACs" in md
    assert rep["conventions"]["applied"]["membrane"] == "changed"
    for blk in rep["energy"].values():  # the readout's accumulators are not charged
        assert blk["student"][0]["layers"][-1]["neuron_pj"] == 0.0


def deep_chain(n_layers=60, relays=6):
    """A 60-layer chain of small convs; the last ``relays`` layers also get a relay copy."""
    rng = np.random.default_rng(1)
    layers, src = [], "input"
    for k in range(n_layers):
        name = f"layer{k // 2 + 1}.0.lif{k % 2 + 1}"
        w = rng.normal(size=(2, 1 if k == 0 else 2, 3, 3))
        layers.append(NeuronLayer(name, (2, 4, 4), (Connection(src, "conv", w, (1, 1), (1, 1)),),
                                  0.05, 0.0, 0.5, 0.3))
        src = name
    layers.append(NeuronLayer("fc", (3,), (Connection(src, "dense", rng.normal(size=(3, 32))),),
                              0.0, 0.0, 0.0, 0.0, False))
    return DeployGraph((1, 4, 4), tuple(layers), time_steps=4)


def test_plots_stay_bounded_and_aligned_at_60_layers(tmp_path):
    from hardware.report_energy import is_relay, match_layers
    g = deep_chain()
    x = torch.rand(4, 2, 1, 4, 4, generator=torch.Generator().manual_seed(0),
                   dtype=torch.float64)
    torch_stats = analyze_graph(g, x, source="torch")
    # a record with relay layers (as a latency-balanced Lava run has): SRC.relay1 copies SRC
    relayed = list(g.layers[:-1])
    for l in g.layers[10:16]:
        relayed.append(NeuronLayer(f"{l.name}.relay1", l.shape,
                                   (Connection(l.name, "sumpool", kernel=(1, 1)),),
                                   0.0, 0.0, 0.0, 0.5))
    g2 = DeployGraph(g.input_shape, tuple(relayed) + (g.layers[-1],), time_steps=4)
    _, rec = run_float(g2, x, record=True)
    lava = analyze_graph(g2, x, spikes=rec, source="lava")
    teacher = nn.Sequential()
    teacher.add_module("stem", nn.Conv2d(1, 2, 3, padding=1))
    rep = build_report(tmp_path, {"torch": torch_stats, "lava": lava}, html=False,
                       teacher_macs=count_teacher(teacher, (1, 4, 4)))
    for name in rep["files"]["plots"]:
        w, h = png_size((tmp_path / name).read_bytes())  # 300 dpi: inches x 300
        assert w <= 16 * 300 and h <= 15 * 300, (name, w, h)
    assert is_relay("layer6.0.lif1.relay1") and not is_relay("layer6.0.lif1")
    rows = match_layers(rep["student"][1], None, Conventions())
    assert [r["layer"] for r in rows] == [l.name for l in g.layers]  # relays folded in
    folded = next(r for r in rows if r["layer"] == g.layers[10].name)
    assert folded["relays"] == 1 and folded["student_synops"] == pytest.approx(
        lava[g.layers[10].name].synops_in + lava[f"{g.layers[10].name}.relay1"].synops_in)


def test_teacher_modules_pair_by_block():
    from hardware.energy import TeacherLayer, TeacherStats
    from hardware.report_energy import match_layers
    student = {"layers": [{"name": n, "synops_in": 1.0, "macs_in": 0.0} for n in
                          ("stem", "layer2.0.lif1", "layer2.0.lif2", "fc")]}
    names = ("stem.conv", "layer2.0.conv1.conv", "layer2.0.conv2.conv",
             "layer2.0.shortcut.conv", "head.fc", "extra.proj")
    teacher = TeacherStats(tuple(TeacherLayer(n, 10, 12) for n in names))
    rows = {r["layer"]: r["teacher_modules"] for r in match_layers(student, teacher,
                                                                    Conventions())}
    assert rows == {"stem": ["stem.conv"], "layer2.0.lif1": ["layer2.0.conv1.conv"],
                    "layer2.0.lif2": ["layer2.0.conv2.conv", "layer2.0.shortcut.conv"],
                    "fc": ["head.fc"], "extra.proj": ["extra.proj"]}
