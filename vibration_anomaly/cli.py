"""The ``vibration-anomaly`` command: everything a robot engineer does off the robot.

Each subcommand lives next to the code it drives and exposes
``register(subparsers)``; this module only assembles them, importing nothing
heavy (torch, onnxruntime, rclpy) until a command runs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from vibration_anomaly import __version__

# Modules that contribute subcommands, in the order shown by --help.
COMMAND_MODULES: tuple[str, ...] = (
    "vibration_anomaly.sim.cli",
    "vibration_anomaly.model.cli",
    "vibration_anomaly.config.cli",
    "vibration_anomaly.engine.cli",
    "vibration_anomaly.power.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vibration-anomaly",
        description="On-device vibration anomaly detection under a power contract (off-robot tools).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
