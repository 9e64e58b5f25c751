"""scripts/readme_results.py rewrites the demo's result block (docs/results/demo.md) from a demo
run's files; README.md quotes its most important figures from the docs' generated blocks."""
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "readme_results.py"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def synthetic_run(run: Path) -> Path:
    """What scripts/demo.sh leaves in RUN, cut down to the fields the script reads."""
    stage = {"model": "cnn", "seed": 0, "data": "digits", "time_steps": 4}
    write_json(run / "metrics.json", {
        "teacher": {**stage, "test_accuracy": 0.9111, "train_seconds": 21.4},
        "student": {**stage, "test_accuracy": 0.8222, "train_seconds": 63.0, "loss": "samd_nld"},
        "quantized": {"float": 0.8222, "quantized": 0.8333, "agreement": 0.97, "samples": 360},
        "parity": {"accuracy": {"float": 0.80, "emulation": 0.85, "lava": 0.85}, "samples": 60,
                   "bit_exact": True, "lava_samples_per_s": 1.234}})
    write_json(run / "parity/parity.json", {
        "jobs": 2, "conv_model": "lava", "prediction_agreement": {"float_vs_lava": 0.9667},
        "layers": [{"name": "conv1", "agreement": {"float_vs_lava": [1.0, 0.99, 0.98, 0.97]}},
                   {"name": "conv2", "agreement": {"float_vs_lava": [0.9, 0.9, 0.9, 0.9]}}]})
    energy = {"student": [{"total_pj": 620_000.0, "teacher_over_student": 4.516}],
              "teacher": {"total_pj": 2_800_000.0}}
    write_json(run / "report/report.json", {
        "meta": {"samples": 64}, "profile_order": ["cmos45nm", "loihi"],
        "student": [{"label": "torch",
                     "totals": {"synops": 370_000.0, "macs": 62_000.0, "firing_rate": 0.209}}],
        "teacher": {"macs": 610_000}, "energy": {"cmos45nm": energy, "loihi": energy}})
    return run


def readme_with_stale_block(path: Path) -> Path:
    path.write_text(f"# title\n\n## Results\n\n{BEGIN}\nstale figures: 1.00 %\n{END}\n\n"
                    "## Next section\n")
    return path


def regenerate(run: Path, readme: Path):
    return subprocess.run([sys.executable, str(SCRIPT), "--run", str(run), "--page",
                           str(readme), "--machine", "Test CPU, 2 cores"],
                          capture_output=True, text=True, timeout=60)


def test_block_is_regenerated_from_the_run(tmp_path):
    run = synthetic_run(tmp_path / "demo")
    readme = readme_with_stale_block(tmp_path / "README.md")
    proc = regenerate(run, readme)
    assert proc.returncode == 0, proc.stderr
    text = readme.read_text()
    head, rest = text.split(BEGIN)
    block, tail = rest.split(END)
    assert head == "# title\n\n## Results\n\n" and tail == "\n\n## Next section\n"
    words = " ".join(block.split())  # paragraphs are wrapped at any space
    assert "stale" not in words and "Test CPU, 2 cores" in words
    for figure in ("| ANN teacher (`cnn`) | all | 91.11 % |", "82.22 %", "| 360 | 83.33 % |",
                   "| 60 | 85.00 % — equal to the integer emulation bit for bit",
                   "agree on 96.67 %", "(conv1 / conv2): 98.5 / 90.0 %",
                   "0.37 M SynOps", "62 k MACs", "20.90 %", "0.61 M MACs",
                   "`cmos45nm` student 0.62 µJ vs teacher 2.8 µJ (teacher / student 4.52×)",
                   "teacher training 21 s", "1.234 samples/s with `--jobs 2`"):
        assert figure in words, figure
    assert "depend on the machine" in words and "CPU kind and the thread count" in words
    assert regenerate(run, readme).returncode == 0
    assert readme.read_text() == text  # idempotent


def test_missing_run_is_a_clear_error_and_leaves_the_readme(tmp_path):
    readme = readme_with_stale_block(tmp_path / "README.md")
    before = readme.read_text()
    proc = regenerate(tmp_path / "no-run", readme)
    assert proc.returncode == 2
    assert proc.stderr.startswith("readme_results: error: ") and "make demo" in proc.stderr
    assert readme.read_text() == before


def test_incomplete_run_and_missing_markers_are_named(tmp_path):
    run = synthetic_run(tmp_path / "demo")
    metrics = json.loads((run / "metrics.json").read_text())
    del metrics["parity"]
    write_json(run / "metrics.json", metrics)
    proc = regenerate(run, readme_with_stale_block(tmp_path / "README.md"))
    assert proc.returncode == 2 and "metrics.json has no ['parity']" in proc.stderr
    plain = tmp_path / "plain.md"
    plain.write_text("# no markers\n")
    proc = regenerate(synthetic_run(tmp_path / "demo2"), plain)
    assert proc.returncode == 2 and BEGIN in proc.stderr


def test_demo_page_has_one_result_block():
    text = (ROOT / "docs" / "results" / "demo.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert text.index(BEGIN) < text.index(END)
    assert BEGIN not in (ROOT / "README.md").read_text()  # the block moved to the docs


def generated_blocks(page: Path) -> str:
    """Everything between the generated-block markers of a docs page."""
    found = re.findall(r"<!-- ([\w-]+):begin -->(.*?)<!-- \1:end -->", page.read_text(), re.S)
    return "\n".join(body for _, body in found)


def test_readme_figures_are_quoted_from_generated_blocks():
    """Every number in README's 'Figures that matter most' table (both columns) appears in a
    generated block of the docs page its row links to: no figure in the README by hand."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Figures that matter most", 1)[1].split("\n## ", 1)[0]
    refs = dict(re.findall(r"^\[(\w+)\]: (\S+)$", section, re.M))
    rows = [ln for ln in section.splitlines() if ln.startswith("| ") and "[" in ln]
    assert len(rows) >= 5
    for row in rows:
        what, figure, where = [c.strip() for c in row.strip("|").split(" | ")]
        ref = re.search(r"\]\[(\w+)\]", where).group(1)
        blocks = generated_blocks(ROOT / refs[ref])
        assert blocks, refs[ref]
        for number in re.findall(r"\d+(?:[.,]\d+)*", what + " " + figure):
            assert re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", blocks), \
                f"README figure {number!r} ({what}) is not in {refs[ref]}'s generated blocks"
        words = re.sub(r"\(.*?\)", "", figure).strip()
        if not re.search(r"\d", words):  # a verdict in words: quoted as the block says it
            assert words in blocks, (words, refs[ref])
