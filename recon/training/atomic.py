"""Atomic file writes: a temporary file in the same folder, fsync, then ``os.replace``.

A reader, or a process killed mid-write, sees the old file or the new one, never a torn one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Callable, Union

__all__ = ["write_atomic", "remove_stale_temporaries", "remove_stale_temporaries_in",
           "probe_writable"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Union[str, os.PathLike], write: Callable[[IO], None],
                 binary: bool = True) -> Path:
    """Call ``write(f)`` on a temporary file next to ``path``, fsync, and rename it to ``path``.

    The file gets the usual permissions (``0o666`` minus the umask), not ``mkstemp``'s ``0o600``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"newline": ""})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def remove_stale_temporaries(path: Union[str, os.PathLike]) -> int:
    """Delete temporaries ``.NAME.*.tmp`` left next to ``path`` by a killed writer; count them."""
    path = Path(path)
    if not path.parent.is_dir():
        return 0
    return _unlink_files(path.parent.glob(f".{path.name}.*.tmp"))


def remove_stale_temporaries_in(folder: Union[str, os.PathLike]) -> int:
    """Delete the temporaries of every :func:`write_atomic` killed before its rename anywhere
    below ``folder`` (for a writer that owns the whole folder); count them."""
    return _unlink_files(Path(folder).rglob(".*.tmp"))


def _unlink_files(paths) -> int:
    n = 0
    for tmp in paths:
        try:
            if tmp.is_file():
                tmp.unlink()
                n += 1
        except OSError:
            pass
    return n


def probe_writable(folder: Union[str, os.PathLike]) -> None:
    """Create and remove a temporary file in ``folder``; the ``OSError`` of a folder that cannot
    take new files (read-only, missing) propagates."""
    with tempfile.TemporaryFile(dir=folder):
        pass
