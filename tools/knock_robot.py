#!/usr/bin/env python3
"""Knocks on robot-length windows: the simulated robot at a sensor rate, one extra knock in every window.

The measurement is ``vibration_anomaly.sim.knocks.knock_trial`` (its doc says what is simulated and
scored); this prints its JSON: windows over threshold and voted alarms in time order, clean and
knocked. ``--legacy-frontend`` scores with the frontend options before issue 16 (envelope harmonics
from 2 Hz, no knock gate), ``--no-knock-gate`` with today's less the knock gate (``core.knock_gate``),
and ``--segments auto`` scores each window as 1 s segments (``core.calibration.segments``, opt-in on
the robot with ``calibrate --segments auto``) instead of whole, to compare in the same run.

    .venv/bin/python tools/knock_robot.py --rate 3200 --peak 8 --seed 1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vibration_anomaly.model.cli_support import segments_arg  # noqa: E402
from vibration_anomaly.sim.knocks import knock_trial  # noqa: E402

LEGACY = {"env_min_hz": 2.0, "knock_gate": 0.0}
NO_GATE = {"knock_gate": 0.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=1000.0, help="sensor rate in Hz (default 1000)")
    ap.add_argument(
        "--peak", type=float, default=8.0, help="knock peak over the axis's healthy RMS (default 8)"
    )
    ap.add_argument("--windows", type=int, default=60, help="held-out windows (default 60)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--legacy-frontend",
        action="store_true",
        help="envelope harmonics from 2 Hz and no knock gate, as before issue 16",
    )
    ap.add_argument("--no-knock-gate", action="store_true", help="today's frontend less the knock gate")
    ap.add_argument(
        "--segments", type=segments_arg, default=1, help="segments per window, or 'auto' (default 1: whole)"
    )
    ap.add_argument(
        "--commissioning",
        type=int,
        default=20,
        help="healthy windows the robot is calibrated on (default 20)",
    )
    args = ap.parse_args()
    if args.legacy_frontend and args.no_knock_gate:
        ap.error("--legacy-frontend already has no knock gate; give one of the two")
    if args.rate <= 0 or args.peak < 0 or args.windows < 1 or args.commissioning < 4:
        ap.error("--rate must be > 0, --peak >= 0, --windows >= 1 and --commissioning >= 4")
    out = knock_trial(
        args.rate,
        args.peak,
        args.windows,
        args.seed,
        LEGACY if args.legacy_frontend else NO_GATE if args.no_knock_gate else None,
        segments=args.segments,
        commissioning=args.commissioning,
    )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
