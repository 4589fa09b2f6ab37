"""The fault kinds (which health task should show each, which stop inference) and what one injection did."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from vibration_anomaly.core.events import Event

# Faults every robot gets (cheap, data-level) and the structural ones dealt round-robin.
DATA_FAULTS = ("hiccup_burst", "nan_inf_burst", "nan_inf_sparse", "duplicate_stamps", "out_of_order_stamps")
STRUCTURAL_FAULTS = (
    "restart_with_alarm",
    "clock_jump_back_asleep",
    "clock_jump_back_sampling",
    "clock_jump_forward",
    "wake_without_sleep",
    "bundle_refused_after_good",
    "bundle_unusable_after_good",
    "firmware_update_disagreement",
    "corrupt_model",
    "hung_engine_call",
    "full_disk",
    "imu_dropout",
    "imu_rate_change",
    "boot_disagreement",
)
FLEET_FAULTS = ("pushgateway_down",)
FAULT_KINDS = DATA_FAULTS + STRUCTURAL_FAULTS + FLEET_FAULTS
# Which health task should show each fault (``runtime.board``), when one should.
HEALTH_FOR = {
    "hiccup_burst": ("backlog",),
    "nan_inf_burst": ("backlog", "sensor"),
    "nan_inf_sparse": ("backlog", "sensor"),
    "duplicate_stamps": ("backlog",),
    "out_of_order_stamps": ("backlog",),
    "restart_with_alarm": (),
    "clock_jump_back_asleep": ("duty cycle",),
    "clock_jump_back_sampling": ("duty cycle",),
    "clock_jump_forward": ("duty cycle",),
    "wake_without_sleep": ("power", "duty cycle", "model"),
    "bundle_refused_after_good": ("bundle",),
    "bundle_unusable_after_good": ("bundle", "model"),
    "firmware_update_disagreement": ("bundle",),
    "corrupt_model": ("bundle", "model"),
    "hung_engine_call": ("model", "power", "duty cycle"),
    "full_disk": ("storage",),
    "imu_dropout": ("sensor", "backlog", "duty cycle"),
    "imu_rate_change": ("sensor", "backlog"),
    "boot_disagreement": ("bundle",),
    "pushgateway_down": (),
}
# Faults during which inference is legitimately impossible: their hours are left out of the 60 +/- 1 check.
OUTAGE_FAULTS = frozenset(
    (
        "restart_with_alarm",
        "firmware_update_disagreement",
        "corrupt_model",
        "hung_engine_call",
        "imu_dropout",
        "imu_rate_change",
        "boot_disagreement",
        "nan_inf_burst",
    )
)


@dataclass
class FaultRecord:
    """What one injection did: when, to whom, what the runtime emitted and showed meanwhile."""

    kind: str
    robot: int
    t0: float  # true fleet seconds
    t1: float
    events: Counter[str] = field(default_factory=Counter)
    health: dict[str, set[str]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    health_samples: int = 0

    def observe(self, ev: Event) -> None:
        name = ev["event"]
        reason = ev.get("reason")
        self.events[f"{name}:{reason}" if reason else name] += 1


@dataclass
class _Action:
    t: float  # true seconds
    kind: str
    args: dict[str, Any] = field(default_factory=dict)
