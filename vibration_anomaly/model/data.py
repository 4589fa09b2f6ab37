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


def read_manifest(data_dir: Path) -> list[dict[str, str]]:
    path = Path(data_dir) / "manifest.csv"
    if not path.is_file():
        raise InputError(str(data_dir), "manifest.csv", "not found; expected a manifest with columns file, condition, fs_hz")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise InputError(str(path), "rows", "manifest has no records")
    for col in ("file", "condition"):
        if col not in rows[0]:
            raise InputError(str(path), col, "column missing")
    return rows


def load_npz(path: Path) -> tuple[np.ndarray, float | None]:
    with np.load(path, allow_pickle=False) as z:
        fs = float(z["fs"]) if "fs" in z.files else None
        for key in ("data", "signal"):
            if key in z.files and z[key].ndim == 2:
                return np.asarray(z[key], dtype=np.float64), fs
        chans = [k for k in z.files if z[k].ndim == 1 and z[k].size > 1 and z[k].dtype.kind in "fiu"]
        if not chans:
            raise InputError(str(path), "arrays", "no 1-D signal arrays (e.g. de, fe, x, y, z) in npz")
        n = max(z[k].size for k in chans)
        chans = [k for k in chans if z[k].size == n]
        return np.stack([np.asarray(z[k], dtype=np.float64) for k in chans], axis=1), fs


def load_csv(path: Path) -> tuple[np.ndarray, float | None]:
    try:
        arr = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    except ValueError as e:
        raise InputError(str(path), "csv", f"expected a header row then numeric columns time,axis...: {e}") from None
    if arr.shape[1] not in (2, 4):
        raise InputError(str(path), "columns", f"expected time + 1 or 3 axes, got {arr.shape[1]} columns")
    t = arr[:, 0]
    dt = np.median(np.diff(t)) if len(t) > 1 else 0.0
    return arr[:, 1:], (1.0 / dt if dt > 0 else None)


def load_rosbag(path: Path) -> tuple[np.ndarray, float | None]:
    try:
        from rosbags.highlevel import AnyReader
    except ImportError:  # pragma: no cover - depends on the [eval] extra
        raise InputError(str(path), "rosbag2", "reading rosbag2 needs the 'rosbags' package (pip install .[eval])") from None
    bag = path if path.is_dir() else path.parent
    vals: list[tuple[int, float, float, float]] = []
    with AnyReader([bag]) as reader:
        conns = [c for c in reader.connections if c.msgtype == "sensor_msgs/msg/Imu"]
        if not conns:
            raise InputError(str(path), "topics", "no sensor_msgs/msg/Imu topic in the bag")
        topic = sorted(c.topic for c in conns)[0]
        conns = [c for c in conns if c.topic == topic]
        for conn, _ts, raw in reader.messages(connections=conns):
            m = reader.deserialize(raw, conn.msgtype)
            st = m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec
            a = m.linear_acceleration
            vals.append((st, a.x, a.y, a.z))
    if not vals:
        raise InputError(str(path), "messages", f"no Imu messages on {topic}")
    arr = np.asarray(sorted(vals), dtype=np.float64)
    dt = np.median(np.diff(arr[:, 0])) / 1e9 if len(arr) > 1 else 0.0
    return arr[:, 1:], (1.0 / dt if dt > 0 else None)


def load_signal(path: Path) -> tuple[np.ndarray, float | None]:
    """(n_samples, n_channels) float64 and the rate the file itself states (or None)."""
    if not path.exists():
        raise InputError(str(path), "file", "record not found")
    if path.is_dir() or path.suffix in (".db3", ".mcap"):
        return load_rosbag(path)
    if path.suffix == ".npz":
        return load_npz(path)
    if path.suffix == ".csv":
        return load_csv(path)
    raise InputError(str(path), "file", "unknown format; expected .npz, .csv, or a rosbag2 (.db3/.mcap/dir)")


def _stem(file: str, condition: str) -> str:
    s = Path(file).name
    for suf in (".npz", ".csv", ".db3", ".mcap"):
        s = s.removesuffix(suf)
    return s[len(condition) + 1 :] if s.startswith(condition + "_") else s


def load_dataset(data_dir: str | Path, bearing: dict[str, float] | None = None) -> list[Record]:
    """All records of a manifest directory, with machines assigned (see module docstring)."""
    d = Path(data_dir)
    rows = read_manifest(d)
    has_machine = "machine" in rows[0] and any(r.get("machine") for r in rows)
    healthy_names = {(r.get("machine") if has_machine else _stem(r["file"], r["condition"])) for r in rows
                     if r["condition"] == HEALTHY}
    if not healthy_names:
        raise InputError(str(d / "manifest.csv"), "condition", "no record with condition 'normal' to calibrate on")
    out = []
    for r in rows:
        sig, fs_file = load_signal(d / r["file"])
        fs_txt = r.get("fs_hz", "")
        fs = float(fs_txt) if fs_txt not in ("", None) else fs_file
        if fs is None or not np.isfinite(fs) or fs <= 0:
            raise InputError(str(d / r["file"]), "fs_hz", "sampling rate unknown: give fs_hz in the manifest")
        if has_machine and r.get("machine"):
            machines: tuple[str, ...] = (r["machine"],)
        else:
            st = _stem(r["file"], r["condition"])
            machines = (st,) if st in healthy_names else tuple(sorted(healthy_names))
        meta = dict(r)
        if bearing:
            for k, v in bearing.items():
                meta.setdefault(k, v)
                if meta[k] in ("", None):
                    meta[k] = v
        out.append(Record(r["file"], r["condition"], fs, sig, machines, meta))
    return out


def cut_windows(signal: np.ndarray, n: int, hop: int | None = None) -> np.ndarray:
    """Non-overlapping (or ``hop``-spaced) windows (N, n, C) from the start of a record."""
    hop = hop or n
    if signal.shape[0] < n:
        return np.zeros((0, n, signal.shape[1]))
    starts = range(0, signal.shape[0] - n + 1, hop)
    return np.stack([signal[s : s + n] for s in starts])
