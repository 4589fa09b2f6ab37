"""Healthy false alarms measured by evaluate: the statistics (model.false_alarms) and evaluate's JSON on real FEMTO.

The statistics are checked on constructed verdict sequences and against
scipy's exact binomial and beta distributions; evaluate runs on two held-out
FEMTO bearings (skipped where ../shared/data is absent), at 0.1 s, where one
of them has windows over its threshold.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bundle_testkit import write_test_bundle
from eval_testkit import femto_subset, run_cli
from scipy import stats

from vibration_anomaly.bundle import load_example_bundle
from vibration_anomaly.core.scoring import alarm_onset_probability, false_alarms_per_month
from vibration_anomaly.errors import InputError
from vibration_anomaly.model.cli import _print_table
from vibration_anomaly.model.false_alarms import (
    Vote,
    alarms_per_month_upper,
    binom_sf,
    bundle_vote,
    clopper_pearson_upper,
    healthy_false_alarms,
    voted_alarms,
    within_target,
)

VOTE = Vote(4, 6, 60.0, "test")


def test_clopper_pearson_upper_known_values_and_scipy() -> None:
    assert clopper_pearson_upper(0, 160) == pytest.approx(0.0185, abs=5e-5)  # "rule of three": ~3/160
    assert clopper_pearson_upper(0, 20) == pytest.approx(1 - 0.05 ** (1 / 20), rel=1e-12)
    assert clopper_pearson_upper(7, 7) == 1.0
    for x, n in ((1, 10), (6, 320), (3, 40), (50, 5000), (199, 200)):
        assert clopper_pearson_upper(x, n) == pytest.approx(stats.beta.ppf(0.95, x + 1, n - x), rel=1e-8)
        assert clopper_pearson_upper(x, n) > x / n
    assert clopper_pearson_upper(6, 320) < clopper_pearson_upper(7, 320)
    with pytest.raises(InputError):
        clopper_pearson_upper(5, 4)


def test_binomial_consistency_with_target() -> None:
    for x, n, p in ((6, 320, 0.01), (3, 40, 0.01), (0, 160, 0.01), (12, 300, 0.02)):
        assert binom_sf(x, n, p) == pytest.approx(stats.binom.sf(x - 1, n, p), rel=1e-9, abs=1e-15)
    ok, pv = within_target(6, 320, 0.01)  # 1.9 % over a 1 % target: P(X >= 6) = 0.104, still consistent
    assert ok and pv == pytest.approx(0.1044, abs=1e-4)
    ok, pv = within_target(3, 40, 0.01)  # 7.5 %: P(X >= 3) = 0.0075, not consistent
    assert not ok and pv == pytest.approx(0.0075, abs=1e-4)
    assert within_target(0, 160, 0.01) == (True, 1.0)
    assert not within_target(9, 320, 0.01)[0]  # 2.8 %: P(X >= 9) = 0.006


def test_votes_count_in_time_order_not_just_how_many() -> None:
    clustered = np.zeros(60, bool)
    clustered[10:14] = True  # four exceedances in a row: the 4-of-6 vote raises at the fourth
    spread = np.zeros(60, bool)
    spread[[0, 15, 30, 45]] = True  # the same four, spread out: never 4 in any 6
    assert voted_alarms(clustered, 4, 6) == [13]
    assert voted_alarms(spread, 4, 6) == []
    shuffled = np.random.default_rng(3).permutation(clustered)
    assert shuffled.sum() == 4 and voted_alarms(shuffled, 4, 6) == []
    run = np.zeros(30, bool)
    run[5:13] = True  # eight in a row: raised, acknowledged (reset), raised again after four fresh ones
    assert voted_alarms(run, 4, 6) == [8, 12]
    assert voted_alarms(run, 1, 1) == list(range(5, 13))


def test_onset_probability_closed_form_matches_enumeration() -> None:
    def brute(p: float, k: int, n: int) -> float:
        tot = 0.0
        for bits in range(1 << (n + 1)):
            b = [(bits >> i) & 1 for i in range(n + 1)]
            if sum(b[1:]) >= k and sum(b[:n]) < k:
                tot += p ** sum(b) * (1 - p) ** (n + 1 - sum(b))
        return tot

    for n in range(1, 8):
        for k in range(1, n + 1):
            for p in (0.0, 0.01, 0.2, 0.7, 1.0):
                assert alarm_onset_probability(p, k, n) == pytest.approx(brute(p, k, n), abs=1e-15)
    assert alarm_onset_probability(0.01, 300, 1000) >= 0.0  # a bundle's large n answers at once


def test_monthly_upper_bound_covers_every_rate_below_it() -> None:
    grid = np.linspace(0, 1, 2001)
    for p_up in (0.0185, 0.1, 0.5, 0.9):
        bound = alarms_per_month_upper(p_up, 4, 6, 60.0)
        worst = max(false_alarms_per_month(p, 4, 6, 60.0) for p in grid[grid <= p_up])
        assert bound == pytest.approx(worst, rel=1e-3) and bound >= worst
    assert alarms_per_month_upper(0.0185, 4, 6, 60.0) == pytest.approx(0.048, abs=1e-3)


def test_per_machine_and_pooled_blocks() -> None:
    a = np.full(30, 0.5)
    a[[3, 4, 5, 6]] = 1.5  # one voted alarm at window 6
    b = np.full(10, 0.8)
    b[2] = 1.2  # one isolated exceedance
    fa = healthy_false_alarms({"a": (a, 0.2), "b": (b, 0.1)}, 0.01, VOTE)
    ma, mb, pool = fa["machines"]["a"], fa["machines"]["b"], fa["pooled"]
    assert (ma["over_threshold"], ma["windows"], ma["voted_alarms"]) == (4, 30, 1)
    assert ma["alarms"] == [{"window": 6, "t_s": 1.4}]
    assert (mb["over_threshold"], mb["voted_alarms"], mb["alarms"]) == (1, 0, [])
    assert (pool["over_threshold"], pool["windows"], pool["voted_alarms"]) == (5, 40, 1)
    assert pool["alarms"] == [{"machine": "a", "window": 6, "t_s": 1.4}]
    assert pool["exceedance_upper95"] == pytest.approx(clopper_pearson_upper(5, 40), abs=1e-5)
    assert not pool["within_target_95"] and not ma["within_target_95"]
    assert fa["vote"] == {"k": 4, "n": 6, "source": "test"}


def test_vote_comes_from_a_verified_bundle(tmp_path: Path) -> None:
    ex = load_example_bundle()
    v = bundle_vote()
    assert (v.k, v.n) == (ex.alarm.votes_required, ex.alarm.votes_window)
    assert v.inferences_per_hour == pytest.approx(3600 / ex.duty_cycle.period_s)
    files = write_test_bundle(tmp_path, alarm={"votes_required": 2, "votes_window": 3})
    v = bundle_vote(str(files.bundle), str(files.trust_dir))
    assert (v.k, v.n, v.inferences_per_hour) == (2, 3, 60.0)
    with pytest.raises(InputError, match="--trust"):
        bundle_vote(str(files.bundle), None)


@pytest.fixture(scope="module")
def femto_two(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two held-out FEMTO bearings: 1_2 (2 of its 33 scored held-out 0.1 s windows over, of 40) and 3_2 (run-in)."""
    return femto_subset(tmp_path_factory.mktemp("femto2"), ("Bearing1_2", "Bearing3_2"))


def test_evaluate_reports_false_alarms_per_machine(
    femto_two: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 1-of-1 from a signed bundle: every window over the threshold is an alarm at that window.
    files = write_test_bundle(tmp_path, alarm={"votes_required": 1, "votes_window": 1})
    base = ["evaluate", "--data", str(femto_two), "--bearing", "femto", "--window-s", "0.1"]
    assert run_cli([*base, "--bundle", str(files.bundle)]) == 2
    assert "--trust" in capsys.readouterr().err
    assert run_cli([*base, "--bundle", str(files.bundle), "--trust", str(files.trust_dir), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    fa = res["false_alarms"]
    assert set(fa["machines"]) == {"Bearing1_2", "Bearing3_2"}
    assert (fa["vote"]["k"], fa["vote"]["n"]) == (1, 1) and str(files.bundle) in fa["vote"]["source"]
    assert (
        sum(m["windows"] + m["not_scored"] for m in fa["machines"].values())
        == res["setup"]["heldout_healthy_windows"]
    )
    for m in [*fa["machines"].values(), fa["pooled"]]:
        assert m["voted_alarms"] == m["over_threshold"] == len(m["alarms"]) <= m["windows"]
        rate = m["over_threshold"] / m["windows"]
        assert m["exceedance_upper95"] >= m["exceedance_rate"] == pytest.approx(rate, abs=1e-5)
        assert m["alarms_per_month_upper95"] >= m["alarms_per_month"] >= 0
        assert m["within_target_95"] == (m["target_p_value"] >= 0.05)
    for m in fa["machines"].values():
        assert [a["window"] for a in m["alarms"]] == sorted({a["window"] for a in m["alarms"]})
        assert all(0 <= a["window"] < m["windows"] + m["not_scored"] for a in m["alarms"])
    pool = fa["pooled"]
    assert pool["over_threshold"] == sum(m["over_threshold"] for m in fa["machines"].values())
    assert pool["over_threshold"] / pool["windows"] == pytest.approx(res["false_alarm_rate"], abs=1e-4)
    over = fa["machines"]["Bearing1_2"]["over_threshold"]
    assert over >= 1  # the statistics see real exceedances here
    _print_table(res)
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("Bearing1_2"))
    scored = fa["machines"]["Bearing1_2"]["windows"]
    assert scored + fa["machines"]["Bearing1_2"]["not_scored"] == 40
    assert f"{over}/{scored}" in line and "at window" in line and "1-of-1 vote" in out


def test_machine_drift_names_what_lifted_the_windows_evaluate_counts(
    femto_two: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """tools/machine_drift.py calibrates as evaluate does: the same windows over, each with its cell named."""
    argv = ["--data", str(femto_two), "--bearing", "femto", "--window-s", "0.1", "--json"]
    assert run_cli(["evaluate", *argv]) == 0
    counted = json.loads(capsys.readouterr().out)["false_alarms"]["machines"]["Bearing1_2"]
    proc = _tool("machine_drift.py", *argv[:2], "--machine", "Bearing1_2", *argv[4:])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["held_out_over_threshold"] == f"{counted['over_threshold']}/{counted['windows']}"
    assert len(out["windows_over"]) == counted["over_threshold"]
    assert all(w["ratio"] > 1 for w in out["windows_over"])
    cell = re.compile(r"channel \d, \d+-\d+ Hz, log_\w+")
    assert all(cell.fullmatch(w["where"]) for w in out["windows_over"])
    assert len(out["most_raised_cells"]) == 4
    for c in out["most_raised_cells"]:
        assert cell.fullmatch(c["where"]) and set(c["median_z"]) == {
            "calibration",
            "held-out",
            "degraded record",
        }
    # every cell's median on the degraded record is above calibration's: end of life raises the machine
    assert out["every_cell_median_z"]["degraded record"] > out["every_cell_median_z"]["calibration"]


def _tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parents[1]
    return subprocess.run(
        [sys.executable, str(root / "tools" / name), *args],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=False,
    )


def test_score_drift_counts_what_evaluate_counts_and_what_the_term_buys(
    femto_two: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """tools/score_drift.py calibrates as evaluate does: at the shipped drift term its held-out windows over
    are evaluate's, with no term its thresholds are lower and at least as many windows are over."""
    from vibration_anomaly.core.calibration.fit import SCORE_DRIFT_LOG_SD

    assert run_cli(["evaluate", "--data", str(femto_two), "--window-s", "0.1", "--json"]) == 0
    counted = json.loads(capsys.readouterr().out)["false_alarms"]["machines"]
    proc = _tool(
        "score_drift.py", "--data", str(femto_two), "--window-s", "0.1", "--drift", "0,0.2", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    shipped, iid = f"{SCORE_DRIFT_LOG_SD:g}", "0"
    assert shipped == "0.2" and set(out["machines"]) == set(counted) == {"Bearing1_2", "Bearing3_2"}
    for name, m in out["machines"].items():
        at, without = m["by_drift"][shipped], m["by_drift"][iid]
        assert (at["over"], at["windows"]) == (counted[name]["over_threshold"], counted[name]["windows"])
        assert without["threshold"] < at["threshold"] and without["over"] >= at["over"]
        assert not m["training"] and math.isfinite(m["shift"])
    group = out["groups"]["other machines"]
    assert group["machines"] == 2 and "training machines" not in out["groups"]
    shifts = np.array([m["shift"] for m in out["machines"].values()])
    assert group["rms_shift"] == pytest.approx(float(np.sqrt(np.mean(shifts**2))), abs=1e-3)
    bad = _tool("score_drift.py", "--data", str(femto_two), "--drift", "-1")
    assert bad.returncode == 2 and "--drift" in bad.stderr
