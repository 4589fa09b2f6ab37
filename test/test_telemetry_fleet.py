"""Fleets through the real pusher and real servers, in each design of docs/FLEET.md.

Each robot's history (healthy, or one fault from the incident story) goes
through ``RobotMetrics``; its ``PushgatewayPusher`` thread pushes to the
destination its signed bundle names: one Pushgateway (400 robots, the seed's
design), the shard its id hashes to among three Pushgateways (600 robots), or
VictoriaMetrics' Prometheus import endpoint (600 robots). Prometheus scrapes
the gateways every second, or vmalert queries the store, and evaluates the
shipped rules with every ``for:`` shortened to 1 s (the only change, see
``compress_for_durations``). The tests then ask which alerts fire and require
exactly the faulty robots, each with its own alert, and none of the healthy
ones even pending. A last test takes a shard down: one shard alert, no
silence alert for any of its robots, while a silent robot elsewhere still fires.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bundle_testkit import write_test_bundle
from prometheus_client import CollectorRegistry

from vibration_anomaly.bundle import TelemetrySettings, load_verified_bundle
from vibration_anomaly.telemetry import fleetsim
from vibration_anomaly.telemetry.localservers import (
    PROMETHEUS_BINARIES,
    PUSHGATEWAY_BINARIES,
    VICTORIAMETRICS_BINARIES,
    VMALERT_BINARIES,
    Prometheus,
    Pushgateway,
    VictoriaMetrics,
    VmAlert,
    compress_for_durations,
    find_binary,
)
from vibration_anomaly.telemetry.metrics import RobotMetrics
from vibration_anomaly.telemetry.pusher import PushgatewayPusher, pusher_from_settings
from vibration_anomaly.telemetry.routing import pick_shard

CONFIG = Path(__file__).resolve().parents[1] / "config" / "prometheus"
RULES = CONFIG / "vibration_anomaly_rules.yml"
DASHBOARD = CONFIG / "grafana_dashboard.json"
N_ROBOTS = 400
FAULTY_PER_KIND = 5
SETTLE_S = 120.0
"""The longest a wait-until loop below may take. Each ends as soon as its condition holds; 60 s was
not enough for the silent-robot alerts of 400 robots on a 2-core machine loaded with other jobs."""
# RobotSilent fires after five push intervals. Healthy robots push every 60 s as in the field
# (so none can look silent during the test); the robots that die use 1 s, so their silence shows
# after 5 s. A Pushgateway checks every push against all groups it holds, so a push costs more
# the larger the fleet (see bench/bench_pushgateway.py): pushing 400 robots every second would
# measure the gateway's limit, not our rules.
PUSH_INTERVAL_S = 60.0
SILENT_INTERVAL_S = 1.0
STABLE_S = 12.0
"""How long the expected alerts must hold before the final check. On a loaded machine a silent robot's
last push can reach Prometheus seconds after its pusher stopped (seen: an alert firing, then resolved for
a push 5 s old, with the pusher's thread gone): its silence then restarts and its alert fires again five
intervals later. Two such periods and a margin."""
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


def _firing(alerts_of: Callable[[], list[dict]]) -> tuple[set[tuple[str, str]], list[dict]]:
    alerts = alerts_of()
    firing = {
        (a["labels"].get("robot_id", ""), a["labels"]["alertname"]) for a in alerts if a["state"] == "firing"
    }
    return firing, alerts


def _scrape_health(query: Callable[[str], list[dict]]) -> list[str]:
    """Per scrape target: up, and the last scrape's duration and samples (what a failed settle needs)."""
    out = []
    for name in ("up", "scrape_duration_seconds", "scrape_samples_scraped"):
        for r in query(name):
            out.append(f"{name}{{{r['metric'].get('instance', '')}}}={r['value'][1]}")
    return out


def _robot_health(
    query: Callable[[str], list[dict]], missing: set[tuple[str, str]], pushers: dict[str, PushgatewayPusher]
) -> dict[str, str]:
    """Per robot with a missing alert: its push age and interval as the store sees them, and its pusher."""
    out = {}
    for robot, _ in sorted(missing):
        if not robot:
            continue
        age = query(f'time() - max(push_time_seconds{{robot_id="{robot}"}})')
        interval = query(f'max(vibration_anomaly_push_interval_seconds{{robot_id="{robot}"}})')
        st = pushers[robot].stats if robot in pushers else None
        out[robot] = (
            f"age={age[0]['value'][1] if age else None} interval={interval[0]['value'][1] if interval else None} "
            f"pushes={st.successes if st else None}/{st.attempts if st else None} "
            f"running={pushers[robot].running if robot in pushers else None}"
        )
    return out


def _verified_telemetry(tmp: Path, **telemetry: Any) -> TelemetrySettings:
    """The telemetry section of a bundle signed and verified as on a robot (a throwaway key)."""
    files = write_test_bundle(tmp, telemetry=telemetry)
    return load_verified_bundle(files.bundle, files.trust_dir, firmware_path=files.firmware).telemetry


def _run_fleet(
    plans: list[fleetsim.RobotPlan],
    make_pusher: Callable[[int, fleetsim.RobotPlan, RobotMetrics], PushgatewayPusher],
    query: Callable[[str], list[dict]],
    alerts_of: Callable[[], list[dict]],
    push_twice: bool = False,
) -> None:
    """Push the fleet, wait for the alerts to settle, and require exactly the faulty robots flagged.

    ``push_twice``: before the dashboard check, every live robot pushes once more
    (``request_push``). A store holds a sample per push, not per scrape, so the
    dashboard's ``rate()`` panels need a robot's second push, as they would after
    one interval in the field.
    """
    n_robots = len(plans)
    expected = {(p.robot_id, alert) for p in plans for alert in fleetsim.EXPECTED_ALERTS[p.fault]}
    faulty_ids = {p.robot_id for p in plans if p.fault != fleetsim.HEALTHY}
    assert {a for _, a in expected} == {a for f in fleetsim.FAULTS for a in fleetsim.EXPECTED_ALERTS[f]}

    pushers: dict[str, PushgatewayPusher] = {}
    for i, plan in enumerate(plans):
        metrics = RobotMetrics(CollectorRegistry())
        fleetsim.drive(metrics, plan)
        pushers[plan.robot_id] = make_pusher(i, plan, metrics)
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
        while any(p.stats.successes == 0 for p in pushers.values()) and time.monotonic() - started < 60:
            time.sleep(0.1)

        def robots_seen() -> int:
            seen = query(f'count(push_time_seconds{{job="{JOB}", robot_id!=""}})')
            return int(float(seen[0]["value"][1])) if seen else 0

        firing: set[tuple[str, str]] = set()
        alerts: list[dict] = []
        deadline = time.monotonic() + SETTLE_S
        held_since = None
        while time.monotonic() < deadline:
            firing, alerts = _firing(alerts_of)
            if firing == expected and robots_seen() == n_robots:
                held_since = held_since or time.monotonic()
                if time.monotonic() - held_since >= STABLE_S:
                    break
            else:
                held_since = None
            time.sleep(1.0)
        settled = time.monotonic() - started
        # Let a few more scrapes and evaluations pass: a late false positive must show up here.
        time.sleep(3.0)
        firing, alerts = _firing(alerts_of)
        print(f"fleet of {n_robots}: alerts settled after {settled:.1f}s", file=sys.stderr)

        by_robot: dict[str, set[str]] = defaultdict(set)
        for robot, alert in firing:
            by_robot[robot].add(alert)
        wrong = {r: a for r, a in by_robot.items() if r not in faulty_ids}
        assert not wrong, f"{len(wrong)} healthy robots flagged, e.g. {sorted(wrong.items())[:5]}"
        missing = expected - firing
        extra = firing - expected
        assert not missing and not extra, (
            f"missing={sorted(missing)} extra={sorted(extra)}; robots seen {robots_seen()} of {n_robots}; "
            f"scrapes: {_scrape_health(query)}; missing robots: {_robot_health(query, missing, pushers)}"
        )
        # Not even pending on a healthy robot.
        healthy_touched = {a["labels"].get("robot_id") for a in alerts} - faulty_ids
        assert not healthy_touched, f"healthy robots with pending alerts: {sorted(healthy_touched)}"

        # The store or Prometheus holds every robot, with the identity from the grouping key.
        assert robots_seen() == n_robots
        refused = query('vibration_anomaly_bundle_refused{reason="mismatch"}')
        assert len(refused) == FAULTY_PER_KIND
        if push_twice:
            live = [p for p in pushers.values() if p.running]
            for p in live:
                p.request_push()
            deadline = time.monotonic() + SETTLE_S
            while any(p.stats.successes < 2 for p in live) and time.monotonic() < deadline:
                time.sleep(0.2)
        # Every query of the shipped Grafana dashboard parses and shows this fleet (recording rules
        # are evaluated every second: give them a few evaluations after the last push).
        for title, expr in _dashboard_queries():
            shown = query(expr.replace("$job", ".*"))
            deadline = time.monotonic() + 20
            while not shown and time.monotonic() < deadline:
                time.sleep(0.5)
                shown = query(expr.replace("$job", ".*"))
            assert shown, f"dashboard panel {title!r} shows nothing: {expr}"
        # Every robot's latest push got through. A push that failed on a loaded machine (a timeout, a
        # reset connection) is retried by design (backoff); what must hold is that none is left failing.
        deadline = time.monotonic() + SETTLE_S
        while any(p.stats.consecutive_failures for p in pushers.values()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert all(p.stats.successes >= 1 and p.stats.consecutive_failures == 0 for p in pushers.values())
        retried = sum(p.stats.failures for p in pushers.values())
        print(f"fleet of {n_robots}: {retried} pushes failed and were retried", file=sys.stderr)
    finally:
        # The shutdown push is covered in test_telemetry_pusher; hundreds of them would only time the gateway.
        for pusher in pushers.values():
            pusher.stop(final_push=False, timeout_s=1.0)


def test_fleet_of_400_flags_exactly_the_faulty_robots(stack) -> None:
    gateway, prom = stack
    plans = fleetsim.fleet_plans(N_ROBOTS, FAULTY_PER_KIND)
    assert len({p.robot_id for p in plans if p.fault != fleetsim.HEALTHY}) == FAULTY_PER_KIND * len(
        fleetsim.FAULTS
    )

    def make(i: int, plan: fleetsim.RobotPlan, metrics: RobotMetrics) -> PushgatewayPusher:
        return PushgatewayPusher(
            metrics,
            url=gateway.url,
            job=JOB,
            robot_id=plan.robot_id,
            interval_s=SILENT_INTERVAL_S if plan.fault == fleetsim.SILENT else PUSH_INTERVAL_S,
            timeout_s=20.0,
            first_delay_s=FIRST_PUSH_SPREAD_S * i / len(plans),
        )

    _run_fleet(plans, make, prom.query, prom.alerts)


N_SHARDED = 600
N_SHARDS = 3


def _bundle_pushers(tmp: Path, n: int, **destination: Any) -> Callable[..., PushgatewayPusher]:
    """Pushers built by ``pusher_from_settings`` from signed bundles, as the node builds them.

    Healthy robots run a bundle with the field's 60 s interval; the robots that die run one with
    1 s, so their silence (five intervals) shows within seconds.
    """
    field = _verified_telemetry(tmp / "field", push_interval_s=PUSH_INTERVAL_S, **destination)
    fast = _verified_telemetry(tmp / "fast", push_interval_s=SILENT_INTERVAL_S, **destination)

    def make(i: int, plan: fleetsim.RobotPlan, metrics: RobotMetrics) -> PushgatewayPusher:
        settings = fast if plan.fault == fleetsim.SILENT else field
        # First pushes spread as in the 400-robot test: the same pushes per second at any fleet size.
        return pusher_from_settings(
            metrics, settings, plan.robot_id, timeout_s=20.0, first_delay_s=FIRST_PUSH_SPREAD_S * i / N_ROBOTS
        )

    return make


def test_sharded_fleet_flags_exactly_the_faulty_robots(tmp_path: Path) -> None:
    rules = compress_for_durations(RULES, tmp_path / "rules.yml", "1s")
    # Shards run as docs/FLEET.md deploys them: without the per-push consistency check, whose cost
    # grows with the groups a gateway holds.
    gateways = [Pushgateway(extra_args=("--push.disable-consistency-check",)) for _ in range(N_SHARDS)]
    prom: Prometheus | None = None
    try:
        for g in gateways:
            g.start()
        urls = [g.url for g in gateways]
        prom = Prometheus(urls, [rules], scrape_interval="1s", evaluation_interval="1s").start()
        plans = fleetsim.fleet_plans(N_SHARDED, FAULTY_PER_KIND)
        _run_fleet(
            plans, _bundle_pushers(tmp_path, len(plans), pushgateway_shards=urls), prom.query, prom.alerts
        )
        # Each robot landed on the shard its id hashes to, and on no other; every shard holds its share.
        for g in gateways:
            held = {grp["labels"]["robot_id"] for grp in g.groups()}
            assert held == {p.robot_id for p in plans if pick_shard(p.robot_id, urls) == g.url}
            assert len(held) > N_SHARDED / N_SHARDS / 2
        shards = prom.query('count by (shard) (push_time_seconds{robot_id!=""})')
        assert len(shards) == N_SHARDS
    finally:
        if prom is not None:
            prom.stop()
        for g in gateways:
            g.stop()


@pytest.mark.skipif(
    not (find_binary(VICTORIAMETRICS_BINARIES) and find_binary(VMALERT_BINARIES)),
    reason="needs the Debian package victoria-metrics (victoria-metrics and vmalert; apt-get install victoria-metrics)",
)
def test_victoriametrics_fleet_flags_exactly_the_faulty_robots_with_the_same_rules(tmp_path: Path) -> None:
    rules = compress_for_durations(RULES, tmp_path / "rules.yml", "1s")
    with VictoriaMetrics() as vm:
        vm.start()
        with VmAlert(vm.url, [rules], evaluation_interval="1s") as vmalert:
            vmalert.start()
            plans = fleetsim.fleet_plans(N_SHARDED, FAULTY_PER_KIND)
            _run_fleet(
                plans,
                _bundle_pushers(tmp_path, len(plans), import_url=vm.url),
                vm.query,
                vmalert.alerts,
                push_twice=True,
            )


def test_a_shard_down_raises_one_alert_and_no_robot_storm(tmp_path: Path) -> None:
    """Shard 0 dies together with one robot of shard 1: that robot's silence fires, shard 0's robots' do not."""
    rules = compress_for_durations(RULES, tmp_path / "rules.yml", "1s")
    gateways = [Pushgateway(), Pushgateway()]
    prom: Prometheus | None = None
    pushers: list[PushgatewayPusher] = []
    try:
        for g in gateways:
            g.start()
        urls = [g.url for g in gateways]
        prom = Prometheus(urls, [rules], scrape_interval="1s", evaluation_interval="1s").start()
        # Every robot here pushes every second, so any silence shows after 5 s.
        fast = _verified_telemetry(tmp_path, pushgateway_shards=urls, push_interval_s=SILENT_INTERVAL_S)
        plans = fleetsim.fleet_plans(40, 0)
        on = {url: [p for p in plans if pick_shard(p.robot_id, urls) == url] for url in urls}
        assert on[urls[0]] and len(on[urls[1]]) >= 2
        for plan in plans:
            metrics = RobotMetrics(CollectorRegistry())
            fleetsim.drive(metrics, plan)
            pushers.append(
                pusher_from_settings(
                    metrics, fast, plan.robot_id, timeout_s=2.0, first_delay_s=0.0, backoff_max_s=4.0
                )
            )
        for p in pushers:
            p.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            seen = prom.query(f'count(push_time_seconds{{job="{JOB}", robot_id!=""}})')
            if seen and int(float(seen[0]["value"][1])) == len(plans):
                break
            time.sleep(0.5)
        dead_robot = on[urls[1]][0].robot_id
        victim = next(p for p in pushers if p.robot_id == dead_robot)
        victim.stop(final_push=False)
        gateways[0].stop()
        shard0 = urllib.parse.urlparse(urls[0]).netloc

        firing: set[tuple[str, str]] = set()
        alerts: list[dict] = []
        deadline = time.monotonic() + SETTLE_S
        want = {(dead_robot, "VibrationAnomalyRobotSilent"), ("", "VibrationAnomalyTelemetryShardDown")}
        while time.monotonic() < deadline:
            firing, alerts = _firing(prom.alerts)
            if want <= firing:
                break
            time.sleep(0.5)
        # The dead robot went silent at the same moment as shard 0: by now its robots would have fired too.
        time.sleep(3.0)
        firing, alerts = _firing(prom.alerts)
        assert firing == want, sorted(firing)
        shard_alerts = [a for a in alerts if a["labels"]["alertname"] == "VibrationAnomalyTelemetryShardDown"]
        assert [a["labels"]["shard"] for a in shard_alerts] == [shard0]
        touched = {a["labels"].get("robot_id") for a in alerts} - {None, dead_robot}
        assert not touched, f"robots of the down shard with alerts (a storm): {sorted(touched)}"
        # The robots of the dead shard kept trying (bounded backoff), without blocking anything.
        assert all(p.stats.failures > 0 for p in pushers if p.robot_id in {q.robot_id for q in on[urls[0]]})
    finally:
        for p in pushers:
            p.stop(final_push=False, timeout_s=1.0)
        if prom is not None:
            prom.stop()
        for g in gateways:
            g.stop()
