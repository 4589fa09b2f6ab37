"""The demo end to end: the real model on the real path, on a simulated robot, checked through its trace."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vibration_anomaly.core.events import read_events
from vibration_anomaly.sim.demo import DemoOptions, run_demo


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list[dict]]:
    trace = tmp_path_factory.mktemp("demo") / "trace.jsonl"
    result = run_demo(DemoOptions(hours=2.0, fault_after_h=1.0, seed=0, hiccups=3, trace=trace))
    return result.summary, read_events(trace)


def test_alarm_after_the_fault_and_not_before(faulty_run: tuple[dict, list[dict]]) -> None:
    summary, events = faulty_run
    alarms = [e for e in events if e["event"] == "alarm"]
    assert len(alarms) == 1, "the alarm is latched: raised once"
    assert alarms[0]["t"] > 3600.0
    assert summary["alarm_delay_s"] < 15 * 60, "a growing fault is caught within minutes"
    assert not any(e["above"] for e in events if e["event"] == "infer" and e["batch_t1"] < 3600.0)


def test_trace_holds_the_duty_cycle_contract_every_hour(faulty_run: tuple[dict, list[dict]]) -> None:
    _, events = faulty_run
    infers = [e for e in events if e["event"] == "infer"]
    for hour in range(2):
        n = sum(1 for e in infers if hour * 3600 <= e["t"] < (hour + 1) * 3600)
        assert 59 <= n <= 61, f"hour {hour}: {n} inferences"
    gaps = [b["t"] - a["t"] for a, b in zip(infers, infers[1:], strict=False)]
    assert all(abs(g - 60.0) <= 1.0 for g in gaps), max(gaps, key=lambda g: abs(g - 60))
    for e in infers:
        # Never a batch whose last sample is older than one duty period; each batch is from this window.
        assert e["t"] - e["batch_t1"] < 60.0
        window_start = (e["t"] // 60) * 60
        assert e["batch_t0"] >= window_start


def test_hiccup_bursts_are_dropped_and_counted_not_replayed(faulty_run: tuple[dict, list[dict]]) -> None:
    summary, events = faulty_run
    drops = [e for e in events if e["event"] == "drop"]
    assert {d["reason"] for d in drops} >= {"keep_last", "before_window"}
    for start, end in summary["hiccups"]:
        # The burst lands in the window that opens just before the link returns ...
        burst = [d for d in drops if start <= d["t"] <= end + 5]
        # Everything buffered is dropped except the 1.5 s of it that fell inside the window.
        assert sum(d["frames"] for d in burst) == pytest.approx((end - start - 1.5) * 1000, abs=2)
        # ... and that window's inference still used only that window's frames.
        infer = next(e for e in events if e["event"] == "infer" and e["t"] > end)
        assert infer["batch_t0"] >= end - 1.5
    assert summary["dropped_frames"]["keep_last"] + summary["dropped_frames"]["before_window"] == sum(
        d["frames"] for d in drops
    )


def test_engine_holds_nothing_after_each_sleep(faulty_run: tuple[dict, list[dict]]) -> None:
    summary, events = faulty_run
    sleeps = [e for e in events if e["event"] == "sleep"]
    assert len(sleeps) == summary["periods"]
    assert all(s["held"] == [] for s in sleeps)
    assert summary["awake_fraction"] == pytest.approx(5 / 60, rel=0.05)


def test_healthy_robot_raises_no_alarm() -> None:
    result = run_demo(DemoOptions(hours=2.0, fault_after_h=None, seed=7, hiccups=2))
    s = result.summary
    assert s["first_alarm_s"] is None and s["inferences"] == 120 and s["errors"] == 0


def test_cli_json_and_trace(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "vibration_anomaly", "demo", "--hours", "0.5", "--fault-after", "0.25",
         "--json", "--trace", str(trace)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["periods"] == 30 and summary["fault_start_s"] == 900.0
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    assert {e["event"] for e in events} >= {"wake", "infer", "sleep"}
    assert all(isinstance(e["t"], float | int) for e in events)


def test_cli_rejects_a_bad_fault_time() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vibration_anomaly", "demo", "--fault-after", "-3"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and "--fault-after" in proc.stderr


def test_cli_refuses_a_run_shorter_than_one_period() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vibration_anomaly", "demo", "--hours", "0.005"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and "shorter than one duty period" in proc.stderr
