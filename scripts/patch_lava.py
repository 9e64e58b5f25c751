"""Make lava-nc 0.10.0 / lava-dl 0.6.0 import on Python >= 3.11 (idempotent).

Upstream caps at Python 3.10. Two small incompatibilities are fixed in place:
1. lava/magma/compiler/var_model.py uses mutable dataclass defaults
   (``x: ByteEncoder = ByteEncoder()``), which 3.11 rejects; they become
   ``field(default_factory=ByteEncoder)``.
2. lava/lib/dl/slayer/__init__.py imports ``object_detection``, which needs
   torchvision (a CUDA wheel next to CPU torch); the import is guarded.
The lava wheels also install a top-level ``tests`` package that would shadow a
project's own tests; it is removed.
"""
from __future__ import annotations

import importlib.util
import re
import shutil
import sys
import sysconfig
from pathlib import Path

MARK = "# kdsnn-py311-patch"


def site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def patch_var_model(root: Path) -> bool:
    path = root / "lava" / "magma" / "compiler" / "var_model.py"
    text = path.read_text()
    if MARK in text:
        return False
    new, n = re.subn(r"(\w+): ByteEncoder = ByteEncoder\(\)",
                     r"\1: ByteEncoder = field(default_factory=ByteEncoder)", text)
    if n == 0:
        raise SystemExit(f"patch_lava: unexpected content in {path}")
    if not re.search(r"^from dataclasses import .*\bfield\b", new, re.M):
        new = new.replace("from dataclasses import dataclass",
                          "from dataclasses import dataclass, field", 1)
    path.write_text(new + f"\n{MARK}\n")
    return True


def patch_slayer_init(root: Path) -> bool:
    path = root / "lava" / "lib" / "dl" / "slayer" / "__init__.py"
    text = path.read_text()
    if MARK in text:
        return False
    line = re.search(r"^from \. import object_detection.*$", text, re.M)
    if line is None:
        raise SystemExit(f"patch_lava: unexpected content in {path}")
    guarded = (f"try:  {MARK}\n    {line.group(0)}\n"
               "except (ImportError, RuntimeError):  # needs torchvision\n"
               "    object_detection = None\n")
    path.write_text(text.replace(line.group(0), guarded, 1))
    return True


def remove_stray_tests(root: Path) -> bool:
    stray = root / "tests"
    if stray.is_dir() and (stray / "lava").exists():
        shutil.rmtree(stray)
        return True
    return False


def main() -> int:
    root = site_packages()
    changed = [patch_var_model(root), patch_slayer_init(root), remove_stray_tests(root)]
    print(f"[patch_lava] {sum(changed)} change(s) in {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
