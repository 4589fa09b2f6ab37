"""The soak's options, its constants and a robot's simulated clock."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

RATE_HZ = 1000.0
POOL_WINDOWS = 6  # pre-generated windows per machine model and condition
COMMISSIONING_WINDOWS = 30
PUSH_INTERVAL_S = 2.0  # wall seconds between pushes (the fleet runs ~300x faster than real time)
HUNG_CALL_BOUND_S = 1.0  # the hung robot's engine-call bound, in wall seconds (the runtime's is 30 s)
RETRY_PERIODS = (
    5  # a robot that failed to configure is retried every 5 duty periods (the supervisor's back-off)
)
STALE_TOLERANCE_S = 1e-3
log = logging.getLogger("vibration_anomaly.soak")


@dataclass
class SoakOptions:
    robots: int = 50
    hours: float = 24.0
    seed: int = 0
    pushgateway: str | None = (
        None  # a gateway's URL; None: start one on loopback if installed (see telemetry)
    )
    telemetry: bool = True  # False: no telemetry at all
    machine_models: int = 4
    workdir: Path | None = None  # None: a temp folder (on /dev/shm when there is one), removed at the end


class SimClock:
    """A robot's clock (ROS time): the fleet's true time plus this robot's offset, moved by injected jumps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now
