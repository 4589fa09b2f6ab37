"""The shipped Prometheus rules, config, Alertmanager routing and dashboard: checked by the real tools."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from vibration_anomaly.telemetry import fleetsim
from vibration_anomaly.telemetry.localservers import compress_for_durations
from vibration_anomaly.telemetry.metrics import RobotMetrics

CONFIG = Path(__file__).resolve().parents[1] / "config" / "prometheus"
RULES = CONFIG / "vibration_anomaly_rules.yml"
RULE_TESTS = CONFIG / "vibration_anomaly_rules_test.yml"
PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="needs promtool (Debian package prometheus)")


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=CONFIG)


@needs_promtool
def test_promtool_check_rules() -> None:
    out = run(PROMTOOL, "check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr


@needs_promtool
def test_promtool_unit_tests_cover_every_alert_firing_and_not() -> None:
    out = run(PROMTOOL, "test", "rules", str(RULE_TESTS))
    assert out.returncode == 0, out.stdout + out.stderr
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    alerts = {
        r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r
    }
    fired, quiet = set(), set()
    for t in tests:
        for case in t.get("alert_rule_test", []):
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    # Every alert has a case where it fires; those that wait (for:) or resolve also have a silent case,
    # and the rest are shown not firing for the healthy series of the same test.
    assert fired == alerts
    assert quiet >= alerts - {"VibrationAnomalyBundleRefused", "VibrationAnomalyBundleExpired"}


@needs_promtool
def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    doc = yaml.safe_load(RULES.read_text())
    doc["groups"][0]["rules"].append({"alert": "Broken", "expr": "rate(vibration_anomaly_alarms_total)"})
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump(doc))
    assert run(PROMTOOL, "check", "rules", str(bad)).returncode != 0


@needs_promtool
@pytest.mark.parametrize("name", ["prometheus.yml", "global.yml"])
def test_promtool_check_prometheus_config(name: str) -> None:
    out = run(PROMTOOL, "check", "config", str(CONFIG / name))
    assert out.returncode == 0, out.stdout + out.stderr
    scrape = yaml.safe_load((CONFIG / name).read_text())["scrape_configs"]
    assert all(s.get("honor_labels") is True for s in scrape)


def test_site_config_labels_every_gateway_with_its_shard() -> None:
    """The shard-down alert and the silence hold-back need a `shard` label on every gateway target."""
    (scrape,) = yaml.safe_load((CONFIG / "prometheus.yml").read_text())["scrape_configs"]
    assert {"source_labels": ["__address__"], "target_label": "shard"} in scrape["relabel_configs"]


@pytest.mark.skipif(AMTOOL is None, reason="needs amtool (Debian package prometheus-alertmanager)")
def test_amtool_check_alertmanager_config() -> None:
    out = run(AMTOOL, "check-config", str(CONFIG / "alertmanager.yml"))
    assert out.returncode == 0, out.stdout + out.stderr


def _exported_names() -> set[str]:
    names: set[str] = set()
    for fault in (fleetsim.HEALTHY, fleetsim.BUNDLE_REFUSED, fleetsim.BEARING_ALARM):
        m = RobotMetrics(CollectorRegistry())
        fleetsim.drive(m, fleetsim.RobotPlan("r", fault=fault))
        m.set_push_interval(60)
        for family in text_string_to_metric_families(generate_latest(m.registry).decode()):
            names.update(s.name for s in family.samples)
    return names


def _referenced(expr: str) -> set[str]:
    return set(
        re.findall(r"\b(vibration_anomaly_[a-z_]+|[a-z_]+:vibration_anomaly_[a-z_]+:[a-z0-9_]+)", expr)
    )


def test_rules_and_dashboard_only_use_metrics_we_export_or_record() -> None:
    exported = _exported_names()
    groups = yaml.safe_load(RULES.read_text())["groups"]
    recorded = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    exprs = [r["expr"] for g in groups for r in g["rules"]]
    dashboard = json.loads((CONFIG / "grafana_dashboard.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [
        v["query"]["query"] for v in dashboard["templating"]["list"] if isinstance(v.get("query"), dict)
    ]
    unknown = {n for e in exprs for n in _referenced(e)} - exported - recorded
    assert not unknown, f"rules/dashboard reference metrics nobody exports: {sorted(unknown)}"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_compressed_rules_change_only_for_durations(tmp_path: Path) -> None:
    out = compress_for_durations(RULES, tmp_path / "fast.yml", "1s")
    original = yaml.safe_load(RULES.read_text())
    fast = yaml.safe_load(out.read_text())
    for g0, g1 in zip(original["groups"], fast["groups"], strict=True):
        for r0, r1 in zip(g0["rules"], g1["rules"], strict=True):
            assert r0["expr"] == r1["expr"]
            assert r1.get("for", "1s") == "1s" if "for" in r0 else "for" not in r1
            assert {k: v for k, v in r0.items() if k != "for"} == {k: v for k, v in r1.items() if k != "for"}
