"""The recurrent worked example's figures (issue 30, item 2): generated from
benchmarks/results/recurrent_fmnist.json by ``benchmarks/recurrent_fmnist.py --table``, and
what they must show: the imported snntorch RLeaky gives snntorch's classes, its Loihi
fixed-point accuracy is kept, and Lava's stock models equal the emulation bit for bit."""
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def test_the_block_is_generated_from_the_results_file():
    sys.path.insert(0, str(ROOT))
    sys.path.append(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("recurrent_fmnist_bench",
                                                  ROOT / "benchmarks" / "recurrent_fmnist.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    obj = json.loads((RESULTS / "recurrent_fmnist.json").read_text())
    assert mod.markdown(obj) == (RESULTS / "recurrent_fmnist.md").read_text()


def test_accuracy_kept_and_lava_bit_exact():
    obj = json.loads((RESULTS / "recurrent_fmnist.json").read_text())
    acc = obj["accuracy"]
    assert acc["kdsnn_float_same_class_as_snntorch"] >= 0.999
    assert abs(acc["kdsnn_float"] - acc["snntorch"]) <= 0.001
    assert acc["loihi_emulation"] >= acc["snntorch"] - 0.01
    assert acc["snntorch"] > 0.7  # it learned the task (10 classes: chance 0.1)
    assert obj["lava"]["bit_exact"] is True and obj["lava"]["samples"] >= 32
    assert obj["setup"]["test_samples"] == 10000
