"""Power sources behind one interface: Jetson INA3221, NVML, tegrastats, and a documented model.

``open_power_source("auto")`` tries the measured sources in order of fidelity
and falls back to the model, returning the reason for its choice so that it
can be logged and shown next to every figure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from vibration_anomaly.errors import InputError
from vibration_anomaly.power.base import (
    PowerReadError,
    PowerReading,
    PowerSource,
    PowerSourceUnavailable,
)
from vibration_anomaly.power.energy import EnergyIntegrator, EnergySummary
from vibration_anomaly.power.modelled import PLATFORM_MODELS, ModelledSource, PlatformPowerModel

__all__ = [
    "PLATFORM_MODELS",
    "EnergyIntegrator",
    "EnergySummary",
    "ModelledSource",
    "PlatformPowerModel",
    "PowerReadError",
    "PowerReading",
    "PowerSource",
    "PowerSourceUnavailable",
    "SOURCE_KINDS",
    "open_power_source",
]

log = logging.getLogger(__name__)

SOURCE_KINDS: tuple[str, ...] = ("auto", "hwmon", "nvml", "tegrastats", "modelled")


def open_power_source(
    kind: str = "auto",
    *,
    model: PlatformPowerModel | None = None,
    is_awake: Callable[[], bool] = lambda: False,
    hwmon_roots: tuple[Path, Path] | None = None,
    tegrastats_interval_ms: int = 500,
) -> tuple[PowerSource, str]:
    """Open one source; ``auto`` tries hwmon, NVML, tegrastats, then the model.

    Returns the source and why it was chosen. A named source that is absent
    raises PowerSourceUnavailable with the reason rather than quietly modelling.
    """
    from vibration_anomaly.power.hwmon import Ina3221Source
    from vibration_anomaly.power.nvml import NvmlSource
    from vibration_anomaly.power.tegrastats import TegrastatsSource

    if kind not in SOURCE_KINDS:
        raise InputError("power source", "kind", f"expected one of {', '.join(SOURCE_KINDS)}, got {kind!r}")

    def hwmon() -> PowerSource:
        return Ina3221Source(*hwmon_roots) if hwmon_roots else Ina3221Source()

    openers: dict[str, Callable[[], PowerSource]] = {
        "hwmon": hwmon,
        "nvml": NvmlSource,
        "tegrastats": lambda: TegrastatsSource(interval_ms=tegrastats_interval_ms),
    }
    if kind == "modelled":
        modelled = ModelledSource(model, is_awake)
        return modelled, f"modelled as asked ({modelled.model.platform}: {modelled.model.provenance})"
    if kind != "auto":
        return openers[kind](), f"{kind} as asked"
    skipped: list[str] = []
    for name, opener in openers.items():
        try:
            src = opener()
        except PowerSourceUnavailable as exc:
            skipped.append(f"{name}: {exc}")
            continue
        reason = f"auto: {name}" + (f" (skipped {'; '.join(skipped)})" if skipped else "")
        log.debug("power source %s", reason)
        return src, reason
    msrc = ModelledSource(model, is_awake)
    reason = (
        f"auto: no power sensor ({'; '.join(skipped)}); MODELLED figures for {msrc.model.platform} "
        f"({msrc.model.provenance})"
    )
    log.debug("power source %s", reason)
    return msrc, reason
