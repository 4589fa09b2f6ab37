"""Is the sensor itself telling the truth? Checks over one batch of raw IMU samples (ROS-free).

The anomaly model answers "does this vibration look like a failing bearing?".
It cannot see a failure that only *removes* vibration: a dead channel, a value
stuck at one reading, a mount that worked loose, a sensor clipped at its full
scale, or samples arriving at a different rate than configured all look
quiet, or merely odd, to it. Worse, a machine calibrated on such a recording
learns the fault as "healthy". These checks are separate from the bearing
alarm on purpose: a sensor finding is a maintenance ticket for the sensor, not
a bearing alarm, and it must not be voted on with the bearing verdicts.

API, small on purpose so the detector node (a ``sensor`` diagnostic, a metric,
an event) and ``vibration-anomaly calibrate`` share it:

* :func:`check_batch` -> ``list[Finding]`` for one batch (n_samples, n_channels),
  optionally with its timestamps and the machine's calibration baseline;
* :class:`SensorReport` (via :func:`report`) folds findings into one level and
  message, the shape of a diagnostic status;
* :func:`baseline` computes what a calibration stores so that a later batch
  can be compared with it (the loose-mount check).

Levels use diagnostic_msgs/DiagnosticStatus numbering (OK 0, WARN 1, ERROR 2)
as plain ints; the ROS glue converts them to ``bytes``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

OK = 0
WARN = 1
ERROR = 2
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR"}

# Kinds of findings (stable names: metrics labels and event fields use them).
DEAD = "dead_channel"
STUCK = "stuck_value"
CLIPPING = "clipping"
RATE = "rate"
GAP = "gap"
NONFINITE = "nonfinite"
LOOSE_MOUNT = "loose_mount"
ORDER = "timestamps"
KINDS: tuple[str, ...] = (DEAD, STUCK, CLIPPING, RATE, GAP, NONFINITE, LOOSE_MOUNT, ORDER)


@dataclass(frozen=True)
class SensorLimits:
    """Thresholds of the checks; the defaults suit a 1-6 kHz MEMS accelerometer.

    ``full_scale``: the sensor's range in the data's unit (e.g. 16 g = 156.9
    m/s^2). Without it, clipping is inferred from a pile-up of samples at the
    channel's extreme, which needs a finely quantized signal to be trusted.
    """

    full_scale: float | None = None
    dead_std: float = 1e-6
    stuck_s: float = 0.05
    stuck_min_samples: int = 25
    clip_fraction: float = 0.001
    clip_min_samples: int = 5
    rate_tolerance: float = 0.05
    gap_factor: float = 3.0
    nonfinite_error_fraction: float = 0.1
    loose_ratio: float = 0.25

    def __post_init__(self) -> None:
        checks = {
            "dead_std": self.dead_std >= 0,
            "stuck_s": self.stuck_s > 0,
            "stuck_min_samples": self.stuck_min_samples >= 2,
            "clip_fraction": 0 < self.clip_fraction < 1,
            "clip_min_samples": self.clip_min_samples >= 1,
            "rate_tolerance": 0 < self.rate_tolerance < 1,
            "gap_factor": self.gap_factor > 1,
            "nonfinite_error_fraction": 0 < self.nonfinite_error_fraction <= 1,
            "loose_ratio": 0 < self.loose_ratio < 1,
            "full_scale": self.full_scale is None or (math.isfinite(self.full_scale) and self.full_scale > 0),
        }
        for name, ok in checks.items():
            value = getattr(self, name)
            if not ok or (isinstance(value, float) and not math.isfinite(value)):
                raise ValueError(f"SensorLimits.{name}: {value!r} is out of range")


@dataclass(frozen=True)
class Finding:
    """One thing wrong with the sensor: a stable ``kind``, a level, and a sentence naming channel and value."""

    kind: str
    level: int
    message: str
    channel: int | None = None
    value: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "level": LEVEL_NAMES[self.level],
            "channel": self.channel,
            "value": self.value,
            "message": self.message,
        }


@dataclass(frozen=True)
class SensorReport:
    """The findings of one batch folded into one status (what a ``sensor`` diagnostic shows)."""

    level: int
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.level == OK

    @property
    def message(self) -> str:
        if not self.findings:
            return "sensor OK"
        worst = [f for f in self.findings if f.level == self.level]
        more = len(self.findings) - 1
        return worst[0].message + (f" (+{more} more)" if more else "")

    def kinds(self) -> tuple[str, ...]:
        return tuple(sorted({f.kind for f in self.findings}))

    def as_dict(self) -> dict[str, Any]:
        return {
            "level": LEVEL_NAMES[self.level],
            "message": self.message,
            "findings": [f.as_dict() for f in self.findings],
        }


def report(findings: Sequence[Finding]) -> SensorReport:
    return SensorReport(max((f.level for f in findings), default=OK), tuple(findings))


def baseline(samples: np.ndarray) -> dict[str, list[float]]:
    """Per-channel broadband level of a healthy recording, stored in the calibration for the loose-mount check."""
    x = _as_2d(samples)
    x = np.where(np.isfinite(x), x, np.nan)
    return {
        "rms": [float(v) for v in np.nanstd(x, axis=0)],
        "peak": [float(v) for v in np.nanmax(np.abs(x), axis=0)],
    }


def baseline_rms_from(extra: Mapping[str, Any] | None) -> list[float] | None:
    """The baseline RMS a calibration's ``extra["sensor"]`` holds, or None (older calibrations)."""
    try:
        rms = [float(v) for v in (extra or {})["sensor"]["rms"]]
    except (KeyError, TypeError, ValueError):
        return None
    return rms if rms and all(math.isfinite(v) and v > 0 for v in rms) else None


def _as_2d(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"samples: expected (n_samples, n_channels), got shape {x.shape}")
    return x


def _longest_run(mask: np.ndarray) -> int:
    """Length of the longest run of True."""
    if not mask.any():
        return 0
    padded = np.concatenate(([0], mask.astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(padded))
    return int((edges[1::2] - edges[::2]).max())


def _name(channel: int, names: Sequence[str] | None) -> str:
    return f"channel {channel}" + (f" ({names[channel]})" if names and channel < len(names) else "")


def check_batch(
    samples: np.ndarray,
    fs_hz: float,
    *,
    timestamps: np.ndarray | None = None,
    baseline_rms: Sequence[float] | None = None,
    limits: SensorLimits | None = None,
    channel_names: Sequence[str] | None = None,
) -> list[Finding]:
    """Every sensor finding for one batch (n_samples, n_channels); an empty list means the sensor looks fine.

    ``timestamps`` (seconds, one per sample) enable the rate, gap and order
    checks; ``baseline_rms`` (per channel, from :func:`baseline` at
    calibration) enables the loose-mount check.
    """
    lim = limits or SensorLimits()
    x = _as_2d(samples)
    n, c = x.shape
    out: list[Finding] = []
    if n == 0:
        return [Finding(DEAD, ERROR, "no samples in the batch")]
    finite = np.isfinite(x)
    # The common batch is all finite: each channel is then a contiguous row of one transposed copy, made
    # once, instead of a strided column masked and copied per channel (the check runs every awake period).
    rows = np.ascontiguousarray(x.T) if finite.all() else None
    for ch in range(c) if rows is None else ():  # NaN/inf findings: only where there are any
        bad = ~finite[:, ch]
        if bad.any():
            frac = float(bad.mean())
            run = _longest_run(bad)
            level = ERROR if frac >= lim.nonfinite_error_fraction else WARN
            out.append(
                Finding(
                    NONFINITE,
                    level,
                    f"{_name(ch, channel_names)}: {int(bad.sum())} NaN/inf samples "
                    f"({frac:.1%}), longest burst {run} samples ({run / fs_hz:.3g} s)",
                    ch,
                    frac,
                )
            )
    for ch in range(c):
        v = rows[ch] if rows is not None else x[finite[:, ch], ch]
        who = _name(ch, channel_names)
        if len(v) < 2:
            out.append(Finding(DEAD, ERROR, f"{who}: no finite samples", ch, 0.0))
            continue
        std = float(v.std())
        if std <= lim.dead_std:
            what = f"constant at {v[0]:g}" if np.ptp(v) == 0 else f"std {std:.3g} <= {lim.dead_std:g}"
            out.append(Finding(DEAD, ERROR, f"{who}: dead ({what} over {len(v)} samples)", ch, std))
            continue
        stuck_n = max(lim.stuck_min_samples, int(math.ceil(lim.stuck_s * fs_hz)))
        run = _longest_run(np.diff(v) == 0) + 1
        if run >= stuck_n:
            level = ERROR if run >= len(v) // 2 else WARN
            out.append(
                Finding(
                    STUCK,
                    level,
                    f"{who}: stuck, one value repeated {run} times in a row "
                    f"({run / fs_hz:.3g} s; limit {stuck_n})",
                    ch,
                    float(run),
                )
            )
        clip = _clipping(v, lim)
        if clip is not None:
            count, level_value = clip
            frac = count / len(v)
            level = ERROR if frac >= lim.clip_fraction else WARN
            out.append(
                Finding(
                    CLIPPING,
                    level,
                    f"{who}: clipped, {count} samples ({frac:.2%}) at {level_value:g}"
                    f"{' (full scale)' if lim.full_scale else ' (a pile-up at the extreme)'}",
                    ch,
                    frac,
                )
            )
        if baseline_rms is not None and ch < len(baseline_rms) and baseline_rms[ch] > 0:
            ratio = std / float(baseline_rms[ch])
            if ratio < lim.loose_ratio:
                out.append(
                    Finding(
                        LOOSE_MOUNT,
                        WARN,
                        f"{who}: broadband level {ratio:.2f}x the calibration's "
                        f"(below {lim.loose_ratio:g}x): loose mount or a detached sensor?",
                        ch,
                        ratio,
                    )
                )
    if timestamps is not None:
        out.extend(_time_findings(np.asarray(timestamps, dtype=np.float64), fs_hz, lim))
    return out


def _clipping(v: np.ndarray, lim: SensorLimits) -> tuple[int, float] | None:
    """(count, level) of samples held at the sensor's limit, or None."""
    if lim.full_scale is not None:
        at = np.abs(v) >= 0.999 * lim.full_scale
        count = int(at.sum())
        return (count, float(lim.full_scale)) if count >= lim.clip_min_samples else None
    lo, hi = float(v.min()), float(v.max())
    span = hi - lo
    if span <= 0:
        return None
    worst: tuple[int, float] | None = None
    needed = max(lim.clip_min_samples, int(lim.clip_fraction * len(v)) // 4)
    tol, band = 1e-6 * span, 0.01 * span
    coarse: bool | None = None  # decided only when a pile-up is seen: the common batch has none
    for edge, dist in ((hi, hi - v), (lo, v - lo)):  # distance from the extreme, >= 0
        at = int(np.count_nonzero(dist <= tol))
        if at < needed:
            continue  # the common case: nothing piles up at this extreme (one pass, not three)
        if coarse is None:
            coarse = len(np.unique(v[: min(len(v), 1024)])) < 64
        if coarse:
            return None  # coarse quantization: a pile-up at the extreme proves nothing
        near = int(np.count_nonzero(dist <= band)) - at
        if at >= 3 * max(near, 1) and (worst is None or at > worst[0]):
            worst = (at, edge)
    return worst


def _time_findings(t: np.ndarray, fs_hz: float, lim: SensorLimits) -> list[Finding]:
    out: list[Finding] = []
    if len(t) < 3 or not np.all(np.isfinite(t)):
        return out
    dt = np.diff(t)
    back = int((dt <= 0).sum())
    if back:
        out.append(Finding(ORDER, WARN, f"{back} timestamps repeat or go backward", None, float(back)))
    pos = dt[dt > 0]
    if not len(pos):
        return out
    measured = 1.0 / float(np.median(pos))
    if abs(measured - fs_hz) > lim.rate_tolerance * fs_hz:
        out.append(
            Finding(
                RATE,
                ERROR,
                f"sample rate {measured:.4g} Hz, configured {fs_hz:.4g} Hz "
                f"(tolerance {lim.rate_tolerance:.0%})",
                None,
                measured,
            )
        )
    nominal = 1.0 / fs_hz
    gaps = pos[pos > lim.gap_factor * nominal]
    if len(gaps):
        missing = float(np.sum(gaps - nominal))
        out.append(
            Finding(
                GAP,
                WARN,
                f"{len(gaps)} gaps in the samples, longest {gaps.max():.3g} s, "
                f"{missing:.3g} s missing in all",
                None,
                float(gaps.max()),
            )
        )
    return out


__all__ = [
    "CLIPPING",
    "DEAD",
    "ERROR",
    "GAP",
    "KINDS",
    "LOOSE_MOUNT",
    "NONFINITE",
    "OK",
    "ORDER",
    "RATE",
    "STUCK",
    "WARN",
    "Finding",
    "SensorLimits",
    "SensorReport",
    "baseline",
    "baseline_rms_from",
    "check_batch",
    "report",
]
