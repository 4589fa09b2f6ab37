"""Jetson INA3221 rails read straight from sysfs.

Two layouts exist in the field (see test/fixtures/power/README.md for sources):

* hwmon (upstream ``ina3221`` driver, JetPack 5 and 6, e.g. Orin):
  ``/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmonN/in{1,2,3}_label`` with
  ``in{n}_input`` in mV and ``curr{n}_input`` in mA. Channel 7 is the
  "sum of shunt voltages" and unconnected channels are labelled ``NC``; both
  are skipped.
* iio (downstream ``ina3221x`` driver, JetPack 4 and older, e.g. Nano, TX2):
  ``/sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0/rail_name_{n}`` with
  ``in_power{n}_input`` in mW.

The module's total is the input rail where the board has one (``VDD_IN`` on
Orin Nano/NX, ``POM_5V_IN`` on Nano, ``5V_IN`` on Xavier NX under JetPack 4);
otherwise (AGX Orin, AGX Xavier) the sum of the rails, and the reading says which.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vibration_anomaly.power.base import PowerReadError, PowerReading, PowerSourceUnavailable, monotonic

HWMON_ROOT = Path("/sys/bus/i2c/drivers/ina3221")
IIO_ROOT = Path("/sys/bus/i2c/drivers/ina3221x")
INPUT_RAILS: tuple[str, ...] = ("VDD_IN", "POM_5V_IN", "5V_IN")
"""Rails that carry the whole module's input power, in order of preference."""


@dataclass(frozen=True)
class _Channel:
    label: str
    kind: str  # "hwmon" (mV x mA) or "iio" (mW)
    paths: tuple[Path, ...]


def _read_int(path: Path) -> int:
    """Read one sysfs integer; raise PowerReadError naming the file on anything else."""
    try:
        text = path.read_text().strip()
    except OSError as exc:  # ENODATA from a disabled channel, EACCES, a vanished device
        raise PowerReadError(str(path), path.name, f"unreadable: {exc.strerror or exc}") from exc
    # Some downstream drivers append a unit ("32760 ma"); the number comes first.
    head = text.split(" ", 1)[0] if text else ""
    if not re.fullmatch(r"-?\d+", head):
        raise PowerReadError(str(path), path.name, f"expected an integer, got {text[:40]!r}")
    return int(head)


def discover_channels(hwmon_root: Path = HWMON_ROOT, iio_root: Path = IIO_ROOT) -> list[_Channel]:
    """Find every labelled, connected INA3221 channel under either layout."""
    channels: list[_Channel] = []
    for hwmon in sorted(hwmon_root.glob("*/hwmon/hwmon*")):
        for label_path in sorted(hwmon.glob("in*_label")):
            m = re.fullmatch(r"in(\d+)_label", label_path.name)
            if not m:
                continue
            n = int(m.group(1))
            try:
                label = label_path.read_text().strip()
            except OSError:
                continue
            if n >= 4 or not label or label.upper() == "NC" or "sum of shunt" in label.lower():
                continue
            channels.append(_Channel(label, "hwmon", (hwmon / f"in{n}_input", hwmon / f"curr{n}_input")))
    for iio in sorted(iio_root.glob("*/iio:device*")):
        for name_path in sorted(iio.glob("rail_name_*")):
            n_text = name_path.name.removeprefix("rail_name_")
            try:
                label = name_path.read_text().strip()
            except OSError:
                continue
            if not n_text.isdigit() or not label or label.upper() == "NC":
                continue
            channels.append(_Channel(label, "iio", (iio / f"in_power{n_text}_input",)))
    return channels


class Ina3221Source:
    """PowerSource over the Jetson's INA3221 monitors (either sysfs layout)."""

    name = "ina3221"
    modelled = False

    def __init__(
        self,
        hwmon_root: Path = HWMON_ROOT,
        iio_root: Path = IIO_ROOT,
        clock: Callable[[], float] = monotonic,
    ) -> None:
        self._clock = clock
        self._channels = discover_channels(Path(hwmon_root), Path(iio_root))
        if not self._channels:
            raise PowerSourceUnavailable(
                f"no INA3221 rails under {hwmon_root} or {iio_root} (not a Jetson, or the driver is not loaded)"
            )
        layouts = sorted({c.kind for c in self._channels})
        self.source = f"ina3221 {'+'.join(layouts)}"

    @property
    def rail_names(self) -> tuple[str, ...]:
        return tuple(c.label for c in self._channels)

    def _watts(self, ch: _Channel) -> float:
        mw: float
        if ch.kind == "iio":
            mw = _read_int(ch.paths[0])
        else:
            mv, ma = _read_int(ch.paths[0]), _read_int(ch.paths[1])
            mw = mv * ma / 1000.0
        if mw < 0:
            # A high-side monitor on a supply rail never sees reverse current; a
            # negative figure is a glitch or a miswired shunt, not power.
            raise PowerReadError(str(ch.paths[-1]), ch.label, f"negative power {mw} mW")
        return mw / 1000.0

    def read(self) -> PowerReading:
        rails: dict[str, float] = {}
        problems: list[str] = []
        t = self._clock()
        for ch in self._channels:
            try:
                rails[ch.label] = self._watts(ch)
            except PowerReadError as exc:
                problems.append(f"{ch.label}: {exc.problem} ({exc.source})")
        total_rail = next((r for r in INPUT_RAILS if r in self.rail_names), None)
        if total_rail is not None:
            if total_rail not in rails:
                raise PowerReadError(self.source, total_rail, "input rail unreadable: " + "; ".join(problems))
            watts, rule = rails[total_rail], total_rail
        else:
            if not rails:
                raise PowerReadError(self.source, "rails", "no rail readable: " + "; ".join(problems))
            watts, rule = sum(rails.values()), "sum of rails" + (" (incomplete)" if problems else "")
        return PowerReading(watts, rails, self.source, False, t, tuple(problems), rule)

    def close(self) -> None:
        return None
