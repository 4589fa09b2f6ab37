"""What the alarm says beside "alarm": the likely location of the fault, the line that carries it, the trend.

Run once, on the window that raised the alarm (numpy only, ROS-free; a few FFTs of that window):

1. **Channel.** The axis the scorer found worst (its per-channel scores); else the most impulsive one.
2. **Tones removed**: every spectral line above :data:`TONE_FACTOR` x the local median magnitude is
   clipped to it (:func:`remove_tones`). On CWRU at the lab rate (docs/MODEL.md) this halved the wrong
   namings (19 -> 10) for the same right ones, and the healthy record is no longer given a location.
3. **Band.** The engine gives one score per window and channel, not per band, so the band is chosen
   the kurtogram way: of the frontend's dyadic bands over ``[0.04 top, top]`` (``top`` = min(fs/2,
   12.8 kHz)), levels 0-3, the one whose envelope is most impulsive (largest mean|z|^4 / (mean|z|^2)^2),
   among the bands wide enough to show the 2nd harmonic of every defect frequency (so at a 1 kHz IMU
   usually the whole band).
4. **Squared-envelope spectrum** of that band: |z|^2 of the analytic band signal (FFT mask), mean
   removed, periodic Hann window, power spectrum (formed at base band: ``core.envelope``).
5. **Location.** For each defect order the bundle states (outer race ``bpfo``, inner race ``bpfi``, ball
   2 x ``bsf``, cage ``ftf``) times the shaft speed: the largest line within +-2 % (slip, speed error;
   at least one bin) of each of the first three harmonics, over the median of the spectrum around it
   (0.5x to 1.5x that harmonic). A location stands out when its fundamental is at least
   :data:`FACTOR` x that median and so is one more harmonic (where a harmonic fits in the band; where
   none does, the fundamental alone must reach 2 x :data:`FACTOR`). Of those that stand out, the one
   with the largest mean log ratio is named; none, or no speed, or no bearing stated: ``unknown``.
   For noise the largest of ~20 bins is about 5x the median; at 12x no white-noise window of the check
   in ``tools/diagnose_real.py --noise`` named a location (10x named some), docs/MODEL.md "Diagnosis".
6. **Trend.** :class:`ScoreTrend` keeps the last :data:`TREND_INFERENCES` score ratios (score over
   threshold): the least-squares slope per hour, and the ratio now over the oldest one kept.

Measured on CWRU's labelled faults in docs/MODEL.md ("Diagnosis").
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vibration_anomaly.core.envelope import (  # noqa: F401 - re-exported: the order score and tools use them from here
    TONE_BLOCK,
    TONE_FACTOR,
    _analytic_band,
    _median_rows,
    band_envelope_spectrum,
    envelope_spectrum,
    remove_tones,
    tone_free_spectrum,
)
from vibration_anomaly.core.events import (
    LOCATION_BALL,
    LOCATION_CAGE,
    LOCATION_INNER,
    LOCATION_OUTER,
    LOCATION_UNKNOWN,
)
from vibration_anomaly.core.speed import ShaftSpeed

FACTOR = 12.0
"""A defect line must stand this many times above the median of the envelope spectrum around it."""
SLIP = 0.02
"""Search +-2 % around each expected harmonic: 1-2 % rolling slip and the speed reading's error."""
HARMONICS = 3
LEVELS = 3
HP_FRAC = 0.04
MAX_ANALYSIS_HZ = 12800.0
TREND_INFERENCES = 30
"""The trend spans the last 30 inferences: half an hour at the default 60 s period."""

ORDER_LOCATIONS: dict[str, tuple[str, float]] = {
    "bpfo": (LOCATION_OUTER, 1.0),
    "bpfi": (LOCATION_INNER, 1.0),
    "bsf": (LOCATION_BALL, 2.0),  # a ball defect strikes both races once per spin
    "ftf": (LOCATION_CAGE, 1.0),
}


def bands(fs_hz: float, levels: int = LEVELS) -> list[tuple[float, float]]:
    """The frontend's dyadic band tree over ``[HP_FRAC top, top]``, levels 0..``levels``."""
    top = min(fs_hz / 2, MAX_ANALYSIS_HZ)
    lo = HP_FRAC * top
    out: list[tuple[float, float]] = []
    for level in range(levels + 1):
        w = (top - lo) / 2**level
        out.extend((lo + i * w, lo + (i + 1) * w) for i in range(2**level))
    return out


def choose_band(
    x: np.ndarray, fs_hz: float, min_width_hz: float = 0.0, spec: np.ndarray | None = None
) -> tuple[float, float]:
    """The most impulsive band (envelope kurtosis) of those at least ``min_width_hz`` wide (else the widest).

    ``spec``: the rfft of ``x`` with its mean removed, when the caller has it already."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    spec = np.fft.rfft(x - x.mean()) if spec is None else spec
    freqs = np.fft.rfftfreq(n, 1 / fs_hz)
    candidates = [b for b in bands(fs_hz) if b[1] - b[0] >= min_width_hz] or bands(fs_hz, 0)
    best, best_k = candidates[0], -math.inf
    for b in candidates:
        e = np.abs(_analytic_band(spec, freqs, b, n)) ** 2
        m2 = float(np.mean(e))
        k = float(np.mean(e * e)) / (m2 * m2) if m2 > 0 else 0.0
        if k > best_k:
            best, best_k = b, k
    return best


@dataclass(frozen=True)
class Line:
    """One expected defect line: the strongest bin near it and how far it stands above the spectrum there."""

    harmonic: int
    hz: float
    ratio: float


def defect_lines(
    freqs: np.ndarray, power: np.ndarray, f0: float, width_hz: float, harmonics: int = HARMONICS
) -> list[Line]:
    """The first ``harmonics`` harmonics of ``f0`` that fit in the envelope band ``width_hz``."""
    peaks, ratios = harmonic_peaks(freqs, np.asarray(power)[None], f0, width_hz, harmonics)
    return [Line(k + 1, float(freqs[peaks[0, k]]), float(ratios[0, k])) for k in range(peaks.shape[1])]


def harmonic_peaks(
    freqs: np.ndarray, power: np.ndarray, f0: float, width_hz: float, harmonics: int = HARMONICS
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`defect_lines` for every row of ``power`` (rows, bins) at once: (rows, k) bin of each
    harmonic's strongest bin and its ratio to the median around it, for the first k harmonics that fit
    (the same k for every row: which fit depends on the bins only)."""
    df = float(freqs[1] - freqs[0])
    top = min(0.9 * width_hz, float(freqs[-1]))
    fh = f0 * np.arange(1, harmonics + 1)
    tol = np.maximum(SLIP * fh, df)
    # freqs rise evenly: per harmonic, the bins within tol of it and those from 0.5x to 1.5x it around them
    lo = np.searchsorted(freqs, fh - tol, side="left").tolist()
    hi = np.searchsorted(freqs, fh + tol, side="right").tolist()
    a_lo = np.searchsorted(freqs, 0.5 * fh, side="left").tolist()
    a_hi = np.searchsorted(freqs, 1.5 * fh, side="right").tolist()
    rows = power.shape[0]
    peaks: list[np.ndarray] = []
    ratios: list[np.ndarray] = []
    for k in range(harmonics):
        if fh[k] + tol[k] > top:
            break
        near = power[:, lo[k] : hi[k]]
        around = np.concatenate((power[:, a_lo[k] : lo[k]], power[:, hi[k] : a_hi[k]]), axis=1)
        if near.shape[1] == 0 or around.shape[1] < 4:
            break
        i = lo[k] + np.argmax(near, axis=1)
        floor = _median_rows(around)
        peak = power[np.arange(rows), i]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios.append(np.where(floor > 0, peak / np.where(floor > 0, floor, 1.0), math.inf))
        peaks.append(i)
    if not peaks:
        return np.zeros((rows, 0), dtype=np.intp), np.zeros((rows, 0))
    return np.stack(peaks, axis=1), np.stack(ratios, axis=1)


def stands_out(lines: Sequence[Line]) -> bool:
    """Fundamental and one more harmonic at least FACTOR over their median; alone, 2 x FACTOR."""
    if not lines or lines[0].harmonic != 1:
        return False
    if len(lines) == 1:
        return lines[0].ratio >= 2 * FACTOR
    return lines[0].ratio >= FACTOR and any(ln.ratio >= FACTOR for ln in lines[1:])


class ScoreTrend:
    """The last ``n`` score ratios with their times: slope per hour and the ratio now over the oldest kept."""

    def __init__(self, n: int = TREND_INFERENCES) -> None:
        self._points: deque[tuple[float, float]] = deque(maxlen=max(2, int(n)))

    def add(self, t: float, ratio: float) -> None:
        if math.isfinite(t) and math.isfinite(ratio):
            self._points.append((float(t), float(ratio)))

    def summary(self) -> dict[str, float | int | None]:
        pts = list(self._points)
        out: dict[str, float | int | None] = {"trend_inferences": len(pts), "trend_span_h": None}
        out.update(trend_slope_per_h=None, trend_change=None)
        if len(pts) < 2:
            return out
        t = np.array([p[0] for p in pts]) / 3600.0
        r = np.array([p[1] for p in pts])
        span = float(t[-1] - t[0])
        out["trend_span_h"] = round(span, 4)
        if span > 0:
            tc = t - t.mean()
            out["trend_slope_per_h"] = round(float((tc * (r - r.mean())).sum() / (tc * tc).sum()), 4)
        if r[0] > 0:
            out["trend_change"] = round(float(r[-1] / r[0]), 4)
        return out


@dataclass(frozen=True)
class Diagnosis:
    """The likely location and its evidence; ``fields()`` is what the ``alarm`` event carries."""

    location: str
    frequency_hz: float | None = None
    order: float | None = None
    line_ratio: float | None = None
    shaft_hz: float | None = None
    speed_source: str = ""
    band_hz: tuple[float, float] | None = None
    envelope_peak_hz: float | None = None
    channel: int | None = None
    note: str = ""
    trend: Mapping[str, Any] = field(default_factory=dict)
    took_ms: float = 0.0

    def fields(self) -> dict[str, Any]:
        def r(v: float | None, nd: int = 3) -> float | None:
            return None if v is None or not math.isfinite(v) else round(float(v), nd)

        return {
            "location": self.location,
            "frequency_hz": r(self.frequency_hz),
            "order": r(self.order, 4),
            "line_ratio": r(self.line_ratio, 1),
            "shaft_hz": r(self.shaft_hz),
            "speed_source": self.speed_source,
            "band_lo_hz": None if self.band_hz is None else r(self.band_hz[0], 1),
            "band_hi_hz": None if self.band_hz is None else r(self.band_hz[1], 1),
            "envelope_peak_hz": r(self.envelope_peak_hz),
            "channel": self.channel,
            "diagnosis": self.note,
            **self.trend,
            "diagnosis_ms": round(self.took_ms, 2),
        }


def locate(
    x: np.ndarray, fs_hz: float, shaft_hz: float | None, orders: Mapping[str, float] | None
) -> Diagnosis:
    """Location from one channel ``x`` (1-D raw samples): see the module docstring for the rule."""
    lines_hz = {
        name: o * ORDER_LOCATIONS[name][1] * shaft_hz
        for name, o in (orders or {}).items()
        if name in ORDER_LOCATIONS and shaft_hz
    }
    spec = tone_free_spectrum(x)  # one FFT, read by the band choice and the envelope spectrum alike
    band = choose_band(x, fs_hz, 2.2 * max(lines_hz.values()) if lines_hz else 0.0, spec)
    freqs, power = band_envelope_spectrum(spec, len(x), fs_hz, band)
    width = band[1] - band[0]
    sel = (freqs >= 2.0) & (freqs <= 0.9 * width)
    peak = float(freqs[sel][np.argmax(power[sel])]) if sel.any() else None
    base = Diagnosis(LOCATION_UNKNOWN, shaft_hz=shaft_hz, band_hz=band, envelope_peak_hz=peak)
    if not orders:
        return _with(base, note="no bearing geometry in the bundle")
    if not shaft_hz:
        return _with(base, note="shaft speed unknown")
    best: tuple[float, str, Line] | None = None
    for name, f0 in lines_hz.items():
        lines = defect_lines(freqs, power, f0, width)
        if stands_out(lines):
            strength = float(np.mean([math.log(max(ln.ratio, 1e-12)) for ln in lines]))
            if best is None or strength > best[0]:
                best = (strength, name, lines[0])
    if best is None:
        return _with(base, note=f"no defect order stands out {FACTOR:g}x in the envelope spectrum")
    _, name, line = best
    location, mult = ORDER_LOCATIONS[name]
    return _with(
        base,
        location=location,
        frequency_hz=line.hz,
        order=line.hz / shaft_hz,
        line_ratio=line.ratio,
        note=f"{name}{' x 2' if mult != 1 else ''} line {line.ratio:.0f}x the envelope spectrum's median",
    )


def _with(d: Diagnosis, **changes: Any) -> Diagnosis:
    from dataclasses import replace

    return replace(d, **changes)


class Diagnoser:
    """The runtime's diagnosis: watches every score ratio (the trend), and diagnoses the alarming window."""

    def __init__(
        self, orders: Mapping[str, float] | None, speed: ShaftSpeed | None, trend_n: int = TREND_INFERENCES
    ) -> None:
        self.orders = dict(orders) if orders else None
        self.speed = speed
        self.trend = ScoreTrend(trend_n)
        self.last: Diagnosis | None = None
        self.last_t: float | None = None

    def observe(self, t: float, ratio: float) -> None:
        self.trend.add(t, ratio)

    def diagnose(
        self, t: float, data: np.ndarray, fs_hz: float, t0: float, t1: float, channel: int | None = None
    ) -> Diagnosis:
        start = time.perf_counter()
        x = np.asarray(data, dtype=np.float64)
        x = x.reshape(len(x), -1)
        if channel is None or not 0 <= channel < x.shape[1]:
            xc = x - x.mean(axis=0)
            m2 = (xc**2).mean(axis=0)
            channel = int(np.argmax((xc**4).mean(axis=0) / np.maximum(m2 * m2, 1e-300)))
        tracked, source = (
            self.speed.track(x, fs_hz, t0, t1) if self.speed is not None else (None, "no speed source")
        )
        shaft_hz = None if tracked is None else tracked.shaft_hz
        if tracked is not None and tracked.resampled:  # the shaft changed speed while it was sampled
            x = tracked.window
            at = "the joint's position" if tracked.by == "position" else "its velocity"
            source += f" (order-tracked at {at} through a {tracked.spread:.1%} speed change)"
        d = locate(x[:, channel], fs_hz, shaft_hz, self.orders)
        if shaft_hz is None and self.orders:
            d = _with(d, note=f"shaft speed unknown: {source}")
        d = _with(
            d,
            speed_source=source,
            channel=channel,
            trend=self.trend.summary(),
            took_ms=(time.perf_counter() - start) * 1000,
        )
        self.last, self.last_t = d, t
        return d


def describe(fields: Mapping[str, Any]) -> str:
    """One line for a person from an alarm's diagnosis fields (the log line and the alarm diagnostic)."""
    where = str(fields.get("location") or LOCATION_UNKNOWN).replace("_", " ")
    if fields.get("frequency_hz") is not None and fields.get("shaft_hz"):
        text = (
            f"likely {where}: {fields['frequency_hz']:g} Hz = {fields.get('order') or 0:.3g} x the "
            f"{fields['shaft_hz']:g} Hz shaft"
        )
    else:
        text = f"location {where} ({fields.get('diagnosis') or 'no diagnosis'})"
    slope = fields.get("trend_slope_per_h")
    if slope is not None:
        text += (
            f"; score ratio {slope:+.3g}/h over the last {fields.get('trend_inferences')} inferences"
            f" (x{fields.get('trend_change') or float('nan'):.3g})"
        )
    return text


def alarm_line(ev: Mapping[str, Any]) -> str:
    """The log line of an ``alarm`` event: score, threshold and the diagnosis."""
    return f"ALARM: score {ev.get('score')} over threshold {ev.get('threshold')}; {describe(ev)}"
