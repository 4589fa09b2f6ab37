"""Energy from power samples: joules per inference and per idle minute.

Samples are integrated with the trapezoid rule. Each interval between two
samples belongs to the phase that was current at its start (``"infer"`` while
an inference runs, ``"idle"`` otherwise), which is exact when the caller
samples at phase changes and close enough at a steady sampling rate.
An interval longer than ``max_gap_s`` is not integrated: a sensor that went
quiet must not be filled in with a guess. If any sample was modelled, the
result says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from vibration_anomaly.errors import InputError
from vibration_anomaly.power.base import PowerReading

PHASES = ("infer", "idle")


@dataclass(frozen=True)
class EnergySummary:
    inferences: int
    infer_joules: float
    infer_seconds: float
    idle_joules: float
    idle_seconds: float
    gap_seconds: float
    modelled: bool
    samples: int

    @property
    def joules_per_inference(self) -> float | None:
        return self.infer_joules / self.inferences if self.inferences else None

    @property
    def joules_per_idle_minute(self) -> float | None:
        return self.idle_joules / (self.idle_seconds / 60.0) if self.idle_seconds > 0 else None

    def as_dict(self) -> dict[str, float | int | bool | None]:
        return {
            "inferences": self.inferences,
            "joules_per_inference": self.joules_per_inference,
            "joules_per_idle_minute": self.joules_per_idle_minute,
            "infer_seconds": self.infer_seconds,
            "idle_seconds": self.idle_seconds,
            "gap_seconds": self.gap_seconds,
            "modelled": self.modelled,
            "samples": self.samples,
        }


class EnergyIntegrator:
    """Feed it readings and phase changes; ask it for joules per inference and per idle minute."""

    def __init__(self, max_gap_s: float = 5.0) -> None:
        self.max_gap_s = max_gap_s
        self._phase = "idle"
        self._last: PowerReading | None = None
        self._joules = {p: 0.0 for p in PHASES}
        self._seconds = {p: 0.0 for p in PHASES}
        self._gap = 0.0
        self._inferences = 0
        self._modelled = False
        self._samples = 0

    @property
    def phase(self) -> str:
        return self._phase

    def add(self, reading: PowerReading) -> None:
        if reading.watts != reading.watts or reading.watts < 0:  # NaN or negative
            raise InputError(
                reading.source, "watts", f"expected a non-negative number, got {reading.watts!r}"
            )
        self._samples += 1
        self._modelled = self._modelled or reading.modelled
        last, self._last = self._last, reading
        if last is None:
            return
        dt = reading.t - last.t
        if dt < 0:
            raise InputError(reading.source, "t", f"sample time went backwards by {-dt:.3f} s")
        if dt > self.max_gap_s:
            self._gap += dt
            return
        self._joules[self._phase] += 0.5 * (last.watts + reading.watts) * dt
        self._seconds[self._phase] += dt

    def set_phase(self, phase: str, reading: PowerReading | None = None) -> None:
        """Change phase; pass a reading taken at the change to close the interval exactly."""
        if phase not in PHASES:
            raise InputError("energy integrator", "phase", f"expected one of {PHASES}, got {phase!r}")
        if reading is not None:
            self.add(reading)
        if phase == "infer" and self._phase != "infer":
            self._inferences += 1
        self._phase = phase

    def summary(self) -> EnergySummary:
        return EnergySummary(
            inferences=self._inferences,
            infer_joules=self._joules["infer"],
            infer_seconds=self._seconds["infer"],
            idle_joules=self._joules["idle"],
            idle_seconds=self._seconds["idle"],
            gap_seconds=self._gap,
            modelled=self._modelled,
            samples=self._samples,
        )
