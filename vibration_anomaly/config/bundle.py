"""The signed duty-cycle config bundle: the one place a file becomes trusted numbers.

File format (``docs/BUNDLE.md`` has the full story)::

    vibration-anomaly-bundle: 1
    key_id: 7ea7cc13c5a8a762
    signature: <88 characters of base64: Ed25519 over the payload bytes>
    payload_bytes: 812
    ---
    <the payload: YAML or JSON text, exactly the bytes that were signed>

The header is strict and canonical: the loader re-renders it from what it parsed
and refuses the file unless the bytes are identical, so *every* changed byte in
the file is refused, either there (``format``), as another key (``unknown_key``),
or by the signature (``bad_signature``). There is no tolerated slack (trailing
whitespace, comments, alternative base64 spellings) where a change could hide.

Order of checks, cheapest and least trusting first: size (before parsing),
header, key, signature, then only signed bytes are parsed (``parse``), then
fields and ranges (``field``), then rollback, firmware agreement, model and
engine hashes, and only then (unless the caller defers it with ``record=False``)
the accepted version is recorded. See :func:`load_verified_bundle` for the
contract when the caller checks further files itself.

:class:`VerifiedBundle` can only be built by this module's loader: its
constructor demands a private module-level token (``_LOADER_TOKEN``) and refuses
anything else, ``dataclasses.replace`` needs that token too, and it will not
pickle. Code elsewhere that wants numbers has to go through
:func:`load_verified_bundle` (or :func:`load_example_bundle`, which verifies the
shipped example for real), so no unverified number can reach the runtime by
accident.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import logging
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vibration_anomaly.config import defaults
from vibration_anomaly.config.firmware import (
    compare_with_firmware,
    format_value,
    parse_timestamp,
    read_firmware_statement,
    strict_yaml_load,
)
from vibration_anomaly.config.trust import (
    DEV_KEY_ID,
    BundleRefused,
    RollbackState,
    TrustStore,
    _read_limited,
    is_key_id,
    key_id_of,
)
from vibration_anomaly.errors import InputError

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:  # Python 3.10 (Humble robots)
        from importlib.abc import Traversable

__all__ = [
    "MAX_BUNDLE_BYTES",
    "AlarmSettings",
    "BundleRefused",
    "DutyCycle",
    "HealthSettings",
    "TelemetrySettings",
    "VerifiedBundle",
    "check_payload",
    "commit_accepted",
    "load_example_bundle",
    "load_verified_bundle",
    "write_test_bundle",
    "read_verified_engine",
    "read_verified_model",
    "sha256_file",
    "sign_payload",
    "verify_engine_file",
    "verify_model_file",
]

log = logging.getLogger(__name__)

MAX_BUNDLE_BYTES = 64 * 1024
"""Size limit of a whole bundle file, checked before anything is parsed."""

FORMAT_VERSION = 1
MAGIC = f"vibration-anomaly-bundle: {FORMAT_VERSION}"
SIGNATURE_BYTES = 64
MAX_PERIOD_S = 86400.0
"""A duty period longer than a day is a typo, not a duty cycle."""
MAX_VERSION = 2**53
MAX_QUEUE = 1000
MAX_VOTES = 1000

_HEADER_RE = re.compile(
    rb"\Avibration-anomaly-bundle: (?P<fmt>[0-9]+)\n"
    rb"key_id: (?P<key_id>[^\n]*)\n"
    rb"signature: (?P<signature>[^\n]*)\n"
    rb"payload_bytes: (?P<length>[0-9]{1,6})\n"
    rb"---\n"
)
_SHA256_RE = re.compile(r"[0-9a-f]{64}")

EXAMPLE_PACKAGE = "vibration_anomaly.config"
EXAMPLE_DIR = "example"
EXAMPLE_BUNDLE = "dev_bundle.yaml"
EXAMPLE_FIRMWARE = "firmware.json"
EXAMPLE_TRUST = "trust"


# ---------------------------------------------------------------- the trusted value objects


def _problem(owner: str, name: str, problem: str) -> InputError:
    return InputError(owner, name, problem)


def _finite(owner: str, name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _problem(owner, name, f"expected a finite number, got {value!r}")


@dataclass(frozen=True)
class DutyCycle:
    """Sample for ``sample_s`` at the start of each ``period_s``; sleep the rest.

    Freely constructible (simulators need what-if cycles) but always valid; the
    numbers the robot runs come from :attr:`VerifiedBundle.duty_cycle`.
    """

    sample_s: float
    period_s: float

    def __post_init__(self) -> None:
        _finite("duty_cycle", "sample_s", self.sample_s)
        _finite("duty_cycle", "period_s", self.period_s)
        if self.sample_s <= 0:
            raise _problem("duty_cycle", "sample_s", f"expected > 0, got {format_value(self.sample_s)}")
        if not self.sample_s < self.period_s:
            raise _problem(
                "duty_cycle", "sample_s",
                f"expected sample_s < period_s, got sample_s {format_value(self.sample_s)} >= "
                f"period_s {format_value(self.period_s)}",
            )
        if self.period_s > MAX_PERIOD_S:
            raise _problem("duty_cycle", "period_s",
                           f"expected <= {MAX_PERIOD_S:g} s, got {format_value(self.period_s)}")

    @property
    def sleep_s(self) -> float:
        return self.period_s - self.sample_s

    @property
    def awake_fraction(self) -> float:
        return self.sample_s / self.period_s


@dataclass(frozen=True)
class AlarmSettings:
    """k-of-n voting over scores; ``score_threshold`` None means the machine's calibrated threshold."""

    votes_required: int = defaults.VOTES_REQUIRED
    votes_window: int = defaults.VOTES_WINDOW
    score_threshold: float | None = None

    def __post_init__(self) -> None:
        for name in ("votes_required", "votes_window"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_VOTES:
                raise _problem("alarm", name, f"expected an integer in 1..{MAX_VOTES}, got {v!r}")
        if self.votes_required > self.votes_window:
            raise _problem(
                "alarm", "votes_required",
                f"expected votes_required <= votes_window, got {self.votes_required} > {self.votes_window}",
            )
        if self.score_threshold is not None:
            _finite("alarm", "score_threshold", self.score_threshold)


MIN_PUSH_INTERVAL_S = 1.0
"""Below a second a push interval is a typo (ms for s): 10,000 robots would flood the fleet's servers."""
MAX_TELEMETRY_SHARDS = 256
"""More Pushgateway shards than this is a fleet for a store, not a longer list (docs/FLEET.md)."""
_URL_RE = re.compile(r"https?://[^\s/]+(/\S*)?")


def _check_url(name: str, url: Any) -> None:
    if not isinstance(url, str) or not _URL_RE.fullmatch(url):
        raise _problem("telemetry", name, f"expected an http(s):// URL such as http://127.0.0.1:9091, got {url!r}")


@dataclass(frozen=True)
class TelemetrySettings:
    """Where and how often to push; the robot id grouping key comes from the node, not the bundle.

    At most one destination: ``pushgateway_url`` (one gateway),
    ``pushgateway_shards`` (the robot picks one by rendezvous hashing of its id,
    see ``telemetry.routing``) or ``import_url`` (a store's Prometheus import
    endpoint, e.g. VictoriaMetrics). All null: the robot does not push.
    """

    pushgateway_url: str | None = None
    job: str = defaults.TELEMETRY_JOB
    push_interval_s: float = defaults.PUSH_INTERVAL_S
    pushgateway_shards: tuple[str, ...] | None = None
    import_url: str | None = None

    def __post_init__(self) -> None:
        if self.pushgateway_url is not None:
            _check_url("pushgateway_url", self.pushgateway_url)
        if self.pushgateway_shards is not None:
            shards = self.pushgateway_shards
            if not isinstance(shards, tuple) or not 1 <= len(shards) <= MAX_TELEMETRY_SHARDS:
                raise _problem("telemetry", "pushgateway_shards",
                               f"expected a list of 1..{MAX_TELEMETRY_SHARDS} URLs, got {shards!r}")
            for i, url in enumerate(shards):
                _check_url(f"pushgateway_shards[{i}]", url)
            if len(set(shards)) != len(shards):
                dup = next(u for u in shards if shards.count(u) > 1)
                raise _problem("telemetry", "pushgateway_shards",
                               f"expected distinct URLs, got {dup!r} twice (it would take two shares of the fleet)")
        if self.import_url is not None:
            _check_url("import_url", self.import_url)
        given = [n for n in ("pushgateway_url", "pushgateway_shards", "import_url") if getattr(self, n) is not None]
        if len(given) > 1:
            raise _problem("telemetry", given[1],
                           f"expected one destination, got {' and '.join(given)} (a robot reports to one place)")
        if not isinstance(self.job, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,128}", self.job):
            raise _problem("telemetry", "job",
                           f"expected 1-128 characters of [A-Za-z0-9_.:-], got {self.job!r}")
        _finite("telemetry", "push_interval_s", self.push_interval_s)
        if not MIN_PUSH_INTERVAL_S <= self.push_interval_s <= MAX_PERIOD_S:
            raise _problem("telemetry", "push_interval_s",
                           f"expected {MIN_PUSH_INTERVAL_S:g} <= push_interval_s <= {MAX_PERIOD_S:g} seconds, "
                           f"got {self.push_interval_s!r}")

    @property
    def enabled(self) -> bool:
        """True when the bundle names a destination (any of the three)."""
        return any(getattr(self, n) is not None for n in ("pushgateway_url", "pushgateway_shards", "import_url"))


@dataclass(frozen=True)
class HealthSettings:
    """Thresholds the diagnostics node turns into OK / WARN."""

    awake_fraction_max: float
    period_tolerance_s: float = defaults.PERIOD_TOLERANCE_S
    asleep_power_max_w: float | None = None

    def __post_init__(self) -> None:
        _finite("health", "period_tolerance_s", self.period_tolerance_s)
        if self.period_tolerance_s < 0:
            raise _problem("health", "period_tolerance_s", f"expected >= 0, got {self.period_tolerance_s!r}")
        _finite("health", "awake_fraction_max", self.awake_fraction_max)
        if not 0 < self.awake_fraction_max <= 1:
            raise _problem("health", "awake_fraction_max",
                           f"expected 0 < awake_fraction_max <= 1, got {self.awake_fraction_max!r}")
        if self.asleep_power_max_w is not None:
            _finite("health", "asleep_power_max_w", self.asleep_power_max_w)
            if self.asleep_power_max_w <= 0:
                raise _problem("health", "asleep_power_max_w",
                               f"expected null or > 0, got {self.asleep_power_max_w!r}")


_LOADER_TOKEN = object()
"""Only this module holds it; VerifiedBundle refuses to be built without it."""


@dataclass(frozen=True)
class VerifiedBundle:
    """Numbers that passed signature, schema, rollback and firmware checks. Immutable.

    Built only by :func:`load_verified_bundle` / :func:`load_example_bundle`; see
    the module docstring for how construction from unverified input is prevented.
    """

    version: int
    issued_at: datetime
    expires_at: datetime | None
    key_id: str
    duty_cycle: DutyCycle
    max_queued_batches: int
    model_sha256: str
    engine_sha256: str | None
    alarm: AlarmSettings
    telemetry: TelemetrySettings
    health: HealthSettings
    payload_sha256: str
    source_path: str
    payload_text: str = field(repr=False)
    _token: InitVar[object] = None

    def __post_init__(self, _token: object) -> None:
        if _token is not _LOADER_TOKEN:
            raise TypeError(
                "VerifiedBundle is built only by vibration_anomaly.config.bundle.load_verified_bundle(); "
                "sign a bundle and load it (tests: sign one with a key made in the test)"
            )

    def __reduce__(self) -> Any:  # pickling would be a way around verification
        raise TypeError("VerifiedBundle cannot be pickled; pass the bundle file and verify it where it is used")

    def __copy__(self) -> VerifiedBundle:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> VerifiedBundle:
        return self

    def is_expired(self, now: datetime | float | None = None) -> bool:
        """Past ``expires_at`` the bundle still runs, but health must WARN (see docs/BUNDLE.md).

        ``now``: an aware datetime, a naive one (taken as UTC) or POSIX seconds.
        """
        if self.expires_at is None:
            return False
        return _as_utc(now) >= self.expires_at

    @property
    def signed_with_dev_key(self) -> bool:
        """True for the shipped development key, whose private half everybody has."""
        return self.key_id == DEV_KEY_ID

    def as_dict(self) -> dict[str, Any]:
        """Effective payload (documented defaults filled in), nested like the payload file."""
        return {
            "version": self.version,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "key_id": self.key_id,
            "duty_cycle": dataclasses.asdict(self.duty_cycle),
            "max_queued_batches": self.max_queued_batches,
            "model_sha256": self.model_sha256,
            "engine_sha256": self.engine_sha256,
            "alarm": dataclasses.asdict(self.alarm),
            "telemetry": dataclasses.asdict(self.telemetry),
            "health": dataclasses.asdict(self.health),
        }

    def effective_values(self) -> dict[str, Any]:
        """``as_dict`` flattened to dotted names, the names used in refusals and the firmware check."""
        from vibration_anomaly.config.firmware import flatten

        return flatten(self.as_dict())


def _as_utc(now: datetime | float | None) -> datetime:
    if now is None:
        return datetime.now(timezone.utc)
    if isinstance(now, datetime):
        return now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now.astimezone(timezone.utc)
    return datetime.fromtimestamp(float(now), timezone.utc)


# ---------------------------------------------------------------- container


@dataclass(frozen=True)
class SignedContainer:
    """The parsed header and the untouched payload bytes; nothing here is trusted yet."""

    key_id: str
    signature: bytes
    payload: bytes


def render_container(key_id: str, signature: bytes, payload: bytes) -> bytes:
    """The one canonical spelling of a bundle file (the parser compares against it)."""
    header = (
        f"{MAGIC}\n"
        f"key_id: {key_id}\n"
        f"signature: {base64.b64encode(signature).decode('ascii')}\n"
        f"payload_bytes: {len(payload)}\n"
        "---\n"
    )
    return header.encode("ascii") + payload


def parse_container(data: bytes) -> SignedContainer:
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleRefused("too_large", f"{len(data)} bytes, over the {MAX_BUNDLE_BYTES}-byte limit")
    m = _HEADER_RE.match(data)
    if m is None:
        raise BundleRefused(
            "format",
            f"not a bundle file: expected the header lines '{MAGIC}', 'key_id: ...', 'signature: ...', "
            "'payload_bytes: N', '---' (LF line endings), each exactly once and in that order",
        )
    if m["fmt"] != str(FORMAT_VERSION).encode():
        raise BundleRefused("format", f"bundle format {m['fmt'].decode('ascii', 'replace')!r} is not supported "
                            f"(this software reads format {FORMAT_VERSION})")
    key_id = m["key_id"].decode("ascii", "replace")
    if not is_key_id(key_id):
        raise BundleRefused("format", f"key_id: expected 16 lowercase hex digits, got {key_id!r}", field="key_id")
    try:
        signature = base64.b64decode(m["signature"], validate=True)
    except (binascii.Error, ValueError):
        raise BundleRefused("format", "signature: not valid base64", field="signature") from None
    if len(signature) != SIGNATURE_BYTES:
        raise BundleRefused("format", f"signature: expected {SIGNATURE_BYTES} bytes, got {len(signature)}",
                            field="signature")
    payload = data[m.end():]
    declared = int(m["length"])
    if declared != len(payload):
        raise BundleRefused(
            "format", f"payload_bytes: header says {declared}, file holds {len(payload)} (truncated or edited?)",
            field="payload_bytes",
        )
    container = SignedContainer(key_id, signature, payload)
    # Canonical form only: a second spelling of the same header (leading zeros, other
    # base64 padding bits) would be a place where a change goes unnoticed.
    if render_container(key_id, signature, payload) != data:
        raise BundleRefused("format", "header is not in canonical form (re-sign the payload with `bundle sign`)")
    return container


def sign_payload(payload: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """Bundle file bytes for ``payload`` signed by ``private_key``; the payload is not checked.

    ``bundle sign`` checks the payload first (:func:`check_payload`); this low
    level call exists so tests can make validly signed bad payloads.
    """
    if not isinstance(payload, bytes):
        raise TypeError("payload must be bytes: the signature covers exact bytes")
    data = render_container(key_id_of(private_key.public_key()), private_key.sign(payload), payload)
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleRefused("too_large", f"signed bundle would be {len(data)} bytes, over the "
                            f"{MAX_BUNDLE_BYTES}-byte limit")
    return data


# ---------------------------------------------------------------- payload schema

_TOP_FIELDS = {
    "version", "issued_at", "expires_at", "key_id", "duty_cycle", "max_queued_batches", "model_sha256",
    "engine_sha256", "alarm", "telemetry", "health",
}
_SECTION_FIELDS = {
    "duty_cycle": {"sample_s", "period_s"},
    "alarm": {"votes_required", "votes_window", "score_threshold"},
    "telemetry": {"pushgateway_url", "job", "push_interval_s", "pushgateway_shards", "import_url"},
    "health": {"period_tolerance_s", "awake_fraction_max", "asleep_power_max_w"},
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
        raise _field_error(f"{name}.{unknown[0]}", f"unknown field (expected one of "
                           f"{', '.join(sorted(_SECTION_FIELDS[name]))})")
    return dict(value)


def _build(factory: Any, **kwargs: Any) -> Any:
    """Construct a settings object, reporting its invariant failures as ``field`` refusals."""
    try:
        return factory(**kwargs)
    except InputError as exc:
        raise _field_error(f"{exc.source}.{exc.field}", exc.problem) from None


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
            raise _field_error("expires_at", f"expected later than issued_at {issued_at.isoformat()}, "
                               f"got {expires_at.isoformat()}")
    key_id = raw["key_id"]
    if not isinstance(key_id, str) or not is_key_id(key_id):
        raise _field_error("key_id", f"expected 16 lowercase hex digits, got {format_value(key_id)}")
    model_sha256 = raw["model_sha256"]
    if not isinstance(model_sha256, str) or not _SHA256_RE.fullmatch(model_sha256):
        raise _field_error("model_sha256", f"expected 64 lowercase hex digits, got {format_value(model_sha256)}")
    engine_sha256 = raw.get("engine_sha256")
    if engine_sha256 is not None and (not isinstance(engine_sha256, str) or not _SHA256_RE.fullmatch(engine_sha256)):
        raise _field_error("engine_sha256", "expected null or 64 lowercase hex digits (sha256 of the TensorRT "
                           f"plan file), got {format_value(engine_sha256)}")

    dc = _section(raw, "duty_cycle", required=True)
    for name in ("sample_s", "period_s"):
        if dc.get(name) is None:
            raise _field_error(f"duty_cycle.{name}", "missing (required; never defaulted)")
    duty_cycle = _build(DutyCycle,
                        sample_s=_number("duty_cycle.sample_s", dc["sample_s"]),
                        period_s=_number("duty_cycle.period_s", dc["period_s"]))

    max_queued = raw.get("max_queued_batches")
    max_queued_batches = (
        defaults.MAX_QUEUED_BATCHES if max_queued is None else _integer("max_queued_batches", max_queued, 1, MAX_QUEUE)
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
            raise _field_error("telemetry.pushgateway_shards",
                               f"expected a list of at most {MAX_TELEMETRY_SHARDS} URLs, got {format_value(shards)}")
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
        "duty_cycle": duty_cycle,
        "max_queued_batches": max_queued_batches,
        "model_sha256": model_sha256,
        "engine_sha256": engine_sha256,
        "alarm": alarm,
        "telemetry": telemetry,
        "health": health,
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "payload_text": text,
    }


# ---------------------------------------------------------------- model identity


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _model_refusal(bundle: VerifiedBundle, path: Path, actual: str) -> BundleRefused:
    return BundleRefused(
        "model_mismatch",
        f"model_sha256: bundle {bundle.model_sha256}, file {path} has {actual}; "
        "this bundle was not made for this model",
        source=bundle.source_path, field="model_sha256",
    )


def verify_model_file(bundle: VerifiedBundle, path: Path | str) -> str:
    """Refuse a model/engine file whose sha256 is not the bundle's; call before loading it.

    Returns the hash. Where the loader can take bytes, prefer
    :func:`read_verified_model`, which leaves no gap between check and load.
    """
    path = Path(path)
    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise BundleRefused("model_missing", f"model_sha256: cannot read model file {path}: "
                            f"{exc.strerror or exc}", source=bundle.source_path, field="model_sha256") from exc
    if actual != bundle.model_sha256:
        raise _model_refusal(bundle, path, actual)
    return actual


def read_verified_model(bundle: VerifiedBundle, path: Path | str) -> bytes:
    """The model bytes, read once and checked against the bundle (no check-then-swap window)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BundleRefused("model_missing", f"model_sha256: cannot read model file {path}: "
                            f"{exc.strerror or exc}", source=bundle.source_path, field="model_sha256") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != bundle.model_sha256:
        raise _model_refusal(bundle, path, actual)
    return data


def _engine_expected(bundle: VerifiedBundle, path: Path) -> str:
    """The bundle's engine hash, or a refusal: a bundle that names no engine vouches for none."""
    if bundle.engine_sha256 is None:
        raise BundleRefused(
            "engine_mismatch",
            f"engine_sha256: bundle names no TensorRT engine (null), so engine file {path} is not vouched for; "
            "sign a bundle with engine_sha256 set to the plan's sha256, or run the ONNX model",
            source=bundle.source_path, field="engine_sha256",
        )
    return bundle.engine_sha256


def _engine_refusal(bundle: VerifiedBundle, path: Path, expected: str, actual: str) -> BundleRefused:
    return BundleRefused(
        "engine_mismatch",
        f"engine_sha256: bundle {expected}, file {path} has {actual}; this engine was not built for this "
        "bundle (stale plan? rebuild it from the bundle's model and re-sign)",
        source=bundle.source_path, field="engine_sha256",
    )


def _engine_unreadable(bundle: VerifiedBundle, path: Path, exc: OSError) -> BundleRefused:
    return BundleRefused("engine_missing", f"engine_sha256: cannot read engine file {path}: {exc.strerror or exc}",
                         source=bundle.source_path, field="engine_sha256")


def verify_engine_file(bundle: VerifiedBundle, path: Path | str) -> str:
    """Refuse a TensorRT plan whose sha256 is not the bundle's ``engine_sha256``; call before loading it.

    A plan built from an older model still passes the engine's I/O checks, so
    its identity has to be checked separately. Refuses (``engine_mismatch``)
    when the bundle has no ``engine_sha256`` at all, or the hash differs (both
    are named); ``engine_missing`` when the file cannot be read. Returns the
    hash. Prefer :func:`read_verified_engine` where the bytes can be handed on.
    """
    path = Path(path)
    expected = _engine_expected(bundle, path)
    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise _engine_unreadable(bundle, path, exc) from exc
    if actual != expected:
        raise _engine_refusal(bundle, path, expected, actual)
    return actual


def read_verified_engine(bundle: VerifiedBundle, path: Path | str) -> bytes:
    """The plan bytes, read once and checked against ``engine_sha256`` (no check-then-swap window).

    Same refusals as :func:`verify_engine_file`; deserialize these bytes rather
    than re-reading the file.
    """
    path = Path(path)
    expected = _engine_expected(bundle, path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _engine_unreadable(bundle, path, exc) from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise _engine_refusal(bundle, path, expected, actual)
    return data


# ---------------------------------------------------------------- the loader


def _read_bundle_bytes(path: Path | Traversable) -> bytes:
    try:
        data = _read_limited(path, MAX_BUNDLE_BYTES)
    except FileNotFoundError:
        raise BundleRefused("missing", "bundle file does not exist", source=str(path)) from None
    except OSError as exc:
        raise BundleRefused("missing", f"cannot read bundle file: {exc.strerror or exc}", source=str(path)) from exc
    if data is None:
        raise BundleRefused("too_large", f"larger than the {MAX_BUNDLE_BYTES}-byte limit (checked before parsing)",
                            source=str(path))
    return data


def verify_bundle_bytes(
    data: bytes,
    trust: TrustStore,
    *,
    source: str,
    firmware_path: Path | Traversable | None = None,
    require_firmware: bool = True,
    state_path: Path | None = None,
    model_path: Path | None = None,
    engine_path: Path | None = None,
    record: bool = True,
    now: datetime | float | None = None,
    warn_dev_key: bool = True,
) -> VerifiedBundle:
    """Every check, in order; the single path from bytes to a :class:`VerifiedBundle`.

    ``record`` False runs the rollback check but leaves the state file alone;
    the caller then calls :func:`commit_accepted` once its own checks passed.
    """
    try:
        container = parse_container(data)
        trust.verify(container.key_id, container.signature, container.payload)
        values = check_payload(container.payload)
        if values["key_id"] != container.key_id:
            raise _field_error("key_id", f"payload names key {values['key_id']}, but the bundle is signed by "
                               f"{container.key_id}")
        bundle = VerifiedBundle(**values, source_path=source, _token=_LOADER_TOKEN)

        state = RollbackState(state_path) if state_path is not None else None
        last = state.check(bundle.version, bundle.payload_sha256) if state is not None else None

        if firmware_path is not None:
            fw_exists = firmware_path.exists() if isinstance(firmware_path, Path) else firmware_path.is_file()
            if fw_exists or require_firmware:
                fw = read_firmware_statement(firmware_path)
                compare_with_firmware(bundle.effective_values(), fw, str(firmware_path))
            else:
                log.warning("%s: firmware file %s missing; agreement NOT checked (require_firmware is off: "
                            "bench use only)", source, firmware_path)
        elif require_firmware:
            raise BundleRefused(
                "firmware_missing",
                "no firmware duty-cycle file configured; the agreement check needs one "
                "(set require_firmware false only on a bench)",
            )
        else:
            log.info("%s: no firmware file given; agreement not checked (caller opted out)", source)

        if model_path is not None:
            verify_model_file(bundle, model_path)
        if engine_path is not None:
            verify_engine_file(bundle, engine_path)

        # Last, after every check this call makes: a refused bundle must never raise the floor.
        if record and state is not None and (last is None or bundle.version > last.version):
            state.record(bundle.version, bundle.payload_sha256, bundle.key_id, _as_utc(now))
    except BundleRefused as exc:
        raise exc.with_source(source) from None

    if bundle.is_expired(now):
        log.warning("%s: bundle version %d expired at %s; still running it, health is WARN until a newer "
                    "bundle arrives", source, bundle.version, bundle.expires_at.isoformat() if bundle.expires_at
                    else "?")
    if warn_dev_key and bundle.signed_with_dev_key:
        log.warning("%s: signed with the DEVELOPMENT key %s; never trust it on a robot", source, bundle.key_id)
    return bundle


def load_verified_bundle(
    path: Path | str,
    trust_dir: Path | str | TrustStore,
    *,
    firmware_path: Path | str | None = None,
    require_firmware: bool = True,
    state_path: Path | str | None = None,
    model_path: Path | str | None = None,
    engine_path: Path | str | None = None,
    record: bool = True,
    now: datetime | float | None = None,
) -> VerifiedBundle:
    """The one way to turn a bundle file into trusted numbers, or a :class:`BundleRefused` saying why.

    ``state_path`` None disables the rollback check (off-robot tools); on a
    robot pass a path on persistent storage. ``model_path`` / ``engine_path``,
    when given, are hashed and compared (:func:`verify_model_file`,
    :func:`verify_engine_file`) before anything is recorded. ``now`` only
    affects the expiry warning (an expired bundle still loads; see
    ``is_expired``).

    Recording contract: the accepted version must be recorded only after
    *everything* the caller checks has passed, or a bundle refused later (say,
    ``model_mismatch`` because its model failed to deploy) would still raise the
    rollback floor and block the revert to the previous, working bundle.

    * ``record=True`` (default): the version is recorded here, after every
      check this call makes. Use it only when this call makes *all* the checks
      (model/engine passed here, or none needed: the ``bundle verify`` CLI).
    * ``record=False``: the rollback check still runs (a lower version is still
      refused) but the state file is not touched. Run your own checks (model,
      engine, calibration, ...), then call ``commit_accepted(bundle,
      state_path)``; if any of them refuses, do not commit.
    """
    trust = trust_dir if isinstance(trust_dir, TrustStore) else TrustStore.from_dir(Path(trust_dir))
    data = _read_bundle_bytes(Path(path))
    return verify_bundle_bytes(
        data, trust, source=str(path),
        firmware_path=None if firmware_path is None else Path(firmware_path),
        require_firmware=require_firmware,
        state_path=None if state_path is None else Path(state_path),
        model_path=None if model_path is None else Path(model_path),
        engine_path=None if engine_path is None else Path(engine_path),
        record=record,
        now=now,
    )


def commit_accepted(bundle: VerifiedBundle, state_path: Path | str | None, *,
                    now: datetime | float | None = None) -> bool:
    """Record ``bundle`` as accepted on this robot; call once every check of the caller has passed.

    The second half of ``load_verified_bundle(..., record=False)``. The state
    file is re-read and re-checked first (another process may have accepted a
    newer bundle in between), so this refuses with ``rollback`` /
    ``version_reuse`` / ``state`` exactly as the loader would; then it is
    written atomically (temporary file, fsync, rename, fsync of the directory).
    Returns True when the record was written, False when it already held this
    version (a reboot) or ``state_path`` is None (no rollback state, as in the
    loader).
    """
    if not isinstance(bundle, VerifiedBundle):
        raise TypeError(f"commit_accepted needs a VerifiedBundle, got {type(bundle).__name__}")
    if state_path is None:
        return False
    state = RollbackState(Path(state_path))
    try:
        last = state.check(bundle.version, bundle.payload_sha256)
        if last is not None and bundle.version <= last.version:
            return False
        state.record(bundle.version, bundle.payload_sha256, bundle.key_id, _as_utc(now))
    except BundleRefused as exc:
        raise exc.with_source(bundle.source_path) from None
    return True


@dataclass(frozen=True)
class BundleFiles:
    """Paths written by :func:`write_test_bundle`, ready for :func:`load_verified_bundle`."""

    bundle: Path
    trust_dir: Path
    firmware: Path
    private_key: Path


def example_payload() -> dict[str, Any]:
    """The shipped example payload as a plain dict (unverified; a starting point for new payloads)."""
    raw = strict_yaml_load((example_dir() / "payload.yaml").read_text(encoding="utf-8"))
    return dict(raw)


def write_test_bundle(directory: Path | str, **changes: Any) -> BundleFiles:
    """Sign a bundle with a throwaway key made here; for tests and simulations that need other numbers.

    ``changes`` override top-level payload fields of the example payload
    (sections are merged: ``duty_cycle={"sample_s": 0.5, "period_s": 2}``).
    Writes the bundle, a trust dir holding only the throwaway public key, and a
    firmware file stating the bundle's duty cycle. Nothing is verified here and
    no VerifiedBundle is returned: load the files with
    :func:`load_verified_bundle` like a robot would.
    """
    from vibration_anomaly.config.trust import generate_private_key, private_key_pem, public_key_pem

    directory = Path(directory)
    (directory / "trust").mkdir(parents=True, exist_ok=True)
    key = generate_private_key()
    payload = example_payload()
    payload["key_id"] = key_id_of(key.public_key())
    for name, value in changes.items():
        if isinstance(value, Mapping) and isinstance(payload.get(name), Mapping):
            payload[name] = {**payload[name], **value}
        else:
            payload[name] = value
    health_changes = changes.get("health")
    if "duty_cycle" in changes and not (isinstance(health_changes, Mapping) and "awake_fraction_max" in health_changes):
        # The example's awake_fraction_max fits 5 s / 60 s only; let the documented default follow the new cycle.
        health = payload.get("health")
        if isinstance(health, Mapping):
            payload["health"] = {k: v for k, v in health.items() if k != "awake_fraction_max"}
    payload_bytes = yaml.safe_dump(payload, sort_keys=False).encode("utf-8")
    files = BundleFiles(
        bundle=directory / "bundle.yaml",
        trust_dir=directory / "trust",
        firmware=directory / "firmware.json",
        private_key=directory / "signing_key.pem",
    )
    files.private_key.write_bytes(private_key_pem(key))
    (files.trust_dir / f"{payload['key_id']}.pub").write_bytes(public_key_pem(key.public_key()))
    files.bundle.write_bytes(sign_payload(payload_bytes, key))
    dc = payload.get("duty_cycle")
    if isinstance(dc, Mapping):
        import json

        statement = {"duty_cycle": {k: dc[k] for k in ("sample_s", "period_s") if k in dc}}
        files.firmware.write_text(json.dumps(statement) + "\n", encoding="utf-8")
    return files


def example_dir() -> Traversable:
    """The shipped example: development-key bundle, its trust dir and a matching firmware file."""
    return resources.files(EXAMPLE_PACKAGE) / EXAMPLE_DIR


def load_example_bundle(require_firmware: bool = True, *, now: datetime | float | None = None) -> VerifiedBundle:
    """Verify the shipped example for real (signature, trust dir, firmware file); for the simulator and tests.

    No rollback state is used. The example is signed with the development key,
    so ``signed_with_dev_key`` is True.
    """
    root = example_dir()
    bundle_file = root / EXAMPLE_BUNDLE
    return verify_bundle_bytes(
        _read_bundle_bytes(bundle_file),
        TrustStore.from_dir(root / EXAMPLE_TRUST),
        source=str(bundle_file),
        firmware_path=root / EXAMPLE_FIRMWARE,
        require_firmware=require_firmware,
        now=now,
        warn_dev_key=False,
    )
