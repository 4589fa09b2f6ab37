"""``model+orders``: the model fused with the order-tracked envelope score, as the robot runs it.

Measured in ``evaluate`` (and its ``--sensitivity``) beside ``model`` and the baselines; the order part's
functions are the runtime's (``core.order_calibration``, which the detector uses when the bundle states
the bearing and the shaft speed is known). Per machine whose shaft speed (manifest ``rpm``) and defect orders (manifest or ``--bearing``) are known:

* the model is calibrated exactly as ``model`` but with its threshold at ``target_far / 2``;
* the strength of each defect line in each channel (``core.order_score.order_strengths``) is divided by
  its median over the calibration windows (the window's order ratio is the largest of these), and
  its threshold is fitted at ``target_far / 2`` with the product's own ``threshold_from_scores`` on
  cross-fitted calibration ratios (each of 4 contiguous blocks against the others' medians);
* a window's ratio is ``max(model ratio, order ratio)``: it is over 1 when either is, so by the union
  bound the per-window false-alarm rate stays at or below ``target_far``.

A machine without speed or orders, or whose defect lines fit no band the order part may read (a stated
resonance above the sensor's band, ``resonance_hz``, and a window too short for the raw spectrum's lines),
gets the model's own ratio (calibrated at ``target_far``): the model alone decides, as on the robot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vibration_anomaly.core.order_calibration import (
    FOLDS,
    OrderCalibration,
    calibrate_orders,
    window_strengths,
)
from vibration_anomaly.core.order_score import defect_lines_hz
from vibration_anomaly.model import ModelFiles
from vibration_anomaly.model.evaluate import MachineData, ModelMethod

FUSED = "model+orders"
__all__ = [
    "FOLDS",
    "FUSED",
    "FusedMethod",
    "OrderCalibration",
    "calibrate_orders",
    "has_orders",
    "order_scores",
]


def has_orders(md: MachineData) -> bool:
    """True when the machine's shaft speed and at least one non-cage defect order are known."""
    return bool(defect_lines_hz(md.shaft_hz, md.orders))


order_scores = window_strengths
"""(N, C x lines) strength of every defect line in every channel (``core.order_calibration``)."""


@dataclass
class FusedMethod:
    """The fused method over the machines of one run; ``ratios`` per machine, ``summary`` for the JSON."""

    files: ModelFiles
    infer: Any
    target_far: float
    machines_with_orders: list[str] = field(default_factory=list)
    machines_model_only: list[str] = field(default_factory=list)
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)
    segments: int | None = 1
    # The bearing's stated resonance (a bundle's bearing.resonance_hz): the envelope reads the bands over it.
    resonance_hz: tuple[float, float] | None = None
    orders_known: bool = False  # some machine had speed and orders (its lines may still fit no band)

    def __post_init__(self) -> None:
        self.model = ModelMethod(self.files, self.infer, self.target_far / 2, self.segments)

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
            assert md.shaft_hz is not None and md.orders is not None
            self.orders_known = True
            oc = calibrate_orders(self._strengths(md, md.cal), self.target_far / 2)
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
            orr = oc.ratio(self._strengths(md, w))
            out[k] = np.maximum(mr, orr)
        return out

    def _strengths(self, md: MachineData, windows: np.ndarray) -> np.ndarray:
        assert md.shaft_hz is not None and md.orders is not None
        return window_strengths(windows, md.fs_hz, md.shaft_hz, md.orders, resonance_hz=self.resonance_hz)

    def summary(self) -> dict[str, Any]:
        return {
            "rule": "ratio = max(model ratio, order ratio), each threshold at target_far / 2",
            "bearing_resonance_hz": None if self.resonance_hz is None else list(self.resonance_hz),
            "target_far": self.target_far,
            "machines_with_orders": list(self.machines_with_orders),
            "machines_model_only": list(self.machines_model_only),
            "per_machine": dict(self.thresholds),
        }
