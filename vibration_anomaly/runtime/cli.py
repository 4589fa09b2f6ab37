"""``vibration-anomaly alarm status|reset``: the durable alarm latch, off the running node.

While the node runs, reset through its service (``ros2 service call /detector/reset_alarm
std_srvs/srv/Trigger``): the node holds the latch in memory too. This command is for a stopped
robot (bearing replaced during maintenance) or to read the latch from a support shell.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from vibration_anomaly.clikit import check_input_file, guarded

DEFAULT_STATE = "/var/lib/vibration_anomaly/alarm_state.json"


def _status(args: argparse.Namespace) -> int:
    from vibration_anomaly.core.latch import AlarmLatch

    path = Path(args.state)
    if path.exists():
        check_input_file(path, "--state", max_bytes=64 * 1024)
    latch = AlarmLatch(path)
    out = {
        "state": str(path),
        "latched": latch.latched,
        **{k: v for k, v in latch.state.items() if k != "latched"},
    }
    if latch.load_error:
        out["load_error"] = latch.load_error
    print(
        json.dumps(out, indent=2, sort_keys=True)
        if args.json
        else f"{path}: {'LATCHED' if latch.latched else 'not latched'}"
        + (f" (unreadable: {latch.load_error})" if latch.load_error else "")
    )
    return 0


def _reset(args: argparse.Namespace) -> int:
    from vibration_anomaly.core.latch import AlarmLatch

    path = Path(args.state)
    if path.exists():
        check_input_file(path, "--state", max_bytes=64 * 1024)
    latch = AlarmLatch(path)
    was = latch.reset(time.time(), who=f"vibration-anomaly alarm reset ({args.who})", why=args.why)
    print(f"{path}: alarm reset ({'was latched' if was else 'was not latched'}); reason: {args.why}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "alarm", help="read or reset the durable alarm latch of a stopped detector", description=__doc__
    )
    cmds = p.add_subparsers(dest="alarm_command", metavar="ACTION")
    cmds.required = True
    s = cmds.add_parser("status", help="is the alarm latched, since when, by what score")
    s.add_argument(
        "--state", default=DEFAULT_STATE, help="the latch file (alarm_state.json beside rollback_state)"
    )
    s.add_argument("--json", action="store_true", help="print the latch as JSON")
    s.set_defaults(func=guarded(_status, "alarm status"))
    r = cmds.add_parser("reset", help="clear the latch (logged in the file: who, why, when)")
    r.add_argument(
        "--state", default=DEFAULT_STATE, help="the latch file (alarm_state.json beside rollback_state)"
    )
    r.add_argument("--why", required=True, help="why it is cleared, e.g. 'bearing replaced, work order 1234'")
    r.add_argument("--who", default="operator", help="who clears it")
    r.set_defaults(func=guarded(_reset, "alarm reset"))
