"""A soak robot's driver hooks (the node's sequence) and the frames its subscription receives.

Frames come from the fleet's pool of pre-generated windows, re-stamped per window, with the faults that act
on frames applied: link hiccups and the firmware's burst through the keep-last queue, IMU dropouts and rate
changes, NaN / inf, duplicate and out-of-order stamps.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from vibration_anomaly.core.events import DROP, DROP_BEFORE_WINDOW, DROP_KEEP_LAST
from vibration_anomaly.core.scheduler import SampleWindow
from vibration_anomaly.sim.soak.options import RATE_HZ

if TYPE_CHECKING:
    from vibration_anomaly.sim.soak.robot import _Robot


class _Hooks:
    """``core.driver.DriverHooks`` for a soak robot: the node's sequence on simulated frames."""

    def __init__(self, robot: _Robot) -> None:
        self.robot = robot

    def open_sampling(self, window: SampleWindow) -> None:
        r = self.robot
        r.windower.open_window(window.start)
        r.awake_since = r.true_now()

    def close_sampling(self, window: SampleWindow) -> None:
        r = self.robot
        rt = r.rt
        queue = rt.queue
        w = r.windower
        before0 = w.rejected[DROP_BEFORE_WINDOW]
        lost, chunks = deliver(r, window)
        if lost:
            rt.emit(DROP, frames=lost, reason=DROP_KEEP_LAST)
        for t, x in chunks:
            for b in w.push_many(t, x):
                if queue is not None:
                    queue.put(b)
        w.close_window()
        stale = w.rejected[DROP_BEFORE_WINDOW] - before0
        if stale:
            rt.emit(DROP, frames=stale, reason=DROP_BEFORE_WINDOW)
        rt.report_rejects()

    def infer_once(self, window: SampleWindow) -> None:
        r = self.robot
        rt = r.rt
        t0 = time.perf_counter()
        rt.activate()
        try:
            rt.infer_now(window.start)
        finally:
            if r.skip_deactivate:
                r.skip_deactivate = False  # the deactivate that never came
                r.stray_wakes += 1
            else:
                rt.deactivate()
            r.clock.now += time.perf_counter() - t0

    def held_resources(self) -> tuple[str, ...]:
        return self.robot.rt.held_resources()


def _active(r: _Robot, kind: str, t: float) -> bool:
    return any(a <= t < b for a, b in r.window_faults.get(kind, ()))


def deliver(r: _Robot, window: SampleWindow) -> tuple[int, list[tuple[np.ndarray, np.ndarray]]]:
    """Frames the subscription receives in this window (robot-clock stamps) and what keep-last lost."""
    t_true = window.start - r.offset
    fault = r.bearing_from is not None and t_true >= r.bearing_from
    pool = r.fleet.pools[(r.machine, fault)]
    x = pool[window.period % len(pool)]
    n = x.shape[0]
    if _active(r, "imu_dropout", t_true):
        return 0, []
    for a, b in r.hiccups:
        if a <= t_true and t_true + r.fleet.sample_s <= b:
            return 0, []  # the link is down for the whole window
    if _active(r, "imu_rate_change", t_true):
        rate = 800.0 if r.index % 2 == 0 else 2000.0
        m = int(r.fleet.sample_s * rate)
        xs = np.resize(x, (m, 3))
        return 0, [(window.start + np.arange(m) / rate, xs)]
    t = window.start + np.arange(n) / RATE_HZ
    chunks: list[tuple[np.ndarray, np.ndarray]] = []
    lost = 0
    for a, b in r.hiccups:
        if a < t_true < b <= t_true + r.fleet.sample_s:
            # The link came back inside the window: the firmware releases everything it buffered since
            # the hiccup began, and the keep-last queue keeps the newest ``depth`` frames of it.
            back = window.start + (b - t_true)
            n_buf = int(round((b - a) * RATE_HZ))
            keep = min(n_buf, r.depth)
            lost = n_buf - keep
            bt = back - (np.arange(keep)[::-1] + 1) / RATE_HZ
            bx = np.resize(x, (keep, 3))
            i = int(round((b - t_true) * RATE_HZ))
            chunks.append((bt, bx))
            chunks.append((t[i:], x[i:]))
            return lost, chunks
    if _active(r, "nan_inf_burst", t_true):
        x = x.copy()
        x[1000:1300] = np.nan
        x[1300:1400, 1] = np.inf
    elif _active(r, "nan_inf_sparse", t_true):
        x = x.copy()
        x[500:4500:400, 0] = np.nan
        x[700:4500:800, 2] = -np.inf
    elif _active(r, "duplicate_stamps", t_true):
        idx = np.concatenate([np.arange(0, 2000), np.arange(1950, 2000), np.arange(2000, n)])
        t, x = t[idx], x[idx]
    elif _active(r, "out_of_order_stamps", t_true):
        idx = np.arange(n)
        sw = np.arange(1001, 3001, 40)
        idx[sw], idx[sw + 1] = sw + 1, sw
        t, x = t[idx], x[idx]
    return 0, [(t, x)]
