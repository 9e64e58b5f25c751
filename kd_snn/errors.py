"""User-facing errors: one line, exit code 2, never a traceback."""
from __future__ import annotations


class KdsnnError(Exception):
    """Bad input from the user (config, files, data set, run directory).

    The CLI prints ``kdsnn: error: <message>`` and exits with code 2.
    Keep the message to one line naming the offending thing.
    """

    exit_code = 2
