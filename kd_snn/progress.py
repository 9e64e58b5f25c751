"""Progress that suits where it is read.

On a terminal: a tqdm bar.  Anywhere else (a log file, CI, a pipe): one plain line
every ``every`` percent and at the end, never a bar redrawn per step, as Lightning
and tqdm's ``mininterval`` do for non-interactive output.
"""
from __future__ import annotations

import sys
import time
from typing import Optional, TextIO

from tqdm import tqdm


def is_terminal(stream: Optional[TextIO] = None) -> bool:
    stream = stream or sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class LineProgress:
    """tqdm's small interface (update, set_postfix, write, close) as occasional lines."""

    def __init__(self, total: int, desc: str, unit: str = "it", initial: int = 0,
                 every: float = 10.0, stream: Optional[TextIO] = None):
        self.total, self.desc, self.unit = max(0, int(total)), desc, unit
        self.n = int(initial)
        self.step = max(1.0, float(every)) / 100.0
        self.stream = stream or sys.stderr
        self._next = self._next_mark(self.n)
        self._postfix = ""
        self._t0 = time.time()
        self._closed = False
        self._emitted = self.n

    def _next_mark(self, n: int) -> int:
        if self.total <= 0:
            return 1 << 62
        k = int(n / (self.total * self.step)) + 1
        while int(round(k * self.step * self.total)) <= n:  # a mark rounded down to n
            k += 1
        return int(round(k * self.step * self.total))

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.n >= self._next:
            self._emit()
            self._next = self._next_mark(self.n)

    def set_postfix(self, **kwargs) -> None:
        self._postfix = " ".join(f"{k}={v}" for k, v in kwargs.items())

    def _emit(self) -> None:
        pct = 100.0 * self.n / self.total if self.total else 100.0
        elapsed = time.time() - self._t0
        line = f"{self.desc}: {self.n}/{self.total} {self.unit} ({pct:.0f}%, {elapsed:.0f} s)"
        if self._postfix:
            line += f" {self._postfix}"
        self._emitted = self.n
        self.write(line)

    def write(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        """A last line for a run that stopped between two marks (skipped when nothing ran)."""
        if not self._closed and self.n > self._emitted:
            self._emit()
        self._closed = True


class _Iterating:
    def __init__(self, iterable, bar):
        self.iterable, self.bar = iterable, bar

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.bar.update(1)
        self.bar.close()

    def __getattr__(self, name):
        return getattr(self.bar, name)


class _Silent:
    n = 0

    def update(self, n: int = 1) -> None: ...

    def set_postfix(self, **kwargs) -> None: ...

    def write(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def close(self) -> None: ...


def progress(total: Optional[int] = None, desc: str = "", unit: str = "it", initial: int = 0,
             enabled: bool = True, iterable=None, every: float = 10.0, leave: bool = True):
    """A progress reporter: a bar on a terminal, a line per ``every`` % elsewhere.

    ``write`` always prints (epoch summaries reach the log even with progress off).
    """
    if total is None and iterable is not None:
        try:
            total = len(iterable)
        except TypeError:
            total = 0
    if not enabled:
        bar = _Silent()
    elif is_terminal():
        bar = tqdm(total=total, initial=initial, unit=unit, desc=desc, dynamic_ncols=True,
                   leave=leave)
    else:
        bar = LineProgress(total or 0, desc, unit=unit, initial=initial, every=every)
    return _Iterating(iterable, bar) if iterable is not None else bar
