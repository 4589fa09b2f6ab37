"""``vibration-anomaly demo``: the detector on a simulated robot."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from vibration_anomaly.sim.demo import DemoOptions, main

    opts = DemoOptions(
        hours=args.hours,
        fault_after_h=args.fault_after,
        seed=args.seed,
        hiccups=args.hiccups,
        rate_hz=args.rate,
        trace=args.trace,
    )
    try:
        return main(opts, as_json=args.json)
    except ValueError as exc:
        print(f"vibration-anomaly demo: error: {exc}", file=sys.stderr)
        return 2


def _positive(text: str) -> float:
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def _fault_after(text: str) -> float | None:
    from vibration_anomaly.sim.demo import parse_fault_after

    try:
        return parse_fault_after(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
    p.add_argument("--hours", type=_positive, default=2.0, help="simulated hours (default 2)")
    p.add_argument("--fault-after", type=_fault_after, default=1.0, metavar="HOURS",
                   help="simulated hours before a bearing fault starts, or 'none' (default 1)")
    p.add_argument("--seed", type=int, default=0, help="robot seed (default 0)")
    p.add_argument("--hiccups", type=int, default=3, help="connectivity hiccups with firmware bursts (default 3)")
    p.add_argument("--rate", type=_positive, default=1000.0, help="IMU rate in Hz (default 1000)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of the timeline")
    p.add_argument("--trace", type=Path, metavar="FILE",
                   help="write every event as one JSON object per line (t, event, ...)")
    p.set_defaults(func=_run)
