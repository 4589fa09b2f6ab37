"""The whole pipeline on a simulated robot, on an accelerated clock.

Per duty period: the subscription opens at the window start (``wake``), the
robot's frames (and any firmware burst) go through the keep-last queue and the
windower into the latest-batch queue; at the window's end the detector wakes
the engine, scores the newest fresh batch, votes, and sleeps (``sleep``),
holding nothing until the next period. The numbers (sample_s, period_s,
backlog bound, alarm vote) come from the verified example bundle. The driver
hooks that do the simulated robot's side of each period (and the simulated
clock) are ``sim.demo_hooks``. The timeline line of each period is written
here, as the period ends; the rest of what the demo prints (what is simulated,
the summary, ``main``) is ``sim.demo_text``.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from vibration_anomaly.bundle import VerifiedBundle
from vibration_anomaly.core.driver import DutyCycleDriver
from vibration_anomaly.core.events import (
    ALARM,
    DROP,
    ERROR,
    INFER,
    REJECT,
    SKIP,
    SLEEP,
    Event,
    EventSink,
    JsonlEventLog,
)
from vibration_anomaly.core.imu_buffer import qos_depth
from vibration_anomaly.core.scheduler import DutyCycleScheduler
from vibration_anomaly.core.window import Windower, batch_samples
from vibration_anomaly.errors import InputError
from vibration_anomaly.fileio import atomic_path
from vibration_anomaly.runtime import DetectorRuntime, Pipeline, RuntimeParams
from vibration_anomaly.sim.demo_hooks import SimClock, SimHooks
from vibration_anomaly.sim.robot import FaultSpec, RobotConfig, SimulatedRobot


@dataclass
class DemoOptions:
    hours: float = 2.0
    fault_after_h: float | None = 1.0
    seed: int = 0
    hiccups: int = 3
    rate_hz: float = 1000.0
    commissioning_windows: int = 30
    trace: Path | None = None


@dataclass
class DemoResult:
    summary: dict[str, Any]
    cycles: list[dict[str, Any]] = field(default_factory=list)


def plan_hiccups(n: int, n_periods: int, period_s: float, sample_s: float) -> tuple[tuple[float, float], ...]:
    """Spread ``n`` connectivity hiccups over the run.

    Each starts mid-sleep and ends shortly after the next window opens, so its
    firmware burst (up to ~40 s of buffered frames) lands inside a sample
    window: the worst case for replaying stale data.
    """
    out = []
    for i in range(n):
        k = max(1, round((i + 1) * n_periods / (n + 1)))
        start = (k - 1) * period_s + sample_s + 15.0
        end = k * period_s + min(1.5, sample_s / 3)
        out.append((start, end))
    return tuple(out)


def _commissioning_windows(
    robot: SimulatedRobot, n: int, sample_s: float, period_s: float
) -> list[np.ndarray]:
    """Healthy windows recorded at installation: mid-sleep stretches the run never samples again."""
    healthy = SimulatedRobot(replace(robot.cfg, fault=None, hiccups=()))
    out = []
    for k in range(n):
        t0 = k * period_s + sample_s + 20.0
        _, x = healthy.frames(t0, t0 + sample_s)
        out.append(x)
    return out


def _robot(opts: DemoOptions, n_periods: int, sample_s: float, period_s: float) -> SimulatedRobot:
    fault = None if opts.fault_after_h is None else FaultSpec(start_s=opts.fault_after_h * 3600.0)
    hiccups = plan_hiccups(opts.hiccups, n_periods, period_s, sample_s)
    return SimulatedRobot(RobotConfig(rate_hz=opts.rate_hz, seed=opts.seed, fault=fault, hiccups=hiccups))


def _runtime(
    opts: DemoOptions, bundle: VerifiedBundle, robot: SimulatedRobot, clock: SimClock
) -> DetectorRuntime:
    """The runtime the node builds, inline on simulated time; configure commissions the machine first."""
    from vibration_anomaly.core.scoring import AlarmVoter, Scorer
    from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
    from vibration_anomaly.model import load_default_model

    model = load_default_model()
    dc = bundle.duty_cycle

    def commissioned(b: VerifiedBundle, _params: dict[str, Any]) -> Pipeline:
        engine = OnnxRuntimeEngine(intra_op_threads=1)
        engine.load(model.cpu_onnx)  # what ONNX Runtime runs on a robot (runtime.build_pipeline)
        engine.wake()
        windows = _commissioning_windows(robot, opts.commissioning_windows, dc.sample_s, dc.period_s)
        cal = model.calibrate(  # told the speed it is commissioned at: the speed guard is on (core.speed)
            engine, windows, opts.rate_hz, machine=f"sim-robot-{opts.seed}", shaft_hz=robot.cfg.shaft_hz
        )
        engine.sleep()
        voter = AlarmVoter(b.alarm.votes_required, b.alarm.votes_window)
        return Pipeline(
            engine,
            Scorer(engine, model.frontend_for(cal), cal),
            voter,
            model.model_id,
            "demo: ONNX Runtime",
        )

    quiet = logging.getLogger("vibration_anomaly.demo")
    quiet.setLevel(logging.WARNING)
    rt = DetectorRuntime(clock, pipeline_factory=commissioned, name="demo", threaded=False, logger=quiet)
    # The simulated robot's wheel speed is known (its JointState on a real robot: ``speed_topic``), so the
    # alarm's diagnosis can name the part, with the bundle's bearing.
    params = RuntimeParams(
        robot_id=f"sim-robot-{opts.seed}", require_firmware=False, shaft_hz=robot.cfg.shaft_hz
    )
    rt.configure(params, bundle=bundle)
    return rt


def run_demo(opts: DemoOptions, out: TextIO | None = None, progress: TextIO | None = None) -> DemoResult:
    if opts.trace is not None:
        # A fresh trace per run, written to a temp file beside it and renamed only when the run completes:
        # a failed or interrupted run leaves the previous trace as it was, and no temp file.
        with atomic_path(opts.trace) as tmp:
            return _run_demo(replace(opts, trace=tmp), out, progress)
    return _run_demo(opts, out, progress)


def _run_demo(opts: DemoOptions, out: TextIO | None, progress: TextIO | None) -> DemoResult:
    from vibration_anomaly.bundle import load_example_bundle

    bundle = load_example_bundle()
    dc = bundle.duty_cycle
    n_periods = int(round(opts.hours * 3600 / dc.period_s))
    if n_periods < 1:
        raise ValueError(
            f"--hours {opts.hours:g}: shorter than one duty period ({dc.period_s:g} s); nothing to simulate"
        )
    robot, clock = _robot(opts, n_periods, dc.sample_s, dc.period_s), SimClock()
    trace = JsonlEventLog(opts.trace, fsync_every=10_000) if opts.trace else None
    events: list[Event] = []
    rt = _runtime(opts, bundle, robot, clock)
    sinks: list[EventSink] = [events.append, *([trace] if trace else [])]
    for sink in sinks:
        rt.bus.add(sink)
    windower = Windower(
        batch_samples(opts.rate_hz, dc.sample_s), channels=3, fs_hz=opts.rate_hz, source="imu"
    )
    hooks = SimHooks(robot, windower, rt, clock, qos_depth(opts.rate_hz, dc.sample_s))
    driver = DutyCycleDriver(
        DutyCycleScheduler(rt.sample_s, rt.period_s, clock=clock, epoch=0.0), hooks, rt.bus
    )
    wall0 = time.perf_counter()
    cycles = _drive(driver, hooks, clock, n_periods, opts.hours, dc.period_s, out, progress)
    driver.stop()
    threshold = rt.verdicts[-1].threshold if rt.verdicts else None
    assert rt.pipeline is not None and rt.queue is not None
    backend, model_id, queue_stats = (
        rt.pipeline.engine.name,
        rt.pipeline.model,
        rt.queue.stats.__dict__.copy(),
    )
    rt.close()
    if trace:
        trace.close()
    summary = _summarise(opts, bundle, robot, events, hooks, n_periods, windower, wall0)
    summary.update(backend=backend, model=model_id, threshold=threshold, queue=queue_stats)
    return DemoResult(summary, cycles)


def _drive(
    driver: DutyCycleDriver,
    hooks: SimHooks,
    clock: SimClock,
    n_periods: int,
    hours: float,
    period_s: float,
    out: TextIO | None,
    progress: TextIO | None,
) -> list[dict[str, Any]]:
    """Step the driver on simulated time; a timeline line per period and progress on the terminal."""
    cycles: list[dict[str, Any]] = []
    if out is not None:
        out.write(
            f"{'cycle':>10s}  {'time':8s}  {'phases':22s}  {'score/threshold':>15s}  {'verdict':15s} dropped frames\n"
        )
    due: float | None = driver.start(0.0)
    last_progress = 0.0
    while driver.periods < n_periods and due is not None:
        clock.now = max(clock.now, due)
        due = driver.step()
        if driver.periods > len(cycles):
            cycles.append(hooks.last_cycle)
            if out is not None:
                out.write(_timeline_line(cycles[-1]) + "\n")
            k = len(cycles)
            if progress is not None and (time.perf_counter() - last_progress > 1.0 or k == n_periods):
                last_progress = time.perf_counter()
                progress.write(
                    f"\rsimulated {k * period_s / 3600:5.2f} h of {hours:g} h ({k / n_periods:4.0%})"
                )
                progress.flush()
    if progress is not None:
        progress.write("\n")
    return cycles


def _summarise(
    opts: DemoOptions,
    bundle: VerifiedBundle,
    robot: SimulatedRobot,
    events: list[Event],
    hooks: SimHooks,
    n_periods: int,
    windower: Windower,
    wall0: float,
) -> dict[str, Any]:
    dc = bundle.duty_cycle
    infers = [e for e in events if e["event"] == INFER]
    alarms = [e for e in events if e["event"] == ALARM]
    drops: dict[str, int] = {}
    for e in events:
        if e["event"] == DROP:
            drops[e["reason"]] = drops.get(e["reason"], 0) + int(e["frames"])
    fault_s = robot.cfg.fault.start_s if robot.cfg.fault else None
    first_alarm = alarms[0]["t"] if alarms else None
    sleeps = [e for e in events if e["event"] == SLEEP]
    return {
        "simulated_hours": round(n_periods * dc.period_s / 3600, 6),
        "seed": opts.seed,
        "duty_cycle": {
            "sample_s": dc.sample_s,
            "period_s": dc.period_s,
            "from_bundle_version": bundle.version,
        },
        "periods": n_periods,
        "inferences": len(infers),
        "skipped": sum(1 for e in events if e["event"] == SKIP),
        "errors": sum(1 for e in events if e["event"] == ERROR),
        "fault_start_s": fault_s,
        "first_alarm_s": first_alarm,
        "alarm_delay_s": None if (first_alarm is None or fault_s is None) else first_alarm - fault_s,
        "alarm_diagnosis": None
        if not alarms
        else {k: v for k, v in alarms[0].items() if k not in ("t", "event")},
        "false_alarm": bool(first_alarm is not None and (fault_s is None or first_alarm < fault_s)),
        "healthy_scores_above_threshold": sum(
            1 for e in infers if e["above"] and (fault_s is None or e["batch_t1"] < fault_s)
        ),
        "hiccups": [list(h) for h in robot.cfg.hiccups],
        "dropped_frames": drops,
        "rejected_frames": sum(int(e["count"]) for e in events if e["event"] == REJECT),
        "windower_rejected": dict(windower.rejected),
        "awake_fraction": sum(e["awake_s"] for e in sleeps) / (n_periods * dc.period_s),
        "contract_awake_fraction": dc.awake_fraction,
        "held_after_sleep": sorted(set(hooks.held_after_sleep)),
        "engine_ms_median": {k2: round(statistics.median(v), 3) for k2, v in hooks.timings.items() if v},
        "wall_s": round(time.perf_counter() - wall0, 2),
    }


def _fmt_t(t: float) -> str:
    h, rem = divmod(int(t), 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}"


def _timeline_line(c: dict[str, Any]) -> str:
    phases = "sample > infer > sleep" if c["score"] is not None else "sample > skip > sleep"
    if c["score"] is None:
        verdict, score = "no fresh batch", "     -"
    else:
        verdict = (
            "ALARM"
            if c["raised"]
            else ("alarm (latched)" if c["alarm"] else ("above" if c["above"] else "ok"))
        )
        score = f"{c['score'] / c['threshold']:6.2f}"
    extra = f"  burst {c['burst']} frames" if c["burst"] else ""
    return (
        f"cycle {c['cycle']:4d}  {_fmt_t(c['t'])}  {phases:22s}  {score:>15s}  "
        f"{verdict:<15s} {c['dropped']:6d}{extra}"
    )


def parse_fault_after(text: str) -> float | None:
    """Simulated hours before the fault starts, or None for 'none' / 'never' / 'off'; NaN, inf, < 0 refused."""
    t = text.strip()
    if t.lower() in ("none", "never", "off"):
        return None
    try:
        v = float(t)
    except ValueError:
        v = float("nan")
    if not (math.isfinite(v) and v >= 0):
        raise InputError(
            "--fault-after", repr(text), "expected simulated hours >= 0 (a finite number) or 'none'"
        )
    return v
