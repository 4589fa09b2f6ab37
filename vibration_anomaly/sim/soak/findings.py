"""The report's per-fault figures and ``mishandled``: what each injection did and what the runtime got wrong."""

from __future__ import annotations

from collections import Counter
from typing import Any

from vibration_anomaly.core.events import CLOCK_JUMP, ERROR, INFER, STORAGE
from vibration_anomaly.sim.soak.faults import DATA_FAULTS, HEALTH_FOR, STRUCTURAL_FAULTS, FaultRecord
from vibration_anomaly.sim.soak.gateway import _Telemetry
from vibration_anomaly.sim.soak.robot import _Robot


def _faults(
    robots: list[_Robot],
    fleet_fault: FaultRecord | None,
    gateway: dict[str, dict[str, float]],
    tel: _Telemetry,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    by_kind: dict[str, list[FaultRecord]] = {}
    for r in robots:
        for f in r.faults:
            by_kind.setdefault(f.kind, []).append(f)
    for kind in DATA_FAULTS + STRUCTURAL_FAULTS:
        recs = by_kind.get(kind, [])
        events: Counter[str] = Counter()
        health: dict[str, set[str]] = {}
        for f in recs:
            events.update(f.events)
            for task, levels in f.health.items():
                health.setdefault(task, set()).update(levels)
        relevant = HEALTH_FOR.get(kind, ())
        entry: dict[str, Any] = {
            "injected": len(recs),
            "robots": sorted({f.robot for f in recs}),
            "events": dict(sorted(events.items())),
            "health_not_ok": {k: sorted(v) for k, v in sorted(health.items())},
            "health_showed_it": (any(t in health for t in relevant) if relevant else None),
            "health_expected_in": list(relevant),
        }
        details = [f.details for f in recs if f.details]
        if details:
            entry["details"] = details
        out[kind] = entry
    _fault_figures(out, robots)
    if fleet_fault is not None:
        reporting = [k for k in gateway if k.startswith("soak-robot-")]
        inf_ok = 0
        for r in robots:
            g = gateway.get(f"soak-robot-{r.index:03d}", {})
            # The registry lives as long as the process: after a restart it counts from zero again.
            since = r.infers_since_start if r.restarts or r.refusals else r.events.get(INFER, 0)
            if g and int(g.get("vibration_anomaly_inferences_total", -1)) == since:
                inf_ok += 1
        h0 = int(fleet_fault.t0 // 3600)
        during = [
            r.infer_hours.get(h0, 0)
            for r in robots
            if not any(x0 < (h0 + 1) * 3600 and x1 > h0 * 3600 for x0, x1 in r.outages)
        ]
        out["pushgateway_down"] = {
            "injected": 1,
            "down_h": [round(fleet_fault.t0 / 3600, 3), round(fleet_fault.t1 / 3600, 3)],
            "events": dict(fleet_fault.events),
            "push_failures_during": fleet_fault.details.get("push_failures_during"),
            "robots_at_gateway_after": len(reporting),
            "robots_whose_inference_count_matches_at_gateway": inf_ok,
            "inferences_in_the_down_hour": {
                "min": min(during) if during else None,
                "max": max(during) if during else None,
            },
        }
    else:
        out["pushgateway_down"] = {
            "injected": 0,
            "why": tel.why
            if tel.url is None
            else "the gateway was given (--pushgateway): the soak stops only one it started; "
            "or the run is shorter than 3 h",
        }
    return out


def _fault_figures(out: dict[str, Any], robots: list[_Robot]) -> None:
    """Fault-specific figures: what inference did in the hour after a clock jump, latch after restarts, ..."""
    p = 60.0
    for r in robots:
        for f in r.faults:
            e = out[f.kind]
            if f.kind.startswith("clock_jump"):
                n = sum(1 for t in r.infer_true_t if f.t0 <= t < f.t0 + 3600.0)
                e.setdefault("inferences_in_hour_after", []).append(n)
                gap = _longest_gap(r.infer_true_t, f.t0)
                e.setdefault("longest_gap_after_s", []).append(round(gap, 1))
                e.setdefault("first_inference_after_s", []).append(_first_after(r.infer_true_t, f.t0))
                e.setdefault("subscription_open_max_s", []).append(round(r.sampling_open_max_s, 3))
                e.setdefault("clock_jump_events", 0)
                e["clock_jump_events"] += f.events.get(CLOCK_JUMP, 0)
            elif f.kind == "wake_without_sleep":
                e["engine_resident_while_asleep_s"] = round(
                    sum(x.resident_s for x in robots if any(g.kind == f.kind for g in x.faults)), 3
                )
            elif f.kind == "hung_engine_call":
                t_end = f.t0 + f.details.get("hang_s", 0.0)
                e.setdefault("after", []).append(
                    {
                        "robot": r.index,
                        "error_events": f.events.get(ERROR, 0),
                        "inferences_in_hour_after_release": sum(
                            1 for t in r.infer_true_t if t_end + p <= t < t_end + 3600 + p
                        ),
                        "longest_gap_after_s": round(_longest_gap(r.infer_true_t, f.t0), 1),
                        "first_inference_after_release_s": _first_after(r.infer_true_t, t_end),
                        "engine_resident_s": round(r.resident_s, 3),
                        "configured_at_end": r.configured_at_end,
                        "released_by_safety_timeout": bool(f.details.get("released_by_safety_timeout")),
                    }
                )
            elif f.kind == "full_disk":
                e.setdefault("storage_events", 0)
                e["storage_events"] += f.events.get(f"{STORAGE}", 0) + sum(
                    v for k, v in f.events.items() if k.startswith(STORAGE)
                )
    for kind in (
        "imu_dropout",
        "imu_rate_change",
        "nan_inf_burst",
        "nan_inf_sparse",
        "duplicate_stamps",
        "out_of_order_stamps",
        "hiccup_burst",
    ):
        e = out.get(kind)
        if e is None:
            continue
        e["skips"] = sum(v for k, v in e["events"].items() if k.startswith("skip"))
        e["inferences"] = e["events"].get(INFER, 0)


def _first_after(times: list[float], t0: float) -> float | None:
    """Seconds from ``t0`` to the first inference after it (None: none before the run ended)."""
    later = [t for t in times if t >= t0]
    return round(min(later) - t0, 1) if later else None


def _longest_gap(times: list[float], t0: float) -> float:
    """Longest stretch without an inference in the hour from ``t0`` (true seconds)."""
    ts = [t0] + [t for t in times if t0 <= t < t0 + 3600.0] + [t0 + 3600.0]
    return max(b - a for a, b in zip(ts, ts[1:], strict=False))


def _mishandled(rep: dict[str, Any]) -> list[str]:
    """Plain statements of what the runtime got wrong in this run, from the figures above (empty: none seen)."""
    out: list[str] = []
    f = rep["faults"]
    if rep["stale_inferences"]:
        out.append(f"stale inferences: {rep['stale_inferences']} ({rep['stale_detail']})")
    if rep["alarms_lost"]:
        out.append(
            f"restart forgot the latched alarm: {rep['alarms_lost']} of "
            f"{rep['restarts_with_alarm_latched']} restarts with an alarm latched"
        )
    ipr = rep["inferences_per_robot_hour"]
    if ipr["outside_60_pm_1"]:
        out.append(
            f"inferences per robot-hour outside 60 +/- 1 in {ipr['outside_60_pm_1']} robot-hours without an "
            f"injected outage (min {ipr['min']}, max {ipr['max']})"
        )
    if rep["awake_fraction_max"] > rep["awake_fraction_limit"]:
        out.append(
            f"awake fraction {rep['awake_fraction_max']:.3f} above the bundle's limit "
            f"{rep['awake_fraction_limit']}"
        )
    for kind in ("clock_jump_back_asleep", "clock_jump_back_sampling", "clock_jump_forward"):
        e = f[kind]
        if not e["injected"]:
            continue
        limit = 2 * rep["duty_cycle"]["period_s"]
        slow = [x for x in e.get("first_inference_after_s", []) if x is None or x > limit]
        if slow:
            out.append(
                f"{kind}: inference stalled after the jump (seconds to the first inference after it: "
                f"{e.get('first_inference_after_s')}; more than {limit:g} s in {len(slow)} of {e['injected']})"
            )
        if not e.get("clock_jump_events"):
            out.append(f"{kind}: no clock_jump event")
        if e["health_showed_it"] is False:
            out.append(f"{kind}: duty-cycle health never left OK")
    for kind, e in f.items():
        if kind.startswith("clock_jump") or not e.get("injected"):
            continue
        if e.get("health_showed_it") is False:
            out.append(f"{kind}: health never showed it (expected in {', '.join(e['health_expected_in'])})")
    for d in f["bundle_unusable_after_good"].get("details", []) + f["bundle_refused_after_good"].get(
        "details", []
    ):
        if d.get("back_on_good_bundle") is False:
            out.append(
                f"after refusing {d.get('bundle')}, the previous good bundle was refused too: robot blind "
                f"from {d.get('robot_blind_from_h')} h"
            )
    w = f["wake_without_sleep"]
    if (
        w["injected"]
        and w.get("engine_resident_while_asleep_s", 0) > 1.5 * rep["duty_cycle"]["period_s"] * w["injected"]
    ):
        out.append(
            f"wake without sleep: engine resident while asleep {w['engine_resident_while_asleep_s']} s"
        )
    for a in f["hung_engine_call"].get("after", []):
        if not a["configured_at_end"]:
            out.append(f"hung engine call: robot {a['robot']} not configured at the end")
    fd = f["full_disk"]
    if fd["injected"] and not fd.get("storage_events"):
        out.append("full disk: no storage event")
    return out
