"""Safe file writing: every command publishes its files all together or not at all.

One mechanism for "validate everything, then write":

* :func:`transaction` opens a *file set*.  Every write made while it is open
  (``write_bytes``/``write_text``/``write_json``/``atomic_path``, from any module)
  goes to a temporary file beside its destination, flushed and fsynced.  Only
  when the block ends without an exception are all of them renamed into place
  and their directories fsynced; on any exception every temporary file, and
  every directory the set created, is removed.  A command that fails therefore
  leaves its run directory byte-identical.
* Outside a transaction each write is its own one-file transaction.
* Any ``OSError`` of a write (disk full, read-only file system, a path whose
  parent is a file) becomes a one-line :class:`KdsnnError` naming the file.

Files read back inside a transaction (``read_bytes``) see the staged content,
so read-modify-write (metrics, manifests) works before the commit.
"""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Union

from .errors import KdsnnError

PathLike = Union[str, os.PathLike]
TMP_SUFFIX = ".kdsnn.tmp"


def _describe(exc: OSError, path: Path) -> str:
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"cannot write '{path}': {reason}"


def missing_dirs(directory: PathLike) -> tuple[list[Path], Path]:
    """The ancestors of ``directory`` (itself included) that do not exist, innermost first,
    and the first one that does."""
    missing, d = [], Path(directory).absolute()
    while not d.exists():
        missing.append(d)
        d = d.parent
    return missing, d


class FileSet:
    """Files staged as temporary files, published together by :meth:`commit`."""

    def __init__(self) -> None:
        self._staged: dict[Path, Path] = {}  # destination -> temporary file
        self._removed: set[Path] = set()  # files the commit deletes (stale outputs)
        self._made_dirs: list[Path] = []

    def _ensure_dir(self, directory: Path) -> None:
        missing, d = missing_dirs(directory)
        if not d.is_dir():
            raise KdsnnError(f"cannot write into '{directory}': '{d}' is not a directory")
        for d in reversed(missing):
            try:
                d.mkdir()
            except OSError as exc:
                raise KdsnnError(_describe(exc, d)) from None
            self._made_dirs.append(d)

    @contextlib.contextmanager
    def stage(self, path: PathLike) -> Iterator[Path]:
        """Yield a temporary path for ``path``; a writer fills it, the set publishes it."""
        path = Path(path).absolute()
        self._ensure_dir(path.parent)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX,
                                       dir=path.parent)
            os.close(fd)
        except OSError as exc:
            raise KdsnnError(_describe(exc, path)) from None
        tmp = Path(tmp)
        try:
            yield tmp
            _fsync_file(tmp)
            os.chmod(tmp, 0o644 & ~_umask())  # mkstemp makes 0600; published files are readable
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise KdsnnError(_describe(exc, path)) from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        old = self._staged.pop(path, None)
        if old is not None:
            old.unlink(missing_ok=True)
        self._removed.discard(path)
        self._staged[path] = tmp

    def remove(self, path: PathLike) -> None:
        """Delete ``path`` at commit (an output that this run no longer produces)."""
        path = Path(path).absolute()
        old = self._staged.pop(path, None)
        if old is not None:
            old.unlink(missing_ok=True)
        self._removed.add(path)

    def write_bytes(self, path: PathLike, data: bytes) -> None:
        with self.stage(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(data)

    def staged(self, path: PathLike) -> Optional[Path]:
        return self._staged.get(Path(path).absolute())

    def commit(self) -> None:
        dirs = set()
        for dest, tmp in self._staged.items():
            try:
                os.replace(tmp, dest)
            except OSError as exc:
                raise KdsnnError(_describe(exc, dest)) from None
            dirs.add(dest.parent)
        for dest in self._removed:
            with contextlib.suppress(FileNotFoundError):
                dest.unlink()
            dirs.add(dest.parent)
        self._staged.clear()
        self._removed.clear()
        self._made_dirs.clear()
        for d in dirs:
            _fsync_dir(d)

    def discard(self) -> None:
        for tmp in self._staged.values():
            tmp.unlink(missing_ok=True)
        self._staged.clear()
        self._removed.clear()
        for d in reversed(self._made_dirs):
            with contextlib.suppress(OSError):
                d.rmdir()
        self._made_dirs.clear()


_CURRENT: contextvars.ContextVar[Optional[FileSet]] = contextvars.ContextVar(
    "kdsnn_file_set", default=None)


@contextlib.contextmanager
def transaction() -> Iterator[FileSet]:
    """All writes inside the block are published together at its end, or not at all.

    Nested transactions join the outermost one.
    """
    outer = _CURRENT.get()
    if outer is not None:
        yield outer
        return
    files = FileSet()
    token = _CURRENT.set(files)
    try:
        yield files
        files.commit()
    except BaseException:
        files.discard()
        raise
    finally:
        _CURRENT.reset(token)


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` when the transaction commits."""
    with transaction() as files, files.stage(path) as tmp:
        yield tmp


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems refuse fsync on directories
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_stale_temps(root: PathLike) -> list[Path]:
    """Delete temporary files a killed writer left under ``root`` (call with the run locked)."""
    removed = []
    root = Path(root)
    if not root.is_dir():
        return removed
    # ours end in TMP_SUFFIX; the earlier release's were ``.NAME.XXXX.tmp``: one pattern
    for tmp in root.rglob(".*.tmp"):
        if tmp.is_file():
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def remove(path: PathLike) -> None:
    """Delete ``path`` when the open transaction commits (at once outside one)."""
    with transaction() as files:
        files.remove(path)


def write_bytes(path: PathLike, data: bytes) -> None:
    with transaction() as files:
        files.write_bytes(path, data)


def write_text(path: PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: PathLike, obj) -> None:
    """Deterministic JSON (sorted keys) written atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_bytes(path: PathLike) -> bytes:
    """The file's bytes as the open transaction will publish them."""
    return current_path(path).read_bytes()


def current_path(path: PathLike) -> Path:
    """Where ``path``'s current content lies: its staged file inside a transaction."""
    files = _CURRENT.get()
    staged = files.staged(path) if files is not None else None
    return Path(staged or path)


def exists(path: PathLike) -> bool:
    files = _CURRENT.get()
    return (files is not None and files.staged(path) is not None) or Path(path).is_file()


def read_json_object(path: PathLike, what: str) -> dict:
    """A JSON object from ``path``; anything else is a one-line error naming the file."""
    try:
        obj = json.loads(read_bytes(path).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise KdsnnError(f"'{path}' is corrupt (not a JSON {what})") from None
    except OSError as exc:
        raise KdsnnError(f"cannot read '{path}': {exc.strerror}") from None
    if not isinstance(obj, dict):
        raise KdsnnError(f"'{path}' is corrupt (a JSON {type(obj).__name__}, not a {what})")
    return obj


def _json_default(obj):
    import numpy as np
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def sha256_file(path: PathLike) -> str:
    """Hash of the file as the open transaction will publish it."""
    h = hashlib.sha256()
    with open(current_path(path), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hdf5_bytes(fill) -> bytes:
    """An HDF5 file built in memory by ``fill(h5py.File)``.

    h5py crashes the process (SIGSEGV) when the disk fills under it; built in memory,
    the bytes reach the disk through :func:`write_bytes`, whose failure is an error.
    """
    import io as _io

    import h5py

    buf = _io.BytesIO()
    with h5py.File(buf, "w") as f:
        fill(f)
    return buf.getvalue()
