"""What the robot's sensor would have delivered: lab recordings resampled to a sensor's output rate.

A laboratory accelerometer samples at 12-51 kHz; a robot's IMU or MEMS
accelerometer delivers 1-7 kHz after its own digital low-pass. Evaluating a
model on lab-rate data says nothing about what it sees on the robot, so
``evaluate --sensor-rate HZ`` passes every record (or, in the sensitivity
ladder, every window after the defect is injected) through this model first.

The sensor model (``SensorModel``):

* **Rational rate change.** The ratio ``rate / fs`` is approximated by a
  fraction ``up / down`` (``fractions.Fraction.limit_denominator``,
  denominator <= ``MAX_DENOMINATOR``); the rate actually delivered,
  ``fs * up / down``, is reported (exact for 1, 3.2 and 6.6 kHz from 12,
  25.6 or 51.2 kHz). Resampling is ``scipy.signal.resample_poly``
  (polyphase: upsample by ``up``, filter, keep every ``down``-th sample).
* **Anti-aliasing FIR, designed here, not resample_poly's default.** The
  default puts the cutoff *at* the new Nyquist, so a tone just above it is
  only 6 dB down and aliases into the band. A sensor's decimation filter
  has a passband below Nyquist and a stopband from Nyquist on. Here:
  Kaiser-window linear-phase low-pass (``scipy.signal.kaiserord`` /
  ``firwin``), passband flat (ripple < 0.1 %) up to ``PASS_FRAC`` = 0.4 of
  the output rate, >= ``STOP_DB`` = 60 dB down from ``STOP_FRAC`` = 0.5
  (the output Nyquist) on; nothing above the output Nyquist aliases into the
  band by more than -60 dB. The 0.4-0.5 band is the transition band, as on
  a real sensor (MEMS accelerometers typically specify a bandwidth of
  ODR / 2.5 to ODR / 4).
* **Continuous signals are resampled whole** (``apply``, ``records``): the
  sensor samples continuously, windows are cut afterwards.
* **Windows with context** (``windows``): a window cut at the lab rate with
  ``margin_in`` extra samples each side is resampled and the margins are
  dropped, so the filter's start-up transient never lands inside a window.
  ``window_lengths`` picks lab and sensor lengths that map exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import lru_cache
from typing import Any

import numpy as np

from vibration_anomaly.errors import InputError

PASS_FRAC = 0.4
STOP_FRAC = 0.5
STOP_DB = 60.0
MAX_DENOMINATOR = 1000
SOURCE = "--sensor-rate"


@lru_cache(maxsize=32)
def _design(up: int, down: int) -> np.ndarray:
    """Anti-aliasing low-pass at the upsampled rate (``up`` x input), unit DC gain, odd length."""
    from scipy.signal import firwin, kaiserord

    # In units of the upsampled rate's Nyquist (firwin's and kaiserord's 1.0) the output rate is 2 / down.
    out_rate = 2.0 / down
    numtaps, beta = kaiserord(STOP_DB, (STOP_FRAC - PASS_FRAC) * out_rate)
    numtaps |= 1  # odd: linear phase with an integer delay
    cutoff = 0.5 * (PASS_FRAC + STOP_FRAC) * out_rate
    return np.asarray(firwin(numtaps, cutoff, window=("kaiser", beta)), dtype=np.float64)


@dataclass(frozen=True)
class SensorModel:
    """Anti-aliased resampling from ``fs_in_hz`` to about ``rate_hz`` (exactly ``fs_out_hz``)."""

    rate_hz: float
    fs_in_hz: float
    up: int
    down: int

    @property
    def fs_out_hz(self) -> float:
        return self.fs_in_hz * self.up / self.down

    @property
    def taps(self) -> np.ndarray:
        return _design(self.up, self.down)

    @property
    def delay_out(self) -> int:
        """Samples at the output rate over which one input sample spreads each way (the filter's half length)."""
        return math.ceil(((len(self.taps) - 1) // 2) / self.down)

    def apply(self, x: np.ndarray, axis: int = 0) -> np.ndarray:
        """Resample a continuous signal along ``axis``: ``ceil(n * up / down)`` samples come out."""
        from scipy.signal import resample_poly

        y = resample_poly(np.asarray(x, dtype=np.float64), self.up, self.down, axis=axis, window=self.taps)
        return np.asarray(y, dtype=np.float64)

    def margin(self) -> tuple[int, int]:
        """(lab samples, sensor samples) of context kept each side of a window: filter half length, rounded up."""
        m_out = self.delay_out + 2
        m_out = -(-m_out // self.up) * self.up
        return m_out * self.down // self.up, m_out

    def window_lengths(self, n_out: int) -> tuple[int, int]:
        """(lab samples with both margins, sensor samples) for a sensor window of at least ``n_out`` samples.

        The sensor length is rounded up to a multiple of ``up`` so the lab length is an integer.
        """
        n = -(-n_out // self.up) * self.up
        m_in, _ = self.margin()
        return n * self.down // self.up + 2 * m_in, n

    def windows(self, w: np.ndarray) -> np.ndarray:
        """(N, n_in, C) lab windows cut with ``margin()`` each side -> (N, n_out, C) sensor windows."""
        m_in, m_out = self.margin()
        n_out = (w.shape[1] - 2 * m_in) * self.up // self.down
        if len(w) == 0:
            return np.zeros((0, n_out, w.shape[2]))
        y = self.apply(w, axis=1)
        return np.ascontiguousarray(y[:, m_out : m_out + n_out])

    def describe(self) -> dict[str, Any]:
        return {
            "rate_hz": self.rate_hz,
            "from_hz": self.fs_in_hz,
            "delivered_hz": round(self.fs_out_hz, 6),
            "up": self.up,
            "down": self.down,
            "fir_taps": len(self.taps),
            "passband_hz": round(PASS_FRAC * self.fs_out_hz, 3),
            "stopband_from_hz": round(STOP_FRAC * self.fs_out_hz, 3),
            "stopband_db": STOP_DB,
        }


def sensor_for(fs_in_hz: float, rate_hz: float, what: str = "the recording") -> SensorModel:
    """The sensor model from ``fs_in_hz`` to ``rate_hz``, refused unless it lowers the rate."""
    if not (math.isfinite(rate_hz) and rate_hz > 0):
        raise InputError(SOURCE, repr(rate_hz), "expected a sampling rate in Hz > 0")
    if rate_hz >= fs_in_hz * (1 - 1e-9):
        raise InputError(
            SOURCE,
            f"{rate_hz:g}",
            f"is at or above {what}'s rate of {fs_in_hz:g} Hz; a sensor model can only lower the rate "
            "(leave --sensor-rate out to evaluate at the recording's own rate)",
        )
    fr = Fraction(rate_hz / fs_in_hz).limit_denominator(MAX_DENOMINATOR)
    if fr.numerator == 0 or abs(float(fr) * fs_in_hz - rate_hz) > 0.01 * rate_hz:
        raise InputError(
            SOURCE,
            f"{rate_hz:g}",
            f"cannot be reached from {what}'s {fs_in_hz:g} Hz within 1 % by a ratio with a denominator "
            f"<= {MAX_DENOMINATOR}",
        )
    return SensorModel(float(rate_hz), float(fs_in_hz), fr.numerator, fr.denominator)


def check_enough(rate_hz: float, seconds: float, min_samples: int, min_windows: int, what: str) -> None:
    """Refuse a rate at which ``seconds`` of healthy data give fewer than ``min_windows`` model windows."""
    have = int(seconds * rate_hz)
    need = min_samples * min_windows
    if have < need:
        raise InputError(
            SOURCE,
            f"{rate_hz:g}",
            f"gives {have} samples from {what}'s {seconds:g} s of healthy data; the model needs "
            f"{min_windows} windows of at least {min_samples} samples ({need}): use "
            f"{math.ceil(need / seconds):g} Hz or more",
        )


def sensor_records(records: list[Any], rate_hz: float, min_samples: int, min_windows: int) -> list[Any]:
    """Every record (``data.Record``) as the sensor would have delivered it; refusals name the record.

    Refused when the rate is at or above a record's own, or when no machine
    keeps ``min_windows`` windows of ``min_samples`` at the new rate.
    """
    out = []
    for r in records:
        sm = sensor_for(r.fs_hz, rate_hz, r.file)
        out.append(replace(r, fs_hz=sm.fs_out_hz, signal=sm.apply(r.signal)))
    healthy: dict[str, float] = {}
    for r in records:
        if r.healthy:
            for m in r.machines:
                healthy[m] = healthy.get(m, 0.0) + len(r.signal) / r.fs_hz
    if healthy and all(s * rate_hz < min_samples * min_windows for s in healthy.values()):
        name, seconds = max(healthy.items(), key=lambda kv: kv[1])
        check_enough(rate_hz, seconds, min_samples, min_windows, f"machine {name}")
    return out
