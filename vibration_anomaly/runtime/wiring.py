"""Optional hooks of the runtime: a power source and fleet telemetry. Neither is ever a reason not to run.

Telemetry follows the bundle's life, not the process's: it is (re)built from each accepted bundle
whose telemetry settings differ from the running ones (a new gateway, shard or interval reaches the
robot with the bundle that names it), the bundle's expiry is re-checked every duty period, and a
refused bundle is reported (``bundle_refused``) through the telemetry settings of the last bundle
this robot trusted, re-verified from its kept copy: the refused bundle's own settings are never
used, and nothing unsigned ever names a destination.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vibration_anomaly.bundle import BundleRefused, VerifiedBundle

if TYPE_CHECKING:
    from vibration_anomaly.runtime.pipeline import Pipeline
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


def open_event_log(rt: DetectorRuntime) -> None:
    """The event log at ``event_log`` (on by default); its write failures are reported, never raised."""
    from vibration_anomaly.core.events import JsonlEventLog

    path = rt.params.event_log_path()
    if rt.event_log is not None and (path is None or rt.event_log.path != path):
        rt.event_log.close()
        rt.event_log = None
    if path is not None and rt.event_log is None:
        rt.event_log = JsonlEventLog(path, on_state=lambda ok, msg: storage_state(rt, "event log", ok, msg))


def storage_state(rt: DetectorRuntime, what: str, ok: bool, message: str) -> None:
    """A write started or stopped failing: the ``storage`` health reads ``storage_errors``; log and event."""
    from vibration_anomaly.core.events import STORAGE

    if ok:
        rt.storage_errors.pop(what, None)
        rt.log.info(message)
    else:
        rt.storage_errors[what] = message
        rt.log.error(f"{message} (the detector keeps running)")
    rt.emit(STORAGE, ok=ok, what=what, message=message)


def sensor_watch(rt: DetectorRuntime, pipeline: Any) -> Any:
    """Sensor checks with this machine's healthy level (stored by calibration) for the loose-mount check."""
    from vibration_anomaly.core.sensor_health import SensorLimits, baseline_rms_from
    from vibration_anomaly.core.sensor_watch import SensorWatch

    cal = getattr(pipeline.scorer, "calibration", None)
    full_scale = rt.params.sensor_full_scale
    return SensorWatch(
        SensorLimits(full_scale=full_scale if full_scale > 0 else None),
        baseline_rms_from(getattr(cal, "extra", None)),
    )


def _has_route(settings: Any) -> bool:
    return bool(
        getattr(settings, "pushgateway_url", None)
        or getattr(settings, "pushgateway_shards", None)
        or getattr(settings, "import_url", None)
    )


def _start_pusher(rt: DetectorRuntime, settings: Any) -> None:
    """(Re)start pushing with ``settings`` unless they are the ones already in use."""
    if rt.pusher is not None and getattr(rt, "_telemetry_settings", None) == settings:
        return
    if rt.pusher is not None:
        rt.pusher.stop(final_push=True, timeout_s=2.0)
        rt.pusher = None
    rt._telemetry_settings = settings  # type: ignore[attr-defined]
    if not _has_route(settings):
        return
    from vibration_anomaly.telemetry.pusher import pusher_from_settings

    rt.pusher = pusher_from_settings(_metrics(rt), settings, rt.params.robot_id)
    rt.pusher.start()


def _metrics(rt: DetectorRuntime) -> Any:
    """One metrics registry per process (counters must not restart with a bundle); its sink is bound once."""
    if rt.metrics is None:
        from prometheus_client import CollectorRegistry

        from vibration_anomaly.telemetry.metrics import RobotMetrics

        rt.metrics = RobotMetrics(CollectorRegistry())
        rt.sinks.append(rt.metrics.observe_event)
    return rt.metrics


def open_telemetry(rt: DetectorRuntime, bundle: VerifiedBundle) -> None:
    """Metrics for this bundle's contract; pushing starts once the whole configure succeeded."""
    if not _has_route(bundle.telemetry) and rt.metrics is None:
        return
    try:
        m = _metrics(rt)
        dc = bundle.duty_cycle
        m.set_contract(dc.period_s, dc.sample_s)
        if rt.pipeline is not None:
            from vibration_anomaly.engine.select import reason_code

            m.set_backend(rt.pipeline.engine.name, reason_code(rt.pipeline.backend_reason))
    except Exception as exc:  # noqa: BLE001 - telemetry is optional
        rt.log.warning(f"telemetry disabled: {type(exc).__name__}: {exc}")


def bundle_accepted(rt: DetectorRuntime, bundle: VerifiedBundle) -> None:
    """The bundle runs: its version and expiry on the metrics, its telemetry settings in use, its copy kept."""
    if not _has_route(bundle.telemetry) and rt.metrics is None:
        return
    try:
        _metrics(rt).set_bundle(str(bundle.version), expired=bundle.is_expired(time.time()))
        _start_pusher(rt, bundle.telemetry)
        copy = _copy_path(rt)
        if copy is not None and rt.params.trust_dir:
            from vibration_anomaly.bundle.trust import TrustStore
            from vibration_anomaly.telemetry.lasttrusted import remember_trusted

            remember_trusted(bundle, copy, TrustStore.from_dir(Path(rt.params.trust_dir)))
    except Exception as exc:  # noqa: BLE001 - telemetry is optional
        rt.log.warning(f"telemetry: {type(exc).__name__}: {exc}")


def bundle_refused(rt: DetectorRuntime, exc: BundleRefused) -> None:
    """Report the refusal through the last trusted bundle's destination (re-verified now), if any."""
    try:
        settings = None
        copy = _copy_path(rt)
        if copy is not None and rt.params.trust_dir:
            from vibration_anomaly.bundle.trust import TrustStore
            from vibration_anomaly.telemetry.lasttrusted import last_trusted_telemetry

            settings = last_trusted_telemetry(copy, TrustStore.from_dir(Path(rt.params.trust_dir)))
        if settings is None and rt.metrics is None:
            rt.log.warning("bundle refused and no trusted telemetry settings to report it with")
            return
        from vibration_anomaly.bundle.refusal import metric_class

        _metrics(rt).set_bundle_refused(metric_class(exc.reason))
        if settings is not None:
            _start_pusher(rt, settings)
        if rt.pusher is not None:
            rt.pusher.push_now(timeout_s=2.0)
    except Exception as inner:  # noqa: BLE001 - telemetry is optional
        rt.log.warning(f"telemetry: cannot report the refusal: {type(inner).__name__}: {inner}")


def recheck_expiry(rt: DetectorRuntime) -> None:
    """Once per duty period: a bundle that expired while running shows as expired."""
    if rt.metrics is not None and rt.bundle is not None:
        rt.metrics.set_bundle(str(rt.bundle.version), expired=rt.bundle.is_expired(time.time()))


def _copy_path(rt: DetectorRuntime) -> Path | None:
    """The kept copy of the last accepted bundle lives beside the rollback state."""
    return (
        Path(rt.params.rollback_state).with_name("last_trusted_bundle.yaml")
        if rt.params.rollback_state
        else None
    )


def describe(rt: DetectorRuntime) -> str:
    """One line for the log at configure: the bundle, the duty cycle, the model, the backend, who drives."""
    assert rt.bundle is not None and rt.pipeline is not None
    dc, pl = rt.bundle.duty_cycle, rt.pipeline
    return (
        f"bundle v{rt.bundle.version} (key {rt.bundle.key_id}), duty {dc.sample_s:g}/{dc.period_s:g} s"
        f"{'' if rt.scale == 1 else f' x{rt.scale:g} (TEST TIME SCALE)'}, model {pl.model}, "
        f"backend {pl.engine.name} ({pl.backend_reason}), "
        f"{'duty-cycle driver' if rt.driver_enabled else 'supervisor drives'}, alarm diagnosis: "
        f"{'bearing ' + ','.join(sorted(rt.bundle.bearing.orders())) if rt.bundle.bearing else 'no bearing'}, "
        f"speed {rt.speed.topic or (f'{rt.speed.fixed_hz:g} Hz' if rt.speed.fixed_hz else 'unknown')}, "
        f"speed-aware scoring {'on' if rt.detector is not None and rt.detector.orders is not None else 'off'}"
    )


def detector_aids(rt: DetectorRuntime, bundle: VerifiedBundle, pipeline: Pipeline) -> dict[str, Any]:
    """The detector's ``diagnoser`` and ``orders`` (speed- and bearing-aware scoring), sharing one speed.

    ``rt.speed`` is replaced here (its fixed ``shaft_hz`` and ``speed_topic`` come from the params); the
    node reports the topic's readings into it.
    """
    from vibration_anomaly.core.speed import ShaftSpeed

    p = rt.params
    rt.speed = ShaftSpeed(p.shaft_hz, p.speed_topic)
    return {
        "diagnoser": diagnoser(rt, bundle),
        "orders": order_check(rt, bundle, pipeline),
        "speed_guard": speed_guard(rt, pipeline),
    }


def speed_guard(rt: DetectorRuntime, pipeline: Pipeline) -> Any:
    """Windows at a speed outside the calibration's ``extra.speed_hz`` are not scored (``core.speed.SpeedGuard``);
    None where the calibration records no speeds or no speed can be known (said in the log)."""
    from vibration_anomaly.core.speed import SpeedGuard, speed_range

    cal = getattr(pipeline.scorer, "calibration", None)
    made = None if cal is None else speed_range(cal.extra, rt.params.calibration or "calibration")
    if made is None:
        return None
    if not rt.speed.topic and not rt.speed.fixed_hz:
        rt.log.warning(
            f"the calibration was made at {made[0]:g}-{made[1]:g} Hz but no shaft speed is known (shaft_hz 0, "
            "no speed_topic): windows at other speeds cannot be told apart and may false-alarm"
        )
        return None
    guard = SpeedGuard(made[0], made[1], rt.speed)
    rt.log.info(
        f"speed guard on: windows at a shaft speed outside {made[0]:g}-{made[1]:g} Hz "
        f"(+-{guard.margin:.0%}, the calibration's) are not scored"
    )
    return guard


def diagnoser(rt: DetectorRuntime, bundle: VerifiedBundle) -> Any:
    """The alarm's diagnosis: the bundle's bearing (defect orders) and ``rt.speed``."""
    from vibration_anomaly.core.diagnosis import Diagnoser

    orders = bundle.bearing.orders() if bundle.bearing is not None else None
    return Diagnoser(orders, rt.speed)


def _band(hz: tuple[float, float] | None) -> str:
    return "none (every band)" if hz is None else f"{hz[0]:g}-{hz[1]:g} Hz"


def order_check(rt: DetectorRuntime, bundle: VerifiedBundle, pipeline: Pipeline) -> Any:
    """Speed-aware scoring when the calibration holds an order reference (``extra.orders``) for the
    bearing the bundle states, and a speed can be known; otherwise None (the model alone), said in the log.
    """
    from vibration_anomaly.core.order_calibration import EXTRA_KEY, OrderCalibration
    from vibration_anomaly.core.order_check import OrderCheck

    cal = getattr(pipeline.scorer, "calibration", None)
    record = None if cal is None else cal.extra.get(EXTRA_KEY)
    if record is None:
        return None
    oc = OrderCalibration.from_dict(record, rt.params.calibration or "calibration")
    orders = bundle.bearing.orders() if bundle.bearing is not None else None
    if not oc.same_orders(orders):
        stated = ", ".join(f"{k}={v:g}" for k, v in sorted((orders or {}).items())) or "no bearing"
        rt.log.warning(
            f"speed-aware scoring off: the calibration's order reference is for "
            f"{', '.join(f'{k}={v:g}' for k, v in sorted((oc.orders or {}).items()))}, the bundle states "
            f"{stated}; the model alone decides (recalibrate with this bearing)"
        )
        return None
    stated_res = bundle.bearing.resonance_hz if bundle.bearing is not None else None
    if oc.resonance_hz != stated_res:
        rt.log.warning(
            f"speed-aware scoring off: the calibration read the envelope at resonance "
            f"{_band(oc.resonance_hz)}, the bundle states {_band(stated_res)}; the model alone decides "
            f"(recalibrate with --bearing-resonance-hz as the bundle states it)"
        )
        return None
    if not rt.speed.topic and not rt.speed.fixed_hz:
        rt.log.warning("speed-aware scoring off: no shaft speed (shaft_hz 0 and no speed_topic)")
        return None
    return OrderCheck(oc, rt.speed)
