"""Classic detectors a vibration engineer would use, computed in the same run as the model.

Each baseline maps a window (n_samples, n_channels) to one number per
channel; per machine it is divided by its mean over that machine's healthy
calibration windows, and the window score is the worst channel. So every
baseline is calibrated per machine exactly like the model.

* ``rms``: broadband RMS.
* ``kurtosis``: Pearson kurtosis of the raw signal (Gaussian = 3).
* ``band_kurtosis``: kurtogram-style (Antoni 2006/2007): the envelope
  kurtosis in every band of the dyadic band tree (levels 1-4, same bands as
  the frontend), each relative to its healthy mean; the window score is the
  largest, i.e. the kurtogram's peak.
* ``envelope``: envelope-spectrum energy at the bearing defect frequencies:
  band-pass ``[0.2, 1.0]`` of the analysis band, squared envelope, power at
  harmonics 1-3 of each known defect frequency (+-2 %) over the mean envelope
  power. Needs the defect orders and the shaft speed (or a defect frequency).
* ``isoforest``: IsolationForest (scikit-learn) on the log energies of 32
  log-spaced spectral bands per channel over the analysis band, each
  standardised per machine (calibration mean and std), fitted on the
  calibration windows (200 trees, contamination ``auto``: the threshold is
  set by the shared protocol, not by the forest). The score is the inverse
  normalised isolation depth ``-1 / log2(s)`` of scikit-learn's anomaly
  score ``s``: positive, larger = worse, and spread out enough that the
  score / threshold ratio pools across machines (the first version used
  ``1 - score_samples`` on unstandardised linear bands: 0.88 on FEMTO
  held-out bearings against 0.98 now).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vibration_anomaly.model.frontend import FrontendConfig, band_edges

BASELINES: tuple[str, ...] = ("rms", "kurtosis", "band_kurtosis", "envelope", "isoforest")


def _rms(w: np.ndarray, fs: float) -> np.ndarray:
    x = w - w.mean(axis=0)
    return np.sqrt((x**2).mean(axis=0))


def _kurt(w: np.ndarray, fs: float) -> np.ndarray:
    x = w - w.mean(axis=0)
    v = (x**2).mean(axis=0) + 1e-20
    return (x**4).mean(axis=0) / v**2


def _band_kurt(w: np.ndarray, fs: float) -> np.ndarray:
    """(n_bands * C,) envelope kurtosis in the dyadic bands, levels 1..4."""
    cfg = FrontendConfig()
    n = w.shape[0]
    edges = band_edges(cfg, fs)[1:]
    f = np.fft.fftfreq(n, 1 / fs)
    mask = ((f[None, :] >= edges[:, :1]) & (f[None, :] < edges[:, 1:]) & (f[None, :] > 0)).astype(float)
    out = []
    for c in range(w.shape[1]):
        z = np.fft.ifft(np.fft.fft(w[:, c] - w[:, c].mean())[None, :] * mask, axis=1)
        p = z.real**2 + z.imag**2
        out.append((p**2).mean(axis=1) / ((p.mean(axis=1)) ** 2 + 1e-30))
    return np.concatenate(out)


def _band_energies(w: np.ndarray, fs: float, n_bands: int = 32) -> np.ndarray:
    """(n_bands * C,) log energies of log-spaced bands over [0.02 top, top]."""
    top = min(fs / 2, FrontendConfig().max_analysis_hz)
    spec = np.abs(np.fft.rfft(w - w.mean(axis=0), axis=0)) ** 2
    f = np.fft.rfftfreq(w.shape[0], 1 / fs)
    edges = np.geomspace(0.02 * top, top, n_bands + 1)
    idx = np.searchsorted(edges, f) - 1
    e = np.stack([spec[idx == b].sum(axis=0) for b in range(n_bands)])  # (n_bands, C)
    return np.log(e + 1e-20).T.reshape(-1)


def envelope_defect_energy(w: np.ndarray, fs: float, defect_hz: list[float]) -> np.ndarray:
    """Per channel: envelope power at harmonics 1-3 of the defect frequencies over the mean envelope power."""
    n = w.shape[0]
    top = min(fs / 2, FrontendConfig().max_analysis_hz)
    f = np.fft.fftfreq(n, 1 / fs)
    mask = ((f >= 0.2 * top) & (f < top)).astype(float) * 2
    fe = np.fft.rfftfreq(n, 1 / fs)
    sel = np.zeros(len(fe), dtype=bool)
    for fd in defect_hz:
        for h in (1, 2, 3):
            sel |= np.abs(fe - h * fd) <= max(0.02 * h * fd, 1.01 * fs / n)
    out = []
    for c in range(w.shape[1]):
        z = np.fft.ifft(np.fft.fft(w[:, c] - w[:, c].mean()) * mask)
        p = z.real**2 + z.imag**2
        es = np.abs(np.fft.rfft(p - p.mean())) ** 2
        out.append(es[sel].sum() / (es[1:].mean() * max(sel.sum(), 1) + 1e-30) if sel.any() else np.nan)
    return np.asarray(out)


@dataclass
class Baseline:
    """A per-machine baseline: ``fit`` on healthy windows, then ``score`` windows (higher = worse)."""

    name: str
    stat: Callable[[np.ndarray, float], np.ndarray]
    reduce_max: bool = True
    ref: np.ndarray | None = None

    def fit(self, windows: np.ndarray, fs: float) -> Baseline:
        v = np.stack([self.stat(w, fs) for w in windows])
        b = Baseline(self.name, self.stat, self.reduce_max)
        b.ref = np.nanmean(v, axis=0) + 1e-30
        return b

    def score(self, windows: np.ndarray, fs: float) -> np.ndarray:
        if self.ref is None:
            raise RuntimeError(f"baseline {self.name}: score() before fit()")
        v = np.stack([self.stat(w, fs) for w in windows]) / self.ref
        return np.nanmax(v, axis=1)


class IsoForestBaseline:
    name = "isoforest"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.model: object | None = None
        self.mu: np.ndarray | None = None
        self.sd: np.ndarray | None = None

    def fit(self, windows: np.ndarray, fs: float) -> IsoForestBaseline:
        from sklearn.ensemble import IsolationForest

        b = IsoForestBaseline(self.seed)
        x = np.stack([_band_energies(w, fs) for w in windows])
        b.mu = x.mean(axis=0)
        b.sd = x.std(axis=0) + 0.05  # floor: a few dozen windows under-estimate some bands' spread
        b.model = IsolationForest(n_estimators=200, contamination="auto", random_state=self.seed).fit(
            (x - b.mu) / b.sd
        )
        return b

    def score(self, windows: np.ndarray, fs: float) -> np.ndarray:
        if self.model is None or self.mu is None or self.sd is None:
            raise RuntimeError("baseline isoforest: score() before fit()")
        x = (np.stack([_band_energies(w, fs) for w in windows]) - self.mu) / self.sd
        s = -self.model.score_samples(x)  # type: ignore[attr-defined]  # in (0, 1], 2^(-depth / c(n))
        return -1.0 / np.log2(np.clip(s, 1e-9, 1 - 1e-9))


def make_baselines(
    defect_hz: list[float] | None, seed: int = 0, fs_hz: float | None = None
) -> dict[str, object]:
    """The baselines that apply: the envelope one only with known defect frequencies below ``fs_hz`` / 2.

    (A 300 Hz sensor cannot show a 168 Hz BPFO in its envelope spectrum: every score would be NaN.)
    """
    if defect_hz and fs_hz:
        defect_hz = [f for f in defect_hz if f < fs_hz / 2]
    out: dict[str, object] = {
        "rms": Baseline("rms", _rms),
        "kurtosis": Baseline("kurtosis", _kurt),
        "band_kurtosis": Baseline("band_kurtosis", _band_kurt),
    }
    if defect_hz:
        fds = list(defect_hz)
        out["envelope"] = Baseline("envelope", lambda w, fs: envelope_defect_energy(w, fs, fds))
    out["isoforest"] = IsoForestBaseline(seed)
    return out
