"""The fault schedule: structural faults dealt to robots, every robot's faults placed in its run."""

from __future__ import annotations

import math
import random

from vibration_anomaly.sim.soak.faults import DATA_FAULTS, STRUCTURAL_FAULTS
from vibration_anomaly.sim.soak.robot import _Robot


def _deal(robots: int, rng: random.Random) -> list[list[str]]:
    """Structural faults dealt round-robin so that each kind lands on at least one robot (several when N allows)."""
    per = min(len(STRUCTURAL_FAULTS), max(3, math.ceil(len(STRUCTURAL_FAULTS) / max(1, robots))))
    kinds = list(STRUCTURAL_FAULTS)
    out: list[list[str]] = [[] for _ in range(robots)]
    i = 0
    for r in range(robots):
        while len(out[r]) < per:
            k = kinds[i % len(kinds)]
            i += 1
            if k not in out[r]:
                out[r].append(k)
            if i > 10 * len(kinds) * robots:
                break
    rng.shuffle(out)
    return out


def _plan(robot: _Robot, kinds: list[str], hours: float, rng: random.Random) -> None:
    """Place this robot's faults in separate slots of its run, seeded; long faults last ``unit`` (an hour)."""
    fleet = robot.fleet
    p, s = fleet.period_s, fleet.sample_s
    total = hours * 3600.0
    structural = [k for k in kinds if k != "boot_disagreement"]
    order = list(structural) + list(DATA_FAULTS)
    rng.shuffle(order)
    slot = total / (len(order) + 1)
    unit = max(2 * p, min(3600.0, 0.8 * slot))  # an hour, shorter in short runs
    robot.restart_gap_s = unit
    if "boot_disagreement" in kinds:
        robot.firmware.write_text(fleet.firmware_bad)
        robot._schedule(min(unit, total / 4), "fix", kind="boot_disagreement")
        robot.pending_boot_fault = True
    for i, kind in enumerate(order):
        base = (i + 1) * slot
        k = int(base // p) + rng.randint(1, max(1, int(slot // p) // 4))
        asleep_t = k * p + s + rng.uniform(10.0, p - s - 15.0)  # mid-sleep
        sampling_t = k * p + rng.uniform(0.5, s - 0.5)  # mid-window
        window_t = k * p - 10.0  # just before a window
        if kind == "hiccup_burst":
            for j in range(3):
                kk = k + 3 * j
                long = j == 2  # the third one lasts several periods: whole windows without a link
                start = kk * p - (4 * p + 30.0 if long else 40.0)
                end = kk * p + rng.uniform(0.5, 2.0)
                robot.hiccups.append((start, end))
                robot._schedule(start - 1.0, "window_fault", kind="hiccup_burst", duration=end - start + 1.0)
        elif kind in ("nan_inf_burst", "nan_inf_sparse", "duplicate_stamps", "out_of_order_stamps"):
            robot._schedule(window_t, "window_fault", kind=kind, duration=3 * p)
        elif kind == "imu_dropout":
            robot._schedule(window_t, "window_fault", kind=kind, duration=min(600.0, unit))
        elif kind == "imu_rate_change":
            robot._schedule(window_t, "window_fault", kind=kind, duration=min(1800.0, unit))
        elif kind in ("clock_jump_back_asleep", "clock_jump_back_sampling"):
            t = asleep_t if kind.endswith("asleep") else sampling_t
            robot._schedule(t, "clock_jump", kind=kind, delta=-rng.uniform(0.5, 1.0) * unit)
        elif kind == "clock_jump_forward":
            robot._schedule(asleep_t, "clock_jump", kind=kind, delta=rng.uniform(0.5, 1.0) * unit)
        elif kind == "wake_without_sleep":
            robot._schedule(window_t, "wake_without_sleep")
        elif kind == "bundle_refused_after_good":
            robot._schedule(asleep_t, "reconfigure", kind=kind, bundle=str(fleet.tampered))
        elif kind == "bundle_unusable_after_good":
            robot._schedule(asleep_t, "reconfigure", kind=kind, bundle=str(fleet.unusable))
        elif kind in ("firmware_update_disagreement", "corrupt_model"):
            robot._schedule(sampling_t, "restart_fault", kind=kind, duration=min(1800.0, unit))
        elif kind == "full_disk":
            robot._schedule(sampling_t, "restart_fault", kind=kind, duration=unit)
        elif kind == "hung_engine_call":
            robot._schedule(window_t, "hang", duration=2.5 * p)
        elif kind == "restart_with_alarm":
            robot.bearing_from = max(p, base - 10 * p)
            robot.restart_after_alarm = ["mid-cycle, alarm latched", "mid-cycle again, alarm latched"]


def _hiccup_outages(robot: _Robot) -> None:
    """Whole windows inside a long hiccup get no frames at all (the link is down): an injected outage."""
    p, s = robot.fleet.period_s, robot.fleet.sample_s
    for a, b in robot.hiccups:
        for kk in range(math.ceil(a / p), math.floor(b / p) + 1):
            if a <= kk * p and kk * p + s <= b:
                robot.outages.append((kk * p, (kk + 1) * p))
