"""How strongly a window's envelope carries the bearing's defect orders at the known shaft speed (ROS-free).

The order part of speed-aware scoring (``core.order_calibration``: calibrated per machine and fused
with the model's score on the robot, and in evaluate's ``model+orders``; docs/MODEL.md "Speed-aware
fusion"). It reuses the diagnosis' envelope machinery (``core.diagnosis``), so the alarm's
location and this score read the same lines:

1. **Tones removed** (:func:`core.envelope.tone_free_spectrum`, one FFT per channel): shaft and electrical lines are clipped.
2. For each band of the frontend's dyadic tree (levels 0-:data:`LEVELS`, 3) wide enough to show the 2nd
   harmonic of every defect line: the **squared-envelope spectrum**
   (:func:`core.envelope.band_envelope_spectrum`, at base band and only up to the highest bin read).
   Where the bundle states the structural resonance the impacts ring (``bearing.resonance_hz``), only
   the bands overlapping it (:func:`envelope_bands`); none when the sensor cannot pass it.
3. For each defect order the caller states (outer race ``bpfo``, inner race ``bpfi``, ball 2 x ``bsf``,
   cage ``ftf``, each times the shaft speed): the strongest bin within +-2 % (slip) of each of its
   first three harmonics that fit the band, over the median of the spectrum around it
   (:func:`core.diagnosis.harmonic_peaks`, every channel at once). The order's strength is the
   geometric mean of those ratios (``exp`` of the mean log ratio): scale-free, about 3-6 for noise,
   large for a periodic impact train.
4. Per line, the largest over the bands (:func:`order_strengths`, (channels, lines)); the channel's
   score (:func:`order_score`) is the largest over the lines. ``model.fused`` normalises each line of
   each channel by its own healthy median before taking the largest, so a line with a strong healthy
   neighbour (FEMTO's 10 Hz splice comb sits near BPFI's 221.7 Hz at 30 Hz) does not mask the others.

Without a shaft speed or without defect orders it returns None: the model alone decides.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from vibration_anomaly.core.diagnosis import (
    HARMONICS,
    MAX_ANALYSIS_HZ,
    ORDER_LOCATIONS,
    SLIP,
    bands,
    harmonic_peaks,
)
from vibration_anomaly.core.diagnosis import LEVELS as DIAGNOSIS_LEVELS
from vibration_anomaly.core.envelope import _hann, band_envelope_spectrum, tone_free_spectrum

LEVELS = DIAGNOSIS_LEVELS
"""Dyadic levels searched, the diagnosis' (0: the whole analysis band .. 3: eighths); a band narrower than
2.2 x the highest defect line is skipped, so at robot rates usually only the whole band is left.
On four FEMTO *training* bearings (impacts injected at 1.5x / 2x, lab rate, order score alone) levels
0-2 gave AUROC 0.924 / 0.997, 0-3 0.946 / 0.998, 0-4 the same at twice the cost."""
CAGE = "ftf"


def defect_lines_hz(
    shaft_hz: float | None, orders: Mapping[str, float] | None, include_cage: bool = False
) -> dict[str, float]:
    """Defect frequency (Hz) of each stated order at ``shaft_hz`` (ball: 2 x bsf); empty when either is unknown.

    The cage order (FTF, below the shaft speed) is left out by default: a 0.2 s window holds
    less than three cage turns, and the cage line sits among the shaft's own sidebands.
    """
    if not shaft_hz or not math.isfinite(shaft_hz) or shaft_hz <= 0 or not orders:
        return {}
    return {
        name: float(o) * ORDER_LOCATIONS[name][1] * shaft_hz
        for name, o in orders.items()
        if name in ORDER_LOCATIONS and (include_cage or name != CAGE) and o and math.isfinite(o)
    }


def _geometric_mean(ratios: np.ndarray) -> float:
    return math.exp(float(np.mean([math.log(max(r, 1e-12)) for r in ratios.tolist()])))


def _strongest(out: np.ndarray, col: int, ratios: np.ndarray) -> None:
    """Each row's geometric mean of ``ratios`` (rows, harmonics) into ``out[:, col]`` where it is larger."""
    if ratios.shape[1] == 0:
        return
    for c, row in enumerate(ratios):
        s = _geometric_mean(row)
        if not out[c, col] >= s:  # NaN (none yet) or weaker
            out[c, col] = s


Resonance = tuple[float, float]
"""The structural resonance (lo, hi) Hz a machine's bearing impacts ring, where the bundle states it."""


def envelope_bands(fs_hz: float, resonance_hz: Resonance | None = None) -> list[tuple[float, float]]:
    """The bands the envelope is read in: every band of the tree, or only those overlapping the stated
    resonance (envelope analysis demodulates the resonance the impacts ring; a band without it holds only
    noise). Empty when the resonance is above the sensor's band: then no envelope line is read."""
    tree = bands(fs_hz, LEVELS)
    if resonance_hz is None:
        return tree
    lo, hi = resonance_hz
    return [b for b in tree if b[1] > lo and b[0] < hi]


def _envelope_rows(
    x: np.ndarray, fs_hz: float, lines_hz: Mapping[str, float], resonance_hz: Resonance | None = None
) -> np.ndarray:
    """(C, lines) per channel (a row of ``x`` (C, n)) and defect line, its largest geometric-mean ratio
    over the :func:`envelope_bands` (NaN: no fit); every channel's spectra in one call per step."""
    top = min(fs_hz / 2, MAX_ANALYSIS_HZ)
    fits = {k: f for k, f in lines_hz.items() if 2.2 * f < 0.9 * top}
    out = np.full((x.shape[0], len(lines_hz)), math.nan)
    chosen = envelope_bands(fs_hz, resonance_hz)
    if not fits or not chosen:
        return out
    n = x.shape[1]
    spec = tone_free_spectrum(x)
    need = 2.2 * max(fits.values())
    # defect_lines reads up to 1.5 x the highest harmonic (+ slip): no bin above that is computed
    max_hz = 1.5 * HARMONICS * (1 + SLIP) * max(fits.values()) + 2 * fs_hz / n
    for band in chosen:
        width = band[1] - band[0]
        if width < need:
            continue
        freqs, power = band_envelope_spectrum(spec, n, fs_hz, band, max_hz)
        for col, name in enumerate(lines_hz):
            if name in fits:
                _strongest(out, col, harmonic_peaks(freqs, power, fits[name], width)[1])
    return out


def line_strengths(
    x: np.ndarray, fs_hz: float, lines_hz: Mapping[str, float], resonance_hz: Resonance | None = None
) -> dict[str, float]:
    """One channel (1-D): per defect line, its largest geometric-mean ratio over the bands (NaN: no fit)."""
    row = _envelope_rows(np.asarray(x, dtype=np.float64)[None], fs_hz, lines_hz, resonance_hz)[0]
    return dict(zip(lines_hz, row.tolist(), strict=True))


def order_strengths(
    window: np.ndarray,
    fs_hz: float,
    shaft_hz: float | None,
    orders: Mapping[str, float] | None,
    resonance_hz: Resonance | None = None,
) -> tuple[list[str], np.ndarray] | None:
    """(line names, (C, lines) strengths) of ``window`` (n, C) or (n,); None without speed or orders.
    With ``resonance_hz`` only the bands overlapping it are read (:func:`envelope_bands`)."""

    def rows(x: np.ndarray, fs: float, lines: Mapping[str, float]) -> np.ndarray:
        return _envelope_rows(x, fs, lines, resonance_hz)

    return _per_channel(rows, window, fs_hz, shaft_hz, orders)


def _per_channel(
    rows_strengths: Callable[[np.ndarray, float, Mapping[str, float]], np.ndarray],
    window: np.ndarray,
    fs_hz: float,
    shaft_hz: float | None,
    orders: Mapping[str, float] | None,
) -> tuple[list[str], np.ndarray] | None:
    """``rows_strengths`` of every channel of ``window`` (n, C): (line names, (C, lines)); None without lines."""
    lines = defect_lines_hz(shaft_hz, orders)
    if not lines:
        return None
    w = np.asarray(window, dtype=np.float64)
    rows = np.ascontiguousarray(w.reshape(len(w), -1).T)  # (C, n): each channel's FFTs along a row
    return list(lines), rows_strengths(rows, fs_hz, lines)


SPECTRUM_HARMONICS = 6
"""Harmonics of each defect line read in the raw spectrum (those up to 1/1.35 of the Nyquist rate)."""
SPECTRUM_MIN_BINS = 2.0
"""The raw spectrum's lines are read only when the +-SLIP search around the lowest defect line spans at
least this many bins (``SLIP x f x n / fs``): a robot's 5 s window at any shaft over ~4 Hz, not FEMTO's
0.2 s windows (0.4 bins), whose 0.1 s recordings spliced every 10 s put their own 10 Hz comb on the lines."""


def spectrum_resolves(n_samples: int, fs_hz: float, lines_hz: Mapping[str, float]) -> bool:
    """True when a window of ``n_samples`` resolves the defect lines in the raw spectrum (``SPECTRUM_MIN_BINS``)."""
    return bool(lines_hz) and SLIP * min(lines_hz.values()) * n_samples / fs_hz >= SPECTRUM_MIN_BINS


def _spectrum_rows(x: np.ndarray, fs_hz: float, lines_hz: Mapping[str, float]) -> np.ndarray:
    """(C, lines) :func:`spectrum_line_strengths` of every row of ``x`` (C, n) at once."""
    n = x.shape[1]
    power = np.abs(np.fft.rfft((x - x.mean(axis=1, keepdims=True)) * _hann(n), axis=1)) ** 2
    freqs = np.fft.rfftfreq(n, 1 / fs_hz)
    out = np.full((x.shape[0], len(lines_hz)), math.nan)
    for col, f0 in enumerate(lines_hz.values()):
        ratios = harmonic_peaks(freqs, power, f0, float(freqs[-1]) / 1.35, SPECTRUM_HARMONICS)[1]
        _strongest(out, col, ratios)
    return out


def spectrum_line_strengths(x: np.ndarray, fs_hz: float, lines_hz: Mapping[str, float]) -> dict[str, float]:
    """One channel (1-D): per defect line, the geometric mean over its first ``SPECTRUM_HARMONICS``
    harmonics of the strongest *raw* spectrum bin within +-SLIP over the median around it (NaN: none fits).

    A defect's impacts repeat at the line's frequency and ring the machine's low structural modes too; a
    mode rung periodically is a comb of lines at the line's harmonics in the raw spectrum, which survives a
    sensor that cuts off the kHz resonance the envelope reads (docs/MODEL.md "Speed-aware fusion").
    """
    row = _spectrum_rows(np.asarray(x, dtype=np.float64)[None], fs_hz, lines_hz)[0]
    return dict(zip(lines_hz, row.tolist(), strict=True))


def spectrum_strengths(
    window: np.ndarray, fs_hz: float, shaft_hz: float | None, orders: Mapping[str, float] | None
) -> tuple[list[str], np.ndarray] | None:
    """As :func:`order_strengths`, from the raw spectrum (:func:`spectrum_line_strengths`)."""
    return _per_channel(_spectrum_rows, window, fs_hz, shaft_hz, orders)


def order_score(
    window: np.ndarray,
    fs_hz: float,
    shaft_hz: float | None,
    orders: Mapping[str, float] | None,
) -> np.ndarray | None:
    """Per channel (C,) order strength of ``window`` (n, C) or (n,), the largest over the defect lines.

    None without speed or orders; NaN for a channel where no defect line fits below the analysis
    band's top (a sensor too slow for this bearing at this speed).
    """
    got = order_strengths(window, fs_hz, shaft_hz, orders)
    if got is None:
        return None
    s = got[1]
    ok = np.isfinite(s).any(axis=1)
    return np.where(ok, np.max(np.where(np.isfinite(s), s, -np.inf), axis=1), np.nan)
