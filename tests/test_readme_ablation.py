"""scripts/readme_ablation.py: the docs' ablation and claims tables (docs/results/) are
generated from the result files."""
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


ACC = {"none": [0.80, 0.81, 0.82], "samd_nld": [0.83, 0.84, 0.85], "nld": [0.80, 0.82, 0.81]}


def result_file(path: Path, reference=None, missing=()) -> Path:
    """The fields of an ablation.json that the script reads, with known numbers."""
    summary = ablate.compare({v: ablate.stats(a) for v, a in ACC.items()})
    for s in summary.values():
        s["best"] = ablate.stats(s["values"])
    detail = {"mode": "spiking", "time_steps": 4, "summary": summary, "curves": {"none": [0.7, 0.8, 0.81]},
              "missing": list(missing),
              "budget": {"train_samples": 5000, "batch_size": 32,
                         "student": {"epochs": 3, "optimizer": "adamw", "lr": 0.01,
                                     "scheduler": "cosine"}}}
    runs = [{"data": "fashion_mnist", "group": "fashion_mnist", "variant": v, "seed": k,
             "status": "done", "test_accuracy": a} for v, accs in ACC.items()
            for k, a in enumerate(accs)]
    obj = {"finished_runs": 9, "total_runs": 9 + len(missing), "complete": not missing,
           "seeds": [0, 1, 2], "jobs": 2, "threads_per_job": 1, "reference": reference,
           "teacher": {"model": "cnn", "width": 1, "epochs": 20, "test_accuracy": 0.91,
                       "train_samples": "all",
                       "curve": [0.85, 0.91]},
           "datasets_detail": {"fashion_mnist": detail}, "runs": runs}
    path.write_text(json.dumps(ablate.refresh(obj)))
    return path


def run(results: Path, readme: Path):
    return subprocess.run([sys.executable, str(SCRIPT), "--results", str(results), "--page",
                           str(readme)], capture_output=True, text=True, timeout=60)


def test_block_is_rewritten_from_the_file(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\n\n{BEGIN}\nstale\n{END}\n\nafter\n")
    proc = run(result_file(tmp_path / "ablation_converged.json"), readme)
    assert proc.returncode == 0, proc.stderr
    text = readme.read_text()
    assert "stale" not in text and text.endswith(f"{END}\n\nafter\n")
    row = next(ln for ln in text.splitlines() if ln.startswith("| samd_nld |"))
    # paired: differences 3, 3, 3 pp (sd 0: a point interval); nld: 0, 1, -1 pp
    assert "84.00 ± 1.00" in row and "+3.00" in row and "| yes |" in row
    assert "| +3.00 [+3.00, +3.00] | 3 / 0 / 0 |" in row
    nld = next(ln for ln in text.splitlines() if ln.startswith("| nld |"))
    assert "| no |" in nld and "| +0.00 [-2.48, +2.48] | 1 / 1 / 1 |" in nld
    assert "70.0 → 80.0 → 81.0; its last 1 epochs lie within 0.0 pp" in text
    assert "91.00 %" in text and "the full training split" in text and "T = 4" in text
    assert "better than no KD beyond 2 SE: `samd_nld` (+3.00)" in text
    assert "paired 95 % interval above `none`: `samd_nld` (+3.00, 3/3 seeds above)" in text
    assert "Not finished" not in text and "Paired against" not in text


def test_every_result_file_has_its_block(tmp_path):
    """ablation_NAME.json fills the ablation_NAME markers; a reference variant gets its
    paired table; unfinished runs are named; the README is written only if all succeed."""
    begin, end = "<!-- ablation_scaling:begin -->", "<!-- ablation_scaling:end -->"
    readme = tmp_path / "README.md"
    readme.write_text(f"{BEGIN}\nold\n{END}\n{begin}\nold\n{end}\n")
    conv = result_file(tmp_path / "ablation_converged.json")
    scaling = result_file(tmp_path / "ablation_scaling.json", reference="samd_nld",
                          missing=["samd_nld_l2 seed 2"])
    proc = subprocess.run([sys.executable, str(SCRIPT), "--results", str(conv), "--results",
                           str(scaling), "--page", str(readme)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = readme.read_text()
    first, second = text.split(begin)
    assert "Paired against" not in first and "old" not in text
    assert "9/10 runs, incomplete" in second and "Paired against `samd_nld`:" in second
    assert "| none | 3 | -3.00 [-3.00, -3.00] | 0 / 3 / 0 |" in second
    assert "Not finished yet (1 runs): samd_nld_l2 seed 2." in second
    readme.write_text(f"{BEGIN}\nold\n{END}\n")  # no scaling markers: nothing written
    proc = subprocess.run([sys.executable, str(SCRIPT), "--results", str(conv), "--results",
                           str(scaling), "--page", str(readme)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "ablation_scaling:begin" in proc.stderr
    assert readme.read_text() == f"{BEGIN}\nold\n{END}\n"


def test_bad_inputs_leave_the_readme(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    proc = run(result_file(tmp_path / "ablation_converged.json"), readme)
    assert proc.returncode == 2 and "readme_ablation: error:" in proc.stderr
    assert readme.read_text() == "# no markers\n"
    proc = run(result_file(tmp_path / "ablation_converged.json"), tmp_path / "missing.md")
    assert proc.returncode == 2 and "cannot read" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "ablation_converged.json").write_text("{}")
    readme.write_text(f"{BEGIN}\nx\n{END}\n")
    proc = run(tmp_path / "ablation_converged.json", readme)
    assert proc.returncode == 2 and "not a kdsnn ablation result" in proc.stderr
    assert readme.read_text() == f"{BEGIN}\nx\n{END}\n"


@pytest.mark.skipif(not RESULTS.is_file(), reason="no converged ablation results committed")
def test_docs_match_the_committed_results(tmp_path):
    """The shipped docs pages' tables are exactly what the shipped result files generate
    (every committed benchmarks/results/ablation_{converged,scaling,spikformer,events}.json,
    and the claims table from all of them)."""
    pages = [ROOT / "docs" / "results" / "ablation.md", ROOT / "docs" / "results" / "claims.md"]
    copies = []
    for page in pages:
        copies.append(tmp_path / page.name)
        copies[-1].write_text(page.read_text())
    proc = subprocess.run([sys.executable, str(SCRIPT), *(a for c in copies
                                                          for a in ("--page", str(c)))],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "ablation_converged.json" in proc.stdout and "claims:begin" in proc.stdout
    for page, copy in zip(pages, copies):
        assert copy.read_text() == page.read_text(), \
            f"{page.name}: an ablation block is stale: run scripts/readme_ablation.py"


def test_blocks_live_in_the_docs_not_the_readme():
    readme = (ROOT / "README.md").read_text()
    assert "<!-- ablation" not in readme and "<!-- claims:" not in readme


def test_committed_results_carry_the_paired_analysis():
    """The committed result files hold the paired analysis kdsnn ablate computes today."""
    for path in sorted(RESULTS.parent.glob("ablation_*.json")):
        obj = json.loads(path.read_text())
        if "datasets_detail" not in obj or path.stem == "ablation_fmnist":
            continue  # the one-epoch grid predates per-group details worth pairing
        fresh = ablate.refresh(json.loads(path.read_text()))
        for g, det in obj["datasets_detail"].items():
            assert det["paired"] == fresh["datasets_detail"][g]["paired"], path.name


def test_claims_rows_from_the_paired_intervals(tmp_path):
    """A claim holds where winner - loser's paired interval lies above 0, is reversed where
    it lies below, not shown where it includes 0; result files not there are 'not run yet'."""
    sys.path.insert(0, str(SCRIPT.parent))
    import readme_ablation as ra
    obj = json.loads(result_file(tmp_path / "x.json").read_text())
    text = ra.claims_block({"converged": obj})
    row = next(ln for ln in text.splitlines() if ln.startswith("| SAMD + NLD distils"))
    assert "84.00 vs 81.00 %: +3.00 [+3.00, +3.00] pp, 3/3 seeds | holds |" in row
    assert "| not run yet |" in next(ln for ln in text.splitlines()
                                     if ln.startswith("| softmax scaling of the maps"))
    assert "not testable here" in text and text.count("\n| ") == \
        len(ra.CLAIMS) + len(ra.NOT_TESTABLE) + 1
    assert ra.verdict({"ci95": [-0.03, -0.01]}) == "does not hold (reversed)"
    assert ra.verdict({"ci95": [-0.01, 0.01]}).startswith("not shown")
    assert ra.verdict({"ci95": None}).startswith("not decided")
