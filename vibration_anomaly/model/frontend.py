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
  defect repeats in every one of them. A knock tens of times the window's level
  still leaks through the FFT band masks into every sub-frame of the quiet bands,
  so it is first cut out of the window (``core.knock_gate``, ``knock_gate`` > 0).
* **Per channel.** Each axis is its own row in the batch, so one model serves
  1-axis accelerometers and 3-axis IMUs; the scorer takes the worst axis.
* **Each band at its own bandwidth** (``Frontend``, ``method = "banded"``). A band's analytic
  signal is made from its own bins only: shifted to baseband, inverse FFT of ``OVERSAMPLE`` x its
  bin count (at least ``MIN_PER_SUBFRAME`` samples per sub-frame), single precision, a level per
  call, in buffers reused across calls. |z|^2 is the full-rate squared envelope at fewer instants
  (same envelope-spectrum bins; sub-frame means keep the full-rate boundaries: ``subframe_weights``).
  The features are within a few thousandths of the full-rate ones the shipped model was trained on
  (``frontend_full.FullRateFrontend``; ``test_frontend_banded``); a calibration records which one
  it was made with and is always scored with it.

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
   feature alone goes from 0.948 to 0.956 AUROC). The lowest fundamental is
   ``env_min_hz`` = 10 Hz (2 Hz before issue 16; a model.json or calibration
   that does not say keeps 2): on the robot's 5 s windows a knock whose
   frame modes ring for a few hundred ms is one slow envelope bump, and its
   spectrum at 2, 4 and 6 Hz read as a harmonic series (docs/MODEL.md). The
   real (FEMTO, 0.1 and 0.2 s) training windows never looked below 10 Hz:
   two bins of their envelope spectrum; a defect line below 10 Hz (BPFO of
   a 6205 below a 2.8 Hz shaft) is read by the energy and kurtosis only.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from vibration_anomaly.core.knock_gate import UncutKnock, gate_knocks, uncut_knock
from vibration_anomaly.errors import InputError
from vibration_anomaly.model.frontend_config import (
    FEATURE_NAMES,
    FrontendConfig,
    analysis_band,
    band_edges,
    validate_window,
)

__all__ = [
    "FEATURE_NAMES",
    "Frontend",
    "FrontendConfig",
    "band_edges",
    "plan_levels",
    "read_window",
    "validate_window",
]


def read_window(
    window: Any, fs_hz: Any, cfg: FrontendConfig, source: str = "window"
) -> tuple[np.ndarray, tuple[int, ...], UncutKnock | None]:
    """``validate_window``, then knocks replaced (``core.knock_gate``) when ``cfg.knock_gate`` is on;
    with the channels that had one, and a knock left in that makes the window unfit to score."""
    x = validate_window(window, fs_hz, cfg, source)
    if cfg.knock_gate <= 0:
        return x, (), None
    cut_hz = analysis_band(cfg, float(fs_hz))[0]
    gated, runs = gate_knocks(x, float(fs_hz), cut_hz, cfg.knock_gate)
    left = uncut_knock(x, float(fs_hz), runs, 2 * (x.shape[0] // cfg.subframes), cut_hz)
    return gated, tuple(sorted({r.channel for r in runs})), left


@dataclass(frozen=True)
class _Level:
    """One level of the band tree, computed at its own bandwidth (see :class:`Frontend`)."""

    first_token: int
    n_bands: int
    length: int  # L: samples of each band's analytic signal over the window (>= OVERSAMPLE x its bins)
    gather: np.ndarray  # (n_bands, widest band's bins): indices into the spectrum (sentinel: a zero)
    env_bins: np.ndarray  # envelope-spectrum bins f0 that are candidate fundamentals (same for every band)
    harmonic_bins: np.ndarray  # (2 t + 1, 2, len(env_bins)): the bins within +-t of 2 f0 and of 3 f0
    ones: np.ndarray  # float32 ones of length L, for sums as dot products
    subframes: np.ndarray  # (L, subframes) float32: sub-frame means as one product (see subframe_weights)


@dataclass(frozen=True)
class _Plan:
    """Everything about a window shape that does not depend on its samples, computed once per (n, fs)."""

    n: int
    levels: tuple[_Level, ...]
    gain: float  # the analytic signal's factor 2, and L / n so |z|^2 has the full-rate scale
    spectrum_bins: int  # one-sided spectrum length (n // 2 + 1); its index is the zero sentinel
    workspaces: dict[int, _Workspace] = field(default_factory=dict)  # per channel count, made on first use


OVERSAMPLE = 4
MIN_PER_SUBFRAME = 32


class _Workspace:
    """The buffers one level needs, made once per window shape and reused by every call (no fresh pages).

    16 bytes per analytic-signal sample of the largest level: 0.45 MiB for 5 s of 3 axes at 1 kHz.
    """

    def __init__(self, size: int) -> None:
        self.complex_ = np.zeros(size, dtype=np.complex64)
        self.real_a = np.zeros(size, dtype=np.float32)
        self.real_b = np.zeros(size, dtype=np.float32)

    @staticmethod
    def view(buf: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return buf[: math.prod(shape)].reshape(shape)


def _middle(sorted_rows: np.ndarray) -> np.ndarray:
    """The median of each row of an already sorted array (numpy's definition for an even count)."""
    n = sorted_rows.shape[-1]
    return (sorted_rows[..., (n - 1) // 2] + sorted_rows[..., n // 2]) * 0.5


def subframe_weights(n: int, length: int, k: int) -> np.ndarray:
    """(length, k) weights making ``p @ W`` the full-rate sub-frame means of a signal sampled ``length`` times.

    The full-rate frontend cuts the first ``k * (n // k)`` samples into ``k`` sub-frames of ``n // k``
    (so a few samples at the end are in none). Decimated sample i stands for the original samples
    within half a step of its instant i * n / length (periodically: the window's spectrum is), and
    weighs in each sub-frame by the share of them that lie there, so the sub-frames keep their
    full-rate boundaries whatever the length.
    """
    m = n // k
    step = n / length
    a = (np.arange(length) - 0.5) * step  # sample i covers [a_i, a_i + step) in original sample units
    lo = np.arange(k) * m - 0.5  # sub-frame j covers original samples j m .. (j + 1) m - 1
    hi = lo + m
    w = np.zeros((length, k))
    for shift in (0.0, float(n)):  # the first sample's half step before 0 is the window's end
        w += np.clip(np.minimum(a[:, None] + shift + step, hi) - np.maximum(a[:, None] + shift, lo), 0, None)
    return (w / m).astype(np.float32)


def _fast_length(minimum: int, multiple: int) -> int:
    """The smallest 2-3-5-smooth multiple of ``multiple`` that is >= ``minimum`` (cheap FFT sizes)."""
    m = -(-minimum // multiple)
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m * multiple
        m += 1


def plan_levels(cfg: FrontendConfig, n: int, fs: float) -> _Plan:
    """Band bins, per-level signal lengths and envelope bins for windows of ``n`` samples at ``fs``."""
    edges = band_edges(cfg, fs)
    nf = n // 2 + 1
    k = np.arange(nf)
    f = np.fft.rfftfreq(n, d=1.0 / fs)  # exactly the full-rate grid: a bin on a band edge falls the same way
    positive = (k >= 1) & (2 * k < n)  # the full-rate frontend's positive half (no DC, no Nyquist bin)
    env_lo = max(cfg.env_min_hz, 2.0 * fs / n)
    levels = []
    first = 0
    for level in range(cfg.levels + 1):
        nb = 2**level
        e = edges[first : first + nb]
        bins = [np.flatnonzero(positive & (f >= lo) & (f < hi)) for lo, hi in e]
        widest = max(len(b) for b in bins)
        # >= 2x the band's bins samples |z|^2 (and its spectrum, to the band width) without aliasing; the
        # sub-frame sums need more (OVERSAMPLE, measured against the full-rate features: docs/MODEL.md).
        length = _fast_length(max(OVERSAMPLE * widest, MIN_PER_SUBFRAME * cfg.subframes), 2)
        gather = np.full((nb, widest), nf, dtype=np.intp)
        for row, b in zip(gather, bins, strict=True):
            row[: len(b)] = b
        fe = np.fft.rfftfreq(n, d=1.0 / fs)[: length // 2 + 1]
        bw = float(e[0, 1] - e[0, 0])  # equal widths within a level
        env = np.flatnonzero((fe >= env_lo) & (3 * fe <= bw) & (3 * np.arange(len(fe)) < len(fe)))
        tol = np.arange(-int(cfg.env_tol_bins), int(cfg.env_tol_bins) + 1)
        harm = np.clip(
            tol[:, None, None] + np.array([2, 3])[None, :, None] * env[None, None, :], 0, length // 2
        )
        ones = np.ones(length, dtype=np.float32)
        levels.append(
            _Level(first, nb, length, gather, env, harm, ones, subframe_weights(n, length, cfg.subframes))
        )
        first += nb
    return _Plan(n, tuple(levels), 2.0, nf)


class Frontend:
    """Callable turning a window (n_samples, n_channels) at fs_hz into features (n_channels, T, F) float32.

    Each band at its own bandwidth (module doc); plans and buffers are made once per window shape.
    """

    method: ClassVar[str] = "banded"
    """What a calibration records (``Calibration.frontend``) so it is always scored with its own features."""

    def __init__(self, config: FrontendConfig | None = None) -> None:
        self.config = config or FrontendConfig()
        self._plans: dict[tuple[int, float], _Plan] = {}
        self._lock = threading.Lock()
        self._last = threading.local()

    @property
    def knocked_channels(self) -> tuple[int, ...]:
        """The channels this thread's last call found a knock in and cut it out of (``core.knock_gate``)."""
        return getattr(self._last, "channels", ())

    @property
    def uncut_knock(self) -> UncutKnock | None:
        """The knock this thread's last call found and could not cut out (``core.knock_gate.uncut_knock``):
        the window is not to be scored. None when there was none (or the gate is off)."""
        return getattr(self._last, "uncut", None)

    @property
    def batch_uncut(self) -> tuple[UncutKnock | None, ...]:
        """:attr:`uncut_knock` of each window of this thread's last :meth:`batch`."""
        return getattr(self._last, "batch_uncut", ())

    @property
    def n_tokens(self) -> int:
        return self.config.n_tokens

    @property
    def n_features(self) -> int:
        return self.config.n_features

    def prepare(self, n_samples: int, fs_hz: float) -> None:
        """Make the plan for windows of this shape now (configure time), not in the first awake period."""
        self._plan(int(n_samples), float(fs_hz))

    def _plan(self, n: int, fs: float) -> _Plan:
        hit = self._plans.get((n, fs))
        if hit is None:
            if len(self._plans) > 8:
                self._plans.clear()
            hit = self._plans[(n, fs)] = plan_levels(self.config, n, fs)
        return hit

    def __call__(self, window: Any, fs_hz: Any, source: str = "window") -> np.ndarray:
        cfg = self.config
        x, self._last.channels, self._last.uncut = read_window(window, fs_hz, cfg, source)
        n, c = x.shape
        plan = self._plan(n, float(fs_hz))
        spec = np.zeros((c, plan.spectrum_bins + 1), dtype=np.complex64)  # last column: the sentinel zero
        spec[:, :-1] = np.fft.rfft(x, axis=0).T
        out = np.empty((c, cfg.n_tokens, cfg.n_features), dtype=np.float32)
        with self._lock:  # one workspace per window shape: calls on it take turns
            ws = self._workspace(plan, c)
            for lv in plan.levels:
                self._level(spec, lv, plan, ws, out[:, lv.first_token : lv.first_token + lv.n_bands])
        return out

    @staticmethod
    def _workspace(plan: _Plan, channels: int) -> _Workspace:
        """The plan's buffers for this many channels (they live and go with the plan)."""
        hit = plan.workspaces.get(channels)
        if hit is None:
            most = max(lv.n_bands * lv.length for lv in plan.levels) * channels
            hit = plan.workspaces[channels] = _Workspace(most)
        return hit

    def _level(self, spec: np.ndarray, lv: _Level, plan: _Plan, ws: _Workspace, out: np.ndarray) -> None:
        cfg = self.config
        c, k, length = spec.shape[0], cfg.subframes, lv.length
        half, shape = length // 2, (spec.shape[0], lv.n_bands, length)
        y = ws.view(ws.complex_, shape)
        width = lv.gather.shape[1]
        # each band's bins at baseband (take into the buffer: a third of the time of spec[:, gather])
        np.take(spec, lv.gather, axis=1, out=y[..., :width], mode="clip")
        y[..., width:] = 0
        np.fft.ifft(y, axis=-1, out=y)  # in place, complex64
        p, t = ws.view(ws.real_a, shape), ws.view(ws.real_b, shape)
        np.multiply(y.real, y.real, out=p)
        np.multiply(y.imag, y.imag, out=t)
        p += t  # squared envelope (C, B, L) float32, times `scale` below
        # |z|^2 at the full-rate scale: the analytic signal's factor 2 and the ifft's 1/L instead of 1/n.
        scale = (plan.gain * length / plan.n) ** 2
        w = lv.subframes
        e2 = (p @ w).astype(np.float64) * scale + cfg.eps  # (C, B, k) sub-frame means as BLAS products
        e4 = (np.square(p, out=t) @ w).astype(np.float64) * (scale * scale)
        kurt = np.sort(np.log(e4 / e2**2 + cfg.eps), axis=-1)
        e2.sort(axis=-1)
        out[..., 0] = np.log(_middle(e2))
        out[..., 1] = _middle(kurt)
        out[..., 2] = kurt[..., k // 4]
        t[...] = p
        t.partition(half, axis=-1)  # the two middle values: t[half], and the largest of those below it
        clip = (t[..., :half].max(axis=-1, keepdims=True) + t[..., half : half + 1]) * (0.5 * cfg.env_clip)
        np.minimum(p, clip, out=p)
        p -= (p @ lv.ones)[..., None] / length
        spectrum = (c, lv.n_bands, half + 1)
        r = ws.view(ws.complex_, spectrum)  # y is spent: its memory holds the envelope spectrum now
        np.fft.rfft(p, axis=-1, out=r)
        es, tmp = ws.view(ws.real_b, spectrum), ws.view(ws.real_a, spectrum)
        np.multiply(r.real, r.real, out=es)
        es += np.multiply(r.imag, r.imag, out=tmp)  # envelope power spectrum (C, B, L // 2 + 1)
        f0 = lv.env_bins
        if len(f0) < 3:
            out[..., 3] = 0.0
            return
        # S(f0) + the largest of S within +-env_tol_bins of 2 f0 and of 3 f0 (see the module doc)
        near = ws.view(ws.real_a, (*spectrum[:2], *lv.harmonic_bins.shape))
        np.take(es, lv.harmonic_bins, axis=-1, out=near, mode="clip")
        best = near[
            ..., 0, :, :
        ]  # the largest of the 2 t + 1 neighbours, elementwise (a short reduce is slow)
        for j in range(1, near.shape[-3]):
            np.maximum(best, near[..., j, :, :], out=best)
        hs = es[..., f0] + best[..., 0, :] + best[..., 1, :]
        # The full-rate frontend's envelope spectrum is this one times (scale * n / L)^2 bin for bin
        # (same bin spacing, 1 / window), and it divides by the mean over its n // 2 non-DC bins:
        # the same power is in this level's fewer bins, so their sum is divided by the full count.
        to_full = (scale * plan.n / length) ** 2
        mean_s = (es[..., 1:] @ lv.ones[:half]).astype(np.float64) * (to_full / (plan.n // 2)) + cfg.eps
        out[..., 3] = np.log((hs.max(axis=-1).astype(np.float64) * to_full + cfg.eps) / (3 * mean_s))

    def batch(self, windows: np.ndarray, fs_hz: float, source: str = "windows") -> np.ndarray:
        """Features of a stack of windows (N, n_samples, n_channels) -> (N, n_channels, T, F)."""
        arr = np.asarray(windows)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3:
            raise InputError(source, "windows.shape", f"expected (N, n_samples, n_channels), got {arr.shape}")
        feats, uncut = [], []
        for w in arr:
            feats.append(self(w, fs_hz, source))
            uncut.append(self.uncut_knock)
        self._last.batch_uncut = tuple(uncut)
        return (
            np.stack(feats)
            if len(arr)
            else np.zeros((0, arr.shape[2], self.n_tokens, self.n_features), dtype=np.float32)
        )
