"""Healthy false alarms as the robot would raise them: per machine, in time order, with the bundle's vote.

``evaluate`` scores each machine's held-out healthy windows in time order;
this module turns those ratios (score / threshold) into what an operator
would see and what can be claimed from it:

* windows over the threshold, ``x`` of ``N``, with the exact (Clopper-Pearson)
  one-sided 95 % upper bound on the per-window exceedance rate;
* whether that is consistent with the threshold's ``target_far``: the one-sided
  exact binomial test ``P(X >= x | N, target_far) >= 0.05``;
* the voted alarms: the product's own ``AlarmVoter`` (k of n, from the signed
  bundle) run over the windows in time order, reset after each alarm (an
  operator acknowledges it), with the window and signal time of each;
* expected voted alarms per robot-month at the bundle's duty cycle
  (``3600 / period_s`` inferences per hour, 30 days), from the observed rate and
  from its 95 % upper bound, assuming independent windows
  (``core.scoring.false_alarms_per_month``).

The voted count is measured on consecutive windows of the recording; on the
robot the windows are a duty-cycle period apart. The monthly figures assume
independent windows; the voted count in time order is what shows whether
exceedances come together.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vibration_anomaly.core.scoring import AlarmVoter, false_alarms_per_month
from vibration_anomaly.errors import InputError

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Vote:
    """The alarm rule and duty cycle of a signed bundle: k of the last n windows, inferences per hour."""

    k: int
    n: int
    inferences_per_hour: float
    source: str


def bundle_vote(bundle_path: str | None = None, trust_dir: str | None = None) -> Vote:
    """The vote of a verified bundle (``--bundle`` / ``--trust``), default the shipped example bundle."""
    from vibration_anomaly.bundle import load_example_bundle, load_verified_bundle

    if bundle_path is None and trust_dir is None:
        b = load_example_bundle()
        source = f"shipped example bundle, version {b.version}"
    elif bundle_path is None or trust_dir is None:
        missing, given = ("--trust", "--bundle") if trust_dir is None else ("--bundle", "--trust")
        raise InputError(
            missing, "missing", f"{given} needs {missing} too (a bundle and the trust dir verifying it)"
        )
    else:
        b = load_verified_bundle(bundle_path, trust_dir, require_firmware=False, record=False)
        source = f"{bundle_path}, version {b.version}"
    return Vote(b.alarm.votes_required, b.alarm.votes_window, 3600.0 / b.duty_cycle.period_s, source)


def _log_binom_coef(n: int) -> np.ndarray:
    """log C(n, i) for i = 0..n (cumulative sums of log((n - j + 1) / j))."""
    j = np.arange(1, n + 1, dtype=np.float64)
    return np.concatenate([[0.0], np.cumsum(np.log((n - j + 1) / j))])


def binom_cdf(x: int, n: int, p: float) -> float:
    """P(X <= x) for X ~ Binomial(n, p), summed exactly in log space."""
    if x < 0:
        return 0.0
    if x >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    i = np.arange(x + 1, dtype=np.float64)
    terms = _log_binom_coef(n)[: x + 1] + i * math.log(p) + (n - i) * math.log1p(-p)
    return float(min(1.0, np.exp(terms).sum()))


def binom_sf(x: int, n: int, p: float) -> float:
    """P(X >= x) for X ~ Binomial(n, p)."""
    if x <= 0:
        return 1.0
    if x > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    i = np.arange(x, n + 1, dtype=np.float64)
    terms = _log_binom_coef(n)[x:] + i * math.log(p) + (n - i) * math.log1p(-p)
    return float(min(1.0, np.exp(terms).sum()))


def clopper_pearson_upper(x: int, n: int, confidence: float = CONFIDENCE) -> float:
    """Exact one-sided upper confidence bound on a binomial rate from x successes in n trials.

    The p at which ``P(X <= x | n, p) = 1 - confidence`` (0 of 160 at 95 %: 0.0185).
    """
    if not (0 <= x <= n and n > 0):
        raise InputError("clopper_pearson_upper", "x/n", f"expected 0 <= x <= n, n > 0, got {x}/{n}")
    alpha = 1.0 - confidence
    if x == n:
        return 1.0
    if x == 0:
        return 1.0 - alpha ** (1.0 / n)
    lo, hi = x / n, 1.0
    for _ in range(200):  # bisection: binom_cdf(x, n, p) falls as p grows
        mid = 0.5 * (lo + hi)
        if binom_cdf(x, n, mid) > alpha:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return hi


def within_target(x: int, n: int, target: float, confidence: float = CONFIDENCE) -> tuple[bool, float]:
    """(consistent, p-value): one-sided exact test of "the rate is <= target" given x of n over it."""
    pv = binom_sf(x, n, target)
    return pv >= 1.0 - confidence, pv


def voted_alarms(above: Sequence[bool] | np.ndarray, k: int, n: int) -> list[int]:
    """Indices of the windows at which the k-of-n ``AlarmVoter`` raises, windows in the given order.

    After each alarm the voter is reset (the operator acknowledges), so one
    long run of exceedances counts once per ``k`` fresh exceedances.
    """
    voter = AlarmVoter(k, n)
    out = []
    for i, a in enumerate(above):
        if voter.update(bool(a)):
            out.append(i)
            voter.reset()
    return out


def alarms_per_month_upper(p_upper: float, k: int, n: int, inferences_per_hour: float) -> float:
    """Largest expected alarms per month for any per-window rate p <= p_upper.

    The onset rate p^k (1-p)^(n-k+1) C(n-1, k-1) peaks at p = k / (n + 1), so
    beyond that the bound is the peak, not the value at p_upper.
    """
    return false_alarms_per_month(min(p_upper, k / (n + 1)), k, n, inferences_per_hour)


def _rates(over: int, total: int, target: float, vote: Vote) -> dict[str, Any]:
    p = over / total if total else float("nan")
    p_up = clopper_pearson_upper(over, total) if total else float("nan")
    ok, pv = within_target(over, total, target) if total else (False, float("nan"))
    iph = vote.inferences_per_hour
    return {
        "windows": total,
        "over_threshold": over,
        "exceedance_rate": round(p, 5),
        "exceedance_upper95": round(p_up, 5),
        "target_p_value": round(pv, 5),
        "within_target_95": ok,
        "alarms_per_month": round(false_alarms_per_month(p, vote.k, vote.n, iph), 5) if total else None,
        "alarms_per_month_upper95": round(alarms_per_month_upper(p_up, vote.k, vote.n, iph), 5)
        if total
        else None,
    }


def healthy_false_alarms(
    machines: Mapping[str, tuple[np.ndarray, float]], target_far: float, vote: Vote
) -> dict[str, Any]:
    """Per machine and pooled false-alarm figures from held-out healthy ratios in time order.

    ``machines`` maps a machine name to (ratios score / threshold in time
    order, window length in seconds). Pooled: exceedances over all windows;
    voted alarms are the sum of each machine's own voter (one robot each).
    A NaN ratio is a window the robot would not score (``core.knock_gate.uncut_knock``): counted in
    ``not_scored``, neither in the windows nor in the vote.
    """
    out: dict[str, Any] = {
        "vote": {"k": vote.k, "n": vote.n, "source": vote.source},
        "inferences_per_hour": round(vote.inferences_per_hour, 4),
        "confidence": CONFIDENCE,
        "target_far": target_far,
        "machines": {},
    }
    tot_over = tot_n = 0
    pooled_alarms = []
    for name, (ratios, window_s) in machines.items():
        r = np.asarray(ratios, dtype=np.float64)
        kept = np.flatnonzero(~np.isnan(r))  # NaN: a window the robot would not score (a knock left in)
        above = r[kept] > 1.0
        idx = kept[voted_alarms(above, vote.k, vote.n)].tolist()  # the voter skips what is not scored
        block = _rates(int(above.sum()), len(kept), target_far, vote)
        block["not_scored"] = len(r) - len(kept)
        block["voted_alarms"] = len(idx)
        block["alarms"] = [{"window": i, "t_s": round((i + 1) * window_s, 3)} for i in idx]
        out["machines"][name] = block
        tot_over += int(above.sum())
        tot_n += len(kept)
        pooled_alarms += [{"machine": name, **a} for a in block["alarms"]]
    pooled = _rates(tot_over, tot_n, target_far, vote)
    pooled["not_scored"] = sum(m["not_scored"] for m in out["machines"].values())
    pooled["voted_alarms"] = len(pooled_alarms)
    pooled["alarms"] = pooled_alarms
    out["pooled"] = pooled
    return out


def unscored(feats: np.ndarray) -> np.ndarray:
    """(N,) True for the rows ``evaluate.ModelMethod.feats`` marked as not scored (NaN features)."""
    return np.isnan(feats.reshape(len(feats), -1)[:, 0]) if len(feats) else np.zeros(0, dtype=bool)


def scored_or_zero(ratios: np.ndarray) -> np.ndarray:
    """Ratios with the windows the robot would not score as 0: below threshold, no alarm, no detection."""
    return np.nan_to_num(np.asarray(ratios, dtype=np.float64), nan=0.0)
