"""The label vocabularies of a robot's metrics, and the checks on the values it is fed.

Every label takes its values from a fixed set, so a typo or a new reason cannot
explode cardinality: :func:`fold` maps anything outside the set onto ``other``.
The event names and the drop/reject reasons are ``core.events``'; this module
only adds the values the metrics need beyond them. :func:`number` is the one
check of a numeric field, whether it comes in an event or through a setter of
``metrics.RobotMetrics``.
"""

from __future__ import annotations

import math

from vibration_anomaly.core import events
from vibration_anomaly.errors import InputError

NAMESPACE = "vibration_anomaly"

POWER_STATES: tuple[str, ...] = ("asleep", "awake")
"""Label values of ``power_watts`` / ``energy_joules_total``: the two duty-cycle states."""

DROP_REASONS: tuple[str, ...] = (*sorted(events.DROP_REASONS), "other")
"""Why frames were dropped: the one vocabulary of ``core.events`` (queue, keep-last, window), plus ``other``."""

REJECT_REASONS: tuple[str, ...] = (*sorted(events.REJECT_REASONS), "before_window", "gap", "partial", "other")
"""Why input samples were refused: ``core.events``' reject reasons (and the windower's discard reasons)."""

REFUSAL_REASONS: tuple[str, ...] = (
    "signature",
    "expired",
    "mismatch",
    "invalid",
    "missing",
    "untrusted",
    "other",
)
"""Why a config bundle was refused at start-up. ``mismatch`` is firmware and container disagreeing."""

LOCATIONS: tuple[str, ...] = tuple(events.LOCATIONS)
"""Label values of ``alarm_location``: where the alarm's diagnosis places the fault (``core.events``)."""

KNOWN_EVENTS: tuple[str, ...] = (*sorted(events.EVENT_NAMES), "stale", "other")
"""Event names counted by name: ``core.events`` owns them; anything else is ``other``."""


def fold(value: object, allowed: tuple[str, ...]) -> str:
    """Map a free value onto a fixed label set, so a typo or a new reason cannot explode cardinality."""
    text = str(value).strip().lower()
    return text if text in allowed else "other"


def number(source: str, field: str, value: object, *, allow_negative: bool = False) -> float:
    """``value`` as a finite float (>= 0 unless ``allow_negative``), or ``InputError`` naming source and field."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(source, field, f"expected a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise InputError(source, field, f"expected a finite number, got {value!r}")
    if not allow_negative and out < 0:
        raise InputError(source, field, f"expected a number >= 0, got {value!r}")
    return out
