"""The running detector's sensor check: every batch, before it is scored, against this machine's level.

``core.sensor_health`` has the checks over one batch; this adds what only a running detector knows
(the rate the batch was delivered at, the machine's healthy level from its calibration for the
loose-mount check over all axes) and keeps the latest report for the ``sensor`` diagnostic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vibration_anomaly.core.sensor_health import (
    ERROR,
    LOOSE_MOUNT,
    RATE,
    WARN,
    Finding,
    SensorLimits,
    SensorReport,
    _as_2d,
    check_batch,
    report,
)

DROPOUT = "dropout"  # the watch's own finding: windows that closed without a batch


class SensorWatch:
    """The running detector's sensor check: each batch before it is scored, the latest report kept.

    Besides :func:`check_batch` it checks the rate the batch was delivered at (its first and last
    stamps against the configured rate). A batch with an ERROR finding is not scored: a dead or
    clipped sensor's "verdict" would be noise voted on as a bearing. ``counts`` holds the batches with
    each kind of finding since configure (metrics read the events; health reads ``last``).
    """

    def __init__(
        self, limits: SensorLimits | None = None, baseline_rms: Sequence[float] | None = None
    ) -> None:
        self.limits = limits or SensorLimits()
        self.baseline_rms = list(baseline_rms) if baseline_rms is not None else None
        self.last: SensorReport | None = None
        self.counts: dict[str, int] = {}
        self.empty_windows = 0  # consecutive windows in which no batch filled

    def no_data(self) -> SensorReport:
        """A window closed without a batch: the IMU went silent (or delivered too little to fill one).

        One such window is a WARN (a start-up, a late publisher), three in a row an ERROR: a dropout
        removes all vibration, which the model alone would read as a quiet, healthy machine.
        """
        self.empty_windows += 1
        level = ERROR if self.empty_windows >= 3 else WARN
        finding = Finding(
            DROPOUT,
            level,
            f"no IMU batch in {self.empty_windows} window(s) in a row: the sensor stopped delivering",
        )
        self.counts[DROPOUT] = self.counts.get(DROPOUT, 0) + 1
        self.last = report([finding])
        return self.last

    def check(self, samples: np.ndarray, fs_hz: float, t0: float, t1: float) -> SensorReport:
        self.empty_windows = 0
        findings = check_batch(samples, fs_hz, limits=self.limits)
        loose = self.loose_mount(samples)
        if loose is not None:
            findings.append(loose)
        n = len(samples)
        if n > 1 and t1 > t0:
            observed = (n - 1) / (t1 - t0)
            if abs(observed / fs_hz - 1.0) > self.limits.rate_tolerance:
                findings.append(
                    Finding(
                        RATE,
                        ERROR,
                        f"delivered at {observed:.4g} Hz, configured {fs_hz:g} Hz "
                        f"(tolerance {self.limits.rate_tolerance:.0%})",
                        None,
                        observed,
                    )
                )
        rep = report(findings)
        for kind in rep.kinds():
            self.counts[kind] = self.counts.get(kind, 0) + 1
        self.last = rep
        return rep

    def loose_mount(self, samples: np.ndarray) -> Finding | None:
        """The broadband level of all axes together against the machine's: a loose mount quiets every axis.

        One axis alone varies with what the robot does (turning, idling), so a per-axis comparison
        would call an ordinary quiet minute a loose mount; the whole level falling below
        ``loose_ratio`` of the calibration's does not happen while the sensor is coupled.
        """
        if not self.baseline_rms:
            return None
        x = _as_2d(samples)
        if x.shape[1] != len(self.baseline_rms):
            return None
        rows = np.ascontiguousarray(x.T)  # a reduction along 3 strided columns is 4x slower than along rows
        var = np.var(rows, axis=1) if np.isfinite(rows).all() else np.nanvar(rows, axis=1)
        level = float(np.sqrt(np.nansum(var)))
        base = float(np.sqrt(np.sum(np.square(self.baseline_rms))))
        ratio = level / base if base > 0 else 1.0
        if not ratio < self.limits.loose_ratio:
            return None
        return Finding(
            LOOSE_MOUNT,
            WARN,
            f"broadband level {ratio:.2f}x the calibration's over all axes (below "
            f"{self.limits.loose_ratio:g}x): loose mount or a detached sensor?",
            None,
            ratio,
        )
