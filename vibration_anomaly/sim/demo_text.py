"""What ``vibration-anomaly demo`` prints: what is simulated, the legend, the summary, and ``main``.

The run itself (and the timeline line written as each duty period ends, by
``sim.demo._drive``) is ``sim.demo``; this module only words it for a person
(or prints the summary as JSON).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, TextIO

from vibration_anomaly.bundle import VerifiedBundle
from vibration_anomaly.core.diagnosis import describe
from vibration_anomaly.errors import InputError
from vibration_anomaly.sim.demo import DemoOptions, _fmt_t, run_demo
from vibration_anomaly.sim.robot import FaultSpec

TIMELINE_LEGEND = (
    "Timeline, one line per duty period:\n"
    "  score/threshold  the window's score / the machine's calibrated threshold (above 1.00: a vote)\n"
    "  verdict          ok | above | ALARM (enough votes: raised) | alarm (latched) | no fresh batch\n"
    "  dropped frames   stale or backlogged frames thrown away, never replayed (burst: firmware replay)"
)


def describe_run(opts: DemoOptions, bundle: VerifiedBundle) -> str:
    """What the demo simulates, for the top of its output: robot, fault, hiccups, the bundle's duty cycle."""
    dc, al = bundle.duty_cycle, bundle.alarm
    if opts.fault_after_h is None:
        fault = "none (a healthy robot)"
    else:
        grow = FaultSpec(start_s=0.0).growth_s / 60
        fault = (
            f"outer-race bearing defect from {_fmt_t(opts.fault_after_h * 3600)}, growing over {grow:g} min"
            + (" (after the run ends: not simulated)" if opts.fault_after_h >= opts.hours else "")
        )
    hiccups = (
        "none"
        if opts.hiccups == 0
        else f"{opts.hiccups} connectivity loss{'es' if opts.hiccups != 1 else ''}; the firmware then replays "
        "up to 40 s of buffered frames"
    )
    return "\n".join(
        [
            f"Simulating {opts.hours:g} h of one robot (3-axis IMU at {opts.rate_hz:g} Hz, seed {opts.seed}), "
            "accelerated clock:",
            f"  fault     {fault}",
            f"  hiccups   {hiccups}",
            f"  duty      signed bundle v{bundle.version}: sample {dc.sample_s:g} s, infer once, sleep "
            f"{dc.period_s - dc.sample_s:g} s (period {dc.period_s:g} s); alarm on {al.votes_required} of "
            f"{al.votes_window} windows",
            TIMELINE_LEGEND,
            "",
        ]
    )


def _awake_line(s: dict[str, Any]) -> str:
    """The awake fraction against the contract, worded so that the expected overhead does not read as a breach."""
    dc = s["duty_cycle"]
    line = (
        f"Awake {100 * s['awake_fraction']:.2f} % of the time; contract {100 * s['contract_awake_fraction']:.2f} % "
        f"sampling ({dc['sample_s']:g} s of {dc['period_s']:g} s) + wake/infer/sleep overhead"
    )
    limit = s.get("awake_fraction_max")
    if limit is None:
        return line + "."
    verdict = "within it" if s["awake_fraction"] <= limit else "ABOVE it: the robot would WARN"
    return line + f",\n  limit {100 * limit:g} % (bundle health.awake_fraction_max): {verdict}."


def _fault_line(s: dict[str, Any]) -> str:
    fault_s, alarm_s = s["fault_start_s"], s["first_alarm_s"]
    end_s = s["periods"] * s["duty_cycle"]["period_s"]
    if fault_s is None:
        return "Healthy robot (no fault). " + ("FALSE ALARM raised!" if alarm_s is not None else "No alarm.")
    if alarm_s is None:
        if fault_s >= end_s:
            return f"Fault set to start at {_fmt_t(fault_s)}, after the run ended ({_fmt_t(end_s)}): nothing to detect."
        return (
            f"Fault started at {_fmt_t(fault_s)}: NOT detected in the {(end_s - fault_s) / 60:.1f} min "
            "before the run ended."
        )
    d = s.get("alarm_diagnosis") or {}
    return (
        f"Fault started at {_fmt_t(fault_s)}; alarm raised at {_fmt_t(alarm_s)}"
        f" ({s['alarm_delay_s'] / 60:.1f} min later)."
        + ("  (FALSE: before the fault!)" if s["false_alarm"] else "")
        + (f"\n  Diagnosis: {describe(d)}." if d else "")
    )


def format_summary(s: dict[str, Any]) -> str:
    dc = s["duty_cycle"]
    drops = ", ".join(f"{k} {v}" for k, v in sorted(s["dropped_frames"].items())) or "none"
    held = ", ".join(s["held_after_sleep"]) or "nothing"
    return "\n".join(
        [
            "",
            f"Simulated {s['simulated_hours']:g} h ({s['periods']} duty periods of {dc['period_s']:g} s, sampling "
            f"{dc['sample_s']:g} s; numbers from signed bundle v{dc['from_bundle_version']})",
            f"  in {s['wall_s']:.1f} s wall on backend {s['backend']}.",
            f"Inferences: {s['inferences']}  skipped: {s['skipped']}  errors: {s['errors']}",
            _fault_line(s),
            f"Dropped frames: {drops}; stale batches refused: {s['queue']['refused_stale']}.",
            _awake_line(s),
            f"Held by the engine after each sleep: {held}.",
            "Engine median ms: "
            + ", ".join(f"{k.removesuffix('_ms')} {v:g}" for k, v in s["engine_ms_median"].items()),
        ]
    )


class _OnlyErrors(logging.Filter):
    """The runtime's ALARM warning repeats the timeline's ALARM line; keep only errors on stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def main(opts: DemoOptions, as_json: bool = False) -> int:
    """Print what is simulated, the timeline and the summary (or the summary as JSON).

    Progress goes to stderr only when stderr is a terminal and the timeline is
    not already scrolling there: captured or piped output stays clean.
    """
    from vibration_anomaly.bundle import load_example_bundle

    bundle = load_example_bundle()
    period_s = bundle.duty_cycle.period_s
    if (
        int(round(opts.hours * 3600 / period_s)) < 1
    ):  # refused before anything is printed (run_demo checks too)
        raise InputError(
            "--hours",
            f"{opts.hours:g}",
            f"shorter than one duty period ({period_s:g} s); nothing to simulate",
        )
    out = None if as_json else sys.stdout
    show_progress = opts.hours >= 1 and _isatty(sys.stderr) and (as_json or not _isatty(sys.stdout))
    progress = sys.stderr if show_progress else None
    if out is not None:
        out.write(describe_run(opts, bundle) + "\n")
        out.flush()
    quiet = logging.getLogger("vibration_anomaly.demo")
    only_errors = _OnlyErrors()
    quiet.addFilter(only_errors)
    try:
        result = run_demo(opts, out=out, progress=progress)
    except BaseException:
        if progress is not None:
            progress.write("\n")  # end the progress line before the error
        raise
    finally:
        quiet.removeFilter(only_errors)
    summary = {**result.summary, "awake_fraction_max": bundle.health.awake_fraction_max}
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(summary))
    return 0


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
