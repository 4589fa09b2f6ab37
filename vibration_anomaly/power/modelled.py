"""A documented power model for machines with no sensor. Every reading says ``modelled=True``.

The model has two numbers per platform: watts while the engine is asleep and
while it is awake. Where they come from is part of the table, because a
modelled figure is only as good as its provenance:

================  ========  =======  ==================================================
platform          asleep W  awake W  source
================  ========  =======  ==================================================
orin-nano         4.0       11.0     product guide (docs/GPU.md): the fleet's measured
                                     idle module power (4 W) and the GPU-kept-hot idle
                                     power of the incident (11 W), per idle minute.
================  ========  =======  ==================================================

For any other platform pass ``--model-watts ASLEEP,AWAKE`` (``custom``) with
your own measured figures, and record where they came from.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from vibration_anomaly.errors import InputError
from vibration_anomaly.power.base import PowerReading, monotonic


@dataclass(frozen=True)
class PlatformPowerModel:
    platform: str
    asleep_w: float
    awake_w: float
    provenance: str


PLATFORM_MODELS: dict[str, PlatformPowerModel] = {
    "orin-nano": PlatformPowerModel(
        "orin-nano",
        asleep_w=4.0,
        awake_w=11.0,
        provenance="fleet incident figures in the product guide: 4 W idle, 11 W with the GPU kept hot",
    ),
}
DEFAULT_PLATFORM = "orin-nano"


MAX_MODEL_WATTS = 1000.0
"""Watts above this are not an embedded computer's draw (as ``power --model-watts``)."""


def custom_model(spec: str) -> PlatformPowerModel:
    """Parse ``"ASLEEP,AWAKE"`` watts, e.g. ``"3.5,9"``; NaN, inf, negative or absurd watts are an InputError."""
    parts = spec.split(",")
    expected = f"ASLEEP,AWAKE in watts with 0 <= asleep <= awake <= {MAX_MODEL_WATTS:g} (e.g. 4,11)"
    try:
        asleep, awake = (float(p) for p in parts)
    except ValueError as exc:
        raise InputError("--model-watts", "value", f"expected {expected}, got {spec!r}") from exc
    for name, v in (("asleep", asleep), ("awake", awake)):
        if not (math.isfinite(v) and 0 <= v <= MAX_MODEL_WATTS):
            raise InputError("--model-watts", name, f"expected {expected}, got {spec!r}")
    if not asleep <= awake:
        raise InputError(
            "--model-watts", "value", f"expected 0 <= asleep <= awake, got {asleep:g}, {awake:g}"
        )
    return PlatformPowerModel("custom", asleep, awake, "given on the command line")


def get_model(platform: str) -> PlatformPowerModel:
    try:
        return PLATFORM_MODELS[platform]
    except KeyError:
        known = ", ".join(sorted(PLATFORM_MODELS))
        raise InputError(
            "power model", "platform", f"unknown {platform!r}; known: {known} (or --model-watts)"
        ) from None


class ModelledSource:
    """PowerSource that answers from the model, asleep or awake as ``is_awake()`` says.

    Pass the engine's residency as ``is_awake`` (``lambda: not engine.residency().asleep``)
    so the model follows what the backend really holds.
    """

    name = "modelled"
    modelled = True

    def __init__(
        self,
        model: PlatformPowerModel | None = None,
        is_awake: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = monotonic,
    ) -> None:
        self.model = model or PLATFORM_MODELS[DEFAULT_PLATFORM]
        self._is_awake = is_awake
        self._clock = clock
        self.source = f"modelled {self.model.platform}"

    def read(self) -> PowerReading:
        awake = bool(self._is_awake())
        watts = self.model.awake_w if awake else self.model.asleep_w
        state = "awake" if awake else "asleep"
        return PowerReading(
            watts, {f"model:{state}": watts}, self.source, True, self._clock(), (), f"model ({state})"
        )

    def close(self) -> None:
        return None
