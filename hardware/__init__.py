"""Hardware simulation and measurement of a deployed network: Lava's bit-accurate
``fixed_pt`` process network built from a :class:`export.QuantGraph`, parity against the
integer emulation spike by spike, the synapse-by-synapse re-check with Lava's stock models,
and the energy/sparsity report::

    from hardware import run_parity, analyze_graph, build_report
    pr = run_parity(graph, qgraph, x_seq, labels)      # float vs emulation vs Lava
    print(pr.result["bit_exact_emulation_vs_lava"])

Names that need Lava (``run_lava``, ``run_lava_batches``, ``LavaRunner``, ``run_parity``,
``check_synapses``) are imported on first use: importing Lava fixes the multiprocessing
start method to ``fork``, which a process must allow before anything else chose one.
"""
from importlib import import_module

from .energy import (Conventions, GraphStats, Profile, analyze_graph, count_teacher,
                     load_profile, parse_conventions)
from .spike_record import SpikeRecord

_LAZY = {"run_lava": "lava_sim", "run_lava_batches": "lava_sim", "run_lava_from_files":
         "lava_sim", "run_netx": "lava_sim", "LavaRunner": "lava_sim",
         "run_parity": "parity", "summarize": "parity", "Tally": "parity",
         "check_synapses": "stock_check", "build_report": "report", "make_report": "report"}

__all__ = ["analyze_graph", "count_teacher", "load_profile", "parse_conventions",
           "Conventions", "GraphStats", "Profile", "SpikeRecord", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'hardware' has no attribute {name!r}")
