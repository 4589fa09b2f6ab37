"""Scoring, per-machine calibration and the alarm vote (numpy only; runs on the robot).

The model never sees raw features: each machine is calibrated on a healthy
stretch of its own data, and that calibration (feature normalisation and the
alarm threshold) is stored beside the model as JSON. This is what lets one
model serve machines with different sensors, mounts, gains and sampling rates.

* ``Calibration``: frozen record of the per-machine normalisation (per
  channel, token and feature mean / std), the score threshold, the false-alarm
  rate it was set for and how it was fitted.
* ``calibrate(...)``: fits a Calibration from healthy windows (see its
  docstring for the statistics and why).
* ``Scorer``: window -> frontend -> normalise -> engine -> score; the engine
  must already be awake (the detector owns the duty cycle, not the scorer).
* ``AlarmVoter``: the k-of-n rule that turns per-window verdicts into an alarm.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vibration_anomaly.errors import InputError
from vibration_anomaly.fileio import json_safe, read_regular_file, write_text_atomic

CALIBRATION_VERSION = 1
Z_CLIP = 1.0e3  # normalised features beyond this are clipped (keeps float32 finite)


class _Infer(Protocol):
    def infer(self, features: np.ndarray) -> np.ndarray: ...


class _Frontend(Protocol):
    def __call__(self, window: Any, fs_hz: Any, source: str = ...) -> np.ndarray: ...


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
        z = (f - self.mean) / self.std
        return np.clip(z, -Z_CLIP, Z_CLIP).astype(np.float32)

    def check_window(self, n_samples: int, fs_hz: float, source: str = "window") -> None:
        """Refuse windows whose rate or length differ from what the threshold was fitted on."""
        if abs(float(fs_hz) - self.fs_hz) > 0.01 * self.fs_hz:
            raise InputError(
                source, "fs_hz", f"calibrated at {self.fs_hz:g} Hz, got {fs_hz:g} Hz; recalibrate for this rate"
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
            "extra": self.extra,
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
            raise InputError(source, "mean/std", f"expected two equal (C, T, F) arrays, got {mean.shape} {std.shape}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise InputError(source, "mean/std", "expected finite values and std > 0")
        thr = _field(d, "threshold", source, "a finite number > 0", lambda v: v > 0)
        target_far = _field(d, "target_far", source, "a false-alarm rate > 0 and < 0.5", lambda v: 0 < v < 0.5)
        fs_hz = _field(d, "fs_hz", source, f"a rate > 0 and <= {MAX_FS_HZ:g} Hz", lambda v: 0 < v <= MAX_FS_HZ)
        max_n = max(1, int(fs_hz * MAX_WINDOW_S))
        window_samples = int(_field(d, "window_samples", source,
                                    f"an integer >= 1 and <= {max_n} ({MAX_WINDOW_S:g} s at {fs_hz:g} Hz)",
                                    lambda v: v == int(v) and 1 <= v <= max_n))
        n_windows = int(_field(d, "n_windows", source, "an integer >= 0",
                               lambda v: v == int(v) and 0 <= v <= 1e12, default=0))
        median = _field(d, "healthy_score_median", source, "a finite number or null", lambda v: True,
                        default=float("nan"), nullable=True)
        created = _field(d, "created_unix", source, "a finite time in seconds", lambda v: True, default=0.0)
        extra = d.get("extra", {})
        if extra is None:
            extra = {}
        if not isinstance(extra, dict):
            raise InputError(source, "extra", f"expected a JSON object, got {type(extra).__name__}")
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
            raise InputError(p, "encoding", f"not UTF-8 text (byte {e.start}); expected calibration JSON") from None
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


def _field(d: dict[str, Any], key: str, source: str, expected: str, ok: Callable[[float], bool], *,
           default: float | None = None, nullable: bool = False) -> float:
    """A finite number from ``d[key]`` that satisfies ``ok``, else an InputError naming ``key``."""
    if key not in d:
        if default is None:
            raise InputError(source, key, "missing")
        return default
    raw = d[key]
    if nullable and (raw is None or (isinstance(raw, float) and math.isnan(raw))):
        return float("nan")  # unknown: written as null, NaN in memory (``to_dict`` -> ``from_dict`` round-trips)
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise InputError(source, key, f"expected {expected}, got {raw!r:.40}")
    try:
        v = float(raw)
    except OverflowError:
        raise InputError(source, key, f"expected {expected}, got a number of {len(str(raw))} digits") from None
    if not math.isfinite(v) or not ok(v):
        raise InputError(source, key, f"expected {expected}, got {raw!r}")
    return v


def _norm_ppf(p: float) -> float:
    """Inverse standard normal CDF (Acklam's rational approximation; numpy-only runtime)."""
    a = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02,
         -3.066479806614716e01, 2.506628277459239e00)
    b = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01,
         -1.328068155288572e01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00,
         4.374664141464968e00, 2.938163982698783e00)
    dd = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
    p = min(max(p, 1e-12), 1 - 1e-12)
    if p < 0.02425:
        q = math.sqrt(-2 * math.log(p))
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
            (((dd[0] * q + dd[1]) * q + dd[2]) * q + dd[3]) * q + 1)
    if p > 1 - 0.02425:
        return -_norm_ppf(1 - p)
    q = p - 0.5
    r = q * q
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / (
        ((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)


def fit_normalisation(
    features: np.ndarray,
    prior_std: np.ndarray | None = None,
    prior_weight: float = 8.0,
    floor: float = 1e-3,
    drift_std: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and shrunk std of healthy features (N, C, T, F).

    With a short healthy stretch (CWRU gives about a dozen windows) the sample
    std of some features is badly estimated; dividing by a too-small std would
    turn noise into alarms. The variance is therefore shrunk towards a prior
    (the typical healthy std seen in training, from model.json):
    ``var = (n s^2 + n0 prior^2) / (n + n0)`` with ``n0 = prior_weight``.

    A calibration stretch lasts minutes; the machine then runs for months.
    Healthy machines drift between the two (run-in, temperature, load): on
    the training bearings the mean of a band's log energy moves by about as
    much between the first and second half of the healthy record as it
    spreads within it. ``drift_std`` (per token and feature, measured on
    the training machines and stored in model.json) is added in quadrature,
    ``var += drift^2``, so that drift of the size healthy machines showed in
    training is not read as a fault, while impulsiveness and periodicity
    (which barely drift) keep their full sensitivity.
    """
    f = np.asarray(features, dtype=np.float64)
    n = f.shape[0]
    mean = f.mean(axis=0)
    var = f.var(axis=0, ddof=1) if n > 1 else np.zeros_like(mean)
    if prior_std is not None:
        prior = np.broadcast_to(np.asarray(prior_std, dtype=np.float64), mean.shape)
        var = (n * var + prior_weight * prior**2) / (n + prior_weight)
    if drift_std is not None:
        var = var + np.broadcast_to(np.asarray(drift_std, dtype=np.float64), mean.shape) ** 2
    std = np.sqrt(np.maximum(var, floor**2))
    return mean, std


def threshold_from_scores(scores: np.ndarray, target_far: float) -> tuple[float, str]:
    """Score threshold with a per-window false-alarm rate of ``target_far`` on healthy data.

    With enough held-out healthy scores (at least 5 expected exceedances) it is
    the empirical quantile; otherwise the log-scores are treated as Gaussian and
    the quantile is extrapolated. The larger of the two is used, so a short
    calibration errs towards fewer false alarms.
    """
    s = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    if len(s) < 3:
        raise InputError("calibration", "windows", f"need at least 3 healthy windows, got {len(s)}")
    ls = np.log(np.maximum(s, 1e-9))
    z = _norm_ppf(1.0 - target_far)
    para = float(np.exp(ls.mean() + z * ls.std(ddof=1)))
    if len(s) * target_far >= 5:
        emp = float(np.quantile(s, 1.0 - target_far))
        return max(emp, para) if len(s) * target_far < 20 else emp, "empirical quantile"
    return max(para, float(s.max())), "lognormal extrapolation"


def calibrate_features(
    score_fn: Callable[[np.ndarray], np.ndarray],
    features: np.ndarray,
    *,
    fs_hz: float,
    window_samples: int,
    target_far: float = 0.01,
    folds: int = 4,
    prior_std: np.ndarray | None = None,
    prior_weight: float = 8.0,
    machine: str = "",
    model_id: str = "",
    drift_std: np.ndarray | None = None,
) -> Calibration:
    """Fit a Calibration from the raw features (N, C, T, F) of N healthy windows in time order.

    ``score_fn`` maps normalised features (M, T, F) (channels flattened into
    the batch) to scores (M,). The threshold is fitted on *held-out* scores:
    the windows are cut into ``folds`` contiguous blocks, each block is scored
    with the normalisation fitted on the others, so that the threshold sees
    the same out-of-sample inflation that future healthy windows will have.
    The final normalisation uses all windows.
    """
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 4 or not np.all(np.isfinite(f)):
        raise InputError("calibration", "features", f"expected finite (N, C, T, F), got shape {f.shape}")
    n = f.shape[0]
    if n < 4:
        raise InputError("calibration", "windows", f"need at least 4 healthy windows, got {n}")
    k = max(2, min(folds, n // 2))
    blocks = np.array_split(np.arange(n), k)
    held = np.empty(n)
    for blk in blocks:
        rest = np.setdiff1d(np.arange(n), blk)
        mu, sd = fit_normalisation(f[rest], prior_std, prior_weight, drift_std=drift_std)
        z = np.clip((f[blk] - mu) / sd, -Z_CLIP, Z_CLIP).astype(np.float32)
        held[blk] = _window_scores(score_fn, z)
    mean, std = fit_normalisation(f, prior_std, prior_weight, drift_std=drift_std)
    thr, how = threshold_from_scores(held, target_far)
    return Calibration(
        mean=mean,
        std=std,
        threshold=thr,
        target_far=target_far,
        fs_hz=float(fs_hz),
        window_samples=int(window_samples),
        n_windows=n,
        method=f"{k}-fold held-out healthy scores, {how}; std shrunk to prior (n0={prior_weight:g})"
        + ("; drift prior added" if drift_std is not None else ""),
        machine=machine,
        model_id=model_id,
        healthy_score_median=float(np.median(held)),
        created_unix=time.time(),
        extra={"held_out_scores_p50_p90_max": [float(np.median(held)), float(np.quantile(held, 0.9)),
                                               float(held.max())]},
    )


def _window_scores(score_fn: Callable[[np.ndarray], np.ndarray], z: np.ndarray) -> np.ndarray:
    """(N, C, T, F) normalised -> (N,) window scores: the worst channel."""
    n, c = z.shape[:2]
    s = np.asarray(score_fn(z.reshape(n * c, *z.shape[2:])), dtype=np.float64).reshape(n, c)
    return s.max(axis=1)


def calibrate(
    engine: _Infer,
    frontend: _Frontend,
    windows: Sequence[np.ndarray] | np.ndarray,
    fs_hz: float,
    *,
    target_far: float = 0.01,
    prior_std: np.ndarray | None = None,
    prior_weight: float = 8.0,
    machine: str = "",
    model_id: str = "",
    drift_std: np.ndarray | None = None,
) -> Calibration:
    """Calibrate a machine from its healthy windows (each (n_samples, n_channels)), in time order.

    Pass ``drift_std=model.drift_std`` (see ``fit_normalisation``) for robots.
    """
    if len(windows) == 0:
        raise InputError("calibration", "windows", "no healthy windows given")
    feats = np.stack([frontend(w, fs_hz, f"calibration window {i}") for i, w in enumerate(windows)])
    n_samples = int(np.asarray(windows[0]).shape[0])
    return calibrate_features(
        lambda z: engine.infer(np.ascontiguousarray(z, dtype=np.float32)),
        feats,
        fs_hz=fs_hz,
        window_samples=n_samples,
        target_far=target_far,
        prior_std=prior_std,
        prior_weight=prior_weight,
        machine=machine,
        model_id=model_id,
        drift_std=drift_std,
    )


@dataclass(frozen=True)
class WindowScore:
    """One scored window (not the detector's voted ``core.detector.Verdict``): its score, the machine's threshold and whether it crossed it."""

    score: float
    threshold: float
    above: bool
    channel_scores: tuple[float, ...] = ()

    @property
    def ratio(self) -> float:
        """Score relative to the threshold (> 1 means above); comparable across machines."""
        return self.score / self.threshold if self.threshold > 0 else float("inf")


class Scorer:
    """Window -> features -> per-machine normalisation -> engine -> score.

    The engine must already be awake: waking and sleeping belong to the duty
    cycle, and a scorer that woke engines itself would hide their cost.
    """

    def __init__(self, engine: _Infer, frontend: _Frontend, calibration: Calibration) -> None:
        self.engine = engine
        self.frontend = frontend
        self.calibration = calibration

    def channel_scores(self, window: np.ndarray, fs_hz: float, source: str = "window") -> np.ndarray:
        feats = self.frontend(window, fs_hz, source)
        self.calibration.check_window(int(np.asarray(window).shape[0]), fs_hz, source)
        z = self.calibration.normalise(feats, source)
        out = np.asarray(self.engine.infer(np.ascontiguousarray(z)), dtype=np.float64).reshape(-1)
        if out.shape[0] != z.shape[0]:
            raise InputError(source, "engine output", f"expected {z.shape[0]} scores, got shape {out.shape}")
        return out

    def score(self, window: np.ndarray, fs_hz: float, source: str = "window") -> float:
        """Model score of one window (n_samples, n_channels): the worst channel's score."""
        return float(self.channel_scores(window, fs_hz, source).max())

    def score_batch(self, windows: Sequence[np.ndarray] | np.ndarray, fs_hz: float) -> np.ndarray:
        """Scores of several windows in one engine call."""
        if len(windows) == 0:
            return np.zeros(0)
        z = []
        for i, w in enumerate(windows):
            src = f"window {i}"
            self.calibration.check_window(int(np.asarray(w).shape[0]), fs_hz, src)
            z.append(self.calibration.normalise(self.frontend(w, fs_hz, src), src))
        zz = np.stack(z)
        n, c = zz.shape[:2]
        out = np.asarray(self.engine.infer(np.ascontiguousarray(zz.reshape(n * c, *zz.shape[2:]))))
        return out.astype(np.float64).reshape(n, c).max(axis=1)

    def score_window(self, window: np.ndarray, fs_hz: float, source: str = "window") -> WindowScore:
        cs = self.channel_scores(window, fs_hz, source)
        s = float(cs.max())
        thr = self.calibration.threshold
        return WindowScore(score=s, threshold=thr, above=s > thr, channel_scores=tuple(float(v) for v in cs))


class AlarmVoter:
    """k-of-n vote over consecutive window verdicts, latched.

    Rule: the alarm is raised when at least ``k`` of the last ``n`` verdicts
    were above threshold, and stays raised (latched) until ``reset()``, so an
    operator sees it even if the fault is intermittent. Knocks and bumps give
    isolated exceedances and do not raise it; a bearing defect repeats in every
    window and does. With independent healthy windows each above threshold
    with probability p, ``false_alarms_per_month`` gives the expected rate.
    """

    def __init__(self, k: int = 4, n: int = 6) -> None:
        if not (isinstance(k, int) and isinstance(n, int)) or not 1 <= k <= n:
            raise InputError("AlarmVoter", "k/n", f"expected integers with 1 <= k <= n, got k={k!r} n={n!r}")
        self.k = k
        self.n = n
        self._recent: deque[bool] = deque(maxlen=n)
        self._latched = False
        self.raised_at: int | None = None
        self.updates = 0

    @property
    def latched(self) -> bool:
        return self._latched

    @property
    def votes(self) -> int:
        """How many of the last n verdicts were above threshold."""
        return sum(self._recent)

    def update(self, score_above_threshold: bool) -> bool:
        """Add one verdict; return whether the alarm is (now or still) raised."""
        self._recent.append(bool(score_above_threshold))
        self.updates += 1
        if not self._latched and sum(self._recent) >= self.k:
            self._latched = True
            self.raised_at = self.updates
        return self._latched

    def restore(self) -> None:
        """Start latched: a durable latch (``core.latch``) said the alarm was raised before a restart."""
        self._latched = True

    def reset(self) -> None:
        """Clear the latch and the history (an operator acknowledged, or the bearing was replaced)."""
        self._recent.clear()
        self._latched = False
        self.raised_at = None


def alarm_onset_probability(p: float, k: int, n: int) -> float:
    """Probability per step that a k-of-n vote over independent Bernoulli(p) verdicts goes from off to on.

    Exact: enumerates the n + 1 verdicts that decide the count now and one step before.
    """
    tot = 0.0
    for bits in range(1 << (n + 1)):
        b = [(bits >> i) & 1 for i in range(n + 1)]  # b[0] oldest ... b[n] newest
        before = sum(b[0:n])
        now = sum(b[1 : n + 1])
        if now >= k and before < k:
            ones = sum(b)
            tot += p**ones * (1 - p) ** (n + 1 - ones)
    return tot


def false_alarms_per_month(p: float, k: int, n: int, inferences_per_hour: float = 60.0) -> float:
    """Expected alarm onsets per 30-day month for a per-window false-alarm probability p (windows independent)."""
    return alarm_onset_probability(p, k, n) * inferences_per_hour * 24 * 30
