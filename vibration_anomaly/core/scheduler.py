"""The duty-cycle scheduler: one clock-driven answer to "what should we be doing now?".

Every consumer (the demo, the soak, the ROS nodes) asks this object, so the
sample window is decided in one place. The clock is injected: the demo and the
tests run it on simulated time, the node on ROS time.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass


class Phase(enum.Enum):
    SAMPLING = "sampling"  # subscribed, filling the window
    ASLEEP = "asleep"  # window closed: infer once, then hold nothing until the next period


@dataclass(frozen=True)
class SampleWindow:
    """The sample window of one duty period: [start, end) in clock seconds."""

    period: int
    start: float
    end: float


class DutyCycleScheduler:
    """Maps clock time onto duty periods of ``period_s`` that begin with ``sample_s`` of sampling.

    Periods are counted from ``epoch`` so that restarts keep the same grid
    when the epoch is fixed (e.g. 0 for simulated time).
    """

    def __init__(
        self,
        sample_s: float,
        period_s: float,
        clock: Callable[[], float],
        epoch: float | None = None,
    ) -> None:
        if not (math.isfinite(sample_s) and math.isfinite(period_s)) or sample_s <= 0 or period_s <= sample_s:
            raise ValueError(
                f"duty cycle: need 0 < sample_s < period_s, got sample_s={sample_s}, period_s={period_s}"
            )
        self.sample_s = float(sample_s)
        self.period_s = float(period_s)
        self.clock = clock
        self.epoch = clock() if epoch is None else float(epoch)

    @property
    def awake_fraction(self) -> float:
        """The contract's share of each period spent sampling."""
        return self.sample_s / self.period_s

    def period_index(self, t: float | None = None) -> int:
        t = self.clock() if t is None else t
        return math.floor((t - self.epoch) / self.period_s)

    def window(self, period: int) -> SampleWindow:
        start = self.epoch + period * self.period_s
        return SampleWindow(period, start, start + self.sample_s)

    def current_window(self, t: float | None = None) -> SampleWindow:
        return self.window(self.period_index(t))

    def phase(self, t: float | None = None) -> Phase:
        t = self.clock() if t is None else t
        w = self.current_window(t)
        return Phase.SAMPLING if w.start <= t < w.end else Phase.ASLEEP

    def next_window(self, t: float | None = None) -> SampleWindow:
        """The next window that has not started yet at ``t`` (or the current one if ``t`` is its start)."""
        t = self.clock() if t is None else t
        w = self.current_window(t)
        return w if t <= w.start else self.window(w.period + 1)

    def seconds_until_next_window(self, t: float | None = None) -> float:
        t = self.clock() if t is None else t
        return max(0.0, self.next_window(t).start - t)

    def is_fresh(self, batch_t1: float, t: float | None = None) -> bool:
        """True when a batch ending at ``batch_t1`` belongs to the current duty period.

        Anything older is stale: inferring it would replay old data, which is
        exactly the backlog fault the fleet suffered.
        """
        return batch_t1 >= self.current_window(t).start
