"""Open a kdsnn report.html in headless Chromium: it renders, every image loads, no errors.

    .venv/bin/python scripts/check_report_html.py RUN/report/report.html [--screenshot OUT.png]
        [--fold FIRST_SCREEN.png]

A static check cannot see what a browser does with the page, so this one asks a real
browser (Debian: ``apt-get install -y chromium``).  It loads a probe copy of the page (the
report plus two small scripts that record errors, image sizes and resource requests) and
reads the result back with ``--dump-dom``, then screenshots the unmodified page at its
full height.  Checks: the page renders (a title, tables), every <img> decodes to a
non-empty bitmap, no JavaScript or console error, no failed resource, no request outside
the page (everything is inlined), no table or image wider than the page (in a
1280 x 900 window), the summary card (id ``summary``) ends above the fold.  Exit 0 when
all pass, 1 when one fails, 2 on bad input (no such file, no Chromium).  Standard
library only; nothing goes to the network.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars")
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
MARK = "kdsnn-check"
WIDTH, FOLD = 1280, 900  # the window a reader opens the page in: the fold is 900 px down
#: first thing in <head>: collect every error before the page's own content runs
HEAD_PROBE = """<script>window.__errors=[];
window.addEventListener('error',function(e){var t=e.target;
 window.__errors.push(t&&t.tagName?('resource failed: '+t.tagName+' '+(t.alt||'')):
 ('error: '+e.message));},true);
var _ce=console.error;console.error=function(){window.__errors.push('console.error: '+
 Array.prototype.join.call(arguments,' '));_ce.apply(console,arguments);};</script>"""
#: last thing in <body>: after load, write the findings into the DOM for --dump-dom
TAIL_PROBE = """<script>window.addEventListener('load',function(){
var imgs=Array.prototype.map.call(document.images,function(i){return {alt:i.alt,
 complete:i.complete,width:i.naturalWidth,height:i.naturalHeight};});
var res=performance.getEntriesByType('resource').map(function(r){return r.name;});
var vw=document.documentElement.clientWidth,vh=window.innerHeight;
var wide=[];Array.prototype.forEach.call(document.querySelectorAll('table,img,figure'),
 function(el,i){var r=el.getBoundingClientRect(),p=el.parentElement.getBoundingClientRect();
 if(r.right>vw+1||r.left<-1||r.width>p.width+1){wide.push({tag:el.tagName,
 name:(el.alt||el.id||(el.tagName+' '+i)).slice(0,60),width:Math.round(r.width),
 room:Math.round(Math.min(vw,p.width))});}});
var sm=document.getElementById('summary');
var out={title:document.title,tables:document.querySelectorAll('table').length,
 viewport:[vw,vh],wide:wide,summary:sm?Math.round(sm.getBoundingClientRect().bottom+
 window.scrollY):null,
 headings:document.querySelectorAll('h2').length,images:imgs,errors:window.__errors,
 resources:res,height:Math.max(document.body.scrollHeight,
 document.documentElement.scrollHeight)};
var pre=document.createElement('pre');pre.id='%s';
pre.textContent=JSON.stringify(out);document.body.appendChild(pre);});</script>""" % MARK


class CheckError(Exception):
    """Bad input: no page, no browser."""


def find_browser(name: str | None = None) -> str:
    """The Chromium executable (``name``, else the first of :data:`BROWSERS` on PATH)."""
    for candidate in ([name] if name else BROWSERS):
        path = shutil.which(candidate)
        if path:
            return path
    raise CheckError("no Chromium found (Debian: apt-get install -y chromium)")


def _run(browser: str, profile: Path, args: list, timeout: float) -> subprocess.CompletedProcess:
    cmd = [browser, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def probe(page: Path, browser: str, work: Path, timeout: float = 60.0) -> dict:
    """Load a probe copy of ``page`` and return what the browser found (see TAIL_PROBE)."""
    text = page.read_text(encoding="utf-8")
    if "<head>" not in text or "</body>" not in text:
        raise CheckError(f"{page} is no HTML page with <head> and </body>")
    probed = work / "probe.html"
    probed.write_text(text.replace("<head>", "<head>" + HEAD_PROBE, 1)
                      .replace("</body>", TAIL_PROBE + "</body>", 1), encoding="utf-8")
    proc = _run(browser, work / "profile-probe",
                [f"--window-size={WIDTH},{FOLD}", "--virtual-time-budget=10000",
                 "--dump-dom", probed.as_uri()], timeout)
    found = re.search(f'<pre id="{MARK}">(.*?)</pre>', proc.stdout, re.S)
    if not found:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CheckError(f"Chromium did not render {page} (exit {proc.returncode}: {tail})")
    import html
    return json.loads(html.unescape(found.group(1)))


def screenshot(page: Path, browser: str, work: Path, out: Path, height: int,
               width: int = WIDTH, timeout: float = 60.0, full: bool = True) -> str:
    """Screenshot the unmodified page at full height (``full=False``: the first ``height``
    pixels, what a reader sees before scrolling); returns Chromium's stderr."""
    height = max(600, min(int(height) + 40, 30000)) if full else int(height)
    proc = _run(browser, work / ("profile-shot" if full else "profile-fold"),
                [f"--screenshot={out}", f"--window-size={width},{height}",
                 "--virtual-time-budget=10000", "--enable-logging=stderr", "--v=0",
                 page.as_uri()], timeout)
    if not out.is_file():
        raise CheckError(f"Chromium wrote no screenshot (exit {proc.returncode})")
    return proc.stderr


def failures(found: dict, console_log: str) -> list:
    """Every failed check, as one line each (empty: all passed)."""
    bad = []
    if not found.get("title"):
        bad.append("page has no title")
    if not found.get("tables"):
        bad.append("page has no table")
    if not found.get("images"):
        bad.append("page has no image")
    for img in found.get("images", []):
        if not (img["complete"] and img["width"] > 0 and img["height"] > 0):
            bad.append(f"image '{img['alt']}' did not load ({img['width']}x{img['height']})")
    for el in found.get("wide", []):
        bad.append(f"{el['tag'].lower()} '{el['name']}' wider than the page "
                   f"({el['width']} px, room for {el['room']} px)")
    if found.get("summary") is None:
        bad.append("page has no summary card (an element with id 'summary')")
    elif found["summary"] > FOLD:
        bad.append(f"summary card not above the fold (ends {found['summary']} px down, "
                   f"fold at {FOLD} px)")
    bad += found.get("errors", [])
    bad += [f"request outside the page: {r}" for r in found.get("resources", [])
            if not r.startswith("data:")]
    for line in console_log.splitlines():
        if "CONSOLE" in line and ("Uncaught" in line or "rror" in line):
            bad.append(f"console: {line.strip()}")
    return bad


def check(page: Path, shot: Path | None = None, browser: str | None = None,
          fold: Path | None = None) -> tuple:
    """(findings, failures, screenshot path) for ``page``; ``fold``: also write the first
    screen (WIDTH x FOLD px) there."""
    page = Path(page).resolve()
    if not page.is_file():
        raise CheckError(f"{page} not found")
    exe = find_browser(browser)
    with tempfile.TemporaryDirectory(prefix="kdsnn-html-") as tmp:
        work = Path(tmp)
        found = probe(page, exe, work)
        out = Path(shot).resolve() if shot else work / "shot.png"
        log = screenshot(page, exe, work, out, found.get("height", 2000))
        if fold:
            screenshot(page, exe, work, Path(fold).resolve(), FOLD, full=False)
        bad = failures(found, log)
        return found, bad, (out if shot else None)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path, help="report.html to check")
    parser.add_argument("--screenshot", type=Path, default=None,
                        help="write the full-page screenshot here (PNG)")
    parser.add_argument("--fold", type=Path, default=None,
                        help=f"write the first screen ({WIDTH} x {FOLD} px) here (PNG)")
    parser.add_argument("--browser", default=None, help="Chromium executable")
    args = parser.parse_args(argv)
    try:
        found, bad, shot = check(args.page, args.screenshot, args.browser, args.fold)
    except (CheckError, OSError, subprocess.TimeoutExpired, ValueError) as exc:
        print(f"check_report_html: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    images = found["images"]
    print(f"{args.page}: '{found['title']}', {found['tables']} tables, {found['headings']} "
          f"sections, {sum(i['width'] > 0 for i in images)}/{len(images)} images loaded, "
          f"{len(found['errors'])} errors, {len(found.get('wide', []))} too wide, summary "
          f"ends at {found.get('summary')} px, page height {found['height']} px"
          + (f", screenshot {shot}" if shot else ""))
    for line in bad:
        print(f"FAIL: {line}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
