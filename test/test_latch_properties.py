"""Property: a raised alarm stays raised until reset, whatever happens in between (hypothesis).

Any sequence of verdicts (above / below threshold), process restarts (a new voter and latch on the
same state file), reconfigures and resets: the published alarm state is True from the first k-of-n
vote until the next explicit reset, and False only when no vote raised it since the last reset.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from vibration_anomaly.core.latch import AlarmLatch
from vibration_anomaly.core.scoring import AlarmVoter

STEP = st.one_of(st.booleans(), st.just("restart"), st.just("reset"))


def _voter(latch: AlarmLatch, k: int, n: int) -> AlarmVoter:
    v = AlarmVoter(k, n)
    if latch.latched:
        v.restore()
    return v


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(STEP, max_size=60), k=st.integers(1, 4), extra=st.integers(0, 3))
def test_a_raised_alarm_stays_raised_until_reset(steps: list[object], k: int, extra: int) -> None:
    n = k + extra
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "alarm_state.json"
        latch = AlarmLatch(path)
        voter = _voter(latch, k, n)
        recent: list[bool] = []
        raised = False  # the model: raised since the last reset?
        for step in steps:
            if step == "restart":
                latch = AlarmLatch(path)  # a new process reads the state file
                voter = _voter(latch, k, n)
                recent = []  # the vote history is not durable: only the latch is
            elif step == "reset":
                voter.reset()
                latch.reset(0.0, "test", "property")
                raised, recent = False, []
            else:
                recent = (recent + [bool(step)])[-n:]
                was = voter.latched
                now = voter.update(bool(step))
                if now and not was:
                    latch.raise_(0.0, 1.0, 0.5)
                if sum(recent) >= k:
                    raised = True
                assert now == raised, (steps, k, n)
            assert voter.latched == raised and latch.latched == raised
