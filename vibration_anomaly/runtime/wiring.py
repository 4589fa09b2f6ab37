"""Optional hooks of the runtime: a power source and fleet telemetry. Neither is ever a reason not to run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vibration_anomaly.config.bundle import VerifiedBundle

if TYPE_CHECKING:
    from vibration_anomaly.runtime.runtime import DetectorRuntime


def open_power(rt: DetectorRuntime) -> None:
    """Open the configured power source once per process (``power_source``: auto, hwmon, nvml, ...)."""
    if rt.power is not None:
        return
    try:
        from vibration_anomaly.power import open_power_source

        rt.power, why = open_power_source(
            rt.params.power_source,
            is_awake=lambda: rt.detector is not None and not rt.detector.residency().asleep,
        )
        rt.log.info(f"power source: {why}")
    except Exception as exc:  # noqa: BLE001 - power figures are optional
        rt.log.warning(f"no power source: {exc}")
        rt.power = None


def open_telemetry(rt: DetectorRuntime, bundle: VerifiedBundle) -> None:
    """Push the event stream's metrics when the bundle names a destination."""
    if rt.pusher is not None or bundle.telemetry.pushgateway_url is None and not _has_route(bundle):
        return
    try:
        from prometheus_client import CollectorRegistry

        from vibration_anomaly.telemetry.metrics import RobotMetrics
        from vibration_anomaly.telemetry.pusher import pusher_from_settings

        metrics = RobotMetrics(CollectorRegistry())
        dc = bundle.duty_cycle
        metrics.set_contract(dc.period_s, dc.sample_s)
        metrics.set_bundle(str(bundle.version), expired=bundle.is_expired())
        if rt.pipeline is not None:
            from vibration_anomaly.engine.select import reason_code

            metrics.set_backend(rt.pipeline.engine.name, reason_code(rt.pipeline.backend_reason))
        rt.metrics = metrics
        rt.pusher = pusher_from_settings(metrics, bundle.telemetry, rt.params.robot_id)
        rt.pusher.start()
        rt.sinks.append(metrics.observe_event)
    except Exception as exc:  # noqa: BLE001 - telemetry is optional
        rt.log.warning(f"telemetry disabled: {type(exc).__name__}: {exc}")


def _has_route(bundle: VerifiedBundle) -> bool:
    """Shards or an import endpoint (newer bundles) count as a destination too."""
    t = bundle.telemetry
    return bool(getattr(t, "pushgateway_shards", None) or getattr(t, "import_url", None))
