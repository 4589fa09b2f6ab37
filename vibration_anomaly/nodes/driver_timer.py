"""The duty-cycle driver's timing on a ROS node: one-shot timers on the node clock, and a steady watch.

``core.driver.DutyCycleDriver`` never sleeps: ``step()`` does what is due and says when to call it
next. Here that becomes a timer on the node clock (ROS time, so sim time works), re-armed after each
step. Two clock facts need care:

* sim time reads 0 until the first /clock message: the driver starts with that message (the
  recording's own time), not at 0, where the jump would read as a missed window;
* a node-clock timer armed before the clock moved back an hour fires an hour late, so a 1 Hz timer on
  the steady clock looks at the node clock and steps the driver at once when it went backwards
  (the driver then re-arms on the new time and reports a ``clock_jump``).
"""

from __future__ import annotations

from collections.abc import Callable

from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.timer import Timer

from vibration_anomaly.core.driver import JUMP_TOLERANCE_S, DriverState, DutyCycleDriver


class DriverTimer:
    def __init__(
        self, node: Node, driver: Callable[[], DutyCycleDriver | None], now: Callable[[], float]
    ) -> None:
        self.node, self.driver, self.now = node, driver, now
        self.started = False
        self._timer: Timer | None = None
        self._last_clock: float | None = None
        self._watch = node.create_timer(1.0, self._watch_clock, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def start(self) -> None:
        self.started = False
        self.tick()

    def stop(self) -> None:
        self._cancel()
        self.started = False

    def _cancel(self) -> None:
        if self._timer is not None:
            self.node.destroy_timer(self._timer)
            self._timer = None

    def _arm(self, deadline: float | None) -> None:
        self._cancel()
        if deadline is not None and self.driver() is not None:
            self._timer = self.node.create_timer(max(1e-3, deadline - self.now()), self.tick)

    def tick(self) -> None:
        driver = self.driver()
        if driver is None:
            return
        if not self.started:
            if self.now() == 0.0:  # sim time before the first /clock: wait for the clock to move
                self._timer = self._timer or self.node.create_timer(1e-3, self.tick)
                return
            self.started = True
            self._arm(driver.start())
            return
        nxt = driver.step()
        if self.driver() is not None:
            self._arm(nxt)

    def _watch_clock(self) -> None:
        now, last = self.now(), self._last_clock
        self._last_clock = now
        driver = self.driver()
        sampling = driver is not None and driver.state is DriverState.SAMPLING
        # While a window is open, look every second: the window's real-time bound (the driver's steady
        # clock) must close it even if the node clock stood still or stepped back unseen.
        if self.started and (sampling or (last is not None and now < last - JUMP_TOLERANCE_S)):
            self.tick()
