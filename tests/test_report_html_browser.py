"""The HTML report in a real headless browser (scripts/check_report_html.py): it renders,
every image loads, no console error, nothing wider than the page, the summary above the
fold.  Skipped where Chromium is not installed."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_report import run

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "check_report_html.py"
BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome")
                if shutil.which(b)), None)


@pytest.mark.skipif(BROWSER is None, reason="no Chromium (apt-get install -y chromium)")
def test_report_html_in_headless_chromium(tmp_path):
    rep = run(tmp_path / "report")
    shot = tmp_path / "shot.png"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "report" / "report.html"),
                           "--screenshot", str(shot)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    n = len(rep["files"]["plots"])
    assert f"{n}/{n} images loaded, 0 errors, 0 too wide" in proc.stdout
    assert "FAIL" not in proc.stdout  # the summary card ends above the fold
    assert shot.read_bytes().startswith(b"\x89PNG")


@pytest.mark.skipif(BROWSER is None, reason="no Chromium (apt-get install -y chromium)")
def test_broken_image_is_reported(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><head><title>t</title></head><body><table></table>"
                    "<img alt=\"broken\" src=\"data:image/png;base64,AAAA\"></body></html>")
    proc = subprocess.run([sys.executable, str(SCRIPT), str(page)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1 and "image 'broken' did not load" in proc.stdout
    assert "page has no summary card" in proc.stdout


@pytest.mark.skipif(BROWSER is None, reason="no Chromium (apt-get install -y chromium)")
def test_wide_table_and_late_summary_are_reported(tmp_path):
    page = tmp_path / "wide.html"
    cells = "".join(f"<td>{'9' * 40}</td>" for _ in range(60))
    page.write_text("<!DOCTYPE html><html><head><title>t</title></head><body>"
                    "<div style=\"height:1500px\"></div><section id=\"summary\">s</section>"
                    f"<table><tr>{cells}</tr></table>"
                    "<img alt=\"dot\" src=\"data:image/gif;base64,R0lGODlhAQABAIAAAP///wAAACH5"
                    "BAEAAAAALAAAAAABAAEAAAICRAEAOw==\"></body></html>")
    proc = subprocess.run([sys.executable, str(SCRIPT), str(page)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout
    assert "FAIL: table 'TABLE 0' wider than the page" in proc.stdout
    assert "summary card not above the fold" in proc.stdout


def test_missing_page_is_a_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "none.html")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("check_report_html: error: ") and proc.stderr.count("\n") == 1
