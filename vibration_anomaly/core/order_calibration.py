"""Speed- and bearing-aware scoring: the order score calibrated per machine and fused with the model's (ROS-free).

A machine whose shaft speed is known (``core.speed``) and whose bearing's defect orders the signed bundle
states (``bundle.bearing``) is scored twice per window:

* the model, against its threshold fitted at ``target_far / 2``;
* the order score (``core.order_score``): the strength of each defect line in each channel, read in
  the squared-envelope spectrum and, where the window resolves the lines (a robot's 5 s window, not
  FEMTO's 0.2 s ones: :func:`parts_for`), in the raw spectrum too; each divided by its median over the
  calibration windows. The window's order ratio is the largest of these over a threshold fitted at
  ``target_far / 2`` with ``threshold_from_scores`` on cross-fitted calibration ratios (each of 4
  contiguous blocks against the others' medians).

The window is above when either part is (ratio > 1): by the union bound the per-window false-alarm rate
stays at or below ``target_far``. ``calibrate`` records this as the calibration's ``extra.orders``
(:meth:`OrderCalibration.to_dict`); the detector uses it through ``core.order_check.OrderCheck`` only for a window
whose speed is known and whose lines fit the sensor's band, and otherwise scores with the model alone
against the calibration's own ``threshold`` (fitted at the full target), as without orders.

``model.fused`` (evaluate's ``model+orders``) runs these same functions, so what evaluate measures is
what the robot runs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vibration_anomaly.core.calibration.fit import threshold_from_scores
from vibration_anomaly.core.order_score import (
    Resonance,
    defect_lines_hz,
    order_strengths,
    spectrum_resolves,
    spectrum_strengths,
)
from vibration_anomaly.errors import InputError

FOLDS = 4
ENVELOPE, SPECTRUM = "envelope", "spectrum"
PARTS = (ENVELOPE, SPECTRUM)
"""What a column's strength is read from: the squared-envelope spectrum (``order_strengths``) or the raw
spectrum (``spectrum_strengths``)."""
EXTRA_KEY = "orders"
"""Where a calibration records its order calibration (``Calibration.extra``)."""
ORDER_TOLERANCE = 1e-3
"""A bundle's defect order and the calibration's may differ by this (relative) and still be the same line."""


def parts_for(
    n_samples: int, fs_hz: float, shaft_hz: float | None, orders: Mapping[str, float] | None
) -> tuple[str, ...]:
    """Which strengths a window of ``n_samples`` is scored with: the envelope's, and the raw spectrum's
    where the window resolves the lines (``core.order_score.spectrum_resolves``: a robot's 5 s window)."""
    lines = defect_lines_hz(shaft_hz, orders)
    return (ENVELOPE, SPECTRUM) if spectrum_resolves(n_samples, fs_hz, lines) else (ENVELOPE,)


def strengths(
    window: np.ndarray,
    fs_hz: float,
    shaft_hz: float | None,
    orders: Mapping[str, float] | None,
    parts: tuple[str, ...] = (ENVELOPE,),
    resonance_hz: Resonance | None = None,
) -> tuple[list[str], np.ndarray] | None:
    """(line names, (parts, C, lines) strengths) of ``window`` (n, C); None without speed or orders.
    ``resonance_hz``: the bearing's stated resonance; the envelope reads only the bands overlapping it."""
    got = order_strengths(window, fs_hz, shaft_hz, orders, resonance_hz)
    if got is None:
        return None
    names, env = got
    blocks = [env]
    if SPECTRUM in parts:
        spec = spectrum_strengths(window, fs_hz, shaft_hz, orders)
        assert spec is not None
        blocks.append(spec[1])
    return names, np.stack(blocks)


def _resonance(value: Any, source: str, field: str) -> Resonance | None:
    """A recorded ``[lo, hi]`` resonance (Hz), checked; None when not recorded."""
    if value is None:
        return None
    ok = isinstance(value, list) and len(value) == 2
    ok = ok and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value
    )
    if not ok or not 0 < value[0] < value[1]:
        raise InputError(source, field, f"expected [lo, hi] Hz with 0 < lo < hi, got {value!r}"[:200])
    return (float(value[0]), float(value[1]))


def _speeds(shaft_hz: float | Sequence[float], n: int) -> list[float]:
    """One shaft speed per window: ``shaft_hz`` for all (a steady recording), or one each."""
    speeds = [float(v) for v in np.atleast_1d(np.asarray(shaft_hz, dtype=np.float64))]
    if np.ndim(shaft_hz) == 0:  # a number (numpy's too): every window's
        speeds *= n
    elif len(speeds) != n:
        raise InputError("calibration", "shaft_hz", f"{len(speeds)} speeds for {n} windows")
    return speeds


def window_strengths(
    windows: np.ndarray,
    fs_hz: float,
    shaft_hz: float | Sequence[float],
    orders: Mapping[str, float],
    parts: tuple[str, ...] | None = None,
    resonance_hz: Resonance | None = None,
) -> np.ndarray:
    """(N, parts x C x lines) strength of every defect line in every channel, part-major (NaN where a line
    does not fit the band). ``shaft_hz``: the speed, or each window's. ``parts`` None: :func:`parts_for`
    the windows' length at the lowest speed (the hardest to resolve)."""
    windows = np.asarray(windows)
    speeds = _speeds(shaft_hz, len(windows))
    if parts is None:
        parts = parts_for(windows.shape[1], fs_hz, min(speeds, default=0.0), orders)
    width = len(parts) * windows.shape[2] * max(len(defect_lines_hz(max(speeds, default=0.0), orders)), 1)
    out = []
    for w, speed in zip(windows, speeds, strict=True):
        got = strengths(w, fs_hz, speed, orders, parts, resonance_hz)
        out.append(np.full(width, np.nan) if got is None else got[1].reshape(-1))
    return np.stack(out) if out else np.zeros((0, width))


def _largest(scores: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(N,) largest finite score / reference of each row; NaN for a row with none."""
    r = scores / ref
    fin = np.isfinite(r)
    out = np.full(len(r), np.nan)
    rows = fin.any(axis=1)
    out[rows] = np.max(np.where(fin, r, -np.inf)[rows], axis=1)
    return out


def _median(scores: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # a column without a finite value has no median: NaN, ignored after
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(np.nanmedian(scores, axis=0))


@dataclass
class OrderCalibration:
    """Per channel-and-line reference (median on the calibration windows) and the ratio threshold.

    ``parts``, ``lines`` and ``orders`` say what the reference columns are (part-major, then channel:
    column ``(p * C + c) * len(lines) + i`` is part p, channel c, line i); ``model_threshold`` is the model's threshold at
    ``target_far`` (this part's target, half the calibration's) when the fit recorded it.
    """

    ref: np.ndarray
    threshold: float
    method: str
    lines: tuple[str, ...] = ()
    orders: dict[str, float] | None = None
    target_far: float = math.nan
    model_threshold: float | None = None
    shaft_hz: float | None = None
    parts: tuple[str, ...] = (ENVELOPE,)
    resonance_hz: Resonance | None = None

    def ratio(self, scores: np.ndarray) -> np.ndarray:
        """(N,) largest strength / reference over channels and lines, over the threshold; 0 where none has one."""
        if len(scores) == 0:
            return np.zeros(0)
        return np.nan_to_num(_largest(scores, self.ref) / self.threshold, nan=0.0)

    def same_orders(self, orders: Mapping[str, float] | None) -> bool:
        """True when ``orders`` give the lines this was calibrated on (within :data:`ORDER_TOLERANCE`)."""
        mine = {k: v for k, v in (self.orders or {}).items() if k in self.lines}
        theirs = dict(orders or {})
        return bool(mine) and all(
            k in theirs and abs(float(theirs[k]) - v) <= ORDER_TOLERANCE * v for k, v in mine.items()
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "lines": list(self.lines),
            "parts": list(self.parts),
            "orders": dict(self.orders or {}),
            "reference": [None if not math.isfinite(float(v)) else float(v) for v in self.ref],
            "threshold": float(self.threshold),
            "threshold_method": self.method,
            "target_far": float(self.target_far),
            "model_threshold": None if self.model_threshold is None else float(self.model_threshold),
            "shaft_hz": None if self.shaft_hz is None else float(self.shaft_hz),
            "resonance_hz": None if self.resonance_hz is None else [float(v) for v in self.resonance_hz],
            "rule": "above when model score > model_threshold or order ratio > 1; each at target_far",
        }

    @classmethod
    def from_dict(cls, d: Any, source: str = "calibration") -> OrderCalibration:
        """The record ``to_dict`` wrote, checked; InputError naming ``extra.orders.<field>`` otherwise."""
        where = f"extra.{EXTRA_KEY}"
        if not isinstance(d, dict):
            raise InputError(source, where, f"expected a JSON object, got {type(d).__name__}")

        def positive(key: str, value: Any, optional: bool = False) -> float | None:
            if value is None and optional:
                return None
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or value <= 0:
                raise InputError(source, f"{where}.{key}", f"expected a finite number > 0, got {value!r}")
            return float(value)

        lines = d.get("lines")
        if not isinstance(lines, list) or not lines or not all(isinstance(x, str) for x in lines):
            raise InputError(
                source, f"{where}.lines", f"expected a non-empty list of line names, got {lines!r}"
            )
        orders = d.get("orders")
        if not isinstance(orders, dict) or not orders:
            raise InputError(source, f"{where}.orders", f"expected the defect orders, got {orders!r}")
        for k, v in orders.items():
            positive(f"orders.{k}", v)
        missing = [x for x in lines if x not in orders]
        if missing:
            raise InputError(
                source, f"{where}.lines", f"{', '.join(missing)} not in extra.{EXTRA_KEY}.orders"
            )
        parts = d.get("parts", [ENVELOPE])
        if (
            not isinstance(parts, list)
            or not parts
            or any(p not in PARTS for p in parts)
            or len(set(parts)) < len(parts)
        ):
            raise InputError(source, f"{where}.parts", f"expected some of {', '.join(PARTS)}, got {parts!r}")
        ref = d.get("reference")
        per = len(parts) * len(lines)
        if not isinstance(ref, list) or not ref or len(ref) % per:
            raise InputError(
                source,
                f"{where}.reference",
                f"expected {len(parts)} parts x channels x {len(lines)} lines values, got {ref!r}"[:200],
            )
        vals = [math.nan if v is None else positive(f"reference[{i}]", v) for i, v in enumerate(ref)]
        if not any(math.isfinite(float(v)) for v in vals if v is not None):
            raise InputError(source, f"{where}.reference", "no line has a reference")
        target = positive("target_far", d.get("target_far"))
        assert target is not None
        if target >= 0.5:
            raise InputError(source, f"{where}.target_far", f"expected < 0.5, got {target!r}")
        threshold = positive("threshold", d.get("threshold"))
        assert threshold is not None
        return cls(
            ref=np.array(vals, dtype=np.float64),
            threshold=threshold,
            method=str(d.get("threshold_method", "")),
            lines=tuple(lines),
            orders={k: float(v) for k, v in orders.items()},
            target_far=target,
            model_threshold=positive("model_threshold", d.get("model_threshold"), optional=True),
            shaft_hz=positive("shaft_hz", d.get("shaft_hz"), optional=True),
            parts=tuple(parts),
            resonance_hz=_resonance(d.get("resonance_hz"), source, f"{where}.resonance_hz"),
        )


def calibrate_orders(
    cal_scores: np.ndarray, target_far: float, folds: int = FOLDS
) -> OrderCalibration | None:
    """Reference and threshold from the calibration windows' scores (N, columns) in time order.

    The threshold is fitted on cross-fitted ratios, as the model's and the baselines' are: the windows
    are cut into ``folds`` contiguous blocks and each block's ratios use the medians of the others.
    None when no column has a score on at least 3 calibration windows (sensor too slow for the bearing).
    """
    ok = np.isfinite(cal_scores).sum(axis=0) >= 3
    if not ok.any():
        return None
    s = cal_scores[:, ok]
    n = len(s)
    held = np.full(n, np.nan)
    k = max(2, min(folds, n // 2))
    for blk in np.array_split(np.arange(n), k):
        held[blk] = _largest(s[blk], _median(s[np.setdiff1d(np.arange(n), blk)]))
    ref = np.full(cal_scores.shape[1], np.nan)
    ref[ok] = _median(s)
    thr, how = threshold_from_scores(held, target_far)
    return OrderCalibration(ref, thr, f"{how}, {k}-fold cross-fitted", target_far=target_far)


def fit_order_calibration(
    windows: np.ndarray,
    fs_hz: float,
    shaft_hz: float | Sequence[float],
    orders: Mapping[str, float],
    target_far: float,
    model_threshold: float | None = None,
    resonance_hz: Resonance | None = None,
) -> OrderCalibration | None:
    """:func:`calibrate_orders` on healthy ``windows`` (N, n, C), with its lines named (and the resonance
    the envelope was read at, ``resonance_hz``, which the robot then reads it at too).

    ``shaft_hz``: the recording's steady speed, or each window's (windows resampled to constant speed,
    ``core.order_track``, from a commissioning recording with the speed topic); ``shaft_hz`` is recorded
    as their median."""
    speeds = _speeds(shaft_hz, len(windows))
    lines = defect_lines_hz(max(speeds, default=0.0), orders)
    if not lines:
        return None
    parts = parts_for(np.asarray(windows).shape[1], fs_hz, min(speeds), orders)
    oc = calibrate_orders(window_strengths(windows, fs_hz, speeds, orders, parts, resonance_hz), target_far)
    if oc is None:
        return None
    oc.parts = parts
    oc.lines = tuple(lines)
    oc.orders = {k: float(v) for k, v in orders.items() if k in lines}
    oc.model_threshold = model_threshold
    oc.shaft_hz = float(np.median(speeds))
    oc.resonance_hz = resonance_hz
    return oc
