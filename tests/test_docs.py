"""The docs site builds offline with warnings as errors, and every code block of the docs runs.

The rule for code blocks (the fenced blocks of every page in mkdocs.yml's nav, and README.md):

- ```python: executed. All pages share one temporary working directory and run in nav order
  (README first), so a page may use the run directory an earlier page made (the guides use the
  quick start's ``runs/quickstart``); each page's blocks run in order in one namespace of their
  own. A block whose text was already run on an earlier page (README's Python example is the
  quick start's) is not run twice: its page gets that namespace. A block right after ``<!-- readme-test: NAME -->`` needs a fixture (the netx block needs
  a netx file) and is run by the test that names that marker instead: this test checks that
  such a test exists.
- ```bash: every command line is checked. The cheap ones (:data:`RUN`: ``kdsnn --version``,
  ``kdsnn --help``, ``kdsnn configs``) are run and must exit 0 and print something. Every other ``kdsnn ...`` invocation (also as
  ``python -m kdsnn``, ``torchrun ... -m kdsnn``, inside ``sbatch --wrap '...'`` or a ``for``
  loop) is parsed by ``kdsnn.cli.build_parser()`` without running. ``make TARGET`` must be a
  Makefile target; a script run by ``python``/``bash`` must exist; set-up commands (pip, venv,
  apt-get) are not run. Any other command fails the test, so the rule cannot be bypassed.
- ```yaml: parsed; a config (one with a ``data``/``teacher``/``student``/``neuron``/``loss``
  section) must build with ``kd_snn.config.from_dict``.
- ```text and unlabelled blocks are output and layouts, not code.

The notebook (docs/tutorials/walkthrough.ipynb) is executed by tests/test_notebook.py; the
build here skips its execution (KDSNN_DOCS_EXECUTE=false), which keeps this build ~10 s.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MKDOCS = Path(sys.executable).with_name("mkdocs")
#: shell command lines cheap enough to run
RUN = {"kdsnn --version", "kdsnn --help", "kdsnn configs"}
#: first words of set-up lines that are shown, never run
SETUP = {"pip", "python3.11", "apt-get", ".", "source"}
FENCE = re.compile(r"^(?P<indent>[ ]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ ]*$",
                   re.M | re.S)
MARKER = re.compile(r"<!-- readme-test: ([\w-]+) -->\s*$")


class _IgnoreTags(yaml.SafeLoader):
    """mkdocs.yml's ``!ENV [...]`` tags read as plain values."""


_IgnoreTags.add_multi_constructor("!", lambda loader, suffix, node: None)


def nav_pages() -> list[Path]:
    """README.md, then every Markdown page of the nav, in nav order."""
    nav = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_IgnoreTags)["nav"]
    pages = []

    def walk(item):
        if isinstance(item, str):
            pages.append(item)
        elif isinstance(item, dict):
            for v in item.values():
                walk(v)
        elif isinstance(item, list):
            for v in item:
                walk(v)

    walk(nav)
    return [ROOT / "README.md"] + [DOCS / p for p in pages if p.endswith(".md")]


def blocks(page: Path) -> list[tuple[str, str, int, str | None]]:
    """(language, body, line number, readme-test marker) of every fenced block of a page."""
    text = page.read_text()
    out = []
    for m in FENCE.finditer(text):
        before = text[:m.start()].rstrip("\n").splitlines()
        marker = MARKER.search(before[-1]) if before else None
        body = "\n".join(ln[len(m.group("indent")):] for ln in m.group("body").splitlines())
        out.append((m.group("lang").lower(), body, text.count("\n", 0, m.start()) + 1,
                    marker.group(1) if marker else None))
    return out


def all_blocks(langs: tuple[str, ...]):
    for page in nav_pages():
        for lang, body, line, marker in blocks(page):
            if lang in langs:
                yield page, body, line, marker


def _where(page: Path, line: int) -> str:
    return f"{page.relative_to(ROOT)}:{line}"


# --- the build ----------------------------------------------------------------------------

def test_docs_build_strict(tmp_path):
    """`mkdocs build --strict` (a broken link or anchor, a missing page, a docstring warning
    fails), offline, with the CLI and config references generated and the plots copied."""
    assert MKDOCS.is_file(), "mkdocs is not installed: run scripts/setup.sh"
    site = tmp_path / "site"
    env = {**os.environ, "KDSNN_DOCS_EXECUTE": "false", "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([str(MKDOCS), "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-3000:]

    from kdsnn.cli import build_parser
    import argparse
    cli = (site / "reference" / "cli" / "index.html").read_text()
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name in sub.choices:
        assert f'id="kdsnn-{name}"' in cli, name
    config = (site / "reference" / "config" / "index.html").read_text()
    for key in ("data.time_steps", "*.epochs", "neuron.beta", "loss.preset",
                "loss.samd_norm", "seed"):
        assert f"<code>{key}</code>" in config, key
    for png in (ROOT / "benchmarks" / "results").glob("*.png"):
        assert (site / "results" / "img" / png.name).is_file(), png.name
    api = (site / "reference" / "api" / "index.html").read_text()
    import kdsnn
    for name in getattr(kdsnn, "__all__", []):
        obj = getattr(kdsnn, name, None)
        if callable(obj) and getattr(obj, "__module__", "").startswith("kdsnn."):
            assert f'id="kdsnn.{name}"' in api, f"kdsnn.{name} missing from the API page"
    assert (site / "tutorials" / "walkthrough" / "index.html").is_file()
    assert (site / "img" / "pipeline.svg").is_file()


def test_readme_is_short_and_points_into_the_docs():
    text = (ROOT / "README.md").read_text()
    lines = text.splitlines()
    assert len(lines) <= 200, len(lines)
    assert max(map(len, lines)) <= 120, max(lines, key=len)
    for target in re.findall(r"\]\((docs/[^)#]+)", text) + re.findall(r"^\[\w+\]: (\S+)$",
                                                                         text, re.M):
        assert (ROOT / target).is_file(), target
    for name in ("LICENSE", "CITATION.cff"):
        assert (ROOT / name).is_file()


def test_license_and_citation():
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert 'license = { text = "MIT" }' in (ROOT / "pyproject.toml").read_text()
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT"
    paper = cff["references"][0]
    assert paper["title"].startswith("A Closer Look at Knowledge Distillation")
    assert any("2511.06902" in i["value"] for i in paper["identifiers"])


# --- the code blocks ----------------------------------------------------------------------

def test_every_block_has_a_known_language():
    allowed = {"python", "bash", "yaml", "text", ""}
    for page in nav_pages():
        for lang, _, line, _ in blocks(page):
            assert lang in allowed, f"{_where(page, line)}: ```{lang} has no rule in this test"


def _logical_lines(body: str) -> list[str]:
    """Lines with backslash continuations joined and comments dropped."""
    out, cur = [], ""
    for raw in body.splitlines():
        line = raw.rstrip()
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        cur += line
        try:
            words = shlex.split(cur, comments=True)
        except ValueError:  # an unfinished quote: the next line continues it
            cur += "\n"
            continue
        if words:
            out.append(cur.strip())
        cur = ""
    assert not cur.strip(), f"unfinished shell line: {cur!r}"
    return out


def _segments(line: str) -> list[list[str]]:
    """The simple commands of a shell line: split at ; && || | & and loop keywords, with
    $(...) and quoted --wrap strings opened up, variables replaced by a plain value."""
    line = re.sub(r"\$\{?[A-Za-z_][A-Za-z_0-9]*\}?", "1", line)
    line = line.replace("$(", "; ").replace(")", " ;")
    words = shlex.split(line, comments=True)
    segs, cur = [], []
    for w in words:
        core = w.rstrip(";&|")
        if core in ("", "do", "done", "then", "fi"):
            segs.append(cur)
            cur = []
        elif core != w:  # a word that ends a command: 'x;' 'x&'
            cur.append(core)
            segs.append(cur)
            cur = []
        elif " " in w:  # a quoted command (sbatch --wrap '...'): its own segments
            cur.append("<wrapped>")
            segs += _segments(w)
        else:
            cur.append(w)
    segs.append(cur)
    return [s for s in segs if s and s != [""]]


def _kdsnn_args(seg: list[str]):
    """The arguments after kdsnn in a command (kdsnn, .venv/bin/kdsnn, python -m kdsnn,
    torchrun ... -m kdsnn), or None when the command is not kdsnn."""
    if Path(seg[0]).name == "kdsnn":
        return seg[1:]
    for i, w in enumerate(seg[:-1]):
        if w == "-m" and seg[i + 1] == "kdsnn":
            return seg[i + 2:]
    return None


def _check_command(seg: list[str], where: str, makefile: str) -> str:
    """What was done with one simple command: 'parsed', 'script', 'make', 'setup', ..."""
    from kd_snn.errors import KdsnnError
    from kdsnn.cli import build_parser

    while seg and re.match(r"^[A-Z_a-z]\w*=", seg[0]):  # VAR=value prefixes / assignments
        seg = seg[1:]
    if not seg or seg[0] in ("for", "wait", "<wrapped>"):
        return "shell"
    if seg[0] == "nice":
        seg = seg[3:] if seg[1] == "-n" else seg[1:]
    args = _kdsnn_args(seg)
    if args is not None:
        try:
            build_parser().parse_args(args)
        except (KdsnnError, SystemExit) as exc:
            pytest.fail(f"{where}: `kdsnn {' '.join(args)}` does not parse: {exc}")
        return "parsed"
    if seg[0] == "make":
        for target in seg[1:]:
            assert re.search(rf"^{re.escape(target)}:", makefile, re.M), \
                f"{where}: no Makefile target {target!r}"
        return "make"
    if seg[0] == "sbatch":
        return "shell"  # its --wrap command was checked as its own segment
    if Path(seg[0]).name.startswith("python") or seg[0] == "bash":
        if seg[0] in SETUP or "-m" in seg[1:2]:
            return "setup"
        script = next(w for w in seg[1:] if not w.startswith("-"))
        assert (ROOT / script).is_file(), f"{where}: {script} does not exist"
        return "script"
    if seg[0] in SETUP or Path(seg[0]).name == "pip":
        return "setup"
    pytest.fail(f"{where}: `{' '.join(seg)}`: no rule for this command in tests/test_docs.py")


def test_shell_blocks_run_or_parse():
    makefile = (ROOT / "Makefile").read_text()
    seen = {"parsed": 0, "run": 0}
    for page, body, line, _ in all_blocks(("bash",)):
        for cmd in _logical_lines(body):
            where = f"{_where(page, line)} `{cmd}`"
            plain = " ".join(shlex.split(cmd, comments=True))
            if plain in RUN:
                proc = subprocess.run([sys.executable, "-m", "kdsnn", *plain.split()[1:]],
                                      cwd=ROOT, capture_output=True, text=True, timeout=120)
                assert proc.returncode == 0, f"{where}: {proc.stderr[-2000:]}"
                assert proc.stdout.strip(), where
                seen["run"] += 1
                continue
            for seg in _segments(cmd):
                kind = _check_command(seg, where, makefile)
                seen[kind] = seen.get(kind, 0) + 1
    assert seen["run"] >= 3 and seen["parsed"] >= 30, seen


def test_yaml_blocks_are_valid_configs():
    from kd_snn.config import from_dict

    n = 0
    for page, body, line, _ in all_blocks(("yaml",)):
        raw = yaml.safe_load(body)
        if isinstance(raw, dict) and {"data", "teacher", "student", "neuron", "loss"} & set(raw):
            from_dict(raw)
            n += 1
    assert n >= 1


def test_marked_blocks_have_their_test():
    tests = {p: p.read_text() for p in (ROOT / "tests").glob("test_*.py")}
    for page, _, line, marker in all_blocks(("python",)):
        if marker:
            text = f"<!-- readme-test: {marker} -->"
            assert any(text in t and p.name != "test_docs.py" for p, t in tests.items()), \
                f"{_where(page, line)}: no test runs the block marked {text}"


@pytest.mark.slow
def test_python_blocks_run(tmp_path, monkeypatch):
    """Every python block, pages in nav order in one temporary directory, each page's blocks
    in one namespace (the rule in this module's docstring)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    ran = 0
    namespaces, done = {}, {}
    for page, body, line, marker in all_blocks(("python",)):
        if marker:
            continue
        namespace = namespaces.setdefault(page, {"__name__": f"docs:{page.name}"})
        if body in done:  # the same code on two pages (README and the quick start): run once
            namespace.update(done[body])
            continue
        code = compile(body, _where(page, line), "exec")
        try:
            exec(code, namespace)
        except Exception as exc:  # name the page and line, keep the traceback
            raise AssertionError(f"{_where(page, line)}: {type(exc).__name__}: {exc}") from exc
        done[body] = namespace
        ran += 1
    assert ran >= 5


def test_source_files_named_in_the_docs_exist():
    """A `path/to/file.py` (or .sh, .txt, .ipynb) the docs name in code is a file here."""
    pattern = re.compile(r"`((?:kd_snn|export|hardware|kdsnn|scripts|benchmarks|tests|notebooks)"
                         r"/[\w./-]+\.(?:py|sh|txt|ipynb))`")
    for page in nav_pages():
        for path in pattern.findall(page.read_text()):
            assert (ROOT / path).is_file(), f"{page.relative_to(ROOT)} names {path}"
