"""scripts/readme_ablation.py: the README's ablation table is generated from the result file."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kd_snn import ablate

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "readme_ablation.py"
RESULTS = ROOT / "benchmarks" / "results" / "ablation_converged.json"
BEGIN, END = "<!-- ablation:begin -->", "<!-- ablation:end -->"


def result_file(path: Path) -> Path:
    """The fields of an ablation.json that the script reads, with known numbers."""
    summary = ablate.compare({"none": ablate.stats([0.80, 0.81, 0.82]),
                              "samd_nld": ablate.stats([0.83, 0.84, 0.85]),
                              "nld": ablate.stats([0.80, 0.82, 0.81])})
    for s in summary.values():
        s["best"] = ablate.stats(s["values"])
    detail = {"mode": "spiking", "time_steps": 4, "summary": summary, "curves": {"none": [0.7, 0.8, 0.81]},
              "budget": {"train_samples": 5000, "batch_size": 32,
                         "student": {"epochs": 3, "optimizer": "adamw", "lr": 0.01,
                                     "scheduler": "cosine"}}}
    obj = {"finished_runs": 9, "total_runs": 9, "complete": True, "seeds": [0, 1, 2],
           "jobs": 2, "threads_per_job": 1,
           "teacher": {"model": "cnn", "width": 1, "epochs": 20, "test_accuracy": 0.91,
                       "train_samples": "all",
                       "curve": [0.85, 0.91]},
           "datasets_detail": {"fashion_mnist": detail}}
    path.write_text(json.dumps(obj))
    return path


def run(results: Path, readme: Path):
    return subprocess.run([sys.executable, str(SCRIPT), "--results", str(results), "--readme",
                           str(readme)], capture_output=True, text=True, timeout=60)


def test_block_is_rewritten_from_the_file(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\n\n{BEGIN}\nstale\n{END}\n\nafter\n")
    proc = run(result_file(tmp_path / "a.json"), readme)
    assert proc.returncode == 0, proc.stderr
    text = readme.read_text()
    assert "stale" not in text and text.endswith(f"{END}\n\nafter\n")
    row = next(ln for ln in text.splitlines() if ln.startswith("| samd_nld |"))
    assert "84.00 ± 1.00" in row and "+3.00" in row and "| yes |" in row
    nld = next(ln for ln in text.splitlines() if ln.startswith("| nld |"))
    assert "| no |" in nld
    assert "70.0 → 80.0 → 81.0; its last 1 epochs lie within 0.0 pp" in text
    assert "91.00 %" in text and "the full training split" in text and "T = 4" in text
    assert "better than no KD beyond 2 SE: `samd_nld` (+3.00)" in text


def test_bad_inputs_leave_the_readme(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    proc = run(result_file(tmp_path / "a.json"), readme)
    assert proc.returncode == 2 and "readme_ablation: error:" in proc.stderr
    assert readme.read_text() == "# no markers\n"
    proc = run(result_file(tmp_path / "a.json"), tmp_path / "missing.md")
    assert proc.returncode == 2 and "cannot read" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "bad.json").write_text("{}")
    readme.write_text(f"{BEGIN}\nx\n{END}\n")
    proc = run(tmp_path / "bad.json", readme)
    assert proc.returncode == 2 and "not a kdsnn ablation result" in proc.stderr
    assert readme.read_text() == f"{BEGIN}\nx\n{END}\n"


@pytest.mark.skipif(not RESULTS.is_file(), reason="no converged ablation results committed")
def test_readme_matches_the_committed_results(tmp_path):
    """The shipped README's table is exactly what the shipped result file generates."""
    copy = tmp_path / "README.md"
    copy.write_text((ROOT / "README.md").read_text())
    proc = run(RESULTS, copy)
    assert proc.returncode == 0, proc.stderr
    assert copy.read_text() == (ROOT / "README.md").read_text(), \
        "README ablation block is stale: run scripts/readme_ablation.py"
