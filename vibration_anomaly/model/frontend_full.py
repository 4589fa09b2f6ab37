"""The frontend as the shipped model was trained (v3): one full-length analytic signal per band.

``Frontend`` computes each band at its own bandwidth, about five times cheaper, and is what
calibrations are made with now. This one stays for two reasons: a calibration made before
(``Calibration.frontend == "full"``: it has no ``extra.frontend``) is scored with the features it
was fitted on, and it is the oracle ``test_frontend_banded.py`` holds the fast one to.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from vibration_anomaly.model.frontend import Frontend, FrontendConfig, band_edges, read_window


class FullRateFrontend(Frontend):
    """Full-rate frontend (the v3 training code, unchanged); same interface as ``Frontend``."""

    method: ClassVar[str] = "full"

    def __init__(self, config: FrontendConfig | None = None) -> None:
        super().__init__(config)
        self._mask_cache: dict[tuple[int, float], tuple[np.ndarray, np.ndarray]] = {}

    def prepare(self, n_samples: int, fs_hz: float) -> None:
        self._masks(int(n_samples), float(fs_hz))

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
        x, self._last.channels, self._last.uncut = read_window(window, fs_hz, cfg, source)
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
