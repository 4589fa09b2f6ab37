"""Loading one vibration record: .npz, CSV or rosbag2 (sqlite3 / mcap), refused by name when it cannot be one.

Record formats:

* ``.npz``: every 1-D numeric array of the record length is a channel
  (``de``, ``fe`` in the shared sets; ``x``, ``y``, ``z`` also work) or a
  2-D array ``data`` / ``signal`` (n_samples, n_channels); optional ``fs``.
* ``.csv``: a header row, first column time in seconds, then 1 or 3 axes.
  ``fs_hz`` from the manifest, else from the median time step.
* rosbag2 (a directory with metadata.yaml, or a .db3 / .mcap file): the
  ``linear_acceleration`` of every sensor_msgs/msg/Imu message on the first
  Imu topic (3 channels), read with the ``rosbags`` package.

``load_record`` refuses a path that cannot be a record before opening it (a FIFO,
a device, a stray directory); each loader checks the size from the file's own
headers before reading the data (``MAX_RECORD_BYTES``, ``MAX_CSV_BYTES``); the
samples read must be finite, at least 2, in at least 1 channel. The dataset
layer (manifest, machines) is ``model.data``.
"""

from __future__ import annotations

import os
import stat
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vibration_anomaly.errors import InputError

MAX_RECORD_BYTES = 1024 * 1024 * 1024
"""Decoded size limit of one record (float64 samples x channels): 1 GiB is ~37 h of 1 kHz 3-axis IMU.

Checked from the file's own headers (npz member sizes, rosbag2 message
counts, CSV file size) before the data is read, so a multi-GB file is refused
in milliseconds instead of filling memory.
"""

MAX_CSV_BYTES = 256 * 1024 * 1024
"""CSV text is ~10x its decoded size in numpy while parsing; 256 MiB keeps a load under ~3 GB."""

MAX_RECORD_CHANNELS = 16

MAX_FS_HZ = 1_000_000.0
"""No vibration sensor this package serves samples at 1 MHz; a larger fs_hz is a unit mistake."""

RATE_TOLERANCE = 0.005
"""Two statements of one rate (manifest vs file, --fs-hz vs file) agree within 0.5 %."""

RECORD_SUFFIXES = (".npz", ".csv", ".db3", ".mcap")


@dataclass
class LoadedSignal:
    """A record as read: samples (n, C) float64, the rate the file states, and its timestamps if any."""

    signal: np.ndarray
    fs_hz: float | None
    timestamps: np.ndarray | None = None  # seconds, increasing; None for formats without time


def check_rate(value: Any, source: str, field: str) -> float:
    """A sampling rate: finite, > 0 and at most MAX_FS_HZ; anything else is refused by name."""
    try:
        fs = float(value)
    except (TypeError, ValueError):
        raise InputError(source, field, f"expected a sampling rate in Hz, got {value!r}") from None
    if not np.isfinite(fs) or fs <= 0 or fs > MAX_FS_HZ:
        raise InputError(source, field, f"expected a finite rate > 0 and <= {MAX_FS_HZ:g} Hz, got {value!r}")
    return fs


def rates_agree(a: float, b: float) -> bool:
    return abs(a - b) <= RATE_TOLERANCE * max(a, b)


def _check_path(path: Path, field: str, *, allow_dir: bool = False) -> os.stat_result:
    """Refuse at once a missing path, a FIFO or device (reading would hang or never end), a stray directory."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(str(path), field, "not found") from None
    except OSError as e:
        raise InputError(str(path), field, f"cannot be read: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        if not allow_dir:
            raise InputError(str(path), field, "is a directory; expected a file")
        return st
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a FIFO (named pipe)"
            if stat.S_ISFIFO(st.st_mode)
            else (
                "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file"
            )
        )
        raise InputError(str(path), field, f"is {kind}; expected a regular file")
    if not os.access(path, os.R_OK):
        raise InputError(str(path), field, "cannot be read: permission denied")
    return st


def _npz_member_bytes(path: Path) -> int:
    with zipfile.ZipFile(path) as zf:
        return sum(i.file_size for i in zf.infolist())


def load_npz(path: Path) -> tuple[np.ndarray, float | None]:
    """Channels of an .npz record; corrupt, truncated or oversized archives are refused by name."""
    src = str(path)
    try:
        total = _npz_member_bytes(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise InputError(src, "npz", f"not a readable .npz archive (corrupt or truncated?): {e}") from None
    if total > MAX_RECORD_BYTES:
        raise InputError(
            src,
            "size",
            f"{total} bytes of arrays once unpacked; the limit is {MAX_RECORD_BYTES} "
            "(checked before unpacking); split the record",
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            return _npz_channels(z, src)
    except InputError:
        raise
    except Exception as e:  # zip, zlib, npy-header or pickle refusals: all mean "this file is damaged"
        raise InputError(
            src, "npz", f"cannot read ({type(e).__name__}: {e}); corrupt or truncated?"
        ) from None


def _npz_channels(z: Any, src: str) -> tuple[np.ndarray, float | None]:
    fs = None
    if "fs" in z.files:
        fs_arr = z["fs"]
        if fs_arr.size != 1:
            raise InputError(src, "fs", f"expected one number, got shape {fs_arr.shape}")
        fs = check_rate(fs_arr.reshape(()).item(), src, "fs")
    for key in ("data", "signal"):
        if key in z.files and z[key].ndim == 2:
            arr = z[key]
            if arr.dtype.kind not in "fiu":
                raise InputError(src, key, f"expected real numbers, got dtype {arr.dtype}")
            if not 1 <= arr.shape[1] <= MAX_RECORD_CHANNELS:
                raise InputError(
                    src, key, f"expected (n_samples, 1..{MAX_RECORD_CHANNELS} channels), got {arr.shape}"
                )
            return np.asarray(arr, dtype=np.float64), fs
    chans = [
        k for k in z.files if k != "fs" and z[k].ndim == 1 and z[k].size > 1 and z[k].dtype.kind in "fiu"
    ]
    if not chans:
        raise InputError(src, "arrays", "no 1-D signal arrays (e.g. de, fe, x, y, z) in npz")
    n = max(z[k].size for k in chans)
    chans = [k for k in chans if z[k].size == n]
    if len(chans) > MAX_RECORD_CHANNELS:
        raise InputError(src, "arrays", f"{len(chans)} channels; at most {MAX_RECORD_CHANNELS}")
    return np.stack([np.asarray(z[k], dtype=np.float64) for k in chans], axis=1), fs


def load_csv(path: Path) -> tuple[np.ndarray, float | None]:
    loaded = _load_csv(path)
    return loaded.signal, loaded.fs_hz


def _load_csv(path: Path) -> LoadedSignal:
    """time,axis... rows; time must strictly increase (shuffled or backward rows are refused by line)."""
    src = str(path)
    size = os.stat(path).st_size
    if size > MAX_CSV_BYTES:
        raise InputError(
            src,
            "size",
            f"{size} bytes; CSV records are limited to {MAX_CSV_BYTES} bytes "
            "(checked before reading); use .npz for long records",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns on an empty file; we refuse it below instead
            arr = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(src, "encoding", f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except ValueError as e:
        raise InputError(
            src, "csv", f"expected a header row then numeric columns time,axis...: {e}"
        ) from None
    if arr.shape[0] < 2:
        raise InputError(src, "rows", f"{arr.shape[0]} data rows; expected a header then at least 2 rows")
    if arr.shape[1] not in (2, 4):
        raise InputError(src, "columns", f"expected time + 1 or 3 axes, got {arr.shape[1]} columns")
    t = arr[:, 0]
    if not np.all(np.isfinite(t)):
        i = int(np.flatnonzero(~np.isfinite(t))[0])
        raise InputError(src, f"line {i + 2}: time", f"{float(t[i])!r}; expected a finite time in seconds")
    dt = np.diff(t)
    bad = np.flatnonzero(dt <= 0)
    if len(bad):
        i = int(bad[0]) + 1
        how = "repeats" if dt[bad[0]] == 0 else "goes backward from"
        raise InputError(
            src,
            f"line {i + 2}: time",
            f"{float(t[i]):g} {how} the previous row's {float(t[i - 1]):g}; timestamps "
            f"must increase ({len(bad)} such rows: shuffled, backward or duplicated rows?)",
        )
    med = float(np.median(dt))
    return LoadedSignal(arr[:, 1:], check_rate(1.0 / med, src, "time (median step)"), t)


def load_rosbag(path: Path) -> tuple[np.ndarray, float | None]:
    loaded = _load_rosbag(path)
    return loaded.signal, loaded.fs_hz


@contextmanager
def open_bag(path: Path) -> Iterator[Any]:
    """A ``rosbags`` reader on the bag at ``path`` (its folder, or a .db3 / .mcap in it); every failure
    inside the ``with`` that is not already an :class:`InputError` becomes a named refusal."""
    try:
        from rosbags.highlevel import AnyReader
    except ImportError:  # pragma: no cover - depends on the [eval] extra
        raise InputError(
            str(path), "rosbag2", "reading rosbag2 needs the 'rosbags' package (pip install .[eval])"
        ) from None
    try:
        with AnyReader([path if path.is_dir() else path.parent]) as reader:
            yield reader
    except InputError:
        raise
    except Exception as e:  # rosbags raises its own types for every damaged-bag case; all are refusals here
        raise InputError(str(path), "rosbag2", f"cannot read the bag ({type(e).__name__}: {e})") from None


def _load_rosbag(path: Path) -> LoadedSignal:
    """linear_acceleration of the first Imu topic; every rosbags failure becomes a named refusal."""
    src = str(path)
    with open_bag(path) as reader:
        conns = [c for c in reader.connections if c.msgtype == "sensor_msgs/msg/Imu"]
        if not conns:
            raise InputError(src, "topics", "no sensor_msgs/msg/Imu topic in the bag")
        topic = sorted(c.topic for c in conns)[0]
        conns = [c for c in conns if c.topic == topic]
        count = int(sum(c.msgcount for c in conns))
        if count * 4 * 8 > MAX_RECORD_BYTES:
            raise InputError(
                src,
                topic,
                f"{count} Imu messages; the limit is {MAX_RECORD_BYTES // 32} "
                "(checked before reading); split the bag",
            )
        vals = np.empty((count, 5), dtype=np.float64)
        n = 0
        for conn, ts, raw in reader.messages(connections=conns):
            if n >= count:
                raise InputError(src, topic, f"more messages than the bag's metadata states ({count})")
            m: Any = reader.deserialize(raw, conn.msgtype)
            a = m.linear_acceleration
            vals[n] = (m.header.stamp.sec + m.header.stamp.nanosec * 1e-9, ts * 1e-9, a.x, a.y, a.z)
            n += 1
    if n == 0:
        raise InputError(src, "messages", f"no Imu messages on {topic}")
    vals = vals[:n]
    # Header stamps say when the sensor sampled; a driver that leaves them at 0 gets the recording time.
    tcol = 0 if np.ptp(vals[:, 0]) > 0 else 1
    vals = vals[np.argsort(vals[:, tcol], kind="stable")]
    t = vals[:, tcol]
    dt = np.diff(t)
    pos = dt[dt > 0]
    fs = check_rate(1.0 / float(np.median(pos)), src, "stamps (median step)") if len(pos) else None
    return LoadedSignal(vals[:, 2:], fs, t)


def load_record(path: Path) -> LoadedSignal:
    """Samples, stated rate and timestamps of a record, refusing what cannot be one before reading it."""
    path = Path(path)
    st = _check_path(path, "file", allow_dir=True)
    suffix = path.suffix.lower()
    if stat.S_ISDIR(st.st_mode):
        if not (path / "metadata.yaml").is_file():
            raise InputError(
                str(path),
                "file",
                "is a directory without metadata.yaml; expected a rosbag2 "
                "directory, or a .npz / .csv / .db3 / .mcap file",
            )
        loaded = _load_rosbag(path)
    elif suffix in (".db3", ".mcap"):
        if not (path.parent / "metadata.yaml").is_file():
            raise InputError(
                str(path),
                "file",
                f"a {suffix} file is read through its bag folder, and "
                f"{path.parent} has no metadata.yaml; give the bag folder as recorded by ros2 bag",
            )
        loaded = _load_rosbag(path)
    elif suffix == ".npz":
        sig, fs = load_npz(path)
        loaded = LoadedSignal(sig, fs)
    elif suffix == ".csv":
        loaded = _load_csv(path)
    else:
        raise InputError(
            str(path), "file", "unknown format; expected .npz, .csv, or a rosbag2 (.db3/.mcap/dir)"
        )
    sig = loaded.signal
    if sig.ndim != 2 or sig.shape[0] < 2 or sig.shape[1] < 1:
        raise InputError(
            str(path), "samples", f"expected (n_samples >= 2, n_channels >= 1), got shape {sig.shape}"
        )
    finite = np.isfinite(sig)
    if not finite.all():
        bad = np.flatnonzero(~finite.all(axis=1))
        raise InputError(
            str(path),
            "samples",
            f"{len(bad)} samples hold NaN or inf (first at sample {int(bad[0])}); "
            "a dropout or a NaN burst: cut or repair the record",
        )
    return loaded


def load_signal(path: Path) -> tuple[np.ndarray, float | None]:
    """(n_samples, n_channels) float64 and the rate the file itself states (or None)."""
    loaded = load_record(path)
    return loaded.signal, loaded.fs_hz
