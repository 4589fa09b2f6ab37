"""``vibration-anomaly calibrate``: a machine's calibration from a healthy recording.

Registered by ``model.cli``'s ``register`` after train and evaluate. Heavy
imports (numpy, onnxruntime, the record loaders) happen inside the command
function, never at import time.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from vibration_anomaly.bundle import defaults
from vibration_anomaly.bundle.bearing import MAX_RESONANCE_HZ
from vibration_anomaly.clikit import check_output_file, number, number_range, write_text_atomic
from vibration_anomaly.errors import InputError
from vibration_anomaly.model.cli_support import (
    json_safe,
    model_files,
    open_engine,
    parse_bearing,
    segments_arg,
    wrap,
)

ADVISED_WINDOWS = 60
"""Fewer healthy windows than this get a warning (docs/MODEL.md, \"Through the robot's sensor\")."""


def cmd_calibrate(args: argparse.Namespace) -> int:
    import numpy as np

    from vibration_anomaly.core import sensor_health
    from vibration_anomaly.core.window import batch_samples
    from vibration_anomaly.model.data import cut_windows
    from vibration_anomaly.model.records import load_record, rates_agree

    check_output_file(args.out, "--out")
    rec = load_record(Path(args.input))
    sig, fs_file = rec.signal, rec.fs_hz
    if args.fs_hz is not None and fs_file is not None and not rates_agree(args.fs_hz, fs_file):
        raise InputError(
            "--fs-hz",
            f"{args.fs_hz:g}",
            f"disagrees with the {fs_file:g} Hz that {args.input} states; "
            "leave --fs-hz out (or fix the file)",
        )
    fs = args.fs_hz or fs_file
    if not fs:
        raise InputError(args.input, "fs_hz", "rate not in the file; give --fs-hz")
    # A dead, stuck or clipped channel would be learned as "healthy": refuse the recording instead.
    findings = sensor_health.check_batch(sig, fs, timestamps=rec.timestamps)
    errors = [f for f in findings if f.level >= sensor_health.ERROR]
    if errors:
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InputError(
            args.input,
            f"sensor {errors[0].kind}",
            f"{errors[0].message}{more}; a calibration needs a recording of a working, unclipped sensor",
        )
    if args.reference is not None:
        _refuse_a_loose_mount(args.reference, args.input, sig)
    for f in findings:
        print(f"warning: {args.input}: sensor {f.kind}: {f.message}", file=sys.stderr)
    # The detector scores batches of batch_samples(fs, sample_s) (98 % of the window, see core.window);
    # a calibration is bound to that length, so cut the healthy recording the same way.
    n = batch_samples(fs, args.window_s)
    files = model_files(args.model)
    min_samples = int(files.meta.get("frontend", {}).get("min_samples", 256))
    if n < min_samples:
        raise InputError(
            "--window-s",
            f"{args.window_s:g}",
            f"gives batches of {n} samples at {fs:g} Hz; the model needs at least {min_samples}",
        )
    w = cut_windows(sig, n)
    if len(w) < 4:
        raise InputError(
            args.input, "length", f"{len(w)} windows of {args.window_s} s; need at least 4 healthy windows"
        )
    shaft_hz, orders = _speed_and_orders(args, fs)
    if args.bearing_resonance_hz and not orders:
        lo, hi = args.bearing_resonance_hz
        raise InputError(
            "--bearing-resonance-hz", f"{lo:g},{hi:g}", "needs --bearing: the resonance of which bearing?"
        )
    tracked = readings = None
    if args.speed_joint:
        tracked, readings = _windows_at_their_speed(args, rec, w, n, fs)
    if len(w) < ADVISED_WINDOWS:
        print(
            f"warning: {args.input}: {len(w)} windows of {args.window_s:g} s; at least {ADVISED_WINDOWS} "
            "are advised (docs/MODEL.md: with 20, knocks and healthy windows cross a 1 % threshold "
            "several times as often as with 60)",
            file=sys.stderr,
        )
    eng = open_engine(files.cpu_onnx)  # the scores the ONNX Runtime backend will give (FP32 twin if shipped)
    cal = files.calibrate(
        eng,
        list(np.asarray(w)),
        fs,
        target_far=args.target_far,
        machine=args.machine or "",
        shaft_hz=tracked.speeds_hz if tracked is not None else shaft_hz,
        orders=orders,
        resonance_hz=args.bearing_resonance_hz if orders else None,
        segments=args.segments,
        order_windows=None if tracked is None else tracked.windows,
    )
    if not (math.isfinite(cal.threshold) and cal.threshold > 0):
        raise RuntimeError(f"calibration produced threshold {cal.threshold!r}; nothing written to {args.out}")
    cal.extra["sensor"] = sensor_health.baseline(sig)
    write_text_atomic(args.out, json.dumps(json_safe(cal.to_dict()), indent=1, allow_nan=False))
    print(
        json.dumps(
            {
                "out": str(args.out),
                "threshold": cal.threshold,
                "windows": cal.n_windows,
                "method": cal.method,
                "segments": cal.segments,
                "speeds_hz": cal.extra.get("speed_hz"),
                "speed_aware": _speed_aware_summary(
                    cal, shaft_hz, orders, tracked, readings, args.bearing_resonance_hz
                ),
            },
            indent=1,
        )
    )
    return 0


def register(subparsers: Any) -> None:
    """Add ``calibrate`` to the subcommands (``model.cli.register`` calls it, after train and evaluate)."""
    c = subparsers.add_parser(
        "calibrate",
        help="fit a machine's calibration (normalisation + threshold) on healthy data",
        description="Cut a healthy recording (.npz, .csv, rosbag2) into windows and fit the "
        "per-machine calibration JSON that the detector loads beside the model.",
    )
    c.add_argument("--input", required=True, help="healthy recording of this machine (.npz, .csv, rosbag2)")
    c.add_argument("--out", required=True, help="calibration JSON to write")
    c.add_argument("--model", help="model directory (default: the shipped model)")
    c.add_argument(
        "--window-s",
        type=number(0, 600, unit="s"),
        default=defaults.SAMPLE_S,
        help="the duty cycle's sample window, sample_s of the robot's bundle (default "
        f"{defaults.SAMPLE_S:g} s); windows are cut to the detector's batch length "
        "(core.window.batch_samples: 98 %% of it)",
    )
    c.add_argument(
        "--fs-hz",
        type=number(0, 1_000_000, unit="Hz"),
        help="sampling rate, only for a file that does not state it (a .npz without fs); "
        "refused when it disagrees with the file's own rate",
    )
    c.add_argument(
        "--target-far",
        type=number(0, 0.5, hi_open=True),
        default=0.01,
        help="per-window false-alarm rate (default 0.01)",
    )
    c.add_argument("--machine", help="machine name recorded in the calibration")
    c.add_argument(
        "--bearing",
        help="speed-aware scoring: the defect orders the robot's bundle states, a preset (cwru-6205, femto) "
        "or 'bpfo=..,bpfi=..,bsf=..' (with --shaft-hz or --speed-joint). The calibration then holds an order reference and "
        "the model and the orders each get half the target; the detector uses it while the shaft speed is "
        "known (shaft_hz or speed_topic) and the bundle's bearing is the same",
    )
    c.add_argument(
        "--bearing-resonance-hz",
        type=number_range(0, MAX_RESONANCE_HZ, unit="Hz"),
        metavar="LO,HI",
        help="with --bearing: the structural resonance the bearing's impacts ring, as the bundle's "
        "bearing.resonance_hz states it (the two must match on the robot); the envelope is then read only in "
        "bands that overlap it, and not at all where the sensor cannot pass it (default: every band)",
    )
    c.add_argument(
        "--segments",
        type=segments_arg,
        default=1,
        help="score each window as this many segments, or 'auto' (one per second): a knock lifts one or two "
        "segments, a defect all (docs/MODEL.md); costs about 3 ms more per awake cycle (default 1: whole)",
    )
    c.add_argument(
        "--shaft-hz",
        type=number(0, 1000, lo_open=True, unit="Hz"),
        help="the shaft speed during the healthy recording (steady): recorded, so the robot does not score "
        "windows at speeds the calibration never saw (with speed_topic or shaft_hz); needed by --bearing",
    )
    c.add_argument(
        "--speed-joint",
        help="instead of --shaft-hz: the joint of the bag's sensor_msgs/JointState topic whose "
        "velocity (rad/s) is the shaft's (the detector's speed_joint); the recording may then change speed "
        "(the speeds it covers are recorded: record across the robot's speeds); with --bearing "
        "each window is resampled to its mean speed, as the detector does, and windows with an unknown "
        "speed are left out of the order part (rosbag2 input only)",
    )
    c.add_argument(
        "--speed-topic",
        help="with --speed-joint: the JointState topic (default: the bag's only one)",
    )
    c.add_argument(
        "--reference",
        type=Path,
        help="an earlier calibration of this machine (re-commissioning): a recording whose broadband level "
        "is far below it (a loose mount, a detached sensor) is refused instead of learned as healthy",
    )
    c.set_defaults(func=wrap(cmd_calibrate))


def _speed_and_orders(args: argparse.Namespace, fs: float) -> tuple[float | None, dict[str, float] | None]:
    """``--shaft-hz`` (or ``rpm=`` in ``--bearing``) and the defect orders; orders need a speed, a speed alone
    records the speeds the calibration was made at (``extra.speed_hz``, ``core.speed.SpeedGuard``)."""
    from vibration_anomaly.core.order_score import defect_lines_hz

    bearing = parse_bearing(args.bearing)
    rpm = (bearing or {}).pop("rpm", None)
    shaft_hz = args.shaft_hz if args.shaft_hz is not None else (rpm / 60.0 if rpm else None)
    if args.shaft_hz is not None and rpm and abs(args.shaft_hz - rpm / 60.0) > 1e-3 * args.shaft_hz:
        raise InputError("--shaft-hz", f"{args.shaft_hz:g}", f"disagrees with --bearing's rpm={rpm:g}")
    if args.speed_topic and not args.speed_joint:
        raise InputError("--speed-topic", args.speed_topic, "needs --speed-joint (the joint on it)")
    if args.speed_joint and shaft_hz:
        raise InputError(
            "--speed-joint", args.speed_joint, "or a steady speed (--shaft-hz, rpm= in --bearing), not both"
        )
    if bearing and not (shaft_hz or args.speed_joint):
        raise InputError(
            "calibrate",
            "speed-aware scoring",
            "needs both the speed and the orders; give --shaft-hz or --speed-joint (the recording's speed)",
        )
    if bearing and shaft_hz and not defect_lines_hz(shaft_hz, bearing):
        raise InputError("--bearing", args.bearing, "states no defect order but the cage's (ftf)")
    return shaft_hz, bearing


def _windows_at_their_speed(args: argparse.Namespace, rec: Any, w: Any, n: int, fs: float) -> tuple[Any, Any]:
    """The windows with a known speed, each at constant speed (``model.speed_record``), and the readings."""
    import numpy as np

    from vibration_anomaly.model.speed_record import load_joint_speed, track_windows

    path = Path(args.input)
    if rec.timestamps is None or not (path.is_dir() or path.suffix.lower() in (".db3", ".mcap")):
        raise InputError(
            "--speed-joint",
            args.speed_joint,
            f"needs a rosbag2 recording (the IMU and the JointState beside it); {args.input} is not one",
        )
    readings = load_joint_speed(path, args.speed_joint, args.speed_topic)
    imu, js = rec.timestamps, readings.stamps
    if js[-1] < imu[0] or js[0] > imu[-1]:  # refused before any window is resampled
        raise InputError(
            args.input,
            f"{readings.topic} stamps",
            f"{js[0]:.3f}-{js[-1]:.3f} s do not overlap the IMU's {imu[0]:.3f}-{imu[-1]:.3f} s: another clock?",
        )
    tracked = track_windows(np.asarray(w), imu[np.arange(len(w)) * n], fs, readings)
    if len(tracked.speeds_hz) < 4:
        raise InputError(
            args.input,
            f"{readings.topic} {args.speed_joint}",
            f"a known speed through only {len(tracked.speeds_hz)} of {len(w)} windows; need at least 4"
            + (f" (unknown: {readings.why_unknown})" if readings.why_unknown else ""),
        )
    if tracked.left_out:
        print(
            f"warning: {args.input}: {tracked.left_out} of {len(w)} windows left out of the order part: "
            f"the speed was unknown for part of them ({readings.why_unknown or 'no reading near them'})",
            file=sys.stderr,
        )
    return tracked, readings


def _resonance_note(resonance_hz: tuple[float, float] | None) -> str:
    return (
        ""
        if resonance_hz is None
        else f" and the stated {resonance_hz[0]:g}-{resonance_hz[1]:g} Hz resonance"
    )


def _speed_aware_summary(
    cal: Any,
    shaft_hz: float | None,
    orders: dict[str, float] | None,
    tracked: Any = None,
    readings: Any = None,
    resonance_hz: tuple[float, float] | None = None,
) -> Any:
    from vibration_anomaly.core.order_calibration import EXTRA_KEY

    if not orders:
        return None  # a speed alone: recorded as extra.speed_hz, no order part
    if tracked is not None:
        shaft_hz = float(cal.extra.get(EXTRA_KEY, {}).get("shaft_hz") or 0.0) or min(tracked.speeds_hz)
    if not shaft_hz:
        return None
    rec = cal.extra.get(EXTRA_KEY)
    if rec is None:
        print(
            f"warning: no defect line at {shaft_hz:g} Hz fits this sensor's band{_resonance_note(resonance_hz)}: "
            "the model alone decides",
            file=sys.stderr,
        )
        return {"shaft_hz": shaft_hz, "orders": orders, "lines": []}
    n_env = len(rec["reference"]) // len(rec["parts"])  # part-major: the envelope's columns come first
    if resonance_hz is not None and all(v is None for v in rec["reference"][:n_env]):
        print(
            f"warning: no envelope band holds the stated {resonance_hz[0]:g}-{resonance_hz[1]:g} Hz resonance "
            "through this sensor: only the raw spectrum's lines are read",
            file=sys.stderr,
        )
    out = {
        "shaft_hz": shaft_hz,
        "resonance_hz": rec.get("resonance_hz"),
        "lines": rec["lines"],
        "order_threshold": rec["threshold"],
        "model_threshold": rec["model_threshold"],
        "each_at_target_far": rec["target_far"],
    }
    if tracked is not None:
        out["speed"] = tracked.summary(readings)
    return out


def _refuse_a_loose_mount(reference: Path, recording: str, sig: Any) -> None:
    """Re-commissioning on a sensor that came loose would learn "almost no vibration" as this machine's health."""
    from vibration_anomaly.core.calibration import Calibration
    from vibration_anomaly.core.sensor_health import baseline_rms_from
    from vibration_anomaly.core.sensor_watch import SensorWatch

    ref = baseline_rms_from(Calibration.load(reference).extra)
    if ref is None:
        raise InputError(
            str(reference), "extra.sensor", "this calibration holds no sensor level to compare with"
        )
    finding = SensorWatch(baseline_rms=ref).loose_mount(sig)
    if finding is not None:
        raise InputError(recording, "sensor loose_mount", f"{finding.message} (reference {reference})")
