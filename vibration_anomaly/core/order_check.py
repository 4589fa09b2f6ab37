"""The detector's order part on the robot: one window's order ratio at the speed it was recorded at (ROS-free).

:class:`OrderCheck` reads a window with the machine's :class:`~vibration_anomaly.core.order_calibration.OrderCalibration`
(the reference and threshold ``calibrate`` recorded), tracked through the shaft speed (``core.speed``);
:class:`OrderReading` is what it found, for the ``infer`` and ``alarm`` events and the diagnosis.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from vibration_anomaly.core.diagnosis import ORDER_LOCATIONS, Diagnosis
from vibration_anomaly.core.events import LOCATION_UNKNOWN
from vibration_anomaly.core.order_calibration import EXTRA_KEY, OrderCalibration, strengths
from vibration_anomaly.core.order_score import defect_lines_hz
from vibration_anomaly.core.speed import ShaftSpeed
from vibration_anomaly.errors import InputError


@dataclass(frozen=True)
class OrderReading:
    """One window's order ratio (None: not scored, ``why`` says so) and the speed it was read at."""

    ratio: float | None
    shaft_hz: float | None
    why: str = ""
    line: str = ""  # the defect line with the largest ratio (bpfo, bpfi, bsf), its location below
    location: str = ""
    channel: int | None = None
    frequency_hz: float | None = None  # that line's defect frequency at this speed
    part: str = ""  # where it was read: the envelope or the raw spectrum (PARTS)
    speed_spread: float = 0.0  # the speed's relative change the window was order-tracked through (0: steady)

    def fields(self) -> dict[str, Any]:
        """The ``infer`` / ``alarm`` event's fields for this reading."""
        out: dict[str, Any] = {"order_ratio": None if self.ratio is None else round(self.ratio, 6)}
        if self.why:
            out["order_note"] = self.why
        if self.speed_spread:
            out["order_tracked_spread"] = round(self.speed_spread, 4)
        if self.line:
            out.update(
                order_line=self.line,
                order_location=self.location,
                order_channel=self.channel,
                order_part=self.part,
            )
        return out


class OrderCheck:
    """The detector's order part: the machine's :class:`OrderCalibration`, the bundle's orders, the speed."""

    def __init__(self, calibration: OrderCalibration, speed: ShaftSpeed) -> None:
        if calibration.model_threshold is None:
            raise InputError("calibration", f"extra.{EXTRA_KEY}.model_threshold", "missing: recalibrate")
        self.calibration = calibration
        self.model_threshold = float(calibration.model_threshold)
        self.speed = speed

    def read(self, window: np.ndarray, fs_hz: float, t0: float, t1: float) -> OrderReading:
        """The order ratio of ``window`` (n, C) at the speed during [t0, t1]; None when that is unknown."""
        tracked, source = self.speed.track(window, fs_hz, t0, t1)
        if tracked is None:
            return OrderReading(None, None, source)
        shaft_hz, spread = tracked.shaft_hz, tracked.spread if tracked.resampled else 0.0
        cal = self.calibration
        got = strengths(
            tracked.window,
            fs_hz,
            shaft_hz,
            {k: cal.orders[k] for k in cal.lines} if cal.orders else None,
            cal.parts,
            cal.resonance_hz,
        )
        if got is None:
            return OrderReading(None, shaft_hz, "no defect line at this speed")
        names, s = got
        if tuple(names) != cal.lines or s.size != cal.ref.size:
            why = f"window has {s.shape[1]} channels x {names}, calibrated {cal.ref.size} columns"
            return OrderReading(None, shaft_hz, why)
        per = s.reshape(-1) / cal.ref
        if not np.isfinite(per).any():
            where = f"the {fs_hz / 2:g} Hz band"
            if cal.resonance_hz is not None:
                where += f" and the {cal.resonance_hz[0]:g}-{cal.resonance_hz[1]:g} Hz resonance"
            return OrderReading(None, shaft_hz, f"no defect line fits {where} at {shaft_hz:.1f} Hz")
        best = int(np.nanargmax(per))
        part, channel, line = (int(i) for i in np.unravel_index(best, s.shape))
        name = cal.lines[line]
        ratio = float(per[best]) / cal.threshold
        f = defect_lines_hz(shaft_hz, {name: cal.orders[name]})[name] if cal.orders else None
        return OrderReading(
            ratio, shaft_hz, "", name, ORDER_LOCATIONS[name][0], channel, f, cal.parts[part], spread
        )

    @staticmethod
    def name_location(diagnosis: Diagnosis, reading: OrderReading | None) -> Diagnosis:
        """The alarm's diagnosis, with the location of the order line that was over its threshold when the
        envelope rule (``core.diagnosis``, 12x the spectrum) named none: that line stood out against this
        machine's own healthy level, at the calibrated false-alarm rate."""
        r = reading
        if r is None or r.ratio is None or r.ratio <= 1.0 or not r.location:
            return diagnosis
        if diagnosis.location != LOCATION_UNKNOWN:
            return diagnosis
        before = f" ({diagnosis.note})" if diagnosis.note else ""
        return replace(
            diagnosis,
            location=r.location,
            frequency_hz=r.frequency_hz,
            order=r.frequency_hz / r.shaft_hz if r.frequency_hz and r.shaft_hz else None,
            shaft_hz=r.shaft_hz,
            channel=r.channel,
            note=f"{r.line} line {r.ratio:.2f} x its calibrated threshold (order score, {r.part}, channel "
            f"{r.channel}); "
            f"the envelope rule named no location{before}",
        )
