"""Loading vibration datasets: a manifest.csv plus .npz, CSV or rosbag2 (sqlite3 / mcap) records.

Manifest columns used: ``file`` (relative path), ``condition`` (``normal``
means healthy), ``fs_hz``; optional ``machine`` (groups records of one
machine), ``rpm`` and defect orders ``bpfo``, ``bpfi``, ``bsf``, ``ftf``
(multiples of shaft speed) for the envelope baseline.

Without a ``machine`` column, machines are assigned by a documented rule:
each healthy record is its own machine, named by its file stem with a leading
``<condition>_`` removed (``normal_Bearing1_1.npz`` -> ``Bearing1_1``); a
faulty record whose stem, so stripped, names a machine belongs to it
(``degraded_Bearing1_1.npz``); any other faulty record belongs to every
machine (with a single healthy machine, as in CWRU, that is the natural
reading; with several, each is scored under each machine's calibration).

Record formats:

* ``.npz``: every 1-D numeric array of the record length is a channel
  (``de``, ``fe`` in the shared sets; ``x``, ``y``, ``z`` also work) or a
  2-D array ``data`` / ``signal`` (n_samples, n_channels); optional ``fs``.
* ``.csv``: a header row, first column time in seconds, then 1 or 3 axes.
  ``fs_hz`` from the manifest, else from the median time step.
* rosbag2 (a directory with metadata.yaml, or a .db3 / .mcap file): the
  ``linear_acceleration`` of every sensor_msgs/msg/Imu message on the first
  Imu topic (3 channels), read with the ``rosbags`` package.
"""

from __future__ import annotations

import csv
import os
import stat
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vibration_anomaly.errors import InputError

HEALTHY = "normal"

# Defect orders (multiples of shaft speed) of the bearings of the shared sets (see their README.md).
BEARING_PRESETS: dict[str, dict[str, float]] = {
    "cwru-6205": {"bpfo": 3.5848, "bpfi": 5.4152, "bsf": 4.7135, "ftf": 0.39828},
    "femto": {"bpfo": 5.611, "bpfi": 7.389, "bsf": 7.178, "ftf": 0.4316},
}


@dataclass
class Record:
    file: str
    condition: str
    fs_hz: float
    signal: np.ndarray  # (n_samples, n_channels) float64
    machines: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return self.condition == HEALTHY

    def orders(self) -> dict[str, float]:
        out = {}
        for k in ("bpfo", "bpfi", "bsf", "ftf"):
            v = self.meta.get(k)
            try:
                if v not in (None, ""):
                    out[k] = float(v)
            except (TypeError, ValueError):
                pass
        return out

    def shaft_hz(self) -> float | None:
        try:
            rpm = float(self.meta.get("rpm") or "nan")
        except (TypeError, ValueError):
            return None
        return rpm / 60.0 if np.isfinite(rpm) and rpm > 0 else None


MAX_MANIFEST_BYTES = 16 * 1024 * 1024
"""A manifest is a few hundred rows of text; a larger file is not one (refused before reading)."""

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
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else (
            "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
        raise InputError(str(path), field, f"is {kind}; expected a regular file")
    if not os.access(path, os.R_OK):
        raise InputError(str(path), field, "cannot be read: permission denied")
    return st


def read_manifest(data_dir: Path) -> list[dict[str, str]]:
    """Rows of manifest.csv, each checked: file and condition present, labels exact, fs_hz a sane rate.

    A label such as ``Normal `` used to become a fault class of its own and
    quietly turn healthy data into "faults"; labels are matched exactly, and a
    near miss of ``normal`` is refused with the fix.
    """
    d = Path(data_dir)
    if not d.exists():
        raise InputError("--data", str(d), "not found; expected a dataset directory holding manifest.csv")
    if not d.is_dir():
        raise InputError("--data", str(d), "is not a directory; expected a dataset directory holding manifest.csv")
    path = d / "manifest.csv"
    if not path.exists():
        raise InputError(str(data_dir), "manifest.csv", "not found; expected a manifest with columns file, condition, fs_hz")
    st = _check_path(path, "manifest.csv")
    if st.st_size > MAX_MANIFEST_BYTES:
        raise InputError(str(path), "size", f"{st.st_size} bytes; a manifest is at most {MAX_MANIFEST_BYTES} bytes")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            columns = list(reader.fieldnames or [])
    except UnicodeDecodeError as e:
        raise InputError(str(path), "encoding", f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise InputError(str(path), "csv", f"not a readable CSV: {e}") from None
    if not rows:
        raise InputError(str(path), "rows", "manifest has no records")
    for col in ("file", "condition"):
        if col not in columns:
            raise InputError(str(path), col, f"column missing (columns found: {', '.join(map(repr, columns))})")
    if len(set(columns)) != len(columns):
        dup = sorted({c for c in columns if columns.count(c) > 1})
        raise InputError(str(path), dup[0], "column appears twice; the second would silently win")
    seen: dict[str, int] = {}
    for i, r in enumerate(rows, start=2):  # line 1 is the header
        where = f"line {i}"
        if None in r:
            raise InputError(str(path), where, f"{len(columns) + len(r[None])} values for {len(columns)} columns")  # type: ignore[index]
        file, cond = r.get("file"), r.get("condition")
        if not file or not file.strip():
            raise InputError(str(path), f"{where}: file", "empty; expected a record path relative to the manifest")
        if cond is None or not cond.strip():
            raise InputError(str(path), f"{where}: condition", f"empty for {file}; expected 'normal' or a fault label")
        if cond != cond.strip():
            fix = HEALTHY if cond.strip().lower() == HEALTHY else cond.strip()
            raise InputError(str(path), f"{where}: condition", f"{cond!r} has surrounding spaces; labels are "
                             f"matched exactly (write {fix!r})")
        if cond != HEALTHY and cond.lower() == HEALTHY:
            raise InputError(str(path), f"{where}: condition", f"{cond!r} is not {HEALTHY!r}; labels are matched "
                             f"exactly and only {HEALTHY!r} means healthy")
        if file in seen:
            raise InputError(str(path), f"{where}: file", f"{file} is listed twice (first at line {seen[file]})")
        seen[file] = i
        fs_txt = (r.get("fs_hz") or "").strip()
        if fs_txt:
            check_rate(fs_txt, str(path), f"{where}: fs_hz")
    return rows


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
        raise InputError(src, "size", f"{total} bytes of arrays once unpacked; the limit is {MAX_RECORD_BYTES} "
                         "(checked before unpacking); split the record")
    try:
        with np.load(path, allow_pickle=False) as z:
            return _npz_channels(z, src)
    except InputError:
        raise
    except Exception as e:  # zip, zlib, npy-header or pickle refusals: all mean "this file is damaged"
        raise InputError(src, "npz", f"cannot read ({type(e).__name__}: {e}); corrupt or truncated?") from None


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
                raise InputError(src, key, f"expected (n_samples, 1..{MAX_RECORD_CHANNELS} channels), got {arr.shape}")
            return np.asarray(arr, dtype=np.float64), fs
    chans = [k for k in z.files if k != "fs" and z[k].ndim == 1 and z[k].size > 1 and z[k].dtype.kind in "fiu"]
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
        raise InputError(src, "size", f"{size} bytes; CSV records are limited to {MAX_CSV_BYTES} bytes "
                         "(checked before reading); use .npz for long records")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns on an empty file; we refuse it below instead
            arr = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(src, "encoding", f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except ValueError as e:
        raise InputError(src, "csv", f"expected a header row then numeric columns time,axis...: {e}") from None
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
        raise InputError(src, f"line {i + 2}: time", f"{float(t[i]):g} {how} the previous row's {float(t[i - 1]):g}; timestamps "
                         f"must increase ({len(bad)} such rows: shuffled, backward or duplicated rows?)")
    med = float(np.median(dt))
    return LoadedSignal(arr[:, 1:], check_rate(1.0 / med, src, "time (median step)"), t)


def load_rosbag(path: Path) -> tuple[np.ndarray, float | None]:
    loaded = _load_rosbag(path)
    return loaded.signal, loaded.fs_hz


def _load_rosbag(path: Path) -> LoadedSignal:
    """linear_acceleration of the first Imu topic; every rosbags failure becomes a named refusal."""
    try:
        from rosbags.highlevel import AnyReader
    except ImportError:  # pragma: no cover - depends on the [eval] extra
        raise InputError(str(path), "rosbag2", "reading rosbag2 needs the 'rosbags' package (pip install .[eval])") from None
    bag = path if path.is_dir() else path.parent
    src = str(path)
    try:
        with AnyReader([bag]) as reader:
            conns = [c for c in reader.connections if c.msgtype == "sensor_msgs/msg/Imu"]
            if not conns:
                raise InputError(src, "topics", "no sensor_msgs/msg/Imu topic in the bag")
            topic = sorted(c.topic for c in conns)[0]
            conns = [c for c in conns if c.topic == topic]
            count = int(sum(c.msgcount for c in conns))
            if count * 4 * 8 > MAX_RECORD_BYTES:
                raise InputError(src, topic, f"{count} Imu messages; the limit is {MAX_RECORD_BYTES // 32} "
                                 "(checked before reading); split the bag")
            vals = np.empty((count, 5), dtype=np.float64)
            n = 0
            for conn, ts, raw in reader.messages(connections=conns):
                if n >= count:
                    raise InputError(src, topic, f"more messages than the bag's metadata states ({count})")
                m = reader.deserialize(raw, conn.msgtype)
                a = m.linear_acceleration
                vals[n] = (m.header.stamp.sec + m.header.stamp.nanosec * 1e-9, ts * 1e-9, a.x, a.y, a.z)
                n += 1
    except InputError:
        raise
    except Exception as e:  # rosbags raises its own types for every damaged-bag case; all are refusals here
        raise InputError(src, "rosbag2", f"cannot read the bag ({type(e).__name__}: {e})") from None
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
            raise InputError(str(path), "file", "is a directory without metadata.yaml; expected a rosbag2 "
                             "directory, or a .npz / .csv / .db3 / .mcap file")
        loaded = _load_rosbag(path)
    elif suffix in (".db3", ".mcap"):
        if not (path.parent / "metadata.yaml").is_file():
            raise InputError(str(path), "file", f"a {suffix} file is read through its bag folder, and "
                             f"{path.parent} has no metadata.yaml; give the bag folder as recorded by ros2 bag")
        loaded = _load_rosbag(path)
    elif suffix == ".npz":
        sig, fs = load_npz(path)
        loaded = LoadedSignal(sig, fs)
    elif suffix == ".csv":
        loaded = _load_csv(path)
    else:
        raise InputError(str(path), "file", "unknown format; expected .npz, .csv, or a rosbag2 (.db3/.mcap/dir)")
    sig = loaded.signal
    if sig.ndim != 2 or sig.shape[0] < 2 or sig.shape[1] < 1:
        raise InputError(str(path), "samples", f"expected (n_samples >= 2, n_channels >= 1), got shape {sig.shape}")
    finite = np.isfinite(sig)
    if not finite.all():
        bad = np.flatnonzero(~finite.all(axis=1))
        raise InputError(str(path), "samples", f"{len(bad)} samples hold NaN or inf (first at sample {int(bad[0])}); "
                         "a dropout or a NaN burst: cut or repair the record")
    return loaded


def load_signal(path: Path) -> tuple[np.ndarray, float | None]:
    """(n_samples, n_channels) float64 and the rate the file itself states (or None)."""
    loaded = load_record(path)
    return loaded.signal, loaded.fs_hz


def _stem(file: str, condition: str) -> str:
    s = Path(file).name
    for suf in (".npz", ".csv", ".db3", ".mcap"):
        s = s.removesuffix(suf)
    return s[len(condition) + 1 :] if s.startswith(condition + "_") else s


def load_dataset(data_dir: str | Path, bearing: dict[str, float] | None = None) -> list[Record]:
    """All records of a manifest directory, with machines assigned (see module docstring).

    Refused by name rather than skipped or averaged: a manifest fs_hz that
    disagrees with the rate the file states, and records of one machine at
    different rates or channel counts (their scores would not be comparable,
    and skipping them left NaN tables behind with exit 0).
    """
    d = Path(data_dir)
    rows = read_manifest(d)
    mpath = str(d / "manifest.csv")
    has_machine = "machine" in rows[0] and any(r.get("machine") for r in rows)
    healthy_names = {(r.get("machine") if has_machine else _stem(r["file"], r["condition"])) for r in rows
                     if r["condition"] == HEALTHY}
    healthy_names.discard(None)
    healthy_names.discard("")
    if not healthy_names:
        raise InputError(mpath, "condition", "no record with condition 'normal' to calibrate on")
    out = []
    for r in rows:
        rec_path = d / r["file"]
        sig, fs_file = load_signal(rec_path)
        fs_txt = (r.get("fs_hz") or "").strip()
        fs_man = check_rate(fs_txt, mpath, f"{r['file']}: fs_hz") if fs_txt else None
        if fs_man is not None and fs_file is not None and not rates_agree(fs_man, fs_file):
            raise InputError(mpath, f"{r['file']}: fs_hz", f"manifest says {fs_man:g} Hz but the file states "
                             f"{fs_file:g} Hz; fix one of them")
        fs = fs_man if fs_man is not None else fs_file
        if fs is None:
            raise InputError(str(rec_path), "fs_hz", "sampling rate unknown: give fs_hz in the manifest")
        if has_machine and r.get("machine"):
            machines: tuple[str, ...] = (r["machine"],)
        else:
            st = _stem(r["file"], r["condition"])
            machines = (st,) if st in healthy_names else tuple(sorted(n for n in healthy_names if n))
        meta = dict(r)
        if bearing:
            for k, v in bearing.items():
                meta.setdefault(k, v)
                if meta[k] in ("", None):
                    meta[k] = v
        out.append(Record(r["file"], r["condition"], fs, sig, machines, meta))
    for name in sorted(n for n in healthy_names if n):
        healthy = [r for r in out if r.healthy and name in r.machines]
        if not healthy:
            continue
        ref = healthy[0]
        for r in out:
            if name not in r.machines or r is ref:
                continue
            if not rates_agree(r.fs_hz, ref.fs_hz):
                raise InputError(mpath, f"{r.file}: fs_hz", f"{r.fs_hz:g} Hz, but machine {name} was recorded at "
                                 f"{ref.fs_hz:g} Hz ({ref.file}); one machine, one rate (resample, or give it "
                                 "its own machine name)")
            if r.signal.shape[1] != ref.signal.shape[1]:
                raise InputError(mpath, f"{r.file}: channels", f"{r.signal.shape[1]} channels, but machine {name} "
                                 f"has {ref.signal.shape[1]} ({ref.file})")
    return out


def cut_windows(signal: np.ndarray, n: int, hop: int | None = None) -> np.ndarray:
    """Non-overlapping (or ``hop``-spaced) windows (N, n, C) from the start of a record."""
    if n < 1:
        raise InputError("window", "length", f"expected at least 1 sample, got {n}")
    hop = hop or n
    if signal.shape[0] < n:
        return np.zeros((0, n, signal.shape[1]))
    starts = range(0, signal.shape[0] - n + 1, hop)
    return np.stack([signal[s : s + n] for s in starts])
