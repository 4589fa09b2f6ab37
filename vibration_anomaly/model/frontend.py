"""Raw vibration window -> model features, in numpy only (this runs on the robot).

Design (why it looks like this):

* **One token per frequency band, kurtogram style.** A young bearing fault is a
  train of small impacts, each ringing a structural resonance. It shows first
  as more energy and more impulsiveness in the band around that resonance,
  long before the broadband RMS moves. Which band depends on the machine, so
  the frontend cuts the analysis band into a dyadic tree of bands (levels
  0..``levels``: 1 + 2 + 4 + ... bands, 31 tokens for 4 levels), like
  Antoni's kurtogram, and the transformer attends across them.
* **Bands relative to the analysis bandwidth, not in Hz.** The analysis band
  is ``[hp_frac * top, top]`` with ``top = min(fs/2, max_analysis_hz)``. A
  1 kHz robot IMU (top 500 Hz), CWRU at 12 kHz (top 6 kHz) and FEMTO at
  25.6 kHz (top 12.8 kHz) all give the same 31 tokens; nothing is resampled.
  Content below ``hp_frac * top`` (robot motion, shaft orders) is dropped.
  Above ``max_analysis_hz`` nothing is used (very fast sensors are treated
  as if low-passed there).
* **Scale free.** Every feature is a logarithm (energy) or a ratio
  (kurtosis, spectral peak-to-mean), so a gain change is a constant offset
  that the per-machine normalisation (``core.calibration.Calibration``) removes.
* **Robust to knocks.** A window is cut into ``subframes`` equal parts and the
  energy and kurtosis features are medians / means over them: one knock (a
  robot driving over a floor joint) touches one sub-frame, while a bearing
  defect repeats in every one of them.
* **Per channel.** Each axis is its own row in the batch, so one model serves
  1-axis accelerometers and 3-axis IMUs; the scorer takes the worst axis.

Features per band (F = 4), computed on the analytic band signal z(t)
(FFT band mask, one-sided, inverse FFT):

0. ln of the median over sub-frames of mean |z|^2 (band energy),
1. ln of the median over sub-frames of mean|z|^4 / (mean|z|^2)^2 (envelope
   kurtosis: 2 for Gaussian noise, larger for impacts),
2. the lower quartile over sub-frames of that log kurtosis (a periodic
   defect raises every sub-frame, a knock only one),
3. harmonic peak of the envelope spectrum: the squared envelope is first
   clipped at ``env_clip`` x its median (so one knock cannot dominate), its
   power spectrum S(f) taken, and for every candidate fundamental f0 between
   ``env_min_hz`` and a third of the band width, S(f0) + S(2 f0) + S(3 f0);
   the feature is ln(max over f0 / (3 x mean S)). Periodic impacts at any
   defect frequency make harmonic lines there; noise and knocks do not.
   With ``env_tol_bins`` = 1 the 2nd and 3rd harmonics are read as the
   largest of the bins within +-1 of h x f0: f0 rarely falls on a bin, and
   a real defect's slip (1-2 %) smears its higher harmonics over neighbouring
   bins (measured on FEMTO held-out windows with 2x injected impacts: this
   feature alone goes from 0.948 to 0.956 AUROC).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from vibration_anomaly.errors import InputError

FEATURE_NAMES: tuple[str, ...] = (
    "log_energy",
    "log_env_kurtosis_median",
    "log_env_kurtosis_q25",
    "log_env_harmonic_peak",
)


@dataclass(frozen=True)
class FrontendConfig:
    """Parameters of the frontend; saved in model.json so a model always gets the features it was trained on."""

    levels: int = 4
    subframes: int = 8
    hp_frac: float = 0.04
    max_analysis_hz: float = 12800.0
    env_min_hz: float = 2.0
    min_samples: int = 256
    env_clip: float = 8.0
    eps: float = 1e-12
    env_tol_bins: int = 1

    @property
    def n_tokens(self) -> int:
        return 2 ** (self.levels + 1) - 1

    @property
    def n_features(self) -> int:
        return len(FEATURE_NAMES)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FrontendConfig:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        known.setdefault("env_tol_bins", 0)  # model.json written before the option existed: exact bins
        return cls(**known)


def band_edges(cfg: FrontendConfig, fs_hz: float) -> np.ndarray:
    """(T, 2) band edges in Hz, level by level (level 0 first), low to high within a level."""
    top = min(fs_hz / 2.0, cfg.max_analysis_hz)
    lo = cfg.hp_frac * top
    edges: list[tuple[float, float]] = []
    for level in range(cfg.levels + 1):
        n = 2**level
        e = np.linspace(lo, top, n + 1)
        edges.extend(zip(e[:-1], e[1:], strict=True))
    return np.asarray(edges, dtype=np.float64)


def validate_window(window: Any, fs_hz: Any, cfg: FrontendConfig, source: str = "window") -> np.ndarray:
    """Check a raw window and return it as float64 (n_samples, n_channels); raise InputError naming the field."""
    try:
        fs = float(fs_hz)
    except (TypeError, ValueError):
        raise InputError(source, "fs_hz", f"expected a number of Hz, got {fs_hz!r}") from None
    if not np.isfinite(fs) or fs <= 0:
        raise InputError(source, "fs_hz", f"expected a positive finite sampling rate, got {fs_hz!r}")
    if not isinstance(window, np.ndarray):
        try:
            window = np.asarray(window)
        except Exception:  # noqa: BLE001 - anything unconvertible is bad input
            raise InputError(source, "window", "expected a numeric array (n_samples, n_channels)") from None
    if window.dtype.kind not in "fiu":
        raise InputError(source, "window.dtype", f"expected a real numeric array, got dtype {window.dtype}")
    if window.ndim == 1:
        window = window[:, None]
    if window.ndim != 2:
        raise InputError(
            source, "window.shape", f"expected (n_samples, n_channels), got shape {window.shape}"
        )
    n, c = window.shape
    if c < 1 or c > 16:
        raise InputError(source, "window.shape[1]", f"expected 1 to 16 channels, got {c}")
    if n < cfg.min_samples:
        raise InputError(
            source, "window.shape[0]", f"too short: {n} samples, need at least {cfg.min_samples}"
        )
    x = window.astype(np.float64, copy=False)
    if not np.all(np.isfinite(x)):
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise InputError(source, "window", f"{bad} NaN or inf samples; expected finite values")
    return x


class Frontend:
    """Callable turning a window (n_samples, n_channels) at fs_hz into features (n_channels, T, F) float32."""

    def __init__(self, config: FrontendConfig | None = None) -> None:
        self.config = config or FrontendConfig()
        self._mask_cache: dict[tuple[int, float], tuple[np.ndarray, np.ndarray]] = {}

    @property
    def n_tokens(self) -> int:
        return self.config.n_tokens

    @property
    def n_features(self) -> int:
        return self.config.n_features

    def _masks(self, n: int, fs: float) -> tuple[np.ndarray, np.ndarray]:
        key = (n, fs)
        hit = self._mask_cache.get(key)
        if hit is not None:
            return hit
        cfg = self.config
        edges = band_edges(cfg, fs)
        f = np.fft.fftfreq(n, d=1.0 / fs)  # full (two-sided) grid for the analytic signal
        band = (f[None, :] >= edges[:, :1]) & (f[None, :] < edges[:, 1:])
        band[:, (f <= 0)] = False
        # analytic signal: double the positive frequencies
        spec_mask = band.astype(np.float64) * 2.0
        # envelope spectrum bins between env_min_hz and the band width
        fe = np.fft.rfftfreq(n, d=1.0 / fs)
        bw = (edges[:, 1] - edges[:, 0])[:, None]
        env_mask = (fe[None, :] >= max(cfg.env_min_hz, 2.0 * fs / n)) & (3 * fe[None, :] <= bw)
        if len(self._mask_cache) > 8:
            self._mask_cache.clear()
        self._mask_cache[key] = (spec_mask, env_mask)
        return spec_mask, env_mask

    def __call__(self, window: Any, fs_hz: Any, source: str = "window") -> np.ndarray:
        cfg = self.config
        x = validate_window(window, fs_hz, cfg, source)
        fs = float(fs_hz)
        n, c = x.shape
        x = x - x.mean(axis=0, keepdims=True)
        spec_mask, env_mask = self._masks(n, fs)
        k = cfg.subframes
        m = n // k
        out = np.empty((c, cfg.n_tokens, cfg.n_features), dtype=np.float32)
        for ch in range(c):
            spec = np.fft.fft(x[:, ch])
            z = np.fft.ifft(spec[None, :] * spec_mask, axis=1)
            p = z.real**2 + z.imag**2  # (T, n) squared envelope
            ps = p[:, : m * k].reshape(cfg.n_tokens, k, m)
            e2 = ps.mean(axis=2) + cfg.eps
            e4 = (ps**2).mean(axis=2)
            kurt = np.log(e4 / e2**2 + cfg.eps)
            out[ch, :, 0] = np.log(np.median(e2, axis=1))
            out[ch, :, 1] = np.median(kurt, axis=1)
            out[ch, :, 2] = np.sort(kurt, axis=1)[:, k // 4]
            med = np.median(p, axis=1, keepdims=True)
            pc = np.minimum(p, cfg.env_clip * med)
            es = np.abs(np.fft.rfft(pc - pc.mean(axis=1, keepdims=True), axis=1)) ** 2
            nf = es.shape[1]
            kk = np.arange(nf)
            h1 = es
            em = es
            for _ in range(int(cfg.env_tol_bins)):  # running max over +-env_tol_bins bins
                prev = em
                em = prev.copy()
                em[:, 1:] = np.maximum(em[:, 1:], prev[:, :-1])
                em[:, :-1] = np.maximum(em[:, :-1], prev[:, 1:])
            h2 = np.where(2 * kk < nf, em[:, np.minimum(2 * kk, nf - 1)], 0.0)
            h3 = np.where(3 * kk < nf, em[:, np.minimum(3 * kk, nf - 1)], 0.0)
            hs = np.where(env_mask, h1 + h2 + h3, 0.0)
            cnt = env_mask.sum(axis=1)
            mean_s = es[:, 1:].mean(axis=1) + cfg.eps
            peak = np.where(cnt >= 3, np.log((hs.max(axis=1) + cfg.eps) / (3 * mean_s)), 0.0)
            out[ch, :, 3] = peak
        return out

    def batch(self, windows: np.ndarray, fs_hz: float, source: str = "windows") -> np.ndarray:
        """Features of a stack of windows (N, n_samples, n_channels) -> (N, n_channels, T, F)."""
        arr = np.asarray(windows)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3:
            raise InputError(source, "windows.shape", f"expected (N, n_samples, n_channels), got {arr.shape}")
        return (
            np.stack([self(w, fs_hz, source) for w in arr])
            if len(arr)
            else np.zeros((0, arr.shape[2], self.n_tokens, self.n_features), dtype=np.float32)
        )
