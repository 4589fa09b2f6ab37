"""The optional local /metrics endpoint serves the robot's registry over real HTTP."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from vibration_anomaly.errors import InputError
from vibration_anomaly.telemetry.exporter import MetricsExporter
from vibration_anomaly.telemetry.metrics import RobotMetrics


def test_serves_the_registry_on_a_free_loopback_port() -> None:
    reg = CollectorRegistry()
    m = RobotMetrics(reg)
    m.observe_event({"t": 1.0, "event": "infer", "score": 0.25})
    with MetricsExporter(reg) as exporter:
        assert exporter.port > 0
        body = urllib.request.urlopen(exporter.url, timeout=10).read().decode()
        assert "vibration_anomaly_inferences_total 1.0" in body
        assert "vibration_anomaly_anomaly_score 0.25" in body
        m.observe_event({"t": 2.0, "event": "infer", "score": 0.5})
        body = urllib.request.urlopen(exporter.url, timeout=10).read().decode()
        assert "vibration_anomaly_inferences_total 2.0" in body
        url = exporter.url
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)


@pytest.mark.parametrize("port", [-1, 70000, "9100", True])
def test_bad_port_is_named(port: object) -> None:
    with pytest.raises(InputError) as err:
        MetricsExporter(CollectorRegistry(), port=port)  # type: ignore[arg-type]
    assert err.value.field == "port"


def test_free_port_never_hands_out_a_port_twice() -> None:
    """Three gateway shards built before any starts once got the same port (the bundle refused the URL)."""
    from vibration_anomaly.telemetry.localservers import free_port

    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
