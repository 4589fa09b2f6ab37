"""The fleet soak at small scale (3 robots, 2 simulated hours): the report's invariants and the command's refusals.

One run through the command (``vibration-anomaly soak --json``; a local Pushgateway when
``prometheus-pushgateway`` is installed, otherwise telemetry off and said so), shared by the tests below.
The 50-robot, 24-hour figures are in docs/SOAK.md; timings are not asserted here.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from vibration_anomaly import cli
from vibration_anomaly.sim.soak.faults import DATA_FAULTS, FAULT_KINDS, STRUCTURAL_FAULTS

KEYS = (
    "stale_inferences",
    "alarms_lost",
    "inferences_per_robot_hour",
    "awake_fraction_max",
    "energy_wh_per_robot_hour",
    "faults",
    "before",
    "mishandled",
    "telemetry",
    "per_robot",
)


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(["soak", "--robots", "3", "--hours", "2", "--seed", "1", "--json"])
    assert rc == 0, err.getvalue()
    return json.loads(out.getvalue())


def test_report_has_the_issue_keys_for_the_fleet_and_the_before_robot(report: dict[str, Any]) -> None:
    for key in KEYS:
        assert key in report, key
    for key in (
        "stale_inferences",
        "inferences_per_robot_hour",
        "awake_fraction_max",
        "energy_wh_per_robot_hour",
    ):
        assert key in report["before"], key
    assert set(report["inferences_per_robot_hour"]) >= {"min", "max"}
    assert set(report["faults"]) == set(FAULT_KINDS)


def test_every_fault_kind_was_injected_and_reported(report: dict[str, Any]) -> None:
    for kind in DATA_FAULTS + STRUCTURAL_FAULTS:
        f = report["faults"][kind]
        assert f["injected"] >= 1, kind
        assert isinstance(f["events"], dict) and "health_showed_it" in f, kind
    if report["telemetry"]["mode"] == "local":
        gw = report["faults"]["pushgateway_down"]
        assert gw["injected"] == 1 and gw["push_failures_during"] >= 1
        assert (
            gw["robots_at_gateway_after"] == report["robots"]
        )  # every robot reported again after the outage
    else:
        assert report["telemetry"]["why"]  # off, and the report says why


def test_no_stale_inference_and_no_alarm_lost_over_restarts(report: dict[str, Any]) -> None:
    assert report["stale_inferences"] == 0, report["stale_detail"]
    assert report["restarts_with_alarm_latched"] >= 1  # the latch was really put to the test
    assert report["alarms_lost"] == 0, report["restarts"]
    assert report["multiple_inferences_in_one_period"] == 0


def test_the_before_robot_is_worse_on_every_count(report: dict[str, Any]) -> None:
    before = report["before"]
    assert before["stale_inferences"] > report["stale_inferences"]
    assert before["awake_fraction_max"] > report["awake_fraction_max"]
    assert before["energy_wh_per_robot_hour"]["mean"] > report["energy_wh_per_robot_hour"]["mean"]
    assert before["inferences_per_robot_hour"]["min"] > 60  # replaying: far more than one per period
    assert report["comparison"]["energy_ratio_before_over_after"] > 1.5


def test_awake_and_energy_come_from_the_modelled_power_source(report: dict[str, Any]) -> None:
    e = report["energy_wh_per_robot_hour"]
    assert e["asleep_w"] <= e["mean"] <= e["max"] <= e["awake_w"]
    assert 0 < report["awake_fraction_max"] <= 1


@pytest.mark.parametrize(
    "argv, names",
    [
        (["--robots", "0"], "--robots"),
        (["--robots", "nan"], "--robots"),
        (["--hours", "0.5"], "--hours"),
        (["--hours", "inf"], "--hours"),
        (["--pushgateway", "ftp://x", "--hours", "1"], "--pushgateway"),
        (["--pushgateway", "http://127.0.0.1:9", "--no-telemetry"], "--no-telemetry"),
    ],
)
def test_bad_options_are_refused_with_one_line(
    argv: list[str], names: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["soak", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and names in err[0], err
