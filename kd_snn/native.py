"""Small C++ kernels built once with the host compiler and loaded with ctypes.

A kernel is a self-contained C++ source; it is compiled to ``<name>_<hash>.so`` in
``KDSNN_EXT_DIR`` (default ``~/.cache/kdsnn``) the first time it is needed (~2 s), then
reused; the hash covers the source, the flags and the compiler, so a changed kernel is
rebuilt.  Used by the fused neuron (``kd_snn.neurons.fused``) and the integer emulation
(``export.lif_kernel``).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile

CFLAGS = ["-O3", "-std=c++17", "-fPIC", "-shared", "-fopenmp", "-ffp-contract=off",
          "-fno-trapping-math", "-fno-math-errno"]


def build_library(name: str, source: str, flags=None, verbose: bool = False) -> str:
    """Path of the compiled shared library of ``source`` (built if missing)."""
    import torch

    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        raise RuntimeError("no C++ compiler (g++/c++) on PATH")
    flags = list(CFLAGS if flags is None else flags)
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        flags.append("-mavx2")
    key = hashlib.sha256((source + " ".join(flags) + cxx).encode()).hexdigest()[:16]
    root = os.environ.get("KDSNN_EXT_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kdsnn")
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, f"{name}_{key}.so")
    if not os.path.exists(path):
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            src = os.path.join(tmp, f"{name}.cpp")
            with open(src, "w") as f:
                f.write(source)
            out = os.path.join(tmp, "lib.so")
            res = subprocess.run([cxx, *flags, src, "-o", out], capture_output=True, text=True)
            if verbose or res.returncode:
                print(res.stdout + res.stderr)
            if res.returncode:
                raise RuntimeError(f"compiling {name} failed: {res.stderr[-500:]}")
            os.replace(out, path)  # atomic: concurrent builders never see a partial file
    return path
