"""Properties of the latest-batch queue and the duty-cycle scheduler/driver, for any sequence (hypothesis).

The fleet drained its batteries by replaying a backlog; these properties say it cannot happen here, for
any sequence of batch arrivals (stamped now or long ago, one by one or in bursts), timer-driven progress,
clock jumps both ways and queue clears:

* the queue never holds more than its bound, and its counters account for every batch put;
* ``take_latest`` hands out only the newest batch, and only when it ends at or after the freshness limit;
* no batch older than its period is ever inferred (nor one stamped after the inference, from before a
  backward jump);
* at most one inference per duty period: between two inferences with no clock jump in between, at least
  one period of true time passes, and every window is inferred at most once;
* the IMU subscription is never open longer than one window (plus the driver's lead-in and tail).

The alarm latch's property (a raised alarm stays raised until reset, across restarts) lives in
``test_latch_properties.py``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from vibration_anomaly.core.driver import JUMP_TOLERANCE_S, DutyCycleDriver
from vibration_anomaly.core.events import EventBus
from vibration_anomaly.core.queue import LatestBatchQueue
from vibration_anomaly.core.scheduler import DutyCycleScheduler, SampleWindow
from vibration_anomaly.core.window import Batch

EPS = 1e-6
_DATA = np.zeros((4, 3), np.float32)


def _batch(t1: float, span: float = 0.5) -> Batch:
    return Batch(t1 - span, t1, _DATA, 1000.0)


# ----------------------------------------------------------------------------------------- the queue

QUEUE_OP = st.one_of(
    st.tuples(st.just("put"), st.floats(-1e4, 1e4, allow_nan=False)),
    st.tuples(st.just("take"), st.floats(-1e4, 1e4, allow_nan=False)),
    st.tuples(st.just("clear"), st.just(0.0)),
)


@settings(max_examples=300, deadline=None)
@given(bound=st.integers(1, 6), ops=st.lists(QUEUE_OP, max_size=80))
def test_queue_bounded_newest_only_fresh_only_and_every_batch_accounted(
    bound: int, ops: list[tuple[str, float]]
) -> None:
    drops: list[str] = []
    q = LatestBatchQueue(bound, on_drop=lambda reason, _b: drops.append(reason))
    model: deque[Batch] = (
        deque()
    )  # what should be queued: the newest ``bound`` batches put since the last take
    for op, x in ops:
        if op == "put":
            b = _batch(x)
            q.put(b)
            model.append(b)
            while len(model) > bound:
                model.popleft()
        elif op == "take":
            got = q.take_latest(fresh_after=x)
            newest = model[-1] if model else None
            if newest is not None and newest.t1 >= x:
                assert got is newest  # the newest batch, never an older one
            else:
                assert got is None  # nothing fresh: nothing replayed
            if got is not None:
                assert got.t1 >= x
            model.clear()
        else:
            q.clear()
            model.clear()
        assert len(q) == len(model) <= bound
        assert q.stats.max_depth <= bound
        s = q.stats
        dropped = s.dropped_overflow + s.dropped_superseded + s.dropped_cleared + s.refused_stale
        assert s.put == s.taken + dropped + len(q)
        assert len(drops) == dropped  # every drop reported, once


# ----------------------------------------------------------------------------------------- the driver


@dataclass
class _Harness:
    """A driver on a simulated clock: true time moves on; the robot clock is true time plus injected jumps.

    ``advance`` is the node's timer: the driver is stepped at each time it asked for. ``jump`` is a clock
    jump: instantaneous, followed by one step (the node's steady-time clock watch). Batches arrive into the
    queue at any moment, stamped now or ``age`` seconds ago, as a sampler or a firmware burst would put them.
    """

    sample_s: float
    period_s: float
    bound: int
    lead_s: float
    tail_s: float
    now: float = 0.0  # the robot clock
    offset: float = 0.0  # robot clock - true time
    queue: LatestBatchQueue = field(init=False)
    driver: DutyCycleDriver = field(init=False)
    due: float | None = field(init=False)
    inferred: list[tuple[float, float, Batch, SampleWindow]] = field(
        default_factory=list
    )  # (true, clock, batch, w)
    opened_true: float | None = None
    open_s: list[float] = field(default_factory=list)
    ops: list[str] = field(default_factory=list)  # what happened, in order: for the inference spacing check

    def __post_init__(self) -> None:
        self.queue = LatestBatchQueue(self.bound)
        sched = DutyCycleScheduler(self.sample_s, self.period_s, clock=self.clock, epoch=0.0)
        # A wall clock that jumps, as on a robot: the driver also gets a steady clock (here: true time),
        # as the node gives it one when it does not run on sim time.
        self.driver = DutyCycleDriver(
            sched, self, EventBus(), lead_s=self.lead_s, tail_s=self.tail_s, steady=lambda: self.true
        )
        # As DetectorRuntime.configure wires it: batches of the old time are dropped at a jump.
        self.driver.on_clock_jump = lambda _delta: self.queue.clear()
        self.due = self.driver.start(self.clock())

    def clock(self) -> float:
        return self.now

    @property
    def true(self) -> float:
        return self.now - self.offset

    # hooks
    def open_sampling(self, window: SampleWindow) -> None:
        self.opened_true = self.true

    def close_sampling(self, window: SampleWindow) -> None:
        assert self.opened_true is not None
        self.open_s.append(self.true - self.opened_true)
        self.opened_true = None

    def infer_once(self, window: SampleWindow) -> None:
        b = self.queue.take_latest(window.start)
        if b is not None:
            self.inferred.append((self.true, self.clock(), b, window))
            self.ops.append("infer")

    def held_resources(self) -> tuple[str, ...]:
        return ()

    # moves
    def advance(self, d: float) -> None:
        target = self.now + d
        while self.due is not None and self.due <= target:
            self.now = max(self.now, self.due)
            self.due = self.driver.step()
        self.now = target

    def jump(self, delta: float) -> None:
        self.offset += delta
        self.now += delta
        if abs(delta) > JUMP_TOLERANCE_S:
            self.ops.append("jump")
        self.due = self.driver.step()

    def arrive(self, age: float, n: int) -> None:
        now = self.clock()
        for i in range(n):
            self.queue.put(_batch(now - age - i * self.sample_s))
            assert len(self.queue) <= self.bound


DRIVER_OP = st.one_of(
    st.tuples(st.just("advance"), st.floats(0.0, 400.0, allow_nan=False)),
    st.tuples(st.just("jump"), st.floats(-4000.0, 4000.0, allow_nan=False)),
    st.tuples(st.just("arrive"), st.tuples(st.floats(0.0, 7200.0, allow_nan=False), st.integers(1, 40))),
    st.tuples(st.just("clear"), st.just(0)),
)


@settings(max_examples=200, deadline=None)
@given(
    sample_s=st.sampled_from([1.0, 5.0, 10.0]),
    period_s=st.sampled_from([20.0, 60.0, 120.0]),
    bound=st.integers(1, 5),
    ops=st.lists(DRIVER_OP, max_size=60),
)
def test_driver_never_infers_stale_data_once_per_period_and_sleeps_between(
    sample_s: float, period_s: float, bound: int, ops: list[tuple[str, object]]
) -> None:
    h = _Harness(sample_s, period_s, bound, lead_s=0.1, tail_s=0.05)
    for op, arg in ops:
        if op == "advance":
            h.advance(float(arg))  # type: ignore[arg-type]
        elif op == "jump":
            h.jump(float(arg))  # type: ignore[arg-type]
        elif op == "arrive":
            age, n = arg  # type: ignore[misc]
            h.arrive(age, n)
        else:
            h.queue.clear()
        assert len(h.queue) <= bound and h.queue.stats.max_depth <= bound
    h.advance(2 * period_s)

    windows_seen: set[int] = set()
    for _true, clock, b, w in h.inferred:
        age = clock - b.t1
        assert b.t1 >= w.start, "a batch of an earlier window was inferred"
        assert age <= period_s + EPS, f"inferred a batch {age:.3f} s old (period {period_s:g} s)"
        assert age >= -JUMP_TOLERANCE_S - EPS, (
            "inferred a batch stamped after the inference (from before a jump)"
        )
        assert id(w) not in windows_seen, "a window inferred twice"
        windows_seen.add(id(w))

    # At most one inference per period: consecutive inferences with no clock jump in between are a period apart.
    times = iter(t for t, _c, _b, _w in h.inferred)
    last: float | None = None
    for what in h.ops:
        if what == "jump":
            last = None
            continue
        t = next(times)
        if last is not None:
            assert t - last >= period_s - EPS, (
                f"two inferences {t - last:.3f} s apart (period {period_s:g} s)"
            )
        last = t

    # The subscription is open for one window at most (lead-in + window + tail), whatever the clock did.
    for s in h.open_s:
        assert s <= sample_s + 0.1 + 0.05 + EPS, f"subscription open {s:.3f} s (window {sample_s:g} s)"


@settings(max_examples=200, deadline=None)
@given(
    sample_s=st.floats(0.5, 30.0),
    extra=st.floats(0.5, 600.0),
    epoch=st.floats(-1e5, 1e5),
    t=st.floats(-1e6, 1e6),
    batch_age=st.floats(0.0, 1e4),
)
def test_scheduler_windows_tile_the_clock_and_fresh_means_this_period(
    sample_s: float, extra: float, epoch: float, t: float, batch_age: float
) -> None:
    period_s = sample_s + extra
    s = DutyCycleScheduler(sample_s, period_s, clock=lambda: t, epoch=epoch)
    w = s.current_window(t)
    assert w.start <= t + 1e-6 * max(1.0, abs(t)) and t < w.start + period_s + 1e-6 * max(1.0, abs(t))
    nxt = s.next_window(t)
    assert nxt.start >= t - 1e-6 * max(1.0, abs(t)) and nxt.start - t <= period_s * (1 + 1e-9) + 1e-6 * abs(t)
    # Fresh = ends in the current period: a batch from before this period's window is stale, whatever its age.
    t1 = t - batch_age
    assert s.is_fresh(t1, t) == (t1 >= w.start)
    if s.is_fresh(t1, t):
        assert t - t1 <= period_s * (1 + 1e-9) + 1e-6 * max(1.0, abs(t))
