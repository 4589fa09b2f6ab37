"""One interface for every power source, measured or modelled.

A reading always says where it came from and whether it was measured: a
modelled figure that looks like a measurement is how a fleet ends up trusting
numbers nobody took. ``rails`` holds every rail the source saw, in watts;
``watts`` is the source's best figure for the whole module or board.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from vibration_anomaly.errors import InputError, VibrationAnomalyError


@dataclass(frozen=True)
class PowerReading:
    """One sample. ``t`` is ``time.monotonic()`` seconds unless the source was given another clock."""

    watts: float
    rails: dict[str, float]
    source: str
    modelled: bool
    t: float
    problems: tuple[str, ...] = ()
    """Rails that could not be read this time (name: why); the total excludes them."""
    total_rule: str = ""
    """How ``watts`` was formed from the rails, e.g. ``"VDD_IN"`` or ``"sum of rails"``."""
    details: dict[str, float] = field(default_factory=dict)
    """Extra figures a source can give (e.g. ``process_gpu_memory_bytes`` from NVML)."""

    def describe(self) -> str:
        """One line for a terminal or a log; modelled figures say so in capitals."""
        rails = ", ".join(f"{k} {v:.3f} W" for k, v in self.rails.items())
        kind = "MODELLED, not measured" if self.modelled else "measured"
        extra = f" [unread: {'; '.join(self.problems)}]" if self.problems else ""
        return f"{self.watts:7.3f} W ({kind}; {self.source}; {rails}){extra}"


class PowerSourceUnavailable(VibrationAnomalyError):
    """This kind of sensor is not on this machine (or not readable by this user)."""


class PowerReadError(InputError):
    """A sensor that exists returned something that is not a power figure."""


@runtime_checkable
class PowerSource(Protocol):
    """Anything that can be asked for the power drawn right now."""

    name: str
    modelled: bool

    def read(self) -> PowerReading: ...

    def close(self) -> None: ...


def monotonic() -> float:
    return time.monotonic()
