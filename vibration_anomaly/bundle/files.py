"""Bounded reads and atomic writes for the small files the bundle code handles.

Bundle, key, firmware and rollback-state files are all small; each is read with
a bound so an endless or huge file costs nothing, and never blocks on a FIFO.
Outputs (the rollback record, keys, the example bundle) are written atomically.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:  # Python 3.10 (Humble robots)
        from importlib.abc import Traversable


def read_limited(source: Path | Traversable, limit: int) -> bytes | None:
    """Read at most ``limit`` bytes; None when the file is larger (checked before any parsing).

    A FIFO, device or directory at the path raises ``OSError`` at once: a plain
    ``open()`` of a FIFO blocks until a writer appears, so it is opened
    non-blocking and checked with ``fstat`` before a byte is read.
    """
    if not isinstance(source, (str, os.PathLike)):
        with source.open("rb") as fh:  # a packaged resource (importlib Traversable)
            data = fh.read(limit + 1)
        return None if len(data) > limit else data
    fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = (
                "a directory"
                if stat.S_ISDIR(mode)
                else "a FIFO (named pipe)"
                if stat.S_ISFIFO(mode)
                else "a device"
                if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "not a regular file"
            )
            raise OSError(errno.EINVAL, f"is {kind}; expected a regular file", str(source))
        data = fh.read(limit + 1)
    return None if len(data) > limit else data


def write_new_file(path: Path, data: bytes, *, mode: int = 0o644, overwrite: bool = False) -> None:
    """Create ``path`` with ``mode`` from the start (a private key is never world-readable, even briefly)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists; refusing to overwrite (use --force)")
    atomic_write(path, data, mode=mode)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write so that readers (and a power cut) see either the old file or the new one, never half."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    # The rename itself is only durable once the directory entry is on disk.
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
