"""The HTML report in a real headless browser (scripts/check_report_html.py): it renders,
every image loads, no console error.  Skipped where Chromium is not installed."""
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
    assert f"{n}/{n} images loaded, 0 errors" in proc.stdout
    assert shot.read_bytes().startswith(b"\x89PNG")


@pytest.mark.skipif(BROWSER is None, reason="no Chromium (apt-get install -y chromium)")
def test_broken_image_is_reported(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><head><title>t</title></head><body><table></table>"
                    "<img alt=\"broken\" src=\"data:image/png;base64,AAAA\"></body></html>")
    proc = subprocess.run([sys.executable, str(SCRIPT), str(page)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1 and "image 'broken' did not load" in proc.stdout


def test_missing_page_is_a_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "none.html")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("check_report_html: error: ") and proc.stderr.count("\n") == 1
