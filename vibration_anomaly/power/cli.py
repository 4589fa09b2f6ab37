"""``vibration-anomaly power``: watch power readings live, measured or (clearly marked) modelled."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from vibration_anomaly.clikit import guarded, number


def register(subparsers: Any) -> None:
    from vibration_anomaly.power import SOURCE_KINDS
    from vibration_anomaly.power.modelled import DEFAULT_PLATFORM, PLATFORM_MODELS

    p = subparsers.add_parser(
        "power",
        help="watch power readings live (INA3221, NVML, tegrastats, or a documented model)",
        description=(
            "Print one power reading per interval. 'auto' uses the best sensor found "
            "(Jetson INA3221 sysfs, then NVML, then tegrastats) and falls back to the documented "
            "model, which is marked MODELLED on every line. Ctrl-C stops."
        ),
    )
    p.add_argument("--source", choices=SOURCE_KINDS, default="auto", help="power source (default: auto)")
    p.add_argument(
        "--interval",
        type=number(0.01, 3600, lo_open=False, unit="s"),
        default=1.0,
        metavar="S",
        help="seconds between readings (default 1)",
    )
    p.add_argument(
        "--count",
        type=number(0, 10**9, lo_open=False, integer=True),
        default=0,
        metavar="N",
        help="stop after N readings (default 0: until Ctrl-C)",
    )
    p.add_argument(
        "--platform",
        choices=sorted(PLATFORM_MODELS),
        default=DEFAULT_PLATFORM,
        help=f"platform for the modelled source (default {DEFAULT_PLATFORM})",
    )
    p.add_argument(
        "--model-watts",
        type=_model_watts,
        metavar="ASLEEP,AWAKE",
        help="model your own platform instead of --platform, e.g. 4,11",
    )
    p.add_argument(
        "--awake", action="store_true", help="modelled source: report the awake figure, not asleep"
    )
    p.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    p.set_defaults(func=guarded(run, "power"))


def _model_watts(text: str) -> str:
    """ASLEEP,AWAKE in watts: two finite numbers, 0 <= asleep <= awake <= 1000 (an Orin draws tens of watts)."""
    parts = text.split(",")
    watts = number(0, 1000, lo_open=False, unit="W")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"got {text!r}; expected ASLEEP,AWAKE in watts such as 4,11")
    asleep, awake = (watts(p.strip()) for p in parts)
    if asleep > awake:
        raise argparse.ArgumentTypeError(f"got {text!r}; expected asleep <= awake")
    return text


def _as_json(r: Any) -> str:
    return json.dumps(
        {
            "t": r.t,
            "watts": r.watts,
            "rails": r.rails,
            "source": r.source,
            "modelled": r.modelled,
            "total_rule": r.total_rule,
            "problems": list(r.problems),
            "details": r.details,
        }
    )


def run(args: argparse.Namespace) -> int:
    from vibration_anomaly.errors import InputError, VibrationAnomalyError
    from vibration_anomaly.power import PowerReadError, open_power_source
    from vibration_anomaly.power.energy import EnergyIntegrator
    from vibration_anomaly.power.modelled import custom_model, get_model

    try:
        model = custom_model(args.model_watts) if args.model_watts else get_model(args.platform)
        awake = bool(args.awake)
        source, reason = open_power_source(args.source, model=model, is_awake=lambda: awake)
    except InputError:
        raise  # exit 2 through cli.main
    except VibrationAnomalyError as exc:
        # No such sensor on this machine: the environment, not the user's input.
        print(f"vibration-anomaly power: error: {exc}", file=sys.stderr)
        return 1
    print(f"power source: {reason}", file=sys.stderr)
    integ = EnergyIntegrator(max_gap_s=max(5.0, 3 * args.interval))
    n = 0
    errors = 0
    try:
        while args.count <= 0 or n < args.count:
            if n:
                time.sleep(args.interval)
            n += 1
            try:
                r = source.read()
            except PowerReadError as exc:
                errors += 1
                print(f"power: unreadable sample: {exc}", file=sys.stderr)
                continue
            integ.add(r)
            print(_as_json(r) if args.json else r.describe(), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        source.close()
    s = integ.summary()
    if s.idle_seconds > 0:
        kind = "MODELLED" if s.modelled else "measured"
        print(
            f"power: {s.samples} samples over {s.idle_seconds:.1f} s, "
            f"{s.joules_per_idle_minute:.1f} J per minute ({kind})",
            file=sys.stderr,
        )
    return 1 if errors and errors == n else 0
