"""Shared helpers of the benchmarks: machine info, timing, memory, subprocess runs, tables."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
PEER_INSTALL = (".venv/bin/pip install --no-deps -c scripts/constraints.txt spikingjelly loguru"
                "   # snntorch, norse, lava-dl come with scripts/setup.sh")


def machine_info() -> dict:
    import torch

    from kd_snn.machine import cpu_model
    cpu = cpu_model()
    return {
        "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(), "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Reset VmHWM (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def peak_delta_mb(step: Callable[[], None]) -> float:
    """Peak RSS growth (MB) over one call of ``step`` (nan where the peak cannot be reset)."""
    before = rss_bytes()
    ok = reset_peak_rss()
    step()
    return (peak_rss_bytes() - before) / 1e6 if ok else float("nan")


def time_iters(step: Callable[[], None], iters: int, warmup: int = 3,
               cpu: Optional[list] = None) -> list[float]:
    """Wall ms per step; if ``cpu`` is a list, also append process CPU ms per step
    (user + sys of all threads: robust to other processes sharing the cores)."""
    for _ in range(warmup):
        step()
    out = []
    for _ in range(iters):
        c0, t0 = time.process_time(), time.perf_counter()
        step()
        out.append((time.perf_counter() - t0) * 1e3)
        if cpu is not None:
            cpu.append((time.process_time() - c0) * 1e3)
    return out


def saved_bytes(run: Callable[[], object]) -> tuple[int, object]:
    """Bytes of distinct storages that autograd saves for backward during ``run()``."""
    import torch
    seen: dict[int, int] = {}

    def pack(t):
        try:
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
        except Exception:  # noqa: BLE001 (sparse / meta tensors)
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = run()
    return sum(seen.values()), out


def run_worker(script: Path, args: list[str], mem_mode: bool, timeout: int = 900) -> Optional[dict]:
    """Run ``script --worker ...`` in a fresh interpreter; return its JSON result line."""
    env = dict(os.environ)
    env.setdefault("PYTHONPATH", str(ROOT))
    if mem_mode:
        # Every tensor >= 64 KiB is its own mmap and is returned to the OS when freed, so
        # RSS follows live memory (no dynamic malloc threshold, no retained heap).
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    res = subprocess.run([sys.executable, str(script), "--worker", *args], capture_output=True,
                         text=True, cwd=ROOT, env=env, timeout=timeout)
    for line in res.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    sys.stderr.write(f"[worker {args} failed rc={res.returncode}]\n{res.stderr[-3000:]}\n")
    return None


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def machine_md(info: dict) -> str:
    return (f"- date: {info['date']}\n- CPU: {info['cpu']} ({info['cores']} cores, torch threads "
            f"{info['torch_threads']}, SIMD {info['cpu_capability']}), CUDA: {info['cuda']}\n"
            f"- Python {info['python']}, torch {info['torch']}\n"
            f"- load average at start: {info['loadavg']} (the machine is shared; see method)\n")


def write_results(out: Path, stem: str, obj: dict, markdown: str) -> None:
    """``out/stem.json`` (atomically: an interrupted run keeps the previous file) and
    ``out/stem.md``; benchmarks call it after every finished measurement."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{stem}.json.tmp"
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out / f"{stem}.json")
    (out / f"{stem}.md").write_text(markdown)


def write_readme_block(markdown: str, name: str, readme: Path) -> int:
    """The docs page's block between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` = a
    results file's Markdown without its title (the blocks tests/test_readme_*.py check;
    ``readme`` is the page: these blocks moved from README.md to docs/)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from readme_results import replace_block

    body = markdown.split("\n", 2)[2].strip() + "\n"
    readme.write_text(replace_block(readme.read_text(), body, str(readme),
                                    begin=f"<!-- {name}:begin -->", end=f"<!-- {name}:end -->"))
    return 0
