import threading

import numpy as np
import pytest

from vibration_anomaly.core.queue import LatestBatchQueue
from vibration_anomaly.core.scheduler import DutyCycleScheduler, Phase
from vibration_anomaly.core.window import Batch


def batch(t0: float, n: int = 10) -> Batch:
    return Batch(t0, t0 + (n - 1) / 1000, np.zeros((n, 3), np.float32), 1000.0)


def test_bound_drops_oldest_and_counts_frames() -> None:
    drops: list[tuple[str, float]] = []
    q = LatestBatchQueue(3, on_drop=lambda r, b: drops.append((r, b.t0)))
    for i in range(5):
        q.put(batch(float(i + 1)))
    assert len(q) == 3
    assert drops == [("overflow", 1.0), ("overflow", 2.0)]
    assert q.stats.dropped_overflow == 2 and q.stats.dropped_frames == 20
    assert q.stats.max_depth == 3


def test_take_latest_hands_out_only_the_newest_fresh_batch() -> None:
    q = LatestBatchQueue(3)
    for t in (1.0, 2.0, 3.0):
        q.put(batch(t))
    got = q.take_latest(fresh_after=2.5)
    assert got is not None and got.t0 == 3.0
    assert q.stats.refused_stale == 2 and len(q) == 0
    for t in (1.0, 2.0):
        q.put(batch(t))
    assert q.take_latest(fresh_after=60.0) is None  # all stale: nothing replayed
    assert q.stats.refused_stale == 4
    q.put(batch(61.0))
    q.put(batch(62.0))
    assert q.take_latest(60.0).t0 == 62.0
    assert q.stats.dropped_superseded == 1


def test_queue_never_exceeds_bound_under_concurrent_producers() -> None:
    q = LatestBatchQueue(3)
    seen_max = []

    def produce(base: float) -> None:
        for i in range(2000):
            q.put(batch(base + i))
            seen_max.append(len(q))

    threads = [threading.Thread(target=produce, args=(k * 10000.0,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert max(seen_max) <= 3 and q.stats.max_depth <= 3
    assert q.stats.put == 8000 and q.stats.dropped_overflow == 8000 - 3


def test_scheduler_windows_phases_and_freshness() -> None:
    now = [0.0]
    s = DutyCycleScheduler(5.0, 60.0, clock=lambda: now[0], epoch=0.0)
    assert s.phase(0.0) is Phase.SAMPLING and s.phase(4.999) is Phase.SAMPLING
    assert s.phase(5.0) is Phase.ASLEEP and s.phase(59.9) is Phase.ASLEEP
    now[0] = 61.0
    w = s.current_window()
    assert (w.period, w.start, w.end) == (1, 60.0, 65.0)
    assert s.next_window().start == 120.0
    assert s.seconds_until_next_window() == pytest.approx(59.0)
    assert s.is_fresh(60.5) and not s.is_fresh(59.9)
    assert s.awake_fraction == pytest.approx(5 / 60)


@pytest.mark.parametrize("sample_s,period_s", [(60, 60), (0, 60), (70, 60), (float("nan"), 60)])
def test_scheduler_refuses_impossible_contracts(sample_s: float, period_s: float) -> None:
    with pytest.raises(ValueError, match="sample_s"):
        DutyCycleScheduler(sample_s, period_s, clock=lambda: 0.0)
