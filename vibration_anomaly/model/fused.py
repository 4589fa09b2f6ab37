"""``model+orders``: the model fused with the order-tracked envelope score (evaluation only, issue 16).

Measured in ``evaluate`` (and its ``--sensitivity``) beside ``model`` and the baselines, to see whether
speed- and bearing-aware scoring reaches the issue's goal before the robot's runtime is changed.
Per machine whose shaft speed (manifest ``rpm``) and defect orders (manifest or ``--bearing``) are known:

* the model is calibrated exactly as ``model`` but with its threshold at ``target_far / 2``;
* the strength of each defect line in each channel (``core.order_score.order_strengths``) is divided by
  its median over the calibration windows (the window's order ratio is the largest of these), and
  its threshold is fitted at ``target_far / 2`` with the product's own ``threshold_from_scores`` on
  cross-fitted calibration ratios (each of 4 contiguous blocks against the others' medians);
* a window's ratio is ``max(model ratio, order ratio)``: it is over 1 when either is, so by the union
  bound the per-window false-alarm rate stays at or below ``target_far``.

A machine without speed or orders gets the model's own ratio (calibrated at ``target_far``): the model
alone decides, as on the robot today.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vibration_anomaly.core.calibration import threshold_from_scores
from vibration_anomaly.core.order_score import defect_lines_hz, order_strengths
from vibration_anomaly.model import ModelFiles
from vibration_anomaly.model.evaluate import MachineData, ModelMethod

FUSED = "model+orders"
FOLDS = 4


def has_orders(md: MachineData) -> bool:
    """True when the machine's shaft speed and at least one non-cage defect order are known."""
    return bool(defect_lines_hz(md.shaft_hz, md.orders))


def order_scores(
    windows: np.ndarray, fs_hz: float, shaft_hz: float, orders: Mapping[str, float]
) -> np.ndarray:
    """(N, C x lines) strength of every defect line in every channel (NaN where a line does not fit the band)."""
    n_lines = max(len(defect_lines_hz(shaft_hz, orders)), 1)
    out = []
    for w in windows:
        got = order_strengths(w, fs_hz, shaft_hz, orders)
        out.append(np.full(windows.shape[2] * n_lines, np.nan) if got is None else got[1].reshape(-1))
    return np.stack(out) if out else np.zeros((0, windows.shape[2] * n_lines))


@dataclass
class OrderCalibration:
    """Per channel-and-line reference (median on the calibration windows) and the ratio threshold."""

    ref: np.ndarray
    threshold: float
    method: str

    def ratio(self, scores: np.ndarray) -> np.ndarray:
        """(N,) largest strength / reference over channels and lines, over the threshold; 0 where none has one."""
        if len(scores) == 0:
            return np.zeros(0)
        r = scores / self.ref
        ok = np.isfinite(r).any(axis=1)
        out = np.zeros(len(r))
        out[ok] = np.nanmax(r[ok], axis=1) / self.threshold
        return out


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
    return OrderCalibration(ref, thr, f"{how}, {k}-fold cross-fitted")


@dataclass
class FusedMethod:
    """The fused method over the machines of one run; ``ratios`` per machine, ``summary`` for the JSON."""

    files: ModelFiles
    infer: Any
    target_far: float
    machines_with_orders: list[str] = field(default_factory=list)
    machines_model_only: list[str] = field(default_factory=list)
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.model = ModelMethod(self.files, self.infer, self.target_far / 2)

    def ratios(
        self,
        md: MachineData,
        fcal: np.ndarray,
        feats: Mapping[str, np.ndarray],
        sets: Mapping[str, np.ndarray],
        model_alone: Mapping[str, np.ndarray],
    ) -> dict[str, np.ndarray]:
        """Fused ratios of every set; ``model_alone`` (the model at the full target) where orders are unknown."""
        oc = None
        if has_orders(md):
            assert md.shaft_hz is not None
            oc = calibrate_orders(order_scores(md.cal, md.fs_hz, md.shaft_hz, md.orders), self.target_far / 2)
        if oc is None:
            self.machines_model_only.append(md.name)
            return {k: np.asarray(v) for k, v in model_alone.items()}
        assert md.shaft_hz is not None
        self.machines_with_orders.append(md.name)
        cal = self.model.calibrate(md, fcal)
        self.thresholds[md.name] = {
            "model_threshold": round(float(cal.threshold), 6),
            "order_threshold": round(oc.threshold, 6),
            "order_threshold_method": oc.method,
            "order_reference": [None if not np.isfinite(v) else round(float(v), 4) for v in oc.ref],
            "target_far_each": self.target_far / 2,
        }
        out = {}
        for k, w in sets.items():
            mr = self.model.ratio(cal, feats[k])
            orr = oc.ratio(order_scores(w, md.fs_hz, md.shaft_hz, md.orders))
            out[k] = np.maximum(mr, orr)
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "rule": "ratio = max(model ratio, order ratio), each threshold at target_far / 2",
            "target_far": self.target_far,
            "machines_with_orders": list(self.machines_with_orders),
            "machines_model_only": list(self.machines_model_only),
            "per_machine": dict(self.thresholds),
        }
