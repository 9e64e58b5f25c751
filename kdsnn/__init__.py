"""The kdsnn application: the ``kdsnn`` command line above the three libraries.

Data flows one way: ``kd_snn`` (data, models, losses, training) -> ``export`` ->
``hardware`` -> this package, which turns user input into calls of those
libraries and owns the user-facing rules: one error line, one writer per run
directory, nothing written by a command that fails.
"""
import kd_snn  # noqa: F401  (sets the OpenMP wait policy before torch is imported)
