"""``vibration-anomaly soak``: a simulated fleet through the shared runtime, field faults injected."""

from __future__ import annotations

import argparse

from vibration_anomaly.clikit import guarded, number

MAX_ROBOTS = 1000
MAX_HOURS = 24.0 * 31


def _run(args: argparse.Namespace) -> int:
    from vibration_anomaly.sim.soak.options import SoakOptions
    from vibration_anomaly.sim.soak.run import main

    if args.pushgateway is not None and args.no_telemetry:
        from vibration_anomaly.errors import InputError

        raise InputError(
            "--pushgateway", args.pushgateway, "expected either --pushgateway or --no-telemetry, not both"
        )
    opts = SoakOptions(
        robots=args.robots,
        hours=args.hours,
        seed=args.seed,
        pushgateway=args.pushgateway,
        telemetry=not args.no_telemetry,
    )
    return main(opts, as_json=args.json)


def _url(text: str) -> str:
    import re

    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", text.strip()):
        raise argparse.ArgumentTypeError(
            f"got {text!r}; expected an http(s):// URL such as http://127.0.0.1:9091"
        )
    return text.strip()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "soak",
        help="run a simulated fleet for hours through the shared runtime, injecting field faults",
        description=(
            "N simulated robots for H simulated hours on an accelerated clock, each through the same "
            "DetectorRuntime the node builds (signed bundle, firmware check, rollback state, durable alarm latch, "
            "event log, ONNX Runtime on the shipped model, modelled power, telemetry). Injects connectivity "
            "hiccups with firmware bursts, a wake without a sleep, bundle/firmware disagreement, refused bundles, "
            "clock jumps, IMU dropouts and rate changes, NaN/inf, duplicate and out-of-order stamps, a corrupt "
            "model, a hung engine call, a full disk, a Pushgateway outage and restarts with an alarm latched; "
            "a 'before' robot runs the broken loop of the incident for comparison. Reports what happened "
            "(docs/SOAK.md explains the JSON)."
        ),
    )
    p.add_argument("--robots", type=number(0, MAX_ROBOTS, integer=True), default=50, help="simulated robots")
    p.add_argument(
        "--hours", type=number(0, MAX_HOURS, unit="h"), default=24.0, help="simulated hours (at least 1)"
    )
    p.add_argument(
        "--seed",
        type=number(0, 2**32 - 1, lo_open=False, integer=True),
        default=0,
        help="seed of the fault schedule and the robots",
    )
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--pushgateway",
        type=_url,
        metavar="URL",
        help="push every robot's metrics to this Pushgateway (default: start prometheus-pushgateway on "
        "127.0.0.1 when installed, else telemetry off)",
    )
    g.add_argument("--no-telemetry", action="store_true", help="no metrics pushed at all")
    p.set_defaults(func=guarded(_run, "soak"))
