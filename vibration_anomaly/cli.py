"""The ``vibration-anomaly`` command: everything a robot engineer does off the robot.

Each subcommand lives next to the code it drives and exposes
``register(subparsers)``; this module only assembles them, importing nothing
heavy (torch, onnxruntime, rclpy) until a command runs.

One error convention for every subcommand (README "The command line"):

* exit 0: success;
* exit 2: refused input, with ONE line on stderr naming the file, field or
  option, what was found and what is allowed;
* exit 1: an internal error (or a missing environment: no GPU, no TensorRT),
  one line on stderr; the traceback only behind the global ``--debug``.

``main`` applies it; the helpers every subcommand shares (number types, path checks, atomic
outputs, ``guarded``) live one floor down in :mod:`vibration_anomaly.clikit`, so that no subcommand
imports this module that loads it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence

from vibration_anomaly import __version__
from vibration_anomaly.clikit import (  # noqa: F401 - re-exported: the convention's helpers, as before
    DEBUG_ENV,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    Parser,
    _debug_enabled,
    _one_line,
    _silence_stdout,
    atomic_output,
    check_input_file,
    check_output_dir,
    check_output_file,
    guarded,
    number,
    number_list,
    refusal_message,
    write_text_atomic,
)

# Modules that contribute subcommands, in the order shown by --help.
COMMAND_MODULES: tuple[str, ...] = (
    "vibration_anomaly.sim.cli",
    "vibration_anomaly.sim.soak_cli",
    "vibration_anomaly.model.cli",
    "vibration_anomaly.bundle.cli",
    "vibration_anomaly.engine.cli",
    "vibration_anomaly.power.cli",
    "vibration_anomaly.runtime.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="vibration-anomaly",
        description="On-device vibration anomaly detection under a power contract (off-robot tools). "
        "Exit status: 0 success, 2 refused input (one line on stderr says what and why), "
        "1 internal error (traceback with --debug).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the Python traceback of an internal error (or set {DEBUG_ENV}=1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed as one line
        return exc.code if isinstance(exc.code, int) else EXIT_REFUSED
    debug = _debug_enabled(args)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    prog = f"vibration-anomaly {args.command}"
    try:
        rc = int(args.func(args) or 0)
        sys.stdout.flush()
        return rc
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OK
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        if debug:
            traceback.print_exc()
        print(f"{prog}: internal error: out of memory", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as exc:  # the convention's exit 1: one line, the traceback only with --debug
        if debug:
            traceback.print_exc()
        msg = refusal_message(exc)
        if msg is not None:
            print(f"{prog}: error: {msg}", file=sys.stderr)
            return EXIT_REFUSED
        hint = "" if debug else f" (run 'vibration-anomaly --debug {args.command} ...' for the traceback)"
        print(f"{prog}: internal error: {type(exc).__name__}: {_one_line(str(exc))}{hint}", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    raise SystemExit(main())
