"""Diagnostic task logic and the duty-cycle driver, without ROS."""

from __future__ import annotations

import math
from typing import Any

import pytest

from vibration_anomaly.core.driver import DriverState, DutyCycleDriver
from vibration_anomaly.core.events import EventBus
from vibration_anomaly.core.health import (
    ERROR,
    OK,
    STALE,
    WARN,
    BacklogCounts,
    BacklogHealth,
    DutyCycleMonitor,
    Health,
    HealthTask,
    StatusRecord,
    bundle_health,
    duty_cycle_health,
    model_health,
    power_health,
)
from vibration_anomaly.core.scheduler import DutyCycleScheduler, SampleWindow


def feed(mon: DutyCycleMonitor, wakes: list[float], awake_s: float = 5.2, held: tuple[str, ...] = ()) -> None:
    for w in wakes:
        mon({"t": w, "event": "wake"})
        mon({"t": w + awake_s, "event": "sleep", "awake_s": awake_s, "held": list(held)})


def duty(mon: DutyCycleMonitor, now: float, **kw: Any) -> Health:
    args = {"sample_s": 5.0, "period_s": 60.0, "period_tolerance_s": 1.0, "awake_fraction_max": 0.125}
    return duty_cycle_health(mon.snapshot(), now=now, **{**args, **kw})


def test_duty_cycle_levels_follow_the_bundle_thresholds() -> None:
    mon = DutyCycleMonitor(60.0)
    assert duty(mon, now=0.0).level == STALE
    feed(mon, [0.0, 60.0, 120.2])
    h = duty(mon, now=130.0)
    assert h.level == OK and h.values["observed period_s (mean)"] == pytest.approx(60.1)
    assert h.values["observed awake fraction"] == pytest.approx(10.4 / 120.2)
    feed(mon, [181.8])  # 61.6 s: off by more than the 1 s tolerance
    h = duty(mon, now=190.0)
    assert h.level == WARN and "period off by 1.60 s" in h.message
    assert duty(mon, now=190.0, period_tolerance_s=2.0).level == OK
    # Stalled: nothing for more than two periods.
    h = duty(mon, now=181.8 + 125.0)
    assert h.level == ERROR and "stalled" in h.message


def test_duty_cycle_warns_when_awake_too_long_and_errors_when_something_is_held() -> None:
    mon = DutyCycleMonitor(60.0)
    feed(mon, [0.0, 60.0, 120.0], awake_s=9.0)
    h = duty(mon, now=125.0)
    assert h.level == WARN and "awake 15.0%" in h.message
    mon2 = DutyCycleMonitor(60.0)
    feed(mon2, [0.0, 60.0], held=("session",))
    assert duty(mon2, now=70.0).level == ERROR
    assert duty(mon2, now=70.0, driver_enabled=False).level == OK


def test_power_levels() -> None:
    base = {"source": "hwmon", "modelled": False, "asleep_w": 4.2, "awake_w": 9.0}
    assert power_health(**base, asleep_power_max_w=5.0).level == OK
    h = power_health(**base, asleep_power_max_w=4.0)
    assert h.level == WARN and "4.20 W" in h.message
    # A model cannot show a fault: its figures are never compared with the limit.
    assert power_health(**{**base, "modelled": True}, asleep_power_max_w=4.0).level == OK
    assert "MODELLED" in power_health(**{**base, "modelled": True}, asleep_power_max_w=None).message
    h = power_health(**base, asleep_power_max_w=None, held_while_asleep=("context", "stream"))
    assert h.level == ERROR and "context, stream" in h.message
    assert (
        power_health(source="x", modelled=True, asleep_w=None, awake_w=None, asleep_power_max_w=None).level
        == WARN
    )


def counts(**kw: Any) -> BacklogCounts:
    base: dict[str, Any] = {
        "queue_bound": 3,
        "queue_depth": 0,
        "queue_max_depth": 1,
        "dropped_frames": 0,
        "dropped_overflow": 0,
        "refused_stale": 0,
        "rejected": {},
    }
    return BacklogCounts(**{**base, **kw})


def test_backlog_warns_on_new_drops_and_refusals_only() -> None:
    b = BacklogHealth()
    assert b(counts()).level == OK
    h = b(counts(dropped_frames=1500, dropped_overflow=3, queue_max_depth=3))
    assert h.level == WARN and "1500 frames dropped" in h.message
    assert b(counts(dropped_frames=1500, dropped_overflow=3, queue_max_depth=3)).level == OK  # nothing new
    h = b(counts(dropped_frames=1500, queue_max_depth=3, rejected={"nonfinite": 2, "before_window": 400}))
    assert h.level == WARN and "2 nonfinite" in h.message and "before_window" not in h.message
    assert h.values["frames refused (nonfinite)"] == 2
    assert b(counts(queue_max_depth=4)).level == ERROR


def test_model_and_bundle_levels() -> None:
    assert (
        model_health(lifecycle_state="unconfigured", backend=None, model=None, engine_state=None).level
        == ERROR
    )
    ok = model_health(lifecycle_state="inactive", backend="onnxruntime", model="m", engine_state="loaded")
    assert ok.level == OK and ok.values["engine holds"] == "nothing"
    bad = model_health(
        lifecycle_state="active",
        backend="onnxruntime",
        model="m",
        engine_state="awake",
        errors=2,
        last_error="InputError: x",
    )
    assert bad.level == WARN and "InputError" in bad.message
    running = {"lifecycle_state": "active", "backend": "onnxruntime", "model": "m", "engine_state": "awake"}
    knock = "knock on axis 1 not cut out (...): not scored"
    two = model_health(**running, knock_unscored=5, unwatched_streak=2, last_unscored=knock)
    assert two.level == OK and two.values["not scored (knock)"] == 5  # scored in between: still watched
    three = model_health(**running, knock_unscored=5, unwatched_streak=3, last_unscored=knock)
    assert three.level == WARN and "last 3 batches not scored" in three.message and "axis 1" in three.message
    assert bundle_health(version=None, key_id=None, source=None).level == STALE
    r = bundle_health(
        version=None, key_id=None, source="b.yaml", refused_reason="bad_signature", refused_detail="no"
    )
    assert r.level == ERROR and r.values["refused"] == "bad_signature"
    assert bundle_health(version=3, key_id="ab", source="b", expired=True).level == WARN
    assert bundle_health(version=3, key_id="ab", source="b", dev_key=True).level == WARN
    assert bundle_health(version=3, key_id="ab", source="b").level == OK


def test_task_fills_a_status_and_survives_a_broken_check() -> None:
    rec = HealthTask("bundle", lambda: Health(WARN, "old", {"version": 3, "ratio": math.nan})).run(
        StatusRecord()
    )
    assert isinstance(rec, StatusRecord)
    assert (rec.level, rec.message, rec.values) == (WARN, "old", [("version", "3"), ("ratio", "nan")])
    broken = HealthTask("x", lambda: 1 / 0).run(StatusRecord())  # type: ignore[arg-type, return-value]
    assert (
        isinstance(broken, StatusRecord) and broken.level == ERROR and "ZeroDivisionError" in broken.message
    )


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Hooks:
    def __init__(self, clock: Clock, fail: str = "") -> None:
        self.clock, self.fail = clock, fail
        self.calls: list[tuple[str, int, float]] = []

    def _rec(self, what: str, w: SampleWindow) -> None:
        self.calls.append((what, w.period, self.clock.t))
        if what == self.fail:
            raise RuntimeError(f"{what} broke")

    def open_sampling(self, w: SampleWindow) -> None:
        self._rec("open", w)

    def close_sampling(self, w: SampleWindow) -> None:
        self._rec("close", w)

    def infer_once(self, w: SampleWindow) -> None:
        self._rec("infer", w)
        self.clock.t += 0.02  # wake + infer + sleep take a moment

    def held_resources(self) -> tuple[str, ...]:
        return ()


def run_driver(driver: DutyCycleDriver, clock: Clock, until: float) -> None:
    nxt = driver.start()
    while nxt is not None and nxt < until:
        clock.t = max(clock.t, nxt)
        nxt = driver.step()


def test_driver_runs_the_demo_sequence_on_the_scheduler_grid() -> None:
    clock = Clock(100.0)
    events: list[dict[str, Any]] = []
    sched = DutyCycleScheduler(5.0, 60.0, clock=clock, epoch=0.0)
    hooks = Hooks(clock)
    mon = DutyCycleMonitor(60.0)
    driver = DutyCycleDriver(sched, hooks, EventBus(events.append, mon), lead_s=0.1, tail_s=0.05)
    run_driver(driver, clock, until=290.0)
    assert [c[:2] for c in hooks.calls[:3]] == [("open", 2), ("close", 2), ("infer", 2)]
    opens = [t for what, _, t in hooks.calls if what == "open"]
    closes = [t for what, _, t in hooks.calls if what == "close"]
    assert opens == pytest.approx([119.9, 179.9, 239.9])
    assert closes == pytest.approx([125.05, 185.05, 245.05])
    sleeps = [e for e in events if e["event"] == "sleep"]
    assert [s["awake_s"] for s in sleeps] == pytest.approx([5.17] * 3)
    h = duty_cycle_health(
        mon.snapshot(),
        sample_s=5.0,
        period_s=60.0,
        period_tolerance_s=1.0,
        awake_fraction_max=0.125,
        now=clock.t,
    )
    assert h.level == OK and driver.state is DriverState.WAITING


def test_driver_skips_a_window_it_is_too_late_for_and_survives_a_failing_hook() -> None:
    clock = Clock(0.0)
    events: list[dict[str, Any]] = []
    sched = DutyCycleScheduler(5.0, 60.0, clock=clock, epoch=0.0)
    hooks = Hooks(clock, fail="infer")
    driver = DutyCycleDriver(sched, hooks, EventBus(events.append), lead_s=0.1)
    first = driver.start()
    assert first == pytest.approx(59.9)
    clock.t = 126.0  # the process stalled past the whole window of period 1 (and period 2's)
    nxt = driver.step()
    assert driver.missed == 1 and nxt == pytest.approx(179.9)
    clock.t = 179.9
    driver.step()
    clock.t = 185.0
    driver.step()  # infer raises: logged as an error event, and the cycle still sleeps
    assert driver.errors == 1
    names = [e["event"] for e in events]
    # A stall longer than a period reads as a forward clock jump (no second clock tells them apart).
    assert names == ["clock_jump", "error", "wake", "error", "sleep"]
    assert "infer broke" in events[3]["message"] and "Traceback" in events[3]["traceback"]
    with pytest.raises(ValueError, match="shorter than the sleep"):
        DutyCycleDriver(sched, hooks, EventBus(), lead_s=50.0, tail_s=10.0)
