"""Test set-up: import Lava before anything fixes the multiprocessing start method.

Importing ``lava.proc`` sets the start method to ``fork``; if a DataLoader or
``mp.get_start_method()`` ran first, that import would fail.
"""
import os
import sys
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see kd_snn/__init__.py
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import lava.proc.lif.process  # noqa: E402,F401  (must precede any start-method use)
