"""The trusted value objects: the duty cycle and settings, and the VerifiedBundle that holds them.

:class:`VerifiedBundle` can only be built by the loader: its constructor demands
a private module-level token (``_LOADER_TOKEN``, passed only by
``vibration_anomaly.bundle.loader``) and refuses anything else,
``dataclasses.replace`` needs that token too, and it will not pickle. Code
elsewhere that wants numbers has to go through ``load_verified_bundle`` (or
``load_example_bundle``, which verifies the shipped example for real), so no
unverified number can reach the runtime by accident. The settings objects are
plain frozen values that check their own invariants (simulators may build them).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import InitVar, dataclass, field
from datetime import datetime, timezone
from typing import Any

from vibration_anomaly.bundle import defaults
from vibration_anomaly.bundle.bearing import BearingSettings
from vibration_anomaly.bundle.firmware import flatten, format_value
from vibration_anomaly.bundle.trust import DEV_KEY_ID
from vibration_anomaly.errors import InputError

MAX_PERIOD_S = 86400.0
"""A duty period longer than a day is a typo, not a duty cycle."""
MAX_VERSION = 2**53
MAX_QUEUE = 1000
MAX_VOTES = 1000


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
                "duty_cycle",
                "sample_s",
                f"expected sample_s < period_s, got sample_s {format_value(self.sample_s)} >= "
                f"period_s {format_value(self.period_s)}",
            )
        if self.period_s > MAX_PERIOD_S:
            raise _problem(
                "duty_cycle", "period_s", f"expected <= {MAX_PERIOD_S:g} s, got {format_value(self.period_s)}"
            )

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
                "alarm",
                "votes_required",
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
        raise _problem(
            "telemetry", name, f"expected an http(s):// URL such as http://127.0.0.1:9091, got {url!r}"
        )


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
                raise _problem(
                    "telemetry",
                    "pushgateway_shards",
                    f"expected a list of 1..{MAX_TELEMETRY_SHARDS} URLs, got {shards!r}",
                )
            for i, url in enumerate(shards):
                _check_url(f"pushgateway_shards[{i}]", url)
            if len(set(shards)) != len(shards):
                dup = next(u for u in shards if shards.count(u) > 1)
                raise _problem(
                    "telemetry",
                    "pushgateway_shards",
                    f"expected distinct URLs, got {dup!r} twice (it would take two shares of the fleet)",
                )
        if self.import_url is not None:
            _check_url("import_url", self.import_url)
        given = [
            n for n in ("pushgateway_url", "pushgateway_shards", "import_url") if getattr(self, n) is not None
        ]
        if len(given) > 1:
            raise _problem(
                "telemetry",
                given[1],
                f"expected one destination, got {' and '.join(given)} (a robot reports to one place)",
            )
        if not isinstance(self.job, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,128}", self.job):
            raise _problem(
                "telemetry", "job", f"expected 1-128 characters of [A-Za-z0-9_.:-], got {self.job!r}"
            )
        _finite("telemetry", "push_interval_s", self.push_interval_s)
        if not MIN_PUSH_INTERVAL_S <= self.push_interval_s <= MAX_PERIOD_S:
            raise _problem(
                "telemetry",
                "push_interval_s",
                f"expected {MIN_PUSH_INTERVAL_S:g} <= push_interval_s <= {MAX_PERIOD_S:g} seconds, "
                f"got {self.push_interval_s!r}",
            )

    @property
    def enabled(self) -> bool:
        """True when the bundle names a destination (any of the three)."""
        return any(
            getattr(self, n) is not None for n in ("pushgateway_url", "pushgateway_shards", "import_url")
        )


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
            raise _problem(
                "health",
                "awake_fraction_max",
                f"expected 0 < awake_fraction_max <= 1, got {self.awake_fraction_max!r}",
            )
        if self.asleep_power_max_w is not None:
            _finite("health", "asleep_power_max_w", self.asleep_power_max_w)
            if self.asleep_power_max_w <= 0:
                raise _problem(
                    "health", "asleep_power_max_w", f"expected null or > 0, got {self.asleep_power_max_w!r}"
                )


_LOADER_TOKEN = object()
"""Passed only by ``loader.verify_bundle_bytes``; VerifiedBundle refuses to be built without it."""


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
    epoch: int
    duty_cycle: DutyCycle
    max_queued_batches: int
    model_sha256: str
    engine_sha256: str | None
    model_json_sha256: str | None
    calibrations: tuple[tuple[str, str], ...] | None
    alarm: AlarmSettings
    telemetry: TelemetrySettings
    health: HealthSettings
    bearing: BearingSettings | None
    payload_sha256: str
    source_path: str
    payload_text: str = field(repr=False)
    _token: InitVar[object] = None

    def __post_init__(self, _token: object) -> None:
        if _token is not _LOADER_TOKEN:
            raise TypeError(
                "VerifiedBundle is built only by vibration_anomaly.bundle.load_verified_bundle(); "
                "sign a bundle and load it (tests: sign one with a key made in the test)"
            )

    def __reduce__(self) -> Any:  # pickling would be a way around verification
        raise TypeError(
            "VerifiedBundle cannot be pickled; pass the bundle file and verify it where it is used"
        )

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

    def calibration_sha256(self, robot_id: str) -> str | None:
        """The sha256 the bundle names for ``robot_id``'s calibration file; None when it names none for it."""
        return None if self.calibrations is None else dict(self.calibrations).get(robot_id)

    @property
    def signed_with_dev_key(self) -> bool:
        """True for the shipped development key, whose private half everybody has."""
        return self.key_id == DEV_KEY_ID

    def as_dict(self) -> dict[str, Any]:
        """Effective payload (documented defaults filled in), nested like the payload file.

        ``bearing`` appears only when the payload states it: a bundle without it reads as before.
        """
        bearing = {} if self.bearing is None else {"bearing": self.bearing.as_dict()}
        return {
            "version": self.version,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "key_id": self.key_id,
            "epoch": self.epoch,
            "duty_cycle": dataclasses.asdict(self.duty_cycle),
            "max_queued_batches": self.max_queued_batches,
            "model_sha256": self.model_sha256,
            "engine_sha256": self.engine_sha256,
            "model_json_sha256": self.model_json_sha256,
            "calibrations": None if self.calibrations is None else dict(self.calibrations),
            "alarm": dataclasses.asdict(self.alarm),
            "telemetry": dataclasses.asdict(self.telemetry),
            "health": dataclasses.asdict(self.health),
            **bearing,
        }

    def effective_values(self) -> dict[str, Any]:
        """``as_dict`` flattened to dotted names, the names used in refusals and the firmware check.

        ``calibrations`` is left out: it is per-robot file identity, not a setting
        the firmware runs, and robot ids may contain dots.
        """
        return flatten({k: v for k, v in self.as_dict().items() if k != "calibrations"})


def _as_utc(now: datetime | float | None) -> datetime:
    if now is None:
        return datetime.now(timezone.utc)
    if isinstance(now, datetime):
        return now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now.astimezone(timezone.utc)
    return datetime.fromtimestamp(float(now), timezone.utc)
