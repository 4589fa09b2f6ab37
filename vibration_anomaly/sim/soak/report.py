"""The soak's report: the fleet's figures beside the before robot's, as JSON and as a short summary."""

from __future__ import annotations

from collections import Counter
from typing import Any

from vibration_anomaly.core.events import INFER
from vibration_anomaly.sim.soak.faults import FaultRecord
from vibration_anomaly.sim.soak.findings import _faults, _mishandled
from vibration_anomaly.sim.soak.fleet import _Fleet
from vibration_anomaly.sim.soak.gateway import _Telemetry
from vibration_anomaly.sim.soak.options import SoakOptions
from vibration_anomaly.sim.soak.robot import _Robot


def _clean_hours(r: _Robot, hours: float) -> list[int]:
    out = []
    for h in range(int(hours)):
        a, b = h * 3600.0, (h + 1) * 3600.0
        if any(x0 < b and x1 > a for x0, x1 in r.outages):
            continue
        out.append(h)
    return out


def _report(
    opts: SoakOptions,
    fleet: _Fleet,
    robots: list[_Robot],
    hours: float,
    before: dict[str, Any],
    tel: _Telemetry,
    gateway: dict[str, dict[str, float]],
    fleet_fault: FaultRecord | None,
    wall_s: float,
) -> dict[str, Any]:
    from vibration_anomaly.power.modelled import DEFAULT_PLATFORM, PLATFORM_MODELS

    total_s = hours * 3600.0
    watts = PLATFORM_MODELS[DEFAULT_PLATFORM]
    per_clean: list[int] = []
    per_all: list[int] = []
    off: list[dict[str, Any]] = []
    awake: list[float] = []
    energy: list[float] = []
    for r in robots:
        for h in range(int(hours)):
            per_all.append(r.infer_hours.get(h, 0))
        for h in _clean_hours(r, hours):
            n = r.infer_hours.get(h, 0)
            per_clean.append(n)
            if abs(n - 60) > 1 and len(off) < 20:
                off.append({"robot": r.index, "hour": h, "inferences": n})
        frac = (r.awake_s + r.resident_s) / total_s
        awake.append(frac)
        energy.append(watts.asleep_w + (watts.awake_w - watts.asleep_w) * frac)
    stale_old = sum(r.stale_old for r in robots)
    stale_future = sum(r.stale_future for r in robots)
    restarts = [x for r in robots for x in r.restarts]
    lost = sum(1 for x in restarts if x["latched_before"] and not x["latched_after"])
    faults = _faults(robots, fleet_fault, gateway, tel)
    false_alarms = sum(len(r.alarm_true_t) for r in robots if r.bearing_from is None)
    n_off = sum(1 for r in robots for h in _clean_hours(r, hours) if abs(r.infer_hours.get(h, 0) - 60) > 1)
    report: dict[str, Any] = {
        "robots": opts.robots,
        "hours": round(hours, 6),
        "seed": opts.seed,
        "wall_s": round(wall_s, 2),
        "backend": "onnxruntime",
        "model": fleet.model.model_id,
        "machine_models": len(fleet.calibrations),
        "duty_cycle": {"sample_s": fleet.sample_s, "period_s": fleet.period_s},
        "stale_inferences": stale_old + stale_future,
        "stale_detail": {"older_than_period": stale_old, "stamped_after_inference_time": stale_future},
        "alarms_lost": lost,
        "restarts_with_alarm_latched": sum(1 for x in restarts if x["latched_before"]),
        "inferences_per_robot_hour": {
            "min": min(per_clean) if per_clean else None,
            "max": max(per_clean) if per_clean else None,
            "robot_hours": len(per_clean),
            "outside_60_pm_1": n_off,
            "examples_outside": off,
            "what": "robot-hours without an injected outage (refused boot, restart, dropout, rate change, "
            "NaN burst, hung call); clock jumps, hiccups, bursts, disk and gateway faults are included",
        },
        "inferences_per_robot_hour_all": {
            "min": min(per_all) if per_all else None,
            "max": max(per_all) if per_all else None,
        },
        "multiple_inferences_in_one_period": sum(r.multi_infer_periods for r in robots),
        "awake_fraction_max": round(max(awake), 6),
        "awake_fraction_mean": round(sum(awake) / len(awake), 6),
        "awake_fraction_limit": fleet.awake_fraction_limit,
        "energy_wh_per_robot_hour": {
            "mean": round(sum(energy) / len(energy), 4),
            "max": round(max(energy), 4),
            "asleep_w": watts.asleep_w,
            "awake_w": watts.awake_w,
            "source": f"modelled {watts.platform} (power/modelled.py)",
        },
        "false_alarms": false_alarms,
        "events": dict(sum((r.events for r in robots), Counter())),
        "configures": dict(sum((r.configures for r in robots), Counter())),
        "refusals": dict(sum((r.refusals for r in robots), Counter())),
        "restarts": restarts,
        "telemetry": {
            "mode": tel.mode,
            "url": tel.url,
            "why": tel.why,
            "outages": tel.outages,
            "robots_at_gateway": len([k for k in gateway if k.startswith("soak-robot-")]),
        },
        "faults": faults,
        "per_robot": [
            {
                "robot": r.index,
                "faults": sorted({f.kind for f in r.faults}),
                "inferences": r.events.get(INFER, 0),
                "awake_fraction": round(a, 5),
                "engine_resident_while_asleep_s": round(r.resident_s, 3),
                "subscription_open_max_s": round(r.sampling_open_max_s, 3),
                "alarms": len(r.alarm_true_t),
                "bearing_fault_from_h": None if r.bearing_from is None else round(r.bearing_from / 3600, 3),
                "configured_at_end": r.configured_at_end,
                "refusals": dict(r.refusals),
            }
            for r, a in zip(robots, awake, strict=True)
        ],
        "before": before,
        "sessions_created": fleet.sessions.created,
    }
    report["comparison"] = {
        "energy_ratio_before_over_after": round(
            before["energy_wh_per_robot_hour"]["mean"] / report["energy_wh_per_robot_hour"]["mean"], 3
        ),
        "stale_inferences": {"after": report["stale_inferences"], "before": before["stale_inferences"]},
        "awake_fraction_max": {"after": report["awake_fraction_max"], "before": before["awake_fraction_max"]},
    }
    report["mishandled"] = _mishandled(report)
    return report


def format_summary(rep: dict[str, Any]) -> str:
    ipr, b = rep["inferences_per_robot_hour"], rep["before"]
    lines = [
        f"Soak: {rep['robots']} robots x {rep['hours']:g} h in {rep['wall_s']:.0f} s wall (ONNX Runtime, model "
        f"{rep['model']}, {rep['machine_models']} machine models); telemetry: {rep['telemetry']['mode']} "
        f"({rep['telemetry']['why']})",
        f"  stale inferences {rep['stale_inferences']} (before robot: {b['stale_inferences']})",
        f"  alarms lost over restarts {rep['alarms_lost']} of {rep['restarts_with_alarm_latched']} restarts with "
        "an alarm latched",
        f"  inferences per robot-hour {ipr['min']}..{ipr['max']} over {ipr['robot_hours']} robot-hours without an "
        f"outage ({ipr['outside_60_pm_1']} outside 60 +/- 1); before robot {b['inferences_per_robot_hour']['min']}.."
        f"{b['inferences_per_robot_hour']['max']}",
        f"  awake fraction max {rep['awake_fraction_max']:.4f} (limit {rep['awake_fraction_limit']}), before 1.0",
        f"  energy {rep['energy_wh_per_robot_hour']['mean']:.3f} Wh per robot-hour (before "
        f"{b['energy_wh_per_robot_hour']['mean']:.3f}; {rep['energy_wh_per_robot_hour']['source']})",
        "Faults (injected; health showed it):",
    ]
    for kind, e in rep["faults"].items():
        lines.append(f"  {kind:30s} {e.get('injected', 0):3d}  {e.get('health_showed_it')}")
    lines.append(
        "Mishandled by the runtime in this run:" if rep["mishandled"] else "Mishandled: nothing seen."
    )
    lines.extend(f"  - {m}" for m in rep["mishandled"])
    return "\n".join(lines)
