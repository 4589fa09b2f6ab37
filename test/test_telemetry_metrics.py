"""RobotMetrics: the pipeline's events and setters become the metrics the alert rules read."""

from __future__ import annotations

import math

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from vibration_anomaly.errors import InputError
from vibration_anomaly.telemetry import fleetsim
from vibration_anomaly.telemetry.metrics import RobotMetrics


def value(reg: CollectorRegistry, name: str, **labels: str) -> float:
    v = reg.get_sample_value(name, labels)
    assert v is not None, f"{name}{labels} not exported"
    return v


def cycles(m: RobotMetrics, n: int, period: float = 60.0, awake: float = 5.3, start: float = 0.0) -> float:
    t = start
    for c in range(n):
        t = start + c * period
        m.observe_event({"t": t, "event": "wake"})
        m.observe_event(
            {
                "t": t + awake - 0.1,
                "event": "infer",
                "score": 0.2,
                "batch_t0": t,
                "batch_t1": t + 5.0,
                "alarm": False,
            }
        )
        m.observe_event({"t": t + awake, "event": "sleep", "awake_s": awake})
    return t + awake


@pytest.fixture
def reg() -> CollectorRegistry:
    return CollectorRegistry()


def test_healthy_duty_cycle(reg: CollectorRegistry) -> None:
    m = RobotMetrics(reg)
    m.set_contract(60.0, 5.0)
    cycles(m, 12)
    assert value(reg, "vibration_anomaly_duty_period_seconds") == pytest.approx(60.0)
    assert value(reg, "vibration_anomaly_inferences_total") == 12
    assert value(reg, "vibration_anomaly_awake_seconds_total") == pytest.approx(12 * 5.3)
    # The last 600 s hold ten awake stretches of 5.3 s.
    assert value(reg, "vibration_anomaly_awake_ratio") == pytest.approx(53.0 / 600.0, rel=1e-3)
    assert value(reg, "vibration_anomaly_awake") == 0
    assert value(reg, "vibration_anomaly_anomaly_score") == pytest.approx(0.2)
    assert value(reg, "vibration_anomaly_events_total", event="wake") == 12
    assert value(reg, "vibration_anomaly_stale_batches_inferred_total") == 0


def test_unobserved_gauges_are_nan_not_zero(reg: CollectorRegistry) -> None:
    m = RobotMetrics(reg)
    for name in ("duty_period_seconds", "duty_period_contract_seconds", "awake_ratio", "anomaly_score"):
        assert math.isnan(value(reg, f"vibration_anomaly_{name}"))
    m.observe_event({"t": 0.0, "event": "wake"})
    assert math.isnan(value(reg, "vibration_anomaly_duty_period_seconds"))  # one wake: no period yet
    assert math.isnan(value(reg, "vibration_anomaly_awake_ratio"))  # no history yet
    m.observe_event({"t": 100.0, "event": "wake"})
    assert value(reg, "vibration_anomaly_duty_period_seconds") == 100.0


def test_robot_that_never_sleeps_still_accrues_awake_time(reg: CollectorRegistry) -> None:
    m = RobotMetrics(reg)
    m.set_contract(60.0, 5.0)
    m.observe_event({"t": 0.0, "event": "wake"})
    for k in range(1, 200):
        m.observe_event(
            {"t": 5.0 * k, "event": "infer", "score": 0.1, "batch_t0": 5.0 * k - 5, "batch_t1": 5.0 * k}
        )
    assert value(reg, "vibration_anomaly_awake") == 1
    assert value(reg, "vibration_anomaly_awake_seconds_total") == pytest.approx(995.0)
    assert value(reg, "vibration_anomaly_awake_ratio") == pytest.approx(1.0)
    # tick() keeps the ratio current when no event comes (a hung pipeline).
    m2 = RobotMetrics(CollectorRegistry())
    m2.observe_event({"t": 0.0, "event": "wake"})
    m2.tick(120.0)
    assert m2.registry.get_sample_value("vibration_anomaly_awake_ratio") == pytest.approx(1.0)


def test_awake_window_memory_is_bounded(reg: CollectorRegistry) -> None:
    m = RobotMetrics(reg, window_s=600.0)
    cycles(m, 500)
    assert len(m._intervals) <= 11


def test_replayed_batches_are_counted_fresh_ones_are_not(reg: CollectorRegistry) -> None:
    m = RobotMetrics(reg)
    m.set_contract(60.0, 5.0)
    m.observe_event({"t": 1000.0, "event": "infer", "score": 0.1, "batch_t0": 995.0, "batch_t1": 1000.0})
    assert value(reg, "vibration_anomaly_stale_batches_inferred_total") == 0
    m.observe_event({"t": 1000.5, "event": "infer", "score": 0.1, "batch_t0": 400.0, "batch_t1": 405.0})
    assert value(reg, "vibration_anomaly_stale_batches_inferred_total") == 1
    assert value(reg, "vibration_anomaly_batch_age_seconds") == pytest.approx(595.5)


def test_drops_by_reason_and_stale_refusals(reg: CollectorRegistry) -> None:
    m = RobotMetrics(reg)
    m.observe_event({"t": 1.0, "event": "drop", "reason": "overflow", "frames": 5000})
    m.observe_event({"t": 1.0, "event": "drop", "reason": "stale", "frames": 5000})
    m.observe_event({"t": 1.0, "event": "drop", "reason": "cosmic rays", "frames": 7})
    m.observe_event({"t": 2.0, "event": "stale", "count": 2})
    m.observe_event({"t": 2.0, "event": "reject", "reason": "nonfinite", "count": 3})
    assert value(reg, "vibration_anomaly_frames_dropped_total", reason="overflow") == 5000
    assert value(reg, "vibration_anomaly_frames_dropped_total", reason="stale") == 5000
    assert value(reg, "vibration_anomaly_frames_dropped_total", reason="other") == 7
    assert value(reg, "vibration_anomaly_stale_batches_refused_total") == 3
    assert value(reg, "vibration_anomaly_inputs_rejected_total", reason="nonfinite") == 3


def test_alarm_follows_the_latest_verdict(reg: CollectorRegistry) -> None:
    m = RobotMetrics(reg)
    m.observe_event({"t": 1.0, "event": "infer", "score": 0.9, "alarm": True})
    m.observe_event({"t": 1.0, "event": "alarm", "score": 0.9})
    assert value(reg, "vibration_anomaly_alarm_active") == 1
    assert value(reg, "vibration_anomaly_alarms_total") == 1
    m.observe_event({"t": 61.0, "event": "infer", "score": 0.1, "alarm": False})
    assert value(reg, "vibration_anomaly_alarm_active") == 0
    assert value(reg, "vibration_anomaly_alarms_total") == 1


def test_bundle_backend_and_power_setters(reg: CollectorRegistry) -> None:
    m = RobotMetrics(reg)
    m.set_bundle("v1")
    m.set_bundle("v2", expired=True)
    assert reg.get_sample_value("vibration_anomaly_bundle_info", {"version": "v1"}) is None
    assert value(reg, "vibration_anomaly_bundle_info", version="v2") == 1
    assert value(reg, "vibration_anomaly_bundle_expired") == 1
    m.set_bundle_refused("Mismatch")
    assert value(reg, "vibration_anomaly_bundle_refused", reason="mismatch") == 1
    assert value(reg, "vibration_anomaly_bundle_refusals_total", reason="mismatch") == 1
    assert reg.get_sample_value("vibration_anomaly_bundle_info", {"version": "v2"}) is None
    m.set_bundle_refused("a reason nobody listed")
    assert value(reg, "vibration_anomaly_bundle_refused", reason="other") == 1
    assert reg.get_sample_value("vibration_anomaly_bundle_refused", {"reason": "mismatch"}) is None
    m.set_bundle("v3")
    assert reg.get_sample_value("vibration_anomaly_bundle_refused", {"reason": "other"}) is None

    m.set_backend("onnxruntime", "no_gpu")
    assert value(reg, "vibration_anomaly_backend_info", backend="onnxruntime", choice="no_gpu") == 1
    m.set_backend("TensorRT", "gpu")
    assert (
        reg.get_sample_value("vibration_anomaly_backend_info", {"backend": "onnxruntime", "choice": "no_gpu"})
        is None
    )
    assert value(reg, "vibration_anomaly_backend_info", backend="tensorrt", choice="gpu") == 1

    m.set_power(4.0, state="asleep", source="model", modelled=True, duration_s=55.0)
    m.set_power(11.0, state="asleep", source="ina3221", modelled=False, duration_s=10.0)
    assert value(reg, "vibration_anomaly_power_watts", state="asleep") == 11.0
    assert value(reg, "vibration_anomaly_energy_joules_total", state="asleep") == pytest.approx(330.0)
    assert value(reg, "vibration_anomaly_power_source_info", source="ina3221", modelled="false") == 1
    assert (
        reg.get_sample_value("vibration_anomaly_power_source_info", {"source": "model", "modelled": "true"})
        is None
    )
    m.add_energy(5.0, state="awake")
    assert value(reg, "vibration_anomaly_energy_joules_total", state="awake") == 5.0


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda m: m.observe_event({"event": "wake"}), "t"),
        (lambda m: m.observe_event({"t": "noon", "event": "wake"}), "t"),
        (lambda m: m.observe_event({"t": 1.0}), "event"),
        (lambda m: m.observe_event({"t": 1.0, "event": "drop", "frames": -3}), "frames"),
        (lambda m: m.observe_event({"t": 1.0, "event": "infer", "score": float("nan")}), "score"),
        (lambda m: m.set_power(3.0, state="dozing", source="model", modelled=True), "state"),
        (lambda m: m.set_power(-1.0, state="asleep", source="model", modelled=True), "watts"),
        (lambda m: m.set_contract(5.0, 60.0), "sample_s"),
        (lambda m: m.set_bundle(""), "version"),
    ],
)
def test_bad_input_names_the_field(reg: CollectorRegistry, call, field: str) -> None:
    m = RobotMetrics(reg)
    with pytest.raises(InputError) as err:
        call(m)
    assert err.value.field == field


def test_unknown_events_are_counted_not_fatal(reg: CollectorRegistry) -> None:
    m = RobotMetrics(reg)
    m.observe_event({"t": 1.0, "event": "firmware_says_hi"})
    assert value(reg, "vibration_anomaly_events_total", event="other") == 1


def test_registries_are_independent_and_global_registry_untouched() -> None:
    a, b = CollectorRegistry(), CollectorRegistry()
    ma, mb = RobotMetrics(a), RobotMetrics(b)
    ma.observe_event({"t": 1.0, "event": "infer", "score": 0.5})
    assert a.get_sample_value("vibration_anomaly_inferences_total") == 1
    assert b.get_sample_value("vibration_anomaly_inferences_total") == 0
    assert mb is not None
    assert not any(n.startswith("vibration_anomaly") for n in REGISTRY._names_to_collectors)
    with pytest.raises(InputError):
        RobotMetrics(REGISTRY._names_to_collectors)  # type: ignore[arg-type]


def test_exposition_follows_prometheus_naming() -> None:
    reg = CollectorRegistry()
    m = RobotMetrics(reg)
    fleetsim.drive(m, fleetsim.RobotPlan("r1", fault=fleetsim.BEARING_ALARM))
    families = list(text_string_to_metric_families(generate_latest(reg).decode()))
    names = {f.name for f in families}
    assert all(n.startswith("vibration_anomaly_") for n in names)
    for f in families:
        if f.type == "counter":
            assert {s.name for s in f.samples} <= {f.name + "_total", f.name + "_created"}
    units = ("_seconds", "_watts", "_joules", "_ratio", "_info", "_total", "_hertz")
    gauges = {f.name for f in families if f.type == "gauge" and not f.name.endswith("_created")}
    unitless_flags = {
        "vibration_anomaly_awake",
        "vibration_anomaly_alarm_active",
        "vibration_anomaly_bundle_expired",
        "vibration_anomaly_bundle_refused",
        "vibration_anomaly_anomaly_score",
        "vibration_anomaly_sensor_health_level",
        "vibration_anomaly_storage_failing",
    }
    assert all(g.endswith(units) or g in unitless_flags for g in gauges), sorted(gauges - unitless_flags)
    # Labels stay low-cardinality: no robot identity and no free text.
    labels = {k for f in families for s in f.samples for k in s.labels}
    assert labels <= {
        "state",
        "reason",
        "event",
        "version",
        "backend",
        "choice",
        "source",
        "modelled",
        "location",
    }
