"""Fitting a ``Calibration`` from a machine's healthy windows (numpy only; runs on the robot).

* ``calibrate(...)``: healthy windows -> frontend -> ``calibrate_features``.
* ``calibrate_features(...)``: held-out threshold and final normalisation from raw features.
* ``fit_normalisation``: mean and shrunk std (training prior and drift prior).
* ``threshold_from_scores``: the score threshold for a per-window false-alarm rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from vibration_anomaly.core.calibration.record import QUIET_GATE, Calibration, zscores
from vibration_anomaly.core.calibration.segments import reduce_segments, segments_for, split_segments
from vibration_anomaly.errors import InputError


class _Infer(Protocol):
    def infer(self, features: np.ndarray) -> np.ndarray: ...


class _Frontend(Protocol):
    def __call__(self, window: Any, fs_hz: Any, source: str = ...) -> np.ndarray: ...


def _norm_ppf(p: float) -> float:
    """Inverse standard normal CDF (Acklam's rational approximation; numpy-only runtime)."""
    a = (
        -3.969683028665376e01,
        2.209460984245205e02,
        -2.759285104469687e02,
        1.383577518672690e02,
        -3.066479806614716e01,
        2.506628277459239e00,
    )
    b = (
        -5.447609879822406e01,
        1.615858368580409e02,
        -1.556989798598866e02,
        6.680131188771972e01,
        -1.328068155288572e01,
    )
    c = (
        -7.784894002430293e-03,
        -3.223964580411365e-01,
        -2.400758277161838e00,
        -2.549732539343734e00,
        4.374664141464968e00,
        2.938163982698783e00,
    )
    dd = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
    p = min(max(p, 1e-12), 1 - 1e-12)
    if p < 0.02425:
        q = math.sqrt(-2 * math.log(p))
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
            (((dd[0] * q + dd[1]) * q + dd[2]) * q + dd[3]) * q + 1
        )
    if p > 1 - 0.02425:
        return -_norm_ppf(1 - p)
    q = p - 0.5
    r = q * q
    return (
        (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5])
        * q
        / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    )


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


def _t_ppf(p: float, df: int) -> float:
    """Student's t quantile from the normal one (Cornish-Fisher, Abramowitz & Stegun 26.7.5; numpy-only
    runtime): within 0.1 % of scipy's from 5 degrees of freedom, 2-4 % low at 2 (p = 0.99-0.995)."""
    z = _norm_ppf(p)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


SCORE_DRIFT_LOG_SD = 0.2
"""How far a healthy machine's typical log-score moves from one period to the next, added in quadrature to
the spread of the model's calibration scores (``calibrate_features``). The feature drift prior widens each
feature's std but leaves the window score's level free to move: over FEMTO's nine training bearings the
median of the next 20 healthy windows' log-scores sat rms 0.19 from the calibration's median, at the lab
rate (without Bearing2_1, which moved 1.78) and through a 6.6 kHz sensor. Over FEMTO's bearings at those
two rates (Bearing2_1 left out at the lab rate) the i.i.d. bound alone was exceeded by 16 of 655 later
healthy windows (2.4 %, target 1 %), and with this term by 8 (docs/MODEL.md "Thresholds from few
windows"). It errs high: two 20-window medians differ by about 0.15 from noise alone at these
spreads, so the machines' own drift is about 0.12-0.16."""


def threshold_from_scores(
    scores: np.ndarray, target_far: float, drift_log_sd: float = 0.0
) -> tuple[float, str]:
    """Score threshold with a per-window false-alarm rate of ``target_far`` on healthy data.

    With enough held-out healthy scores (at least 5 expected exceedances) it is
    the empirical quantile; otherwise the log-scores are treated as Gaussian and
    the quantile is extrapolated. The larger of the two is used, so a short
    calibration errs towards fewer false alarms.

    The extrapolation is the *prediction* bound for the next window, not the quantile of the fitted
    Gaussian: ``mean + t(n-1) * sd * sqrt(1 + 1/n)``. With the mean and sd estimated from n = 20 windows
    the plain ``mean + z * sd`` is exceeded by 1.7 % of new healthy windows at a 1 % target, and the
    fewer the windows the worse (a robot's 20 commissioning windows, 12-19 per machine at sensor rates).
    ``drift_log_sd`` (``SCORE_DRIFT_LOG_SD`` for the model): the sd of the level of later periods around the
    calibration's, added in quadrature, ``mean + t(n-1) * sqrt(sd^2 (1 + 1/n) + drift_log_sd^2)``; 0 (the
    default, and for the order part and the baselines): later windows are like the calibration's.
    """
    s = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    if len(s) < 3:
        raise InputError("calibration", "windows", f"need at least 3 healthy windows, got {len(s)}")
    ls = np.log(np.maximum(s, 1e-9))
    n = len(ls)
    spread = math.sqrt(float(ls.var(ddof=1)) * (1.0 + 1.0 / n) + drift_log_sd**2)
    para = float(np.exp(ls.mean() + _t_ppf(1.0 - target_far, n - 1) * spread))
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
    also_far: float | None = None,
    segments: int = 1,
    drift_log_sd: float = SCORE_DRIFT_LOG_SD,
) -> Calibration:
    """Fit a Calibration from the raw features (N, C, T, F) of N healthy windows in time order.

    With ``segments`` > 1 the features are those of each window's segments, window-major (N x segments,
    C, T, F; ``core.calibration.segments``): the normalisation is fitted on the segments, the threshold
    on the windows' segment-quantile scores, and ``extra.segments`` records it.

    ``score_fn`` maps normalised features (M, T, F) (channels flattened into
    the batch) to scores (M,). The threshold is fitted on *held-out* scores:
    the windows are cut into ``folds`` contiguous blocks, each block is scored
    with the normalisation fitted on the others, so that the threshold sees
    the same out-of-sample inflation that future healthy windows will have.
    The final normalisation uses all windows. With ``also_far`` the threshold for that rate, from the
    same held-out scores, is recorded too (``extra.threshold_at``: the speed-aware detector's model
    part, ``core.order_calibration``). ``drift_log_sd``: see ``SCORE_DRIFT_LOG_SD``; recorded as
    ``extra.score_drift_log_sd``.
    """
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 4 or not np.all(np.isfinite(f)):
        raise InputError("calibration", "features", f"expected finite (N, C, T, F), got shape {f.shape}")
    if segments < 1 or f.shape[0] % segments:
        raise InputError(
            "calibration", "segments", f"{f.shape[0]} feature rows are not {segments} per window"
        )
    n = f.shape[0] // segments
    if n < 4:
        raise InputError("calibration", "windows", f"need at least 4 healthy windows, got {n}")
    k = max(2, min(folds, n // 2))
    blocks = np.array_split(np.arange(n), k)
    held = np.empty(n)
    for blk in blocks:
        rest = np.setdiff1d(np.arange(n), blk)
        rows = (blk[:, None] * segments + np.arange(segments)).ravel()
        rest_rows = (rest[:, None] * segments + np.arange(segments)).ravel()
        mu, sd = fit_normalisation(f[rest_rows], prior_std, prior_weight, drift_std=drift_std)
        z = zscores(f[rows], mu, sd, QUIET_GATE)
        held[blk] = reduce_segments(_window_scores(score_fn, z), segments)
    mean, std = fit_normalisation(f, prior_std, prior_weight, drift_std=drift_std)
    thr, how = threshold_from_scores(held, target_far, drift_log_sd)
    extra: dict[str, Any] = {
        "quiet_gate": QUIET_GATE,
        "score_drift_log_sd": drift_log_sd,
        "held_out_scores_p50_p90_max": [
            float(np.median(held)),
            float(np.quantile(held, 0.9)),
            float(held.max()),
        ],
    }
    if segments > 1:
        extra["segments"] = segments
    if also_far is not None:
        extra["threshold_at"] = {
            "target_far": also_far,
            "threshold": threshold_from_scores(held, also_far, drift_log_sd)[0],
        }
    return Calibration(
        mean=mean,
        std=std,
        threshold=thr,
        target_far=target_far,
        fs_hz=float(fs_hz),
        window_samples=int(window_samples),
        n_windows=n,
        method=f"{k}-fold held-out healthy scores, {how}"
        + (f" with score drift {drift_log_sd:g}" if drift_log_sd else "")
        + f"; std shrunk to prior (n0={prior_weight:g})"
        + ("; drift prior added" if drift_std is not None else ""),
        machine=machine,
        model_id=model_id,
        healthy_score_median=float(np.median(held)),
        created_unix=time.time(),
        extra=extra,
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
    shaft_hz: float | Sequence[float] | None = None,
    orders: Mapping[str, float] | None = None,
    segments: int | None = 1,
    order_windows: np.ndarray | None = None,
    resonance_hz: tuple[float, float] | None = None,
) -> Calibration:
    """Calibrate a machine from its healthy windows (each (n_samples, n_channels)), in time order.

    ``segments``: how many segments each window is scored as (``core.calibration.segments``; 1, the
    default: whole; None: as many as ``segments_for`` its length, opt-in: ``calibrate --segments auto``).

    Pass ``drift_std=model.drift_std`` (see ``fit_normalisation``) for robots. With the steady shaft speed
    of the recording (``shaft_hz``) and the bearing's defect ``orders``, the order score is calibrated too
    and recorded as ``extra.orders`` (``core.order_calibration``: model and orders each at half the target);
    where no defect line fits the sensor's band at that speed, nothing is recorded and the model alone
    decides. ``resonance_hz``: the bearing's stated resonance (the bundle's ``bearing.resonance_hz``): the
    order part reads the envelope only in bands overlapping it, and records it. A recording whose speed changed: ``order_windows`` (M, n, C), its windows with a known speed
    resampled to constant speed (``core.order_track``), and ``shaft_hz`` one speed each; the model is
    still calibrated on ``windows`` as they are (what it scores on the robot). With ``shaft_hz`` (with
    or without ``orders``) the lowest and highest speed are recorded as ``extra.speed_hz``: the robot
    does not score a window at a speed outside them (``core.speed.SpeedGuard``). A whole window holding a
    knock the gate cannot cut (``core.knock_gate.uncut_knock``) is left out, as the robot will not score
    one; ``extra.windows_not_fitted`` counts them.
    """
    if len(windows) == 0:
        raise InputError("calibration", "windows", "no healthy windows given")
    if shaft_hz is None or np.ndim(shaft_hz) == 0:
        with_orders = bool(shaft_hz and orders)
    else:  # one speed per order window
        with_orders = bool(orders) and len(shaft_hz) > 0  # type: ignore[arg-type]
    n_samples = int(np.asarray(windows[0]).shape[0])
    segments = segments_for(n_samples, fs_hz) if segments is None else segments
    if (segments > 1 or with_orders) and any(
        np.asarray(w).shape != np.asarray(windows[0]).shape for w in windows
    ):
        raise InputError(
            "calibration", "windows", "segments and speed-aware scoring need windows of one shape"
        )
    stacked = np.stack([np.asarray(w) for w in windows]) if segments > 1 or with_orders else None
    pieces = split_segments(stacked, segments) if stacked is not None and segments > 1 else windows
    feats_list, left_out = [], 0
    for i, s in enumerate(pieces):
        f = frontend(s, fs_hz, f"calibration window {i // segments}")
        if segments == 1 and getattr(frontend, "uncut_knock", None) is not None:
            left_out += 1  # a knock left in (core.knock_gate.uncut_knock): the robot will not score it
            continue
        feats_list.append(f)
    if not feats_list:
        raise InputError(
            "calibration",
            "windows",
            f"all {left_out} windows hold a knock the gate cannot cut out (core.knock_gate.uncut_knock); "
            "record the machine where it is not knocked",
        )
    feats = np.stack(feats_list)
    cal = calibrate_features(
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
        also_far=target_far / 2 if with_orders else None,
        segments=segments,
    )
    if with_orders:
        from vibration_anomaly.core.order_calibration import EXTRA_KEY, fit_order_calibration

        assert shaft_hz is not None and orders is not None and stacked is not None
        half = cal.extra.pop("threshold_at")
        oc = fit_order_calibration(
            stacked if order_windows is None else np.asarray(order_windows),
            fs_hz,
            shaft_hz,
            orders,
            target_far / 2,
            half["threshold"],
            resonance_hz,
        )
        if oc is not None:
            cal.extra[EXTRA_KEY] = oc.to_dict()
    speeds = np.atleast_1d(np.asarray(0.0 if shaft_hz is None else shaft_hz, dtype=np.float64))
    if len(speeds) and np.all(speeds > 0):
        cal.extra["speed_hz"] = [float(speeds.min()), float(speeds.max())]  # core.speed.SpeedGuard
    if left_out:
        cal.extra["windows_not_fitted"] = left_out  # a knock left in: not what the robot scores
    method = getattr(frontend, "method", None)
    if isinstance(method, str):
        cal.extra["frontend"] = method  # so it is scored with the same features (``Calibration.frontend``)
    config = getattr(getattr(frontend, "config", None), "to_dict", None)
    if callable(config):
        cal.extra["frontend_config"] = config()  # and the same options (``ModelFiles.frontend_for``)
    return cal
