"""AlarmVoter k-of-n rule and the false-alarm arithmetic behind the per-month figure."""

from __future__ import annotations

import numpy as np
import pytest

from vibration_anomaly.core.scoring import AlarmVoter, alarm_onset_probability, false_alarms_per_month
from vibration_anomaly.errors import InputError


def test_k_of_n_raises_and_latches() -> None:
    v = AlarmVoter(k=3, n=5)
    seq = [True, False, True, False, False]  # 2 of 5: no alarm
    assert [v.update(s) for s in seq] == [False] * 5
    assert v.update(True) is False  # window now F,T,F,F,T = 2
    assert v.update(True) is True  # T,F,F,T,T = 3 -> alarm
    assert v.latched and v.raised_at == 7
    assert all(v.update(False) for _ in range(10))  # latched
    v.reset()
    assert not v.latched and v.votes == 0
    assert v.update(False) is False


def test_isolated_exceedances_never_alarm() -> None:
    v = AlarmVoter(k=4, n=6)
    assert not any(v.update(i % 3 == 0) for i in range(300))  # at most 2 of any 6


@pytest.mark.parametrize(("k", "n"), [(0, 3), (4, 3), (1.5, 3)])
def test_bad_rule_rejected(k: object, n: int) -> None:
    with pytest.raises(InputError):
        AlarmVoter(k=k, n=n)  # type: ignore[arg-type]


def test_onset_probability_matches_simulation() -> None:
    rng = np.random.default_rng(0)
    p, k, n = 0.2, 3, 5
    bits = rng.random(400_000) < p
    c = np.convolve(bits, np.ones(n, dtype=int), mode="valid")
    onsets = np.count_nonzero((c[1:] >= k) & (c[:-1] < k))
    assert onsets / (len(c) - 1) == pytest.approx(alarm_onset_probability(p, k, n), rel=0.05)


def test_month_rate_scales_and_is_small_at_one_percent() -> None:
    assert false_alarms_per_month(0.01, 4, 6) < 0.01
    assert false_alarms_per_month(0.0, 4, 6) == 0.0
    assert false_alarms_per_month(0.05, 1, 1, 60) == pytest.approx(0.05 * 60 * 24 * 30, rel=0.06)
