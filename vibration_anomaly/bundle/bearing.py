"""The bearing the detector watches: its defect orders, or the geometry they come from (optional section).

A rolling-element bearing with a defect makes impacts at fixed multiples of the shaft speed, its
*defect orders* (Randall & Antoni 2011, "Rolling element bearing diagnostics - a tutorial", eq. 1-4),
for a stationary outer race and a rotating inner race:

* ``bpfo`` (ball pass, outer race) = n/2 (1 - d/D cos a)
* ``bpfi`` (ball pass, inner race) = n/2 (1 + d/D cos a)
* ``bsf`` (ball spin) = D/(2d) (1 - (d/D cos a)^2); a ball defect strikes both races once per spin,
  so its impacts repeat at 2 x ``bsf`` (the CWRU data centre's "rolling element" 4.7135 is that)
* ``ftf`` (cage, fundamental train) = 1/2 (1 - d/D cos a)

with n rolling elements of diameter d on a pitch diameter D at contact angle a. :func:`orders_from_geometry`
is the one implementation of these formulas in the package (the diagnosis and the bundle both use it).

The bundle's ``bearing`` section states either some of the four orders or the geometry (``balls``,
``ball_diameter``, ``pitch_diameter``, ``contact_angle_deg``), never both. Orders that cannot belong to a
real bearing are refused, naming the field: ``bpfo + bpfi`` is the number of rolling elements (an
integer), ``ftf`` is below 1 (the cage turns slower than the shaft) and ``bpfo = n x ftf``.

It may also state ``resonance_hz: [lo, hi]``, the structural resonance the bearing's impacts ring (a tap
test, or the band a recorded defect rang): speed-aware scoring then reads the envelope only in bands that
overlap it (``core.order_score.envelope_bands``), and not at all where the sensor cannot pass it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vibration_anomaly.errors import InputError

ORDER_NAMES: tuple[str, ...] = ("bpfo", "bpfi", "bsf", "ftf")
GEOMETRY_NAMES: tuple[str, ...] = ("balls", "ball_diameter", "pitch_diameter", "contact_angle_deg")
MAX_ORDER = 100.0
"""No bearing has a defect order above this (it would need more than 100 rolling elements)."""
MAX_BALLS = 100
MAX_CONTACT_ANGLE_DEG = 60.0
"""Angular-contact bearings go to about 40 degrees; above 60 the formulas (and the bearing) make no sense."""
MAX_RESONANCE_HZ = 100_000.0
"""A structural resonance is stated below this (no vibration sensor on a robot reaches it)."""
BALLS_TOLERANCE = 0.02
"""``bpfo + bpfi`` must be within this of a whole number of rolling elements (the stated orders are rounded)."""


def _bad(name: str, problem: str) -> InputError:
    return InputError("bearing", name, problem)


def _positive(name: str, value: float | None, high: float = math.inf) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(name, f"expected a finite number, got {value!r}")
    if not 0 < value <= high:
        raise _bad(name, f"expected 0 < {name} <= {high:g}, got {value!r}")


def orders_from_geometry(
    balls: int, ball_diameter: float, pitch_diameter: float, contact_angle_deg: float = 0.0
) -> dict[str, float]:
    """The four defect orders (multiples of shaft speed) of a bearing with a stationary outer race."""
    r = ball_diameter / pitch_diameter * math.cos(math.radians(contact_angle_deg))
    return {
        "bpfo": balls / 2 * (1 - r),
        "bpfi": balls / 2 * (1 + r),
        "bsf": pitch_diameter / (2 * ball_diameter) * (1 - r * r),
        "ftf": (1 - r) / 2,
    }


@dataclass(frozen=True)
class BearingSettings:
    """The ``bearing`` section: some defect orders, or the whole geometry; checks its own invariants."""

    bpfo: float | None = None
    bpfi: float | None = None
    bsf: float | None = None
    ftf: float | None = None
    balls: int | None = None
    ball_diameter: float | None = None
    pitch_diameter: float | None = None
    contact_angle_deg: float | None = None
    resonance_hz: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        self._check_resonance()
        stated = [n for n in ORDER_NAMES if getattr(self, n) is not None]
        geometry = [n for n in GEOMETRY_NAMES if getattr(self, n) is not None]
        if stated and geometry:
            raise _bad(
                geometry[0],
                f"state the defect orders ({', '.join(stated)}) or the geometry they come from, not both",
            )
        if not stated and not geometry:
            raise _bad(
                "bpfo",
                f"expected some of {', '.join(ORDER_NAMES)} or the geometry {', '.join(GEOMETRY_NAMES)}",
            )
        if geometry:
            self._check_geometry()
        else:
            self._check_orders()

    def _check_resonance(self) -> None:
        r = self.resonance_hz
        if r is None:
            return
        ok = isinstance(r, tuple | list) and len(r) == 2
        ok = ok and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in r
        )
        if not ok or not 0 < r[0] < r[1] <= MAX_RESONANCE_HZ:
            raise _bad(
                "resonance_hz",
                f"expected [lo, hi] in Hz with 0 < lo < hi <= {MAX_RESONANCE_HZ:g}, got {list(r) if ok else r!r}",
            )

    def _check_geometry(self) -> None:
        for name in ("balls", "ball_diameter", "pitch_diameter"):
            if getattr(self, name) is None:
                raise _bad(name, "missing (the geometry needs balls, ball_diameter and pitch_diameter)")
        n = self.balls
        if isinstance(n, bool) or not isinstance(n, int) or not 3 <= n <= MAX_BALLS:
            raise _bad("balls", f"expected an integer in 3..{MAX_BALLS}, got {n!r}")
        _positive("ball_diameter", self.ball_diameter)
        _positive("pitch_diameter", self.pitch_diameter)
        assert self.ball_diameter is not None and self.pitch_diameter is not None
        if not self.ball_diameter < self.pitch_diameter:
            raise _bad(
                "ball_diameter",
                f"expected ball_diameter < pitch_diameter (same unit), got {self.ball_diameter!r} >= "
                f"{self.pitch_diameter!r}",
            )
        a = self.contact_angle_deg
        if a is not None and (
            isinstance(a, bool)
            or not isinstance(a, int | float)
            or not math.isfinite(a)
            or not 0 <= a <= MAX_CONTACT_ANGLE_DEG
        ):
            raise _bad(
                "contact_angle_deg",
                f"expected 0 <= contact_angle_deg <= {MAX_CONTACT_ANGLE_DEG:g}, got {a!r}",
            )

    def _check_orders(self) -> None:
        for name in ORDER_NAMES:
            _positive(name, getattr(self, name), 1.0 if name == "ftf" else MAX_ORDER)
        if self.ftf is not None and not self.ftf < 1:
            raise _bad("ftf", f"expected ftf < 1 (the cage turns slower than the shaft), got {self.ftf!r}")
        if self.bpfo is not None and self.bpfi is not None:
            n = self.bpfo + self.bpfi
            if n < 2.5 or abs(n - round(n)) > BALLS_TOLERANCE * n:
                raise _bad(
                    "bpfi",
                    f"bpfo + bpfi is the number of rolling elements, a whole number >= 3; got "
                    f"{self.bpfo!r} + {self.bpfi!r} = {n:.4g} (a typo?)",
                )
            if self.ftf is not None:
                expect = self.bpfo / round(n)
                if abs(self.ftf - expect) > BALLS_TOLERANCE * expect:
                    raise _bad(
                        "ftf",
                        f"expected ftf = bpfo / (bpfo + bpfi) = {expect:.4g} (cage speed of the same bearing), "
                        f"got {self.ftf!r}",
                    )

    def orders(self) -> dict[str, float]:
        """The defect orders this section gives (from the geometry when that is what it states)."""
        if self.balls is not None and self.ball_diameter is not None and self.pitch_diameter is not None:
            return orders_from_geometry(
                self.balls, self.ball_diameter, self.pitch_diameter, self.contact_angle_deg or 0.0
            )
        return {n: float(v) for n in ORDER_NAMES if (v := getattr(self, n)) is not None}

    def as_dict(self) -> dict[str, float | int | list[float]]:
        """The fields the payload stated (the effective values the firmware check and ``as_dict`` show)."""
        out: dict[str, float | int | list[float]] = {
            n: v for n in (*ORDER_NAMES, *GEOMETRY_NAMES) if (v := getattr(self, n)) is not None
        }
        if self.resonance_hz is not None:
            out["resonance_hz"] = [float(v) for v in self.resonance_hz]
        return out
