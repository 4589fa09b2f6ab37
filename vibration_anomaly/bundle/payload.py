"""Payload field checks: signed bytes to the constructor arguments of a VerifiedBundle.

Runs only on bytes whose signature checked out (and in ``bundle sign`` before
signing, so a bad payload never gets a signature). Unknown fields are refused
(a typo such as ``perod_s`` must not be silently ignored), numbers must be
finite, and booleans or quoted numbers are not numbers.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from typing import Any

import yaml

from vibration_anomaly.bundle import defaults
from vibration_anomaly.bundle.bearing import GEOMETRY_NAMES, MAX_BALLS, ORDER_NAMES, BearingSettings
from vibration_anomaly.bundle.firmware import format_value, parse_timestamp, strict_yaml_load
from vibration_anomaly.bundle.refusal import BundleRefused
from vibration_anomaly.bundle.schema import (
    MAX_QUEUE,
    MAX_TELEMETRY_SHARDS,
    MAX_VERSION,
    MAX_VOTES,
    AlarmSettings,
    DutyCycle,
    HealthSettings,
    TelemetrySettings,
)
from vibration_anomaly.bundle.trust import MAX_EPOCH, is_key_id
from vibration_anomaly.errors import InputError

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_ROBOT_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
MAX_CALIBRATIONS = 1000
"""More robots than fit a 64 KiB bundle anyway; a fleet that large signs one bundle per group."""

_TOP_FIELDS = {
    "version",
    "issued_at",
    "expires_at",
    "key_id",
    "epoch",
    "duty_cycle",
    "max_queued_batches",
    "model_sha256",
    "engine_sha256",
    "model_json_sha256",
    "calibrations",
    "alarm",
    "telemetry",
    "health",
    "bearing",
}
_SECTION_FIELDS = {
    "duty_cycle": {"sample_s", "period_s"},
    "alarm": {"votes_required", "votes_window", "score_threshold"},
    "telemetry": {"pushgateway_url", "job", "push_interval_s", "pushgateway_shards", "import_url"},
    "health": {"period_tolerance_s", "awake_fraction_max", "asleep_power_max_w"},
    "bearing": {*ORDER_NAMES, *GEOMETRY_NAMES, "resonance_hz"},
}
_REQUIRED = ("version", "issued_at", "key_id", "duty_cycle", "model_sha256")


def _field_error(name: str, problem: str) -> BundleRefused:
    return BundleRefused("field", f"{name}: {problem}", field=name)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _field_error(name, f"expected a number, got {format_value(value)}")
    if not math.isfinite(value):
        raise _field_error(name, f"expected a finite number, got {value!r}")
    return float(value)


def _integer(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _field_error(name, f"expected an integer, got {format_value(value)}")
    if not low <= value <= high:
        raise _field_error(name, f"expected an integer in {low}..{high}, got {value}")
    return value


def _section(raw: Mapping[str, Any], name: str, required: bool) -> dict[str, Any]:
    value = raw.get(name)
    if value is None:
        if required:
            raise _field_error(name, "missing (required)")
        return {}
    if not isinstance(value, Mapping):
        raise _field_error(name, f"expected a mapping, got {format_value(value)}")
    unknown = sorted(str(k) for k in value if k not in _SECTION_FIELDS[name])
    if unknown:
        raise _field_error(
            f"{name}.{unknown[0]}",
            f"unknown field (expected one of {', '.join(sorted(_SECTION_FIELDS[name]))})",
        )
    return dict(value)


def _build(factory: Any, **kwargs: Any) -> Any:
    """Construct a settings object, reporting its invariant failures as ``field`` refusals."""
    try:
        return factory(**kwargs)
    except InputError as exc:
        raise _field_error(f"{exc.source}.{exc.field}", exc.problem) from None


def _calibrations(value: Any) -> tuple[tuple[str, str], ...] | None:
    """``{robot_id: sha256 of its calibration file}``, sorted; None when the bundle binds no calibration."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or not 1 <= len(value) <= MAX_CALIBRATIONS:
        raise _field_error(
            "calibrations",
            f"expected null or a mapping of 1..{MAX_CALIBRATIONS} robot ids to "
            f"sha256 hex digests, got {format_value(value)}",
        )
    out = []
    for robot_id, digest in value.items():
        if not isinstance(robot_id, str) or not _ROBOT_ID_RE.fullmatch(robot_id):
            raise _field_error(
                "calibrations",
                f"expected robot ids of 1-128 characters of [A-Za-z0-9_.:-], got {format_value(robot_id)}",
            )
        if not isinstance(digest, str) or not _SHA256_RE.fullmatch(digest):
            raise _field_error(
                f"calibrations.{robot_id}",
                "expected 64 lowercase hex digits (sha256 of the robot's "
                f"calibration file), got {format_value(digest)}",
            )
        out.append((robot_id, digest))
    return tuple(sorted(out))


def _bearing(section: dict[str, Any]) -> BearingSettings | None:
    """The optional ``bearing`` section (defect orders or geometry); None when absent or empty."""
    if not section:
        return None
    kwargs: dict[str, Any] = {}
    for name, value in section.items():
        if value is None:
            continue
        if name == "balls":
            kwargs[name] = _integer("bearing.balls", value, 3, MAX_BALLS)
        elif name == "resonance_hz":
            if not isinstance(value, list) or len(value) != 2:
                raise _field_error(
                    "bearing.resonance_hz", f"expected [lo, hi] in Hz, got {format_value(value)}"
                )
            kwargs[name] = tuple(_number(f"bearing.resonance_hz[{i}]", v) for i, v in enumerate(value))
        else:
            kwargs[name] = _number(f"bearing.{name}", value)
    return _build(BearingSettings, **kwargs) if kwargs else None


def check_payload(payload: bytes) -> dict[str, Any]:
    """Parse and validate payload bytes; return the constructor arguments of a VerifiedBundle.

    Used by the loader *after* the signature checked out, and by ``bundle sign``
    before signing so that a bad payload never gets a signature.
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleRefused("parse", f"payload is not UTF-8 text: {exc}") from None
    try:
        raw = strict_yaml_load(text)
    except yaml.YAMLError as exc:
        raise BundleRefused("parse", f"payload does not parse as YAML/JSON: {exc}") from None
    if not isinstance(raw, Mapping):
        raise BundleRefused("parse", f"payload must be a mapping of fields, got {type(raw).__name__}")
    unknown = sorted(str(k) for k in raw if k not in _TOP_FIELDS)
    if unknown:
        raise _field_error(unknown[0], f"unknown field (expected some of {', '.join(sorted(_TOP_FIELDS))})")
    for name in _REQUIRED:
        if raw.get(name) is None:
            raise _field_error(name, "missing (required)")

    version = _integer("version", raw["version"], 1, MAX_VERSION)
    try:
        issued_at = parse_timestamp(raw["issued_at"])
    except ValueError as exc:
        raise _field_error("issued_at", str(exc)) from None
    expires_at = None
    if raw.get("expires_at") is not None:
        try:
            expires_at = parse_timestamp(raw["expires_at"])
        except ValueError as exc:
            raise _field_error("expires_at", str(exc)) from None
        if expires_at <= issued_at:
            raise _field_error(
                "expires_at",
                f"expected later than issued_at {issued_at.isoformat()}, got {expires_at.isoformat()}",
            )
    key_id = raw["key_id"]
    if not isinstance(key_id, str) or not is_key_id(key_id):
        raise _field_error("key_id", f"expected 16 lowercase hex digits, got {format_value(key_id)}")
    epoch = 0 if raw.get("epoch") is None else _integer("epoch", raw["epoch"], 0, MAX_EPOCH)
    model_sha256 = raw["model_sha256"]
    if not isinstance(model_sha256, str) or not _SHA256_RE.fullmatch(model_sha256):
        raise _field_error(
            "model_sha256", f"expected 64 lowercase hex digits, got {format_value(model_sha256)}"
        )
    engine_sha256 = raw.get("engine_sha256")
    if engine_sha256 is not None and (
        not isinstance(engine_sha256, str) or not _SHA256_RE.fullmatch(engine_sha256)
    ):
        raise _field_error(
            "engine_sha256",
            "expected null or 64 lowercase hex digits (sha256 of the TensorRT "
            f"plan file), got {format_value(engine_sha256)}",
        )

    model_json_sha256 = raw.get("model_json_sha256")
    if model_json_sha256 is not None and (
        not isinstance(model_json_sha256, str) or not _SHA256_RE.fullmatch(model_json_sha256)
    ):
        raise _field_error(
            "model_json_sha256",
            "expected null or 64 lowercase hex digits (sha256 of the model's "
            f"model.json), got {format_value(model_json_sha256)}",
        )
    calibrations = _calibrations(raw.get("calibrations"))

    dc = _section(raw, "duty_cycle", required=True)
    for name in ("sample_s", "period_s"):
        if dc.get(name) is None:
            raise _field_error(f"duty_cycle.{name}", "missing (required; never defaulted)")
    duty_cycle = _build(
        DutyCycle,
        sample_s=_number("duty_cycle.sample_s", dc["sample_s"]),
        period_s=_number("duty_cycle.period_s", dc["period_s"]),
    )

    max_queued = raw.get("max_queued_batches")
    max_queued_batches = (
        defaults.MAX_QUEUED_BATCHES
        if max_queued is None
        else _integer("max_queued_batches", max_queued, 1, MAX_QUEUE)
    )

    al = _section(raw, "alarm", required=False)
    alarm_kwargs: dict[str, Any] = {}
    for name in ("votes_required", "votes_window"):
        if al.get(name) is not None:
            alarm_kwargs[name] = _integer(f"alarm.{name}", al[name], 1, MAX_VOTES)
    if al.get("score_threshold") is not None:
        alarm_kwargs["score_threshold"] = _number("alarm.score_threshold", al["score_threshold"])
    alarm = _build(AlarmSettings, **alarm_kwargs)

    te = _section(raw, "telemetry", required=False)
    tel_kwargs: dict[str, Any] = {}
    if te.get("pushgateway_url") is not None:
        tel_kwargs["pushgateway_url"] = te["pushgateway_url"]
    if te.get("job") is not None:
        tel_kwargs["job"] = te["job"]
    if te.get("push_interval_s") is not None:
        tel_kwargs["push_interval_s"] = _number("telemetry.push_interval_s", te["push_interval_s"])
    if te.get("import_url") is not None:
        tel_kwargs["import_url"] = te["import_url"]
    shards = te.get("pushgateway_shards")
    if shards is not None:
        if not isinstance(shards, list) or len(shards) > MAX_TELEMETRY_SHARDS:
            raise _field_error(
                "telemetry.pushgateway_shards",
                f"expected a list of at most {MAX_TELEMETRY_SHARDS} URLs, got {format_value(shards)}",
            )
        tel_kwargs["pushgateway_shards"] = tuple(shards)
    telemetry = _build(TelemetrySettings, **tel_kwargs)

    he = _section(raw, "health", required=False)
    default_awake_max = min(1.0, duty_cycle.awake_fraction * defaults.AWAKE_FRACTION_MARGIN)
    health_kwargs: dict[str, Any] = {"awake_fraction_max": default_awake_max}
    for name in ("period_tolerance_s", "awake_fraction_max", "asleep_power_max_w"):
        if he.get(name) is not None:
            health_kwargs[name] = _number(f"health.{name}", he[name])
    health = _build(HealthSettings, **health_kwargs)
    if health.awake_fraction_max < duty_cycle.awake_fraction:
        raise _field_error(
            "health.awake_fraction_max",
            f"expected >= sample_s/period_s = {duty_cycle.awake_fraction:.4g} (else every healthy period "
            f"warns), got {health.awake_fraction_max!r}",
        )

    return {
        "version": version,
        "issued_at": issued_at,
        "expires_at": expires_at,
        "key_id": key_id,
        "epoch": epoch,
        "duty_cycle": duty_cycle,
        "max_queued_batches": max_queued_batches,
        "model_sha256": model_sha256,
        "engine_sha256": engine_sha256,
        "model_json_sha256": model_json_sha256,
        "calibrations": calibrations,
        "alarm": alarm,
        "telemetry": telemetry,
        "health": health,
        "bearing": _bearing(_section(raw, "bearing", required=False)),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "payload_text": text,
    }
