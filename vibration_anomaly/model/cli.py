"""``vibration-anomaly train | evaluate | calibrate``: the model's off-robot commands.

Heavy imports (torch, onnxruntime, sklearn, matplotlib) happen inside the
command functions, never at import time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vibration_anomaly.config import defaults
from vibration_anomaly.errors import InputError


def _bearing(text: str | None) -> dict[str, float] | None:
    """A preset name (cwru-6205, femto) or orders like 'bpfo=3.58,bpfi=5.41'."""
    if not text:
        return None
    from vibration_anomaly.model.data import BEARING_PRESETS

    if text in BEARING_PRESETS:
        return dict(BEARING_PRESETS[text])
    out = {}
    for part in text.split(","):
        k, _, v = part.partition("=")
        if k.strip() not in ("bpfo", "bpfi", "bsf", "ftf", "rpm"):
            raise InputError("--bearing", k.strip() or part, "expected a preset or bpfo=/bpfi=/bsf=/ftf=/rpm= orders")
        try:
            out[k.strip()] = float(v)
        except ValueError:
            raise InputError("--bearing", k.strip(), f"expected a number, got {v!r}") from None
    return out


def _model_files(path: str | None) -> Any:
    from vibration_anomaly.model import load_default_model, load_model_dir

    return load_model_dir(path) if path else load_default_model()


def _engine(onnx_path: Path) -> Any:
    from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine

    eng = OnnxRuntimeEngine(intra_op_threads=1)
    eng.load(onnx_path)
    eng.wake()
    return eng


def cmd_train(args: argparse.Namespace) -> int:
    from vibration_anomaly.model.train import DEFAULT_TRAIN_BEARINGS, TrainConfig, train

    machines = None
    if args.machines:
        machines = list(DEFAULT_TRAIN_BEARINGS) if args.machines == "femto-default" else args.machines.split(",")
    cfg = TrainConfig(
        data_dirs=list(args.data or []),
        machines=machines,
        steps=args.steps,
        synth_machines=args.synth_machines,
        seed=args.seed,
        threads=args.threads,
    )
    meta = train(cfg, args.out, progress=not args.quiet)
    print(json.dumps({"out": str(args.out), "params": meta["params"], "final_loss": meta["training"]["final_loss"],
                      "seconds": meta["training"]["seconds"], "files": meta["files"]}, indent=1))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from vibration_anomaly.model.evaluate import evaluate

    files = _model_files(args.model)
    eng8 = _engine(files.onnx_int8)
    eng32 = _engine(files.onnx_fp32) if files.onnx_fp32 is not None else None
    bearing = _bearing(args.bearing)
    res, raw = evaluate(args.data, files, eng8.infer, eng32.infer if eng32 else None, window_s=args.window_s,
                        cal_frac=args.cal_frac, target_far=args.target_far, bearing=bearing,
                        include_trained=args.include_trained, seed=args.seed)
    sens = None
    if args.sensitivity:
        from vibration_anomaly.model.sensitivity import sensitivity

        amps = tuple(float(a) for a in args.amplitudes.split(","))
        sens = sensitivity(args.data, files, eng8.infer, window_s=args.window_s, cal_frac=args.cal_frac,
                           target_far=args.target_far, amplitudes=amps, knock_peak=args.knock_peak,
                           bearing=bearing, include_trained=args.include_trained, seed=args.seed)
        res["sensitivity"] = sens
    if args.report:
        from vibration_anomaly.model.report import draw_report

        draw_report(res, raw, Path(args.report))
    if args.json:
        print(json.dumps(res, indent=1, default=float))
    else:
        _print_table(res)
    return 0


def _print_table(res: dict[str, Any]) -> None:
    rows = [("model (INT8)", res)] + ([("model (FP32)", res["fp32"])] if "fp32" in res else [])
    rows += list(res["baselines"].items())
    print(f"{'method':16s} {'AUROC':>7s} {'prec':>6s} {'recall':>6s} {'FAR':>6s}  per condition AUROC")
    for name, b in rows:
        pc = " ".join(f"{c}={v['auroc']:.3f}" for c, v in b.get("per_condition", {}).items())
        print(f"{name:16s} {b['auroc']:7.4f} {b['precision']:6.3f} {b['recall']:6.3f} {b['false_alarm_rate']:6.3f}  {pc}")
    s = res.get("sensitivity")
    if s:
        print("\nsensitivity: AUROC / recall per amplitude (impact peak / healthy RMS)")
        for name, m in s["methods"].items():
            lad = " ".join(f"{a}x:{d['auroc']:.3f}/{d['recall']:.2f}" for a, d in m["ladder"].items())
            print(f"{name:14s} {lad}  smallest={m['smallest_detected_amplitude']} "
                  f"knock-exceed={m['knock_window_exceedance_rate']:.3f} FA/month={m['false_alarms_per_month_clean']:.3g}")


def cmd_calibrate(args: argparse.Namespace) -> int:
    import numpy as np

    from vibration_anomaly.core.window import batch_samples
    from vibration_anomaly.model.data import cut_windows, load_signal

    files = _model_files(args.model)
    sig, fs_file = load_signal(Path(args.input))
    fs = args.fs_hz or fs_file
    if not fs:
        raise InputError(args.input, "fs_hz", "rate not in the file; give --fs-hz")
    # The detector scores batches of batch_samples(fs, sample_s) (98 % of the window, see core.window);
    # a calibration is bound to that length, so cut the healthy recording the same way.
    n = batch_samples(fs, args.window_s)
    w = cut_windows(sig, n)
    if len(w) < 4:
        raise InputError(args.input, "length", f"{len(w)} windows of {args.window_s} s; need at least 4 healthy windows")
    eng = _engine(files.onnx_int8)
    cal = files.calibrate(eng, list(np.asarray(w)), fs, target_far=args.target_far, machine=args.machine or "")
    cal.save(args.out)
    print(json.dumps({"out": str(args.out), "threshold": cal.threshold, "windows": cal.n_windows,
                      "method": cal.method}, indent=1))
    return 0


def _wrap(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(fn(args))
        except InputError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    return run


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("train", help="train the band transformer on healthy data; export ONNX FP32 + INT8 QDQ",
                              description="Self-supervised training on healthy windows only (plus synthetic healthy "
                              "machines), then ONNX export (opset 17) and INT8 QDQ quantization. Deterministic for "
                              "a seed and thread count. Progress on stderr.")
    p.add_argument("--data", action="append", help="dataset dir with manifest.csv (repeatable); its healthy records train")
    p.add_argument("--machines", help="comma list of machines to train on, or 'femto-default' (the shipped model's)")
    p.add_argument("--out", required=True, help="output model directory (model.onnx, model_fp32.onnx, model.json)")
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps (default 2000)")
    p.add_argument("--synth-machines", type=int, default=48, help="synthetic healthy machines to add (default 48)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (results depend on it; default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_wrap(cmd_train))

    e = subparsers.add_parser("evaluate", help="AUROC / precision / recall vs classic baselines on a dataset dir",
                              description="Calibrate each machine on the first part of its healthy windows, score "
                              "the rest and its faulty records, side by side with RMS, kurtosis, band kurtosis "
                              "(kurtogram), envelope at defect frequencies and IsolationForest.")
    e.add_argument("--data", required=True, help="dir with manifest.csv (file, condition, fs_hz[, machine, rpm, bpfo..])")
    e.add_argument("--model", help="model directory (default: the shipped model)")
    e.add_argument("--window-s", type=float, default=0.2, help="window length in seconds (default 0.2)")
    e.add_argument("--cal-frac", type=float, default=0.5, help="share of each machine's healthy windows to calibrate on")
    e.add_argument("--target-far", type=float, default=0.01, help="per-window false-alarm rate of the threshold")
    e.add_argument("--bearing", help="defect orders: preset (cwru-6205, femto) or 'bpfo=..,bpfi=..,bsf=..'")
    e.add_argument("--include-trained", action="store_true", help="also score machines the model trained on")
    e.add_argument("--sensitivity", action="store_true", help="inject defects / knocks into held-out healthy data")
    e.add_argument("--amplitudes", default="0.5,1,1.5,2,3,5", help="impact peaks as multiples of healthy RMS")
    e.add_argument("--knock-peak", type=float, default=8.0, help="knock peak as a multiple of healthy RMS")
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")
    e.add_argument("--report", help="write ROC curves and score distributions to this PNG")
    e.add_argument("--seed", type=int, default=0)
    e.set_defaults(func=_wrap(cmd_evaluate))

    c = subparsers.add_parser("calibrate", help="fit a machine's calibration (normalisation + threshold) on healthy data",
                              description="Cut a healthy recording (.npz, .csv, rosbag2) into windows and fit the "
                              "per-machine calibration JSON that the detector loads beside the model.")
    c.add_argument("--input", required=True, help="healthy recording of this machine (.npz, .csv, rosbag2)")
    c.add_argument("--out", required=True, help="calibration JSON to write")
    c.add_argument("--model", help="model directory (default: the shipped model)")
    c.add_argument("--window-s", type=float, default=defaults.SAMPLE_S,
                   help="the duty cycle's sample window, sample_s of the robot's bundle (default "
                        f"{defaults.SAMPLE_S:g} s); windows are cut to the detector's batch length "
                        "(core.window.batch_samples: 98 %% of it)")
    c.add_argument("--fs-hz", type=float, help="sampling rate if the file does not say")
    c.add_argument("--target-far", type=float, default=0.01, help="per-window false-alarm rate (default 0.01)")
    c.add_argument("--machine", help="machine name recorded in the calibration")
    c.set_defaults(func=_wrap(cmd_calibrate))
