"""``model+orders``: the model fused with the order-tracked envelope score (evaluation only, issue 16).

Measured in ``evaluate`` (and its ``--sensitivity``) beside ``model`` and the baselines, to see whether
speed- and bearing-aware scoring reaches the issue's goal before the robot's runtime is changed.
Per machine whose shaft speed (manifest ``rpm``) and defect orders (manifest or ``--bearing``) are known:

* the model is calibrated exactly as ``model`` but with its threshold at ``target_far / 2``;
* the order score (``core.order_score``) of every calibration window, per channel, is divided by that
  channel's median over the calibration windows (the window's order ratio is the worst channel), and
  its threshold is fitted on those calibration ratios at ``target_far / 2`` with the product's own
  ``threshold_from_scores`` (the score has no fitted parameters but the per-channel median, so no
  cross-fitting);
* a window's ratio is ``max(model ratio, order ratio)``: it is over 1 when either is, so by the union
  bound the per-window false-alarm rate stays at or below ``target_far``.

A machine without speed or orders gets the model's own ratio (calibrated at ``target_far``): the model
alone decides, as on the robot today.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vibration_anomaly.core.calibration import threshold_from_scores
from vibration_anomaly.core.order_score import defect_lines_hz, order_score
from vibration_anomaly.model import ModelFiles
from vibration_anomaly.model.evaluate import MachineData, ModelMethod

FUSED = "model+orders"


def has_orders(md: MachineData) -> bool:
    """True when the machine's shaft speed and at least one non-cage defect order are known."""
    return bool(defect_lines_hz(md.shaft_hz, md.orders))


def order_scores(
    windows: np.ndarray, fs_hz: float, shaft_hz: float, orders: Mapping[str, float]
) -> np.ndarray:
    """(N, C) order strength of every window and channel (NaN where no defect line fits the band)."""
    if len(windows) == 0:
        return np.zeros((0, windows.shape[2] if windows.ndim == 3 else 1))
    out = [order_score(w, fs_hz, shaft_hz, orders) for w in windows]
    return np.stack([np.full(windows.shape[2], np.nan) if o is None else o for o in out])


@dataclass
class OrderCalibration:
    """Per-channel reference (median on the calibration windows) and the ratio threshold."""

    ref: np.ndarray
    threshold: float
    method: str

    def ratio(self, scores: np.ndarray) -> np.ndarray:
        """(N,) worst channel's score / reference, over the threshold; 0 where no channel has a score."""
        if len(scores) == 0:
            return np.zeros(0)
        r = scores / self.ref
        ok = np.isfinite(r).any(axis=1)
        out = np.zeros(len(r))
        out[ok] = np.nanmax(r[ok], axis=1) / self.threshold
        return out


def calibrate_orders(cal_scores: np.ndarray, target_far: float) -> OrderCalibration | None:
    """None when no channel has an order score on the calibration windows (sensor too slow for the bearing)."""
    ok = np.isfinite(cal_scores).sum(axis=0) >= 3
    if not ok.any():
        return None
    ref = np.full(cal_scores.shape[1], np.nan)
    ref[ok] = np.nanmedian(cal_scores[:, ok], axis=0)
    r = np.nanmax(cal_scores[:, ok] / ref[ok], axis=1)
    thr, how = threshold_from_scores(r, target_far)
    return OrderCalibration(ref, thr, how)


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
