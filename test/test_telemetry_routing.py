"""A robot's telemetry destination: from the signed bundle only, one shard by rendezvous hashing, or a store.

The hashing properties are what make sharding operable: every robot agrees on
its shard without coordination, the fleet spreads evenly, and adding or removing
a shard moves only that shard's share. The import path is checked against a real
VictoriaMetrics (Debian ``victoria-metrics``).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from bundle_testkit import write_test_bundle
from prometheus_client import CollectorRegistry

from vibration_anomaly.bundle import (
    BundleRefused,
    TelemetrySettings,
    check_payload,
    example_dir,
    example_payload,
    load_verified_bundle,
)
from vibration_anomaly.bundle.trust import TrustStore
from vibration_anomaly.errors import InputError
from vibration_anomaly.telemetry import fleetsim
from vibration_anomaly.telemetry.lasttrusted import last_trusted_telemetry, remember_trusted
from vibration_anomaly.telemetry.localservers import (
    PUSHGATEWAY_BINARIES,
    VICTORIAMETRICS_BINARIES,
    Pushgateway,
    VictoriaMetrics,
    find_binary,
    free_port,
)
from vibration_anomaly.telemetry.metrics import RobotMetrics
from vibration_anomaly.telemetry.push_http import import_url_for
from vibration_anomaly.telemetry.pusher import pusher_from_settings
from vibration_anomaly.telemetry.routing import pick_shard, route_for

SHARDS = tuple(f"http://pgw-{k}.site-a:9091" for k in range(8))
IDS = [f"robot-{i:05d}" for i in range(10_000)]
EXAMPLE_TRUST_DIR = example_dir() / "trust"


def test_shard_choice_is_stable_across_processes_and_releases() -> None:
    # Pinned answers: a change of hash would silently move the whole fleet (and orphan every group).
    assert pick_shard("robot-00000", SHARDS) == "http://pgw-2.site-a:9091"
    assert pick_shard("robot-04242", SHARDS) == "http://pgw-3.site-a:9091"
    assert pick_shard("robot-00000", SHARDS[::-1]) == pick_shard("robot-00000", SHARDS)  # order of the list


def test_fleet_spreads_evenly_over_shards() -> None:
    counts = Counter(pick_shard(r, SHARDS) for r in IDS)
    mean = len(IDS) / len(SHARDS)
    assert set(counts) == set(SHARDS)
    assert all(abs(c - mean) < 0.1 * mean for c in counts.values()), counts


def test_adding_a_shard_moves_only_its_share_to_it() -> None:
    grown = (*SHARDS, "http://pgw-8.site-a:9091")
    before = {r: pick_shard(r, SHARDS) for r in IDS}
    after = {r: pick_shard(r, grown) for r in IDS}
    moved = [r for r in IDS if before[r] != after[r]]
    assert all(after[r] == grown[-1] for r in moved)  # nobody moves between old shards
    share = len(moved) / len(IDS)
    assert abs(share - 1 / len(grown)) < 0.02, share


def test_removing_a_shard_moves_only_its_robots() -> None:
    gone = SHARDS[3]
    shrunk = tuple(s for s in SHARDS if s != gone)
    for r in IDS[:2000]:
        old = pick_shard(r, SHARDS)
        assert pick_shard(r, shrunk) == old or old == gone


def test_route_for_each_kind_of_settings() -> None:
    assert route_for(TelemetrySettings(), "r1") is None
    single = route_for(TelemetrySettings(pushgateway_url="http://gw:9091"), "r1")
    assert single is not None and (single.kind, single.url) == ("pushgateway", "http://gw:9091")
    sharded = route_for(TelemetrySettings(pushgateway_shards=SHARDS), "robot-00000")
    assert sharded is not None and sharded.url == pick_shard("robot-00000", SHARDS)
    assert (sharded.shard_index, sharded.shard_count) == (SHARDS.index(sharded.url), len(SHARDS))
    store = route_for(TelemetrySettings(import_url="http://vm:8428"), "r1")
    assert store is not None and (store.kind, store.url, store.job) == (
        "import",
        "http://vm:8428",
        "vibration_anomaly",
    )
    assert import_url_for("http://vm:8428/", "j", "r 1") == (
        "http://vm:8428/api/v1/import/prometheus?extra_label=job%3Dj&extra_label=robot_id%3Dr%201"
    )


def _payload(**telemetry: object) -> bytes:
    payload = example_payload()
    payload["telemetry"] = {**payload["telemetry"], **telemetry}
    return yaml.safe_dump(payload, sort_keys=False).encode()


@pytest.mark.parametrize(
    ("telemetry", "field", "words"),
    [
        ({"push_interval_s": 0.001}, "telemetry.push_interval_s", "1 <= push_interval_s"),
        ({"push_interval_s": 0.5}, "telemetry.push_interval_s", "1 <= push_interval_s"),
        (
            {"pushgateway_shards": ["http://a:9091", "http://a:9091"]},
            "telemetry.pushgateway_shards",
            "distinct",
        ),
        ({"pushgateway_shards": []}, "telemetry.pushgateway_shards", "1..256"),
        (
            {"pushgateway_shards": [f"http://g{k}:9091" for k in range(257)]},
            "telemetry.pushgateway_shards",
            "256",
        ),
        ({"pushgateway_shards": "http://a:9091"}, "telemetry.pushgateway_shards", "list"),
        (
            {"pushgateway_shards": ["http://a:9091", "ftp://b"]},
            "telemetry.pushgateway_shards[1]",
            "http(s)://",
        ),
        ({"import_url": "vm:8428"}, "telemetry.import_url", "http(s)://"),
        (
            {"pushgateway_url": "http://gw:9091", "import_url": "http://vm:8428"},
            "telemetry.import_url",
            "one destination",
        ),
        (
            {"pushgateway_url": "http://gw:9091", "pushgateway_shards": ["http://a:9091"]},
            "telemetry.pushgateway_shards",
            "one destination",
        ),
    ],
)
def test_absurd_signed_telemetry_is_refused_by_name(telemetry: dict, field: str, words: str) -> None:
    with pytest.raises(BundleRefused) as info:
        check_payload(_payload(**telemetry))
    assert info.value.reason == "field" and info.value.field == field
    assert words in str(info.value)


def test_robot_learns_its_shard_from_the_verified_bundle(tmp_path: Path) -> None:
    files = write_test_bundle(tmp_path, telemetry={"pushgateway_shards": list(SHARDS), "push_interval_s": 30})
    bundle = load_verified_bundle(files.bundle, files.trust_dir, firmware_path=files.firmware)
    assert bundle.telemetry.pushgateway_shards == SHARDS and bundle.telemetry.enabled
    assert bundle.telemetry.pushgateway_url is None
    pusher = pusher_from_settings(RobotMetrics(CollectorRegistry()), bundle.telemetry, "robot-04242")
    assert (pusher.url, pusher.protocol, pusher.interval_s) == (
        pick_shard("robot-04242", SHARDS),
        "pushgateway",
        30,
    )
    with pytest.raises(InputError, match="no destination"):
        pusher_from_settings(RobotMetrics(CollectorRegistry()), TelemetrySettings(), "r1")


@pytest.mark.skipif(
    not find_binary(VICTORIAMETRICS_BINARIES),
    reason="needs the Debian package victoria-metrics (apt-get install victoria-metrics)",
)
def test_import_lands_in_victoriametrics_with_the_gateways_labels(tmp_path: Path) -> None:
    files = write_test_bundle(tmp_path, telemetry={"import_url": f"http://127.0.0.1:{free_port()}"})
    dead = load_verified_bundle(files.bundle, files.trust_dir, firmware_path=files.firmware)
    metrics = RobotMetrics(CollectorRegistry())
    fleetsim.drive(metrics, fleetsim.RobotPlan("robot-vm", fault=fleetsim.BEARING_ALARM))
    down = pusher_from_settings(metrics, dead.telemetry, "robot-vm", timeout_s=2.0)
    assert down.protocol == "import" and down.push_now() is False  # refused connection: counted, not raised
    assert down.stats.failures == 1

    with VictoriaMetrics() as vm:
        vm.start()
        files = write_test_bundle(tmp_path / "live", telemetry={"import_url": vm.url})
        bundle = load_verified_bundle(files.bundle, files.trust_dir, firmware_path=files.firmware)
        pusher = pusher_from_settings(metrics, bundle.telemetry, "robot-vm", timeout_s=10.0)
        before = time.time()
        assert pusher.push_now(), pusher.stats.last_error
        series: list = []
        for _ in range(100):  # the store makes a sample queryable after -search.latencyOffset (1 s here)
            series = vm.query('push_time_seconds{job="vibration_anomaly", robot_id="robot-vm"}')
            if series:
                break
            time.sleep(0.1)
        assert len(series) == 1 and float(series[0]["value"][1]) >= before - 1
        alarms = vm.query('vibration_anomaly_alarms_total{robot_id="robot-vm"}')
        assert [(a["metric"]["job"], float(a["value"][1])) for a in alarms] == [("vibration_anomaly", 3.0)]


@pytest.mark.skipif(
    not find_binary(PUSHGATEWAY_BINARIES), reason="needs prometheus-pushgateway (apt-get install ...)"
)
def test_refused_bundle_reports_through_the_last_trusted_one(tmp_path: Path) -> None:
    with Pushgateway() as gateway:
        gateway.start()
        files = write_test_bundle(tmp_path / "v1", telemetry={"pushgateway_shards": [gateway.url]})
        trust = TrustStore.from_dir(files.trust_dir)
        accepted = load_verified_bundle(files.bundle, trust, firmware_path=files.firmware)
        copy = tmp_path / "state" / "last_trusted_bundle.yaml"
        copy.parent.mkdir()
        assert remember_trusted(accepted, copy, trust)

        # The next bundle is refused (tampered): its telemetry section is not used, the kept copy is.
        files.bundle.write_bytes(
            files.bundle.read_bytes().replace(b"pushgateway_shards", b"pushgateway_shardz")
        )
        with pytest.raises(BundleRefused):
            load_verified_bundle(files.bundle, trust, firmware_path=files.firmware)
        settings = last_trusted_telemetry(copy, trust)
        assert settings is not None and settings.pushgateway_shards == (gateway.url,)
        metrics = RobotMetrics(CollectorRegistry())
        metrics.set_bundle_refused("signature")
        assert pusher_from_settings(metrics, settings, "robot-refused").push_now()
        text = gateway.metrics_text()
        assert (
            'vibration_anomaly_bundle_refused{instance="",job="vibration_anomaly",reason="signature",'
            'robot_id="robot-refused"} 1' in text
        )

    # A copy that no longer verifies names nothing: a changed byte, or a key no longer trusted.
    kept = copy.read_bytes()
    copy.write_bytes(kept.replace(b"push_interval_s: 60", b"push_interval_s: 61"))
    assert last_trusted_telemetry(copy, trust) is None
    copy.write_bytes(kept)
    assert last_trusted_telemetry(copy, TrustStore.from_dir(EXAMPLE_TRUST_DIR)) is None
    assert last_trusted_telemetry(tmp_path / "missing.yaml", trust) is None
