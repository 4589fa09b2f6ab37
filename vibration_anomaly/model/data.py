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

The records themselves (formats, size and sample checks) are read by
``model.records``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vibration_anomaly.errors import InputError
from vibration_anomaly.model.records import _check_path, check_rate, load_signal, rates_agree

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
        raise InputError(
            "--data", str(d), "is not a directory; expected a dataset directory holding manifest.csv"
        )
    path = d / "manifest.csv"
    if not path.exists():
        raise InputError(
            str(data_dir),
            "manifest.csv",
            "not found; expected a manifest with columns file, condition, fs_hz",
        )
    st = _check_path(path, "manifest.csv")
    if st.st_size > MAX_MANIFEST_BYTES:
        raise InputError(
            str(path), "size", f"{st.st_size} bytes; a manifest is at most {MAX_MANIFEST_BYTES} bytes"
        )
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
            raise InputError(
                str(path), col, f"column missing (columns found: {', '.join(map(repr, columns))})"
            )
    if len(set(columns)) != len(columns):
        dup = sorted({c for c in columns if columns.count(c) > 1})
        raise InputError(str(path), dup[0], "column appears twice; the second would silently win")
    seen: dict[str, int] = {}
    for i, r in enumerate(rows, start=2):  # line 1 is the header
        where = f"line {i}"
        if None in r:
            raise InputError(
                str(path), where, f"{len(columns) + len(r[None])} values for {len(columns)} columns"
            )
        file, cond = r.get("file"), r.get("condition")
        if not file or not file.strip():
            raise InputError(
                str(path), f"{where}: file", "empty; expected a record path relative to the manifest"
            )
        if cond is None or not cond.strip():
            raise InputError(
                str(path), f"{where}: condition", f"empty for {file}; expected 'normal' or a fault label"
            )
        if cond != cond.strip():
            fix = HEALTHY if cond.strip().lower() == HEALTHY else cond.strip()
            raise InputError(
                str(path),
                f"{where}: condition",
                f"{cond!r} has surrounding spaces; labels are matched exactly (write {fix!r})",
            )
        if cond != HEALTHY and cond.lower() == HEALTHY:
            raise InputError(
                str(path),
                f"{where}: condition",
                f"{cond!r} is not {HEALTHY!r}; labels are matched exactly and only {HEALTHY!r} means healthy",
            )
        if file in seen:
            raise InputError(
                str(path), f"{where}: file", f"{file} is listed twice (first at line {seen[file]})"
            )
        seen[file] = i
        fs_txt = (r.get("fs_hz") or "").strip()
        if fs_txt:
            check_rate(fs_txt, str(path), f"{where}: fs_hz")
    return rows


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
    healthy_names = {
        (r.get("machine") if has_machine else _stem(r["file"], r["condition"]))
        for r in rows
        if r["condition"] == HEALTHY
    }
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
            raise InputError(
                mpath,
                f"{r['file']}: fs_hz",
                f"manifest says {fs_man:g} Hz but the file states {fs_file:g} Hz; fix one of them",
            )
        fs = fs_man if fs_man is not None else fs_file
        if fs is None:
            raise InputError(str(rec_path), "fs_hz", "sampling rate unknown: give fs_hz in the manifest")
        if has_machine and r.get("machine"):
            machines: tuple[str, ...] = (r["machine"],)
        else:
            st = _stem(r["file"], r["condition"])
            machines = (st,) if st in healthy_names else tuple(sorted(n for n in healthy_names if n))
        meta: dict[str, Any] = dict(r)
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
        for rec in out:
            if name not in rec.machines or rec is ref:
                continue
            if not rates_agree(rec.fs_hz, ref.fs_hz):
                raise InputError(
                    mpath,
                    f"{rec.file}: fs_hz",
                    f"{rec.fs_hz:g} Hz, but machine {name} was recorded at "
                    f"{ref.fs_hz:g} Hz ({ref.file}); one machine, one rate (resample, or give it "
                    "its own machine name)",
                )
            if rec.signal.shape[1] != ref.signal.shape[1]:
                raise InputError(
                    mpath,
                    f"{rec.file}: channels",
                    f"{rec.signal.shape[1]} channels, but machine {name} "
                    f"has {ref.signal.shape[1]} ({ref.file})",
                )
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
