"""The demo end to end: the real model on the real path, on a simulated robot, checked through its trace."""

from __future__ import annotations

import json
import os
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


def test_the_alarm_names_the_simulated_outer_race_fault(faulty_run: tuple[dict, list[dict]]) -> None:
    """The example bundle states the robot's bearing (6205) and the demo knows its wheel speed (24 Hz)."""
    summary, events = faulty_run
    (alarm,) = [e for e in events if e["event"] == "alarm"]
    assert alarm["location"] == "outer_race" and alarm["shaft_hz"] == 24.0
    assert alarm["frequency_hz"] == pytest.approx(86.0, rel=0.02)  # the robot's defect: BPFO at 24 Hz
    assert summary["alarm_diagnosis"]["location"] == "outer_race"


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
        [
            sys.executable,
            "-m",
            "vibration_anomaly",
            "demo",
            "--hours",
            "0.5",
            "--fault-after",
            "0.25",
            "--json",
            "--trace",
            str(trace),
        ],
        capture_output=True,
        text=True,
        timeout=120,
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
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "--fault-after" in proc.stderr


def test_cli_refuses_a_run_shorter_than_one_period() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vibration_anomaly", "demo", "--hours", "0.005"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "shorter than one duty period" in proc.stderr


# ---------------------------------------------------------------- the first hour of a new user


def _demo(*argv: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vibration_anomaly", "demo", *argv],
        capture_output=True,
        text=True,
        timeout=180,
        **kw,
    )  # type: ignore[call-overload]


def test_text_output_says_what_it_simulates_and_explains_the_timeline() -> None:
    proc = _demo("--hours", "0.2", "--hiccups", "1")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr  # captured: no progress, no log lines
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("Simulating 0.2 h of one robot (3-axis IMU at 1000 Hz, seed 0)")
    head = "\n".join(lines[:10])
    assert "fault     outer-race bearing defect from 00:06:00" in head  # halfway through the run by default
    assert "hiccups   1 connectivity loss;" in head
    assert "signed bundle v" in head and "sample 5 s, infer once, sleep 55 s (period 60 s)" in head
    for column in ("score/threshold", "verdict", "dropped frames"):
        assert any(ln.startswith(f"  {column}") for ln in lines[:10]), column
    assert sum(1 for ln in lines if ln.startswith("cycle ")) == 12
    tail = "\n".join(lines[-6:])
    assert "contract 8.33 % sampling (5 s of 60 s) + wake/infer/sleep overhead" in tail
    assert "limit 12.5 % (bundle health.awake_fraction_max): within it." in tail


def test_captured_json_run_is_clean_even_when_long(tmp_path: Path) -> None:
    """An hour or more used to draw progress on stderr exactly when it was captured."""
    proc = _demo("--hours", "1", "--fault-after", "none", "--json")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    s = json.loads(proc.stdout)
    assert s["awake_fraction_max"] == 0.125 and s["periods"] == 60 and s["fault_start_s"] is None


def test_progress_goes_to_a_terminal_only() -> None:
    """stdout piped (``demo | head``) and stderr a terminal: the progress is drawn there, the pipe stays clean."""
    import pty

    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "vibration_anomaly", "demo", "--hours", "1", "--json"],
            stdout=subprocess.PIPE,
            stderr=slave,
            text=True,
            timeout=180,
        )
        os.close(slave)
        slave = -1
        seen = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO once the writer side is closed and drained
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert proc.returncode == 0
    assert b"simulated  1.00 h of 1 h (100%)" in seen
    assert "\rsimulated" not in proc.stdout and json.loads(proc.stdout)["periods"] == 60


def test_a_failed_run_keeps_the_old_trace_and_leaves_no_temp(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    trace.write_text('{"t": 0, "event": "wake"}\n')
    with pytest.raises(ValueError, match="shorter than one duty period"):
        run_demo(DemoOptions(hours=0.001, trace=trace))
    assert trace.read_text() == '{"t": 0, "event": "wake"}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["trace.jsonl"]
    proc = _demo("--hours", "0.005", "--trace", str(trace))
    assert proc.returncode == 2 and proc.stdout == "" and "shorter than one duty period" in proc.stderr
    assert trace.read_text() == '{"t": 0, "event": "wake"}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["trace.jsonl"]


def test_a_fault_after_the_end_is_not_reported_missed() -> None:
    from vibration_anomaly.sim.demo_text import format_summary

    result = run_demo(DemoOptions(hours=0.25, fault_after_h=1.0, hiccups=0))
    text = format_summary({**result.summary, "awake_fraction_max": 0.125})
    assert "NOT detected" not in text
    assert "Fault set to start at 01:00:00, after the run ended (00:15:00): nothing to detect." in text
    over = format_summary({**result.summary, "awake_fraction_max": 0.05})
    assert "ABOVE it" in over


def test_cli_refuses_a_non_finite_fault_time() -> None:
    for bad in ("nan", "inf"):
        proc = _demo("--fault-after", bad)
        assert proc.returncode == 2 and "--fault-after" in proc.stderr and "Traceback" not in proc.stderr
