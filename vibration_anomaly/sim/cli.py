"""``vibration-anomaly demo``: the detector on a simulated robot."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vibration_anomaly.clikit import check_output_file, guarded, number

MAX_HOURS = 24.0 * 31
"""A month of simulated duty cycles; longer runs take hours of real time and show nothing new."""
HALFWAY = -1.0
"""``--fault-after`` left out: the fault starts halfway through the run (1 h of the default 2 h)."""


def _run(args: argparse.Namespace) -> int:
    from vibration_anomaly.sim.demo import DemoOptions
    from vibration_anomaly.sim.demo_text import main

    if args.trace is not None:
        check_output_file(args.trace, "--trace")
    fault_after = args.fault_after
    if fault_after == HALFWAY:
        fault_after = args.hours / 2
    elif fault_after is not None and fault_after >= args.hours:
        # A fault that starts after the run ends cannot be "NOT detected": simulate none and say so.
        print(
            f"note: --fault-after {fault_after:g} h is not before the end of the run (--hours {args.hours:g}); "
            "no fault is simulated",
            file=sys.stderr,
        )
        fault_after = None
    opts = DemoOptions(
        hours=args.hours,
        fault_after_h=fault_after,
        seed=args.seed,
        hiccups=args.hiccups,
        rate_hz=args.rate,
        trace=args.trace,
    )
    return main(opts, as_json=args.json)  # refused input is an InputError: exit 2 through cli.guarded


def _fault_after(text: str) -> float | None:
    if text.strip().lower() in ("none", "never", "off"):
        return None
    return float(number(0, MAX_HOURS, lo_open=False, unit="h")(text))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on a simulated robot (accelerated clock)",
        description=(
            "Simulate a robot's 3-axis IMU with an optional bearing fault and connectivity hiccups, "
            "and run the real pipeline on it: duty-cycled sampling, keep-last + latest-batch "
            "backpressure, the shipped model on ONNX Runtime, k-of-n alarm voting. Prints a timeline "
            "and a summary."
        ),
    )
    p.add_argument(
        "--hours", type=number(0, MAX_HOURS, unit="h"), default=2.0, help="simulated hours (default 2)"
    )
    p.add_argument(
        "--fault-after",
        type=_fault_after,
        default=HALFWAY,
        metavar="HOURS",
        help="simulated hours before a bearing fault starts, or 'none' for a healthy robot "
        "(default: halfway through the run)",
    )
    p.add_argument(
        "--seed",
        type=number(0, 2**32 - 1, lo_open=False, integer=True),
        default=0,
        help="robot seed (default 0)",
    )
    p.add_argument(
        "--hiccups",
        type=number(0, 1000, lo_open=False, integer=True),
        default=3,
        help="connectivity hiccups with firmware bursts (default 3)",
    )
    p.add_argument(
        "--rate",
        type=number(100, 100_000, lo_open=False, unit="Hz"),
        default=1000.0,
        help="IMU rate in Hz (default 1000)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of the timeline")
    p.add_argument(
        "--trace",
        type=Path,
        metavar="FILE",
        help="write every event as one JSON object per line (t, event, ...)",
    )
    p.set_defaults(func=guarded(_run, "demo"))
