"""``run_soak``: the fleet in lock step, one duty period at a time, then the report; the command's ``main``."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from vibration_anomaly.errors import InputError
from vibration_anomaly.sim.soak.before import _BeforeRobot
from vibration_anomaly.sim.soak.faults import FaultRecord
from vibration_anomaly.sim.soak.fleet import _Fleet
from vibration_anomaly.sim.soak.gateway import _Telemetry
from vibration_anomaly.sim.soak.injections import _InjectedRobot
from vibration_anomaly.sim.soak.options import SoakOptions, log
from vibration_anomaly.sim.soak.report import _report, format_summary
from vibration_anomaly.sim.soak.robot import _Robot
from vibration_anomaly.sim.soak.schedule import _deal, _hiccup_outages, _plan


def _shm_dir() -> str | None:
    d = "/dev/shm"
    return d if os.path.isdir(d) and os.access(d, os.W_OK) else None


def run_soak(opts: SoakOptions, progress: TextIO | None = None) -> dict[str, Any]:
    if opts.robots < 1:
        raise InputError("--robots", str(opts.robots), "expected at least 1 robot")
    period = 60.0
    n_periods = int(round(opts.hours * 3600 / period))
    if n_periods < 60:
        raise InputError("--hours", f"{opts.hours:g}", "expected at least 1 simulated hour (60 duty periods)")
    root_parent = opts.workdir or Path(tempfile.mkdtemp(prefix="va-soak-", dir=_shm_dir()))
    root = Path(root_parent) / "fleet"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    wall0 = time.perf_counter()
    tel = _Telemetry(opts)
    quiet = logging.getLogger("vibration_anomaly.soak.runtime")
    quiet.setLevel(logging.CRITICAL)
    quiet.propagate = False
    pkg = logging.getLogger("vibration_anomaly")
    old_level = pkg.level
    pkg.setLevel(logging.CRITICAL)  # loader, pusher and runtime warnings are counted in the report instead
    robots: list[_Robot] = []
    before: _BeforeRobot | None = None
    try:
        fleet = _Fleet(opts, root, tel.url)
        period = fleet.period_s
        hours = n_periods * period / 3600
        rng = random.Random(opts.seed)
        dealt = _deal(opts.robots, rng)
        for i in range(opts.robots):
            r: _Robot = _InjectedRobot(fleet, i, quiet)
            _plan(r, dealt[i], hours, random.Random(opts.seed * 7919 + i))
            _hiccup_outages(r)
            robots.append(r)
        for r in robots:
            if r.pending_boot_fault:
                f = r._fault("boot_disagreement", 0.0)
                f.details["firmware_period_s"] = period + 40
            r.configure("boot")
        before = _BeforeRobot(fleet, list(robots[0].hiccups))
        gw_down = None
        if tel.can_stop:
            down_at = round(0.4 * n_periods) * period
            gw_down = (down_at, down_at + min(3600.0, n_periods * period / 4))
        gw_state = "up"
        fleet_fault: FaultRecord | None = None
        push_fail_before = 0
        last_progress = 0.0
        for k in range(n_periods):
            target = (k + 1) * period
            if gw_down is not None:
                if gw_state == "up" and target > gw_down[0]:
                    push_fail_before = _push_failures(robots)
                    tel.down(target / 3600)
                    gw_state = "down"
                    fleet_fault = FaultRecord("pushgateway_down", -1, target, gw_down[1])
                    for r in robots:
                        r.active_faults.append(fleet_fault)
                elif gw_state == "down" and target > gw_down[1]:
                    tel.up(target / 3600)
                    gw_state = "after"
                    assert fleet_fault is not None
                    fleet_fault.details["push_failures_during"] = _push_failures(robots) - push_fail_before
                    for r in robots:
                        with contextlib.suppress(ValueError):
                            r.active_faults.remove(fleet_fault)
            for r in robots:
                r.advance(target)
            before.advance(target)
            if progress is not None and (time.perf_counter() - last_progress > 1.0 or k == n_periods - 1):
                last_progress = time.perf_counter()
                progress.write(
                    f"\rsoak: {target / 3600:6.2f} h of {hours:g} h, {opts.robots} robots "
                    f"({(k + 1) / n_periods:4.0%}, {time.perf_counter() - wall0:5.0f} s)"
                )
                progress.flush()
        if progress is not None:
            progress.write("\n")
        for r in robots:
            r.close()
        before_report = before.report(hours)
        gateway = {}
        if tel.url is not None:
            try:
                gateway = tel.groups()
            except Exception as exc:  # noqa: BLE001
                gateway = {"error": {"message": 0.0}}
                log.warning(f"gateway read failed: {exc}")
        report = _report(
            opts, fleet, robots, hours, before_report, tel, gateway, fleet_fault, time.perf_counter() - wall0
        )
    finally:
        for r in robots:
            r.hang_gate.set()
        pkg.setLevel(old_level)
        tel.stop()
        if opts.workdir is None:
            shutil.rmtree(root_parent, ignore_errors=True)
    return report


def _push_failures(robots: list[_Robot]) -> int:
    n = 0
    for r in robots:
        if r.rt is not None and r.rt.pusher is not None:
            n += r.rt.pusher.stats.failures
    return n


def main(opts: SoakOptions, as_json: bool = False) -> int:
    show = _isatty(sys.stderr)
    rep = run_soak(opts, progress=sys.stderr if show else None)
    if rep["telemetry"]["mode"] == "off":
        print(f"note: telemetry off: {rep['telemetry']['why']}", file=sys.stderr)
    print(json.dumps(rep, indent=2, default=str) if as_json else format_summary(rep))
    return 0


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
