"""Order tracking: a window resampled to constant shaft speed (numpy only; runs on the robot).

A robot's shaft does not hold its speed through a 5 s sample window: it accelerates, brakes, turns.
A defect line at 3.6 x a shaft going from 20 to 24 Hz smears over 72-86 Hz, and its 6th harmonic over
430-520 Hz: hundreds of 0.2 Hz bins, where the order score reads the strongest bin within +-2 %.
Computed order tracking undoes that. From the speed readings during the window (the speed topic's
``sensor_msgs/JointState``, ``core.speed.ShaftSpeed``) the shaft's angle is integrated at every sample,
and the window is resampled at equal steps of angle: what the sensor would have recorded had the
shaft turned at the window's mean speed all along. Every defect line is then a line again, at its
order times that mean speed, and the order score and the alarm's diagnosis read it as on a steady
window.

A window whose readings vary by less than ``STEADY`` (relative) is returned as it is, the same array,
so a steady shaft (or a fixed ``shaft_hz``) is scored exactly as before tracking existed. The samples
in between are read from the window upsampled 2x by FFT, by Keys' cubic convolution: a tone keeps 99 %
of its amplitude at 0.3 x the sample rate and 96 % at 0.45 x (cubic convolution alone, half a sample
off, keeps 23 % at 0.45 x; ``test_order_track.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STEADY = 1e-3
"""Relative spread ((max - min) / mean) of the readings under which a window is not resampled."""


@dataclass(frozen=True)
class Tracked:
    """A window at constant speed: the samples, that speed (the window's mean), and the spread undone."""

    window: np.ndarray
    shaft_hz: float
    spread: float  # (max - min) / mean of the speed over the window; 0 when it was steady
    resampled: bool
    by: str = "velocity"  # where the angle came from: the integrated "velocity" or the joint's "position"


FIT_DEGREE = 3
FIT_MIN_READINGS = 16
FIT_JITTER = 1.5
"""A cubic through the window's readings is used when its residual is within this many times the readings'
jitter (estimated from their second differences, which a smooth speed change hardly moves): then what
it leaves out is noise. Exact readings have no jitter, and are interpolated."""


def speed_at_samples(n: int, fs_hz: float, t0: float, stamps: np.ndarray, hz: np.ndarray) -> np.ndarray:
    """The speed at each of ``n`` samples from ``t0``, from the readings ``hz`` at ``stamps``.

    A velocity read from an encoder jitters from one message to the next, and the angle integrated from
    it drifts by the sum of that jitter: 1 % of jitter at 50 Hz smears a line's 6th harmonic. So where
    the window holds ``FIT_MIN_READINGS`` or more, a cubic fitted through them stands for the speed when
    it explains all but that jitter (a robot's speed changes smoothly over a few seconds); otherwise (a
    sudden change, few readings) the readings are interpolated linearly. Held at both ends.
    """
    t = t0 + np.arange(n) / fs_hz
    order = np.argsort(stamps, kind="stable")
    st, v = np.asarray(stamps, float)[order], np.asarray(hz, float)[order]
    margin = 0.1 * (t[-1] - t[0])
    inside = (st >= t[0] - margin) & (st <= t[-1] + margin)
    si, vi = st[inside], v[inside]
    if len(si) >= FIT_MIN_READINGS and si[-1] - si[0] >= 0.5 * (t[-1] - t[0]):  # spread over the window
        cubic = np.polynomial.Polynomial.fit(si, vi, FIT_DEGREE)
        resid = float(np.sqrt(np.mean((vi - cubic(si)) ** 2)))
        jitter = float(np.std(np.diff(vi, 2))) / np.sqrt(6.0)  # white noise's std; ~0 on a smooth speed
        if resid <= FIT_JITTER * jitter:
            return np.asarray(cubic(np.clip(t, si[0], si[-1])))
    return np.interp(t, st, v)


def _cubic(x: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``x`` (n, C) read at fractional sample positions ``u`` (m,) by Keys' cubic convolution (a = -0.5)."""
    n = x.shape[0]
    i = np.floor(u).astype(np.intp)
    s = (u - i)[:, None]
    s2, s3 = s * s, s * s * s
    w = (
        -0.5 * s3 + s2 - 0.5 * s,
        1.5 * s3 - 2.5 * s2 + 1.0,
        -1.5 * s3 + 2.0 * s2 + 0.5 * s,
        0.5 * s3 - 0.5 * s2,
    )
    out = np.zeros((len(u), x.shape[1]))
    for k, wk in enumerate(w):
        out += wk * x[np.clip(i + k - 1, 0, n - 1)]
    return out


ANGLE_RATE_TOLERANCE = 0.02
"""The joint's positions stand for the shaft's angle only when they move steadily one way at the velocity
readings' mean rate, within this (relative). A position some driver wraps to [-pi, pi), or one that does
not move with the velocity (other units, another joint's), fails that, and the velocity is used."""


def angle_readings(
    stamps: np.ndarray, hz: np.ndarray, turns: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """(stamps, increasing turns) of the readings whose position is the shaft's angle; None: not usable.

    An angle read from the joint's position is exact where one integrated from its velocity drifts by the
    sum of the velocity's jitter (:func:`speed_at_samples`). Readings need both a position and a speed.
    """
    ok = np.isfinite(turns) & np.isfinite(hz)
    order = np.argsort(stamps[ok], kind="stable")
    st, tu, v = stamps[ok][order], turns[ok][order], hz[ok][order]
    if len(st) < 2 or np.any(np.diff(st) <= 0):
        return None
    step = np.diff(tu)
    way = 1.0 if step.sum() >= 0 else -1.0  # a wheel turning backwards has the same defect lines
    if not np.all(way * step > 0):
        return None  # wrapped, reversing or standing: not one steady turn
    rate = abs(float(tu[-1] - tu[0])) / float(st[-1] - st[0])
    mean_hz = float(np.sum(0.5 * (v[1:] + v[:-1]) * np.diff(st))) / float(st[-1] - st[0])
    if not (mean_hz > 0 and abs(rate / mean_hz - 1.0) <= ANGLE_RATE_TOLERANCE):
        return None
    return st, way * tu


def _slopes(st: np.ndarray, tu: np.ndarray) -> np.ndarray:
    """The angle's rate at each reading from its neighbours' positions: exact for a constant acceleration
    (the parabola through each three readings), so a ramp read every 0.5 s is followed as well as one
    read every 20 ms, and free of the velocity's jitter."""
    h, d = np.diff(st), np.diff(tu) / np.diff(st)  # gaps and secant rates
    if len(st) == 2:
        return np.full(2, d[0])
    m = np.empty(len(st))
    m[1:-1] = (h[1:] * d[:-1] + h[:-1] * d[1:]) / (h[:-1] + h[1:])
    m[0] = d[0] - h[0] * (d[1] - d[0]) / (h[0] + h[1])
    m[-1] = d[-1] + h[-1] * (d[-1] - d[-2]) / (h[-2] + h[-1])
    return m


def _angle_at_samples(n: int, fs_hz: float, t0: float, stamps: np.ndarray, turns: np.ndarray) -> np.ndarray:
    """The shaft's angle (turns, from 0) at each of ``n`` samples from ``t0``: a cubic between each two
    readings through their positions at the rates :func:`_slopes` gives (Hermite), and beyond the readings
    on at the end one's rate."""
    t = t0 + np.arange(n) / fs_hz
    m = _slopes(stamps, turns)
    k = np.clip(np.searchsorted(stamps, t, side="right") - 1, 0, len(stamps) - 2)
    h = stamps[k + 1] - stamps[k]
    s = np.clip((t - stamps[k]) / h, 0.0, 1.0)
    s2, s3 = s * s, s * s * s
    a = (
        (2 * s3 - 3 * s2 + 1) * turns[k]
        + (s3 - 2 * s2 + s) * h * m[k]
        + (3 * s2 - 2 * s3) * turns[k + 1]
        + (s3 - s2) * h * m[k + 1]
    )
    for outside, i in ((t < stamps[0], 0), (t > stamps[-1], -1)):
        a[outside] = turns[i] + (t[outside] - stamps[i]) * m[i]
    return a - a[0]


def track(
    x: np.ndarray,
    fs_hz: float,
    t0: float,
    stamps: np.ndarray,
    hz: np.ndarray,
    angle: tuple[np.ndarray, np.ndarray] | None = None,
) -> Tracked:
    """``x`` (n, C), its first sample at ``t0``, resampled to the mean speed of the readings ``hz`` at ``stamps``.

    The readings must be > 0 (a standstill has no angle to resample at: the caller refuses it first).
    ``angle``: (stamps, turns) from :func:`angle_readings`, the shaft's angle itself; without it the angle
    is the speed integrated. Whether to resample at all is decided by the speed readings either way.
    """
    x = np.asarray(x)
    n = x.shape[0]
    f = speed_at_samples(n, fs_hz, t0, np.asarray(stamps, float), np.asarray(hz, float))
    mean = float(f.mean())
    spread = float((f.max() - f.min()) / mean) if mean > 0 else 0.0
    if n < 4 or spread < STEADY:
        return Tracked(x, mean, spread, False)
    if angle is not None:
        turns = _angle_at_samples(n, fs_hz, t0, *angle)
        rates = np.diff(turns)  # the speed as the positions give it, free of the velocity's jitter
        spread = float((rates.max() - rates.min()) / rates.mean())
    else:
        turns = np.concatenate(([0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) / fs_hz)))  # shaft angle, in turns
    hz_mean = float(turns[-1] * fs_hz / (n - 1))
    grid = np.arange(n) * (hz_mean / fs_hz)  # equal steps of angle, at the mean speed
    u = np.interp(grid, turns, np.arange(n, dtype=float))
    # The line through the two ends is taken out first and put back after (exact: it is linear), so the
    # FFT's periodic extension has no step at the wrap to ring through the window (gravity, slow motion).
    xd = np.asarray(x, dtype=np.float64)
    ends = xd[0], (xd[-1] - xd[0]) / (n - 1)
    line = ends[0] + np.arange(n)[:, None] * ends[1]
    up = np.fft.irfft(np.fft.rfft(xd - line, axis=0), 2 * n, axis=0) * 2.0
    y = (_cubic(up, 2.0 * u) + ends[0] + u[:, None] * ends[1]).astype(x.dtype, copy=False)
    return Tracked(y, hz_mean, spread, True, "velocity" if angle is None else "position")


def track_window(
    x: np.ndarray,
    fs_hz: float,
    t0: float,
    t1: float,
    stamps: np.ndarray,
    hz: np.ndarray,
    turns: np.ndarray | None = None,
) -> Tracked | None:
    """``x`` (n, C), sampled over [t0, t1], at constant speed from the readings ``hz`` (NaN: unknown) at ``stamps``.

    The readings used are those stamped within one window's span of it (as fresh as ``ShaftSpeed.at``
    asks). None when none of them is known, or one stamped inside the window is unknown (a standstill,
    a NaN velocity): no one speed or angle describes such a window. ``turns``: the joint's position at
    each reading, in turns (NaN: none); where it is the shaft's angle (:func:`angle_readings`) it is read
    instead of the integrated speed. The runtime (``ShaftSpeed.track``) and the commissioning
    (``vibration-anomaly calibrate --speed-joint``) share this rule.
    """
    stamps, hz = np.asarray(stamps, dtype=np.float64), np.asarray(hz, dtype=np.float64)
    span = max(t1 - t0, 0.0)
    near = (stamps >= t0 - span) & (stamps <= t1 + span)
    known = near & np.isfinite(hz)
    if not known.any() or (near & ~np.isfinite(hz) & (stamps >= t0) & (stamps <= t1)).any():
        return None
    angle = None
    if turns is not None:
        angle = angle_readings(stamps[known], hz[known], np.asarray(turns, dtype=np.float64)[known])
        if angle is not None and not (angle[0][0] <= t0 + 0.1 * span and angle[0][-1] >= t1 - 0.1 * span):
            angle = None  # positions for only part of the window: the rest would be a guess
    return track(x, fs_hz, t0, stamps[known], hz[known], angle)
