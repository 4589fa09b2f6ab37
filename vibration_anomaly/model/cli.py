"""``vibration-anomaly train | evaluate | calibrate``: the model's off-robot commands.

train and evaluate are here; calibrate is ``model.calibrate_cli``, registered
from :func:`register`; what they share (opening the model and its engine, JSON
without NaN) is ``model.cli_support``. Heavy imports (torch, onnxruntime,
sklearn, matplotlib) happen inside the command functions, never at import time.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from vibration_anomaly.bundle.bearing import MAX_RESONANCE_HZ
from vibration_anomaly.clikit import (
    check_output_dir,
    check_output_file,
    number,
    number_list,
    number_range,
)
from vibration_anomaly.errors import InputError
from vibration_anomaly.model import calibrate_cli
from vibration_anomaly.model.cli_support import (
    json_safe,
    model_files,
    open_engine,
    segments_arg,
    wrap,
)
from vibration_anomaly.model.cli_support import parse_bearing as _bearing


def cmd_train(args: argparse.Namespace) -> int:
    from vibration_anomaly.model.train import DEFAULT_TRAIN_BEARINGS, TrainConfig, train

    for d in args.data or []:
        if not Path(d).is_dir():
            raise InputError(
                "--data", d, "is not a directory; expected a dataset directory with manifest.csv"
            )
    check_output_dir(args.out, "--out")
    machines = None
    if args.machines:
        machines = (
            list(DEFAULT_TRAIN_BEARINGS) if args.machines == "femto-default" else args.machines.split(",")
        )
    cfg = TrainConfig(
        data_dirs=list(args.data or []),
        machines=machines,
        steps=args.steps,
        synth_machines=args.synth_machines,
        seed=args.seed,
        threads=args.threads,
    )
    meta = train(cfg, args.out, progress=not args.quiet)
    print(
        json.dumps(
            {
                "out": str(args.out),
                "params": meta["params"],
                "final_loss": meta["training"]["final_loss"],
                "seconds": meta["training"]["seconds"],
                "files": meta["files"],
            },
            indent=1,
        )
    )
    return 0


def _physics(args: argparse.Namespace) -> Any:
    """The injected defect's resonance and low mode (Hz) from --resonance-hz / --mode-hz."""
    from vibration_anomaly.model.synth import DEFAULT_PHYSICS

    return replace(
        DEFAULT_PHYSICS,
        resonance_hz=args.resonance_hz or DEFAULT_PHYSICS.resonance_hz,  # clikit.number_range: LO < HI
        mode_hz=args.mode_hz or DEFAULT_PHYSICS.mode_hz,
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    from vibration_anomaly.model.evaluate import evaluate
    from vibration_anomaly.model.false_alarms import bundle_vote

    if args.report:
        check_output_file(args.report, "--report")
    vote = bundle_vote(args.bundle, args.trust)
    physics = _physics(args)
    files = model_files(args.model)
    eng8 = open_engine(files.onnx_int8)
    eng32 = open_engine(files.onnx_fp32) if files.onnx_fp32 is not None else None
    bearing = _bearing(args.bearing)
    res, raw = evaluate(
        args.data,
        files,
        eng8.infer,
        eng32.infer if eng32 else None,
        window_s=args.window_s,
        cal_frac=args.cal_frac,
        target_far=args.target_far,
        bearing=bearing,
        include_trained=args.include_trained,
        seed=args.seed,
        vote=vote,
        sensor_rate_hz=args.sensor_rate,
        segments=args.segments,
        bearing_resonance_hz=args.bearing_resonance_hz,
    )
    sens = None
    if args.sensitivity:
        from vibration_anomaly.model.sensitivity import sensitivity

        amps = args.amplitudes
        sens = sensitivity(
            args.data,
            files,
            eng8.infer,
            window_s=args.window_s,
            cal_frac=args.cal_frac,
            target_far=args.target_far,
            amplitudes=amps,
            knock_peak=args.knock_peak,
            bearing=bearing,
            include_trained=args.include_trained,
            sensor_rate_hz=args.sensor_rate,
            physics=physics,
            seed=args.seed,
            vote=vote,
            segments=args.segments,
            bearing_resonance_hz=args.bearing_resonance_hz,
        )
        res["sensitivity"] = sens
    if args.report:
        from vibration_anomaly.model.report import draw_report

        draw_report(res, raw, Path(args.report))
    if args.json:
        print(json.dumps(json_safe(res), indent=1, allow_nan=False))
    else:
        _print_table(res)
    return 0


def _f(value: Any, spec: str) -> str:
    """A table cell: n/a instead of nan (a metric that does not exist for this set, e.g. precision with no alarm)."""
    width = int(spec.split(".")[0] or 0) if spec[:1].isdigit() else 0
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a".rjust(width)
    return format(value, spec)


def _print_table(res: dict[str, Any]) -> None:
    if res.get("setup", {}).get("sensor_rate_hz"):
        print(f"through a sensor model at {res['setup']['sensor_rate_hz']:g} Hz (anti-aliased resampling)")
    rows = [("model (INT8)", res)] + ([("model (FP32)", res["fp32"])] if "fp32" in res else [])
    rows += [("model+orders", res["model+orders"])] if "model+orders" in res else []
    rows += list(res["baselines"].items())
    print(f"{'method':16s} {'AUROC':>7s} {'prec':>6s} {'recall':>6s} {'FAR':>6s}  per condition AUROC")
    for name, b in rows:
        pc = " ".join(f"{c}={_f(v['auroc'], '.3f')}" for c, v in b.get("per_condition", {}).items())
        print(
            f"{name:16s} {_f(b['auroc'], '7.4f')} {_f(b['precision'], '6.3f')} {_f(b['recall'], '6.3f')} "
            f"{_f(b['false_alarm_rate'], '6.3f')}  {pc}"
        )
    s = res.get("sensitivity")
    if s:
        print("\nsensitivity: AUROC / recall per amplitude (impact peak / healthy RMS)")
        for name, m in s["methods"].items():
            lad = " ".join(
                f"{a}x:{_f(d['auroc'], '.3f')}/{_f(d['recall'], '.2f')}" for a, d in m["ladder"].items()
            )
            unscored = m.get("knock_windows_not_scored")
            print(
                f"{name:14s} {lad}  smallest={m['smallest_detected_amplitude']} "
                f"knock-exceed={_f(m['knock_window_exceedance_rate'], '.3f')} "
                f"knock-alarms={m['knock_alarms_after_voting']} "
                + (f"knock-not-scored={_f(unscored, '.3f')} " if unscored else "")
                + f"FA/month={_f(m['false_alarms_per_month_clean'], '.3g')}"
            )
    fa = res.get("false_alarms")
    if fa:
        v = fa["vote"]
        print(
            f"\nheld-out healthy false alarms (model, time order, {v['k']}-of-{v['n']} vote from {v['source']}; "
            f"upper bounds at 95 %, target FAR {fa['target_far']:g})"
        )
        print(
            f"{'machine':14s} {'over/N':>9s} {'rate':>6s} {'upper':>6s} {'target?':>7s} {'alarms':>6s}  /month (upper)"
        )
        for name, m in [*fa["machines"].items(), ("pooled", fa["pooled"])]:
            at = ",".join(str(a["window"]) for a in m["alarms"][:5]) + (
                ",..." if len(m["alarms"]) > 5 else ""
            )
            print(
                f"{name:14s} {str(m['over_threshold']) + '/' + str(m['windows']):>9s} "
                f"{_f(m['exceedance_rate'], '6.3f')} {_f(m['exceedance_upper95'], '6.3f')} "
                f"{'yes' if m['within_target_95'] else 'NO':>7s} {m['voted_alarms']:6d}  "
                f"{_f(m['alarms_per_month'], '.3g')} ({_f(m['alarms_per_month_upper95'], '.3g')})"
                + (f"  at window {at}" if at and name != "pooled" else "")
                + (f"  ({m['not_scored']} not scored: a knock left in)" if m.get("not_scored") else "")
            )
        if "model+orders" in res:
            p = res["model+orders"]["false_alarms"]["pooled"]
            print(
                f"{'model+orders':14s} {str(p['over_threshold']) + '/' + str(p['windows']):>9s} "
                f"{_f(p['exceedance_rate'], '6.3f')} {_f(p['exceedance_upper95'], '6.3f')} "
                f"{'yes' if p['within_target_95'] else 'NO':>7s} {p['voted_alarms']:6d}  (pooled)"
            )


SEED = number(0, 2**32 - 1, lo_open=False, integer=True)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="train the band transformer on healthy data; export ONNX FP32 + INT8 QDQ",
        description="Self-supervised training on healthy windows only (plus synthetic healthy "
        "machines), then ONNX export (opset 17) and INT8 QDQ quantization. Deterministic for "
        "a seed and thread count. Progress on stderr.",
    )
    p.add_argument(
        "--data",
        action="append",
        help="dataset dir with manifest.csv (repeatable); its healthy records train",
    )
    p.add_argument(
        "--machines", help="comma list of machines to train on, or 'femto-default' (the shipped model's)"
    )
    p.add_argument(
        "--out", required=True, help="output model directory (model.onnx, model_fp32.onnx, model.json)"
    )
    p.add_argument(
        "--steps",
        type=number(1, 10_000_000, lo_open=False, integer=True),
        default=2000,
        help="optimizer steps (default 2000)",
    )
    p.add_argument(
        "--synth-machines",
        type=number(0, 10_000, lo_open=False, integer=True),
        default=48,
        help="synthetic healthy machines to add (default 48)",
    )
    p.add_argument("--seed", type=SEED, default=0, help="random seed")
    p.add_argument(
        "--threads",
        type=number(1, 1024, lo_open=False, integer=True),
        default=1,
        help="torch threads (results depend on it; default 1)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=wrap(cmd_train))

    e = subparsers.add_parser(
        "evaluate",
        help="AUROC / precision / recall vs classic baselines on a dataset dir",
        description="Calibrate each machine on the first part of its healthy windows, score "
        "the rest and its faulty records, side by side with RMS, kurtosis, band kurtosis "
        "(kurtogram), envelope at defect frequencies and IsolationForest.",
    )
    e.add_argument(
        "--data", required=True, help="dir with manifest.csv (file, condition, fs_hz[, machine, rpm, bpfo..])"
    )
    e.add_argument("--model", help="model directory (default: the shipped model)")
    e.add_argument(
        "--window-s",
        type=number(0, 600, unit="s"),
        default=None,
        help="window length in seconds (default: 0.2 s or the model's minimum of 256 samples, "
        "whichever is longer, per machine; 0.256 s at 1 kHz)",
    )
    e.add_argument(
        "--cal-frac",
        type=number(0, 1, hi_open=True),
        default=0.5,
        help="share of each machine's healthy windows to calibrate on, the rest held out",
    )
    e.add_argument(
        "--target-far",
        type=number(0, 0.5, hi_open=True),
        default=0.01,
        help="per-window false-alarm rate of the threshold",
    )
    e.add_argument("--bearing", help="defect orders: preset (cwru-6205, femto) or 'bpfo=..,bpfi=..,bsf=..'")
    e.add_argument("--include-trained", action="store_true", help="also score machines the model trained on")
    e.add_argument(
        "--bundle",
        help="signed bundle whose alarm vote (k of n) and duty cycle the false-alarm figures use "
        "(default: the shipped example bundle); needs --trust",
    )
    e.add_argument("--trust", help="trust directory (*.pub keys) that verifies --bundle")
    e.add_argument(
        "--sensitivity", action="store_true", help="inject defects / knocks into held-out healthy data"
    )
    e.add_argument(
        "--amplitudes",
        type=number_list(0, 1000),
        default=(0.5, 1.0, 1.5, 2.0, 3.0, 5.0),
        help="impact peaks as multiples of healthy RMS (default 0.5,1,1.5,2,3,5)",
    )
    e.add_argument(
        "--knock-peak",
        type=number(0, 1000),
        default=8.0,
        help="knock peak as a multiple of healthy RMS at the recording's rate",
    )
    e.add_argument(
        "--sensor-rate",
        type=number(0, 1_000_000, unit="Hz"),
        default=None,
        help="evaluate what a sensor at this rate would deliver: anti-aliased resampling of every record "
        "(and, with --sensitivity, of every window after injection); default: the recording's own rate",
    )
    e.add_argument(
        "--resonance-hz",
        type=number_range(0, 1_000_000, unit="Hz"),
        default=None,
        help="with --sensitivity: LO,HI of the structural resonance the injected impacts ring (default 2500,4500)",
    )
    e.add_argument(
        "--mode-hz",
        type=number_range(0, 1_000_000, unit="Hz"),
        default=None,
        help="with --sensitivity: LO,HI of the low structural mode the impacts also ring (default 100,400)",
    )
    e.add_argument(
        "--bearing-resonance-hz",
        type=number_range(0, MAX_RESONANCE_HZ, unit="Hz"),
        metavar="LO,HI",
        default=None,
        help="tell model+orders the structural resonance the bearing's impacts ring, as a bundle's "
        "bearing.resonance_hz does on the robot: its envelope reads only the bands that overlap it, none "
        "where the sensor cannot pass it (default: not told, every band). --resonance-hz is the injection's",
    )
    e.add_argument(
        "--segments",
        type=segments_arg,
        default=1,
        help="score each window as this many segments, or 'auto' (one per second), as a robot calibrated "
        "with `calibrate --segments` does (default 1: whole)",
    )
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")
    e.add_argument("--report", help="write ROC curves and score distributions to this PNG")
    e.add_argument("--seed", type=SEED, default=0, help="random seed of the baselines and injections")
    e.set_defaults(func=wrap(cmd_evaluate))

    calibrate_cli.register(subparsers)
