"""The per-machine calibration record: ``Calibration``, its JSON form and the limits checked on load.

Fitted by ``core.calibration.fit``; stored beside the model as JSON and read
back with ``Calibration.load``, which refuses what would make the detector wrong.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vibration_anomaly.core.speed import speed_range
from vibration_anomaly.errors import InputError
from vibration_anomaly.fileio import json_safe, read_regular_file, write_text_atomic

CALIBRATION_VERSION = 1
FRONTENDS = ("banded", "full")
"""The frontends a calibration may have been made with (``model.frontend``); none recorded means "full"."""
Z_CLIP = 1.0e3  # normalised features beyond this are clipped (keeps float32 finite)
QUIET_GATE = 2.0
"""A band whose energy z-score is below -QUIET_GATE has its envelope-kurtosis z-scores capped at 0 (``zscores``)."""


def zscores(features: np.ndarray, mean: np.ndarray, std: np.ndarray, quiet_gate: float = 0.0) -> np.ndarray:
    """Raw features (..., C, T, F) -> z-scores float32, clipped at +-Z_CLIP; with ``quiet_gate`` > 0, a
    band quieter than healthy by more than that many std has no excess envelope kurtosis (features 1, 2).

    Why: a band's envelope kurtosis is lowest when a steady tone fills it (a tone's envelope is flat)
    and about 2 for noise, so a tone that fades (a motor or mesh line, a structural line that stops
    ringing) raises the band's kurtosis while its energy drops. Measured on FEMTO Bearing3_2 through a
    3.2 kHz sensor: a 140 Hz line, 23-29x its band's median power while the machine was calibrated,
    fades to 8-9x; the four bands holding it went to energy z -3 to -8 and kurtosis z +2 to +3.5, and 10
    of 20 held-out healthy windows crossed the 1 % threshold (0 with the gate). A bearing's impacts add
    energy to the band they ring in; a band well below its healthy energy is not where they are.
    Feature 0 is the band's log energy, 1 and 2 its log envelope kurtosis (``model.frontend``)."""
    z = np.clip((np.asarray(features, dtype=np.float64) - mean) / std, -Z_CLIP, Z_CLIP)
    if quiet_gate > 0 and z.shape[-1] >= 3:
        quiet = z[..., 0] < -quiet_gate
        np.minimum(z[..., 1:3], np.where(quiet, 0.0, np.inf)[..., None], out=z[..., 1:3])
    return z.astype(np.float32)


@dataclass(frozen=True, eq=False)
class Calibration:
    """Per-machine normalisation and threshold, fitted on that machine's healthy windows.

    ``mean`` and ``std`` have shape (n_channels, T, F). ``threshold`` applies
    to the model score of a window (the worst channel). ``target_far`` is the
    per-window false-alarm rate the threshold was set for.
    """

    mean: np.ndarray
    std: np.ndarray
    threshold: float
    target_far: float
    fs_hz: float
    window_samples: int
    n_windows: int
    method: str = ""
    machine: str = ""
    model_id: str = ""
    healthy_score_median: float = float("nan")
    created_unix: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def frontend(self) -> str:
        """Which frontend made the features this was fitted on: "banded", or "full" (made before it was recorded)."""
        return str(self.extra.get("frontend", "full"))

    @property
    def segments(self) -> int:
        """How many segments a window is scored as (``core.calibration.segments``); 1: whole (made before)."""
        return int(self.extra.get("segments", 1))

    @property
    def quiet_gate(self) -> float:
        """``zscores``' quiet-band gate this was fitted with (0: made before it, none)."""
        return float(self.extra.get("quiet_gate", 0.0))

    @property
    def n_channels(self) -> int:
        return int(self.mean.shape[0])

    def normalise(self, features: np.ndarray, source: str = "features") -> np.ndarray:
        """(C, T, F) or (N, C, T, F) raw features -> z-scores, float32."""
        f = np.asarray(features, dtype=np.float64)
        if f.shape[-3:] != self.mean.shape:
            raise InputError(
                source,
                "features.shape",
                f"expected (..., {self.mean.shape[0]}, {self.mean.shape[1]}, {self.mean.shape[2]}) "
                f"as calibrated, got {f.shape} (different channel count than the calibration?)",
            )
        return zscores(f, self.mean, self.std, self.quiet_gate)

    def check_window(self, n_samples: int, fs_hz: float, source: str = "window") -> None:
        """Refuse windows whose rate or length differ from what the threshold was fitted on."""
        if abs(float(fs_hz) - self.fs_hz) > 0.01 * self.fs_hz:
            raise InputError(
                source,
                "fs_hz",
                f"calibrated at {self.fs_hz:g} Hz, got {fs_hz:g} Hz; recalibrate for this rate",
            )
        if not (0.5 * self.window_samples <= n_samples <= 2.0 * self.window_samples):
            raise InputError(
                source,
                "window.shape[0]",
                f"calibrated on {self.window_samples}-sample windows, got {n_samples} "
                "(accepted: half to twice that); recalibrate for this window length",
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": CALIBRATION_VERSION,
            "threshold": self.threshold,
            "target_far": self.target_far,
            "fs_hz": self.fs_hz,
            "window_samples": self.window_samples,
            "n_windows": self.n_windows,
            "method": self.method,
            "machine": self.machine,
            "model_id": self.model_id,
            "healthy_score_median": self.healthy_score_median,
            "created_unix": self.created_unix,
            "shape": list(self.mean.shape),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "extra": copy.deepcopy(self.extra),  # a copy: editing the dict must not edit the record
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "calibration") -> Calibration:
        """Build from the JSON form, refusing what would make the detector wrong (InputError naming the field).

        A threshold <= 0 votes on every window; a NaN one never alarms; an absurd
        rate or window length makes every window "not as calibrated".
        """
        if not isinstance(d, dict):
            raise InputError(source, "calibration", f"expected a JSON object, got {type(d).__name__}")
        if d.get("version") != CALIBRATION_VERSION:
            raise InputError(source, "version", f"expected {CALIBRATION_VERSION}, got {d.get('version')!r}")
        for key in ("mean", "std"):
            if key not in d:
                raise InputError(source, key, "missing")
        try:
            mean = np.asarray(d["mean"], dtype=np.float64)
            std = np.asarray(d["std"], dtype=np.float64)
        except (TypeError, ValueError, OverflowError) as e:
            raise InputError(source, "mean/std", f"expected nested lists of numbers: {e}") from None
        if mean.ndim != 3 or mean.shape != std.shape or mean.size == 0:
            raise InputError(
                source, "mean/std", f"expected two equal (C, T, F) arrays, got {mean.shape} {std.shape}"
            )
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise InputError(source, "mean/std", "expected finite values and std > 0")
        thr = _field(d, "threshold", source, "a finite number > 0", lambda v: v > 0)
        target_far = _field(
            d, "target_far", source, "a false-alarm rate > 0 and < 0.5", lambda v: 0 < v < 0.5
        )
        fs_hz = _field(
            d, "fs_hz", source, f"a rate > 0 and <= {MAX_FS_HZ:g} Hz", lambda v: 0 < v <= MAX_FS_HZ
        )
        max_n = max(1, int(fs_hz * MAX_WINDOW_S))
        window_samples = int(
            _field(
                d,
                "window_samples",
                source,
                f"an integer >= 1 and <= {max_n} ({MAX_WINDOW_S:g} s at {fs_hz:g} Hz)",
                lambda v: v == int(v) and 1 <= v <= max_n,
            )
        )
        n_windows = int(
            _field(
                d, "n_windows", source, "an integer >= 0", lambda v: v == int(v) and 0 <= v <= 1e12, default=0
            )
        )
        median = _field(
            d,
            "healthy_score_median",
            source,
            "a finite number or null",
            lambda v: True,
            default=float("nan"),
            nullable=True,
        )
        created = _field(d, "created_unix", source, "a finite time in seconds", lambda v: True, default=0.0)
        extra = d.get("extra", {})
        if extra is None:
            extra = {}
        if not isinstance(extra, dict):
            raise InputError(source, "extra", f"expected a JSON object, got {type(extra).__name__}")
        if extra.get("frontend", "full") not in FRONTENDS:
            raise InputError(
                source,
                "extra.frontend",
                f"expected one of {', '.join(FRONTENDS)}, got {extra.get('frontend')!r}",
            )
        segments = extra.get("segments", 1)
        if (
            isinstance(segments, bool)
            or not isinstance(segments, int)
            or not 1 <= segments <= 64
            or window_samples // segments < 64
        ):
            raise InputError(
                source,
                "extra.segments",
                f"expected an integer from 1 to 64 leaving at least 64 samples a segment, got {segments!r}",
            )
        gate = extra.get("quiet_gate", 0.0)
        if isinstance(gate, bool) or not isinstance(gate, (int, float)) or not 0 <= gate <= 100:
            raise InputError(
                source, "extra.quiet_gate", f"expected a number of std from 0 (off) to 100, got {gate!r}"
            )
        speed_range(extra, source)  # extra.speed_hz, where recorded: refused by name when malformed
        for key in ("method", "machine", "model_id"):
            if not isinstance(d.get(key, ""), str):
                raise InputError(source, key, f"expected a string, got {type(d[key]).__name__}")
        return cls(
            mean=mean,
            std=std,
            threshold=thr,
            target_far=target_far,
            fs_hz=fs_hz,
            window_samples=window_samples,
            n_windows=n_windows,
            method=d.get("method", ""),
            machine=d.get("machine", ""),
            model_id=d.get("model_id", ""),
            healthy_score_median=median,
            created_unix=created,
            extra=dict(extra),
        )

    def save(self, path: str | Path) -> None:
        """Write the JSON form through a unique temp file beside ``path``, renamed over it only on success.

        Non-finite optional values are written as null (strict JSON); the old
        file survives any failure and no temp file is left behind.
        """
        write_text_atomic(path, json.dumps(json_safe(self.to_dict()), indent=1, allow_nan=False))

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        """Read and check a calibration file; every failure is an InputError naming the file.

        A FIFO, a device, a directory or a file over ``MAX_CALIBRATION_BYTES`` is
        refused from ``stat`` before it is opened (a FIFO would hang the read).
        """
        p = str(path)
        data = read_regular_file(p, "calibration", max_bytes=MAX_CALIBRATION_BYTES)
        try:
            d = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise InputError(
                p, "encoding", f"not UTF-8 text (byte {e.start}); expected calibration JSON"
            ) from None
        except RecursionError:
            raise InputError(p, "json", "nested too deeply; expected calibration JSON") from None
        except ValueError as e:  # JSONDecodeError, and integers with more digits than Python converts
            raise InputError(p, "json", f"not valid JSON: {e}") from None
        return cls.from_dict(d, source=p)


MAX_CALIBRATION_BYTES = 16 * 1024 * 1024
"""A calibration is a few KB per channel; a larger file is not one (refused before reading)."""
MAX_FS_HZ = 1.0e6
"""Sample rates above this are refused, as on the command line (``--fs-hz``)."""
MAX_WINDOW_S = 600.0
"""Windows longer than this are refused, as on the command line (``--window-s``)."""


def _field(
    d: dict[str, Any],
    key: str,
    source: str,
    expected: str,
    ok: Callable[[float], bool],
    *,
    default: float | None = None,
    nullable: bool = False,
) -> float:
    """A finite number from ``d[key]`` that satisfies ``ok``, else an InputError naming ``key``."""
    if key not in d:
        if default is None:
            raise InputError(source, key, "missing")
        return default
    raw = d[key]
    if nullable and (raw is None or (isinstance(raw, float) and math.isnan(raw))):
        return float(
            "nan"
        )  # unknown: written as null, NaN in memory (``to_dict`` -> ``from_dict`` round-trips)
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise InputError(source, key, f"expected {expected}, got {raw!r:.40}")
    try:
        v = float(raw)
    except OverflowError:
        raise InputError(
            source, key, f"expected {expected}, got a number of {len(str(raw))} digits"
        ) from None
    if not math.isfinite(v) or not ok(v):
        raise InputError(source, key, f"expected {expected}, got {raw!r}")
    return v
