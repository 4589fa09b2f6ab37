"""Low-level file helpers every layer may use: bounded reads of regular files, atomic outputs.

This module imports nothing of the package but ``errors``, so ``core`` (which
runs on the robot and must not import the command line) can use it as well as
the commands. The command line's own checks (``vibration_anomaly.cli``) follow
the same rules:

* a path that is a FIFO, a device, a socket or a directory is refused from
  ``stat`` alone, before any ``open`` (opening a FIFO for reading blocks until
  a writer appears; a device streams forever);
* a file with a known ceiling is refused by size before it is read;
* an output is written to a uniquely named temp file (or folder) beside the
  target and renamed over it only on success; on any failure the temp is
  removed, so a failed run neither leaves a stray file nor destroys the old one.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vibration_anomaly.errors import InputError


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words, for a refusal."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_regular_file(path: Path | str, what: str, *, max_bytes: int | None = None) -> os.stat_result:
    """``stat`` ``path`` and refuse at once what cannot be a readable ``what`` file (InputError naming it)."""
    p = str(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise InputError(p, "path", f"{what} not found") from None
    except OSError as exc:
        raise InputError(p, "path", f"{what} cannot be read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(p, "path", f"is {kind_of(st.st_mode)}; expected a regular {what} file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise InputError(
            p,
            "size",
            f"{st.st_size} bytes; a {what} file is at most {max_bytes} bytes (checked before reading)",
        )
    return st


def read_regular_file(path: Path | str, what: str, *, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; anything else is an InputError naming the file.

    The file is checked with ``stat`` first, then opened non-blocking and checked
    again on the open descriptor (it may have been swapped for a FIFO in between),
    and never more than ``max_bytes + 1`` bytes are read (it may have grown).
    """
    p = str(path)
    check_regular_file(p, what, max_bytes=max_bytes)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputError(p, "path", f"{what} cannot be read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(p, "path", f"is {kind_of(st.st_mode)}; expected a regular {what} file")
        chunks: list[bytes] = []
        total = 0
        while total <= max_bytes:
            try:
                chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            except OSError as exc:
                raise InputError(p, "read", f"{what} cannot be read: {exc.strerror or exc}") from None
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > max_bytes:
            raise InputError(
                p, "size", f"more than {max_bytes} bytes; a {what} file is at most {max_bytes} bytes"
            )
        return b"".join(chunks)
    finally:
        os.close(fd)


def _created_folders(parent: Path) -> list[Path]:
    """Create ``parent`` (and missing ancestors); return the folders that did not exist, deepest first."""
    missing = []
    folder = parent
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    parent.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first; a folder someone else filled meanwhile stays
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextlib.contextmanager
def atomic_path(path: Path | str, *, mode: int = 0o644) -> Iterator[Path]:
    """Yield a unique temp file beside ``path``; rename it over ``path`` only when the block succeeds.

    Readers (and a power cut) see the old file or the new one, never half of one.
    On failure (an exception, Ctrl-C) the temp file is removed, the old file is
    untouched, and folders created on the way to ``path`` are removed again.
    """
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    created = _created_folders(parent)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=parent)
    except BaseException:
        _remove_empty(created)
        raise
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, mode)
        yield tmp
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        _remove_empty(created)
        raise


def write_bytes_atomic(path: Path | str, data: bytes | bytearray | memoryview, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` through a temp file beside it, flushed to disk before the rename."""
    with atomic_path(path, mode=mode) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_text_atomic(path: Path | str, text: str, *, mode: int = 0o644) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), mode=mode)


@contextlib.contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """Yield an empty temp folder for an output folder ``path``; move its contents there only on success.

    * ``path`` does not exist: the temp folder is made beside it and renamed to
      ``path`` at the end (one rename: the folder appears complete or not at all).
    * ``path`` exists (``--out .`` or a model folder being retrained): the temp
      folder is made inside it (same file system, and writable wherever ``path``
      is) and each file is renamed over its namesake at the end; files of
      ``path`` that the block did not write are left alone.

    On failure the temp folder and everything in it is removed, as are folders
    created on the way to ``path``; existing files are untouched.
    """
    p = Path(path)
    created: list[Path] = []
    if p.is_dir():
        tmp = Path(tempfile.mkdtemp(prefix=".partial.", suffix=".tmp", dir=p))
    else:
        parent = p.parent if str(p.parent) else Path(".")
        created = _created_folders(parent)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".tmp", dir=parent))
        except BaseException:
            _remove_empty(created)
            raise
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if tmp.parent.resolve() != p.resolve():
            try:
                os.rename(tmp, p)  # onto a missing (or empty) folder
                return
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not p.is_dir():
                    raise
        for entry in sorted(tmp.iterdir()):  # p appeared meanwhile, or p existed: file by file
            os.replace(entry, p / entry.name)
        tmp.rmdir()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
        raise


def json_safe(value: Any) -> Any:
    """NaN/inf become null (``json.dumps`` would write bare NaN, which no strict JSON parser accepts)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        value = value.tolist()
        if isinstance(value, list):
            return json_safe(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
