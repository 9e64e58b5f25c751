"""The report's accuracy groups (like with like), the summary card, the rerun guard and the
figures' colours and raster: pure helpers and one small report."""
import json
import re

import pytest
import torch

from export.graph import run_float
from hardware.energy import RASTER_NEURONS, analyze_graph
from hardware.report import (accuracy_groups, build_report, dropped_by_rerun, run_entry,
                             written_files)
from hardware.report_format import MODEL_COLORS, column_unit, fmt_in, is_numeric, model_color
from tests.test_report import inputs, tiny_graph

#: metrics.json of make demo's run (the numbers of issue 29)
METRICS = {
    "teacher": {"test_accuracy": 0.988889}, "student": {"test_accuracy": 0.969444},
    "quantized": {"float": 0.9694444444444444, "quantized": 0.9777777777777777,
                  "agreement": 0.9889, "samples": 360},
    "parity": {"accuracy": {"float": 0.95, "emulation": 0.95, "lava": 0.95}, "samples": 60,
               "bit_exact": True}}


def test_accuracy_groups_from_metrics():
    groups = accuracy_groups(METRICS, teacher_same_samples=59 / 60)
    assert list(groups) == ["same_samples", "full_split"]
    assert groups["same_samples"] == {"n": 60, "teacher": 59 / 60, "float": 0.95,
                                      "emulation": 0.95, "lava": 0.95, "bit_exact": True}
    assert groups["full_split"] == {"n": 360, "teacher": 0.988889,
                                    "float": 0.9694444444444444,
                                    "emulation": 0.9777777777777777}
    # export's pass on fewer samples than the split: a group of its own
    part = accuracy_groups(METRICS, test_split_size=400)
    assert part["full_split"] == {"n": 400, "teacher": 0.988889, "float": 0.969444}
    assert part["export_samples"]["n"] == 360 and "teacher" not in part["same_samples"]
    assert accuracy_groups({}) == {}
    assert list(accuracy_groups({"teacher": {"test_accuracy": 0.9}})) == ["full_split"]
    # parity's cached full-split emulation when export's is missing
    alt = accuracy_groups({"parity": {**METRICS["parity"], "emulation_full_test": {
        "float": 0.9, "quantized": 0.91, "samples": 360}}})
    assert alt["full_split"] == {"n": 360, "float": 0.9, "emulation": 0.91}


@pytest.fixture(scope="module")
def stats():
    g = tiny_graph()
    return {"torch": analyze_graph(g, inputs(), source="torch"),
            "lava": analyze_graph(g, inputs(), source="lava")}


def test_groups_in_report_summary_and_figures(tmp_path, stats):
    acc = accuracy_groups(METRICS, teacher_same_samples=59 / 60)
    rep = build_report(tmp_path, stats, accuracy=acc, html=True, profiles=["loihi"])
    groups = {g["key"]: g for g in rep["accuracy_groups"]}
    assert [m["model"] for m in groups["same_samples"]["models"]] == [
        "teacher", "float", "emulation", "lava"]
    assert all(m["n"] == 60 for m in groups["same_samples"]["models"])
    assert groups["full_split"]["label"] == "full test split (360 samples)"
    # the flat entries older readers use: the full split first, Lava from parity's samples
    assert rep["accuracy"]["student"]["value"] == pytest.approx(0.9694444444444444)
    assert rep["accuracy"]["lava"]["note"] == "same 60 test samples (parity's) (n = 60)"
    entry = run_entry(json.loads((tmp_path / "report.json").read_text()), "demo")
    assert entry["accuracy"] == pytest.approx(0.9694444444444444) and entry["n"] == 360
    # this run's accuracy-vs-energy points: all from one group (the full split)
    pts = rep["accuracy_vs_energy"]
    assert pts["group"] == "full_split"
    assert [p["model"] for p in pts["points"]] == ["float", "emulation"]  # no teacher counted
    assert pts["points"][1]["energy_record"] == "lava"  # the emulation's integer network
    md = (tmp_path / "report.md").read_text()
    head = md.split("## Contents")[0]
    assert "Lava == emulation bit for bit: yes on 60 samples" in head
    assert ("Accuracy, same 60 test samples (parity's): ANN teacher 98.33%, float student "
            "95.00%, integer emulation 95.00%, Lava fixed_pt 95.00% (n = 60 each)") in head
    assert "| same 60 test samples (parity's) | Lava fixed_pt | 60 | 95.00 | -3.33 |" in md
    assert "*Figure 1.* Accuracy by sample set, same 60 test samples" in md
    assert "![Figure 1: accuracy](accuracy.png)" in md and "[PDF](accuracy.pdf)" in md
    page = (tmp_path / "report.html").read_text()
    assert page.count("<figure") == page.count("<figcaption>") == len(rep["files"]["plots"])
    assert "accuracy.png" in rep["files"]["plots"]


def test_legacy_accuracy_form_still_read(tmp_path, stats):
    rep = build_report(tmp_path, stats, profiles=["loihi"], accuracy={
        "teacher": {"value": 0.98, "note": "test split (metrics)"},
        "student": {"value": 0.96, "note": "test split (metrics)"},
        "quantized": {"value": 0.97, "note": "360 test images (quantized)"},
        "lava": 0.95})
    assert rep["accuracy"]["lava"] == {"value": 0.95, "note": ""}
    labels = [(g["label"], [m["model"] for m in g["models"]]) for g in rep["accuracy_groups"]]
    assert labels == [("test split (metrics)", ["teacher", "float"]),
                      ("360 test images (quantized)", ["emulation"]),
                      ("sample set not stated", ["lava"])]


@pytest.mark.parametrize("acc,message", [
    ({"same_samples": {"n": 60, "lava": 95.0}}, "fraction"),
    ({"same_samples": {"n": 0, "lava": 0.9}}, "positive whole number"),
    ({"same_samples": {"n": 60, "ann": 0.9}}, "unknown model"),
    ({"same_samples": {"n": 60, "lava": 0.9, "bit_exact": "yes"}}, "bit_exact"),
    ({"student": "high"}, "fraction"),
])
def test_bad_accuracy_is_one_line_and_writes_nothing(tmp_path, stats, acc, message):
    with pytest.raises(ValueError, match=message) as err:
        build_report(tmp_path / "r", stats, accuracy=acc)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").iterdir())


def test_dropped_by_rerun():
    old = {"schema": "kdsnn.report/2", "student": [{"label": "torch"}, {"label": "lava"}],
           "profile_order": ["cmos45nm_fp32", "loihi"], "runs": [{"name": "runs/base"}],
           "files": {"html": "report.html"}}
    assert dropped_by_rerun(old, {"torch", "lava"}) is None
    msg = dropped_by_rerun(old, {"torch"})
    assert msg == ("this rerun would drop the lava spike record (its energy, SynOps and "
                   "firing-rate columns, Lava energy in every profile) from the report in "
                   "place; pass --source both to keep it")
    msg = dropped_by_rerun(old, {"torch", "lava"}, html=False, profiles=["cmos45nm"],
                           compare=[])
    assert "report.html" in msg and "--html" in msg and "--profile cmos45nm loihi" in msg
    assert "--compare runs/base" in msg and msg.count("\n") == 0
    assert dropped_by_rerun(old, {"torch", "lava"}, html=True, profiles=["cmos45nm",
                            "loihi"], compare=["runs/base"]) is None
    assert dropped_by_rerun({"schema": "other"}, {"torch"}) is None
    only_lava = {"schema": "kdsnn.report/2", "student": [{"label": "lava"}]}
    assert "--source both" in dropped_by_rerun(only_lava, {"torch"})
    made_by_api = {"schema": "kdsnn.report/2", "student": [{"label": "float"}]}
    assert dropped_by_rerun(made_by_api, {"torch"}) is None
    assert "--source both" in dropped_by_rerun(made_by_api, {"lava"})


def test_written_files_and_columns(tmp_path, stats):
    rep = build_report(tmp_path, stats, profiles=["loihi"], html=False)
    on_disk = sorted(p.name for p in tmp_path.iterdir())
    assert sorted(p.name for p in written_files(rep, tmp_path)) == on_disk
    assert written_files(rep)[-1].name == "report.json"
    # one unit per column, no exponent, numbers right and words left
    unit, scale = column_unit([71_240.0, 2.159e6, None])
    assert (unit, scale) == ("µJ", 1e6)
    assert [fmt_in(v, scale) for v in (71_240.0, 2.159e6, 0.0)] == ["0.07124", "2.159", "0"]
    assert all(is_numeric(c) for c in ("1,024", "97.78", "-3.33", "5.33x", "20.96%", "n/a"))
    assert not any(is_numeric(c) for c in ("conv1", "ANN teacher", "cmos45nm_fp32"))
    md = (tmp_path / "report.md").read_text()
    energy = md.split("### Profile loihi")[1].split("\n\n")[1].splitlines()
    assert energy[0].startswith("| model | charged as | SynOps (")
    units = set(re.findall(r"\((pJ|nJ|µJ|mJ)\)", energy[0]))
    assert len(units) == 1, units  # a row adds up: one unit in the whole table
    assert energy[1].startswith("|:---|:---|---:|")
    assert not any(u in cell for line in energy[2:] for cell in line.split("|")[3:]
                   for u in ("pJ", "nJ", "µJ"))


def test_one_colour_per_model():
    assert len(set(MODEL_COLORS.values())) == 4
    assert model_color("torch") == model_color("float") == MODEL_COLORS["float"]
    assert model_color("lava") == MODEL_COLORS["lava"]
    assert model_color("emulate") == model_color("quantized") == MODEL_COLORS["emulation"]
    assert model_color("other") not in MODEL_COLORS.values()


def _raster_of(conv1_spikes):
    """The raster analyze_graph keeps for conv1 (4 x 6 x 6) when it spikes as given."""
    g, x = tiny_graph(), inputs()[:, :conv1_spikes.shape[1]]
    _, rec = run_float(g, x, record=True)
    rec["conv1"] = conv1_spikes.reshape(4, -1, 4, 6, 6).double()
    return analyze_graph(g, x, spikes=rec, source="lava")["conv1"].raster


def test_raster_shows_spiking_neurons_across_their_activity():
    spk = torch.zeros(4, 2, 144)
    spk[:, 0, 37] = 1  # spikes at every step
    spk[:2, 0, 80] = 1
    spk[3, 0, 5] = 1
    spk[:, 1, 0] = 1  # sample 1 does not count
    r = _raster_of(spk)
    assert r["neurons"][:3] == [37, 80, 5] and len(r["neurons"]) == RASTER_NEURONS
    assert r["active"] == 3 and r["selection"] == "active_by_rank"
    assert r["spike_steps"][:3] == [[0, 1, 2, 3], [0, 1], [3]]
    # fewer spike than are shown: then silent ones, lower index first
    assert r["neurons"][3:] == [i for i in range(RASTER_NEURONS) if i != 5][:RASTER_NEURONS - 3]
    # many spike: evenly spaced ranks, from the busiest to the quietest spiking neuron
    spk = torch.zeros(4, 1, 144)
    for i in range(48):
        spk[: 1 + i % 4, 0, 3 * i] = 1  # 48 active neurons, 1 to 4 spikes each
    r = _raster_of(spk)
    counts = [len(s) for s in r["spike_steps"]]
    assert r["active"] == 48 and len(counts) == RASTER_NEURONS and min(counts) >= 1
    assert counts[0] == 4 and counts[-1] == 1 and counts == sorted(counts, reverse=True)
