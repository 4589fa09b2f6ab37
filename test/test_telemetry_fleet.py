"""A 400-robot fleet through the real pusher, a real Pushgateway and a real Prometheus.

Each robot's history (healthy, or one fault from the incident story) goes
through ``RobotMetrics``; its ``PushgatewayPusher`` thread pushes to a
Pushgateway on loopback; Prometheus scrapes it every second and evaluates the
shipped rules with every ``for:`` shortened to 1 s (the only change, see
``compress_for_durations``). The test then asks Prometheus's HTTP API which
alerts fire and requires exactly the faulty robots, each with its own alert.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from vibration_anomaly.telemetry import fleetsim
from vibration_anomaly.telemetry.localservers import (
    PROMETHEUS_BINARIES,
    PUSHGATEWAY_BINARIES,
    Prometheus,
    Pushgateway,
    compress_for_durations,
    find_binary,
)
from vibration_anomaly.telemetry.metrics import RobotMetrics
from vibration_anomaly.telemetry.pusher import PushgatewayPusher

CONFIG = Path(__file__).resolve().parents[1] / "config" / "prometheus"
RULES = CONFIG / "vibration_anomaly_rules.yml"
DASHBOARD = CONFIG / "grafana_dashboard.json"
N_ROBOTS = 400
FAULTY_PER_KIND = 5
# RobotSilent fires after five push intervals. Healthy robots push every 60 s as in the field
# (so none can look silent during the test); the robots that die use 1 s, so their silence shows
# after 5 s. A Pushgateway checks every push against all groups it holds, so a push costs more
# the larger the fleet (see bench/bench_pushgateway.py): pushing 400 robots every second would
# measure the gateway's limit, not our rules.
PUSH_INTERVAL_S = 60.0
SILENT_INTERVAL_S = 1.0
FIRST_PUSH_SPREAD_S = 4.0
JOB = "vibration_anomaly"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (find_binary(PUSHGATEWAY_BINARIES) and find_binary(PROMETHEUS_BINARIES)),
        reason="needs the Debian packages prometheus and prometheus-pushgateway (apt-get install ...)",
    ),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    rules = compress_for_durations(RULES, tmp_path_factory.mktemp("rules") / "rules.yml", "1s")
    gateway = Pushgateway().start()
    try:
        prom = Prometheus(gateway.url, [rules], scrape_interval="1s", evaluation_interval="1s").start()
    except Exception:
        gateway.stop()
        raise
    yield gateway, prom
    prom.stop()
    gateway.stop()


def _dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]


def _firing(prom: Prometheus) -> tuple[set[tuple[str, str]], list[dict]]:
    alerts = prom.alerts()
    firing = {(a["labels"].get("robot_id", ""), a["labels"]["alertname"]) for a in alerts if a["state"] == "firing"}
    return firing, alerts


def test_fleet_of_400_flags_exactly_the_faulty_robots(stack) -> None:
    gateway, prom = stack
    plans = fleetsim.fleet_plans(N_ROBOTS, FAULTY_PER_KIND)
    expected = {(p.robot_id, alert) for p in plans for alert in fleetsim.EXPECTED_ALERTS[p.fault]}
    faulty_ids = {p.robot_id for p in plans if p.fault != fleetsim.HEALTHY}
    assert len(faulty_ids) == FAULTY_PER_KIND * len(fleetsim.FAULTS)
    assert {a for _, a in expected} == {a for f in fleetsim.FAULTS for a in fleetsim.EXPECTED_ALERTS[f]}

    pushers: dict[str, PushgatewayPusher] = {}
    for i, plan in enumerate(plans):
        metrics = RobotMetrics(CollectorRegistry())
        fleetsim.drive(metrics, plan)
        pushers[plan.robot_id] = PushgatewayPusher(
            metrics, url=gateway.url, job=JOB, robot_id=plan.robot_id,
            interval_s=SILENT_INTERVAL_S if plan.fault == fleetsim.SILENT else PUSH_INTERVAL_S,
            timeout_s=20.0, first_delay_s=FIRST_PUSH_SPREAD_S * i / len(plans),
        )
    started = time.monotonic()
    try:
        for pusher in pushers.values():
            pusher.start()
        # Silent robots die after their first push (no shutdown push: they just stop).
        silent = [pushers[p.robot_id] for p in plans if p.fault == fleetsim.SILENT]
        while any(s.stats.successes == 0 for s in silent) and time.monotonic() - started < 30:
            time.sleep(0.05)
        for s in silent:
            s.stop(final_push=False)
        # stop() is bounded, so a push already in flight to the (busy) gateway may still land after it
        # returns; the robot is silent only once its thread is gone, else that late push resets the alert.
        while any(s.running for s in silent) and time.monotonic() - started < 40:
            time.sleep(0.05)
        assert all(s.stats.successes >= 1 and not s.running for s in silent)
        while any(p.stats.successes == 0 for p in pushers.values()) and time.monotonic() - started < 40:
            time.sleep(0.1)

        def robots_seen() -> int:
            seen = prom.query(f'count(push_time_seconds{{job="{JOB}", robot_id!=""}})')
            return int(float(seen[0]["value"][1])) if seen else 0

        firing: set[tuple[str, str]] = set()
        alerts: list[dict] = []
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            firing, alerts = _firing(prom)
            if firing == expected and robots_seen() == N_ROBOTS:
                break
            time.sleep(1.0)
        settled = time.monotonic() - started
        # Let a few more scrapes and evaluations pass: a late false positive must show up here.
        time.sleep(3.0)
        firing, alerts = _firing(prom)
        print(f"fleet of {N_ROBOTS}: alerts settled after {settled:.1f}s", file=sys.stderr)

        by_robot: dict[str, set[str]] = defaultdict(set)
        for robot, alert in firing:
            by_robot[robot].add(alert)
        wrong = {r: a for r, a in by_robot.items() if r not in faulty_ids}
        assert not wrong, f"{len(wrong)} healthy robots flagged, e.g. {sorted(wrong.items())[:5]}"
        missing = expected - firing
        extra = firing - expected
        assert not missing and not extra, f"missing={sorted(missing)} extra={sorted(extra)}"
        # Not even pending on a healthy robot.
        healthy_touched = {a["labels"].get("robot_id") for a in alerts} - faulty_ids
        assert not healthy_touched, f"healthy robots with pending alerts: {sorted(healthy_touched)}"

        # Prometheus holds every robot, with the identity from the grouping key.
        assert robots_seen() == N_ROBOTS
        refused = prom.query('vibration_anomaly_bundle_refused{reason="mismatch"}')
        assert len(refused) == FAULTY_PER_KIND
        # Every query of the shipped Grafana dashboard parses and shows this fleet.
        for title, expr in _dashboard_queries():
            assert prom.query(expr.replace("$job", ".*")), f"dashboard panel {title!r} shows nothing: {expr}"
        # Every robot's pusher got through, without a failed push.
        assert all(p.stats.failures == 0 and p.stats.successes >= 1 for p in pushers.values())
    finally:
        # The shutdown push is covered in test_telemetry_pusher; 400 of them would only time the gateway.
        for pusher in pushers.values():
            pusher.stop(final_push=False, timeout_s=1.0)
