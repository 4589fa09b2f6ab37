"""``vibration-anomaly engine build`` and ``engine info``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vibration_anomaly.clikit import check_input_file, check_output_file, guarded, number

MAX_ONNX_BYTES = 2 * 1024**3
"""protobuf's own ceiling for one ONNX file; a larger file cannot be a model."""

BATCH = number(1, 4096, lo_open=False, integer=True)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "engine",
        help="build or inspect a TensorRT engine",
        description="Build a TensorRT engine from the ONNX model, or check an engine against the model.",
    )
    sub = p.add_subparsers(dest="engine_command", metavar="ENGINE_COMMAND")
    sub.required = True

    b = sub.add_parser(
        "build",
        help="build a TensorRT engine from MODEL.onnx (needs the full TensorRT and a GPU)",
        description=(
            "Build a TensorRT engine for this machine's GPU: FP16 by default, INT8 from the QDQ model, one "
            "optimisation profile over the batch axis. --version-compatible makes it run on later TensorRT "
            "versions; add --exclude-lean-runtime for robots that run it with the lean runtime."
        ),
    )
    b.add_argument(
        "model", type=Path, metavar="MODEL.onnx", help="the ONNX model (features [B,T,F] -> score [B])"
    )
    b.add_argument(
        "--out", type=Path, required=True, metavar="ENGINE", help="where to write the engine (plan) file"
    )
    b.add_argument("--precision", choices=("fp16", "int8", "fp32"), default="fp16", help="default fp16")
    b.add_argument("--min-batch", type=BATCH, default=1, help="smallest batch of the profile (default 1)")
    b.add_argument("--opt-batch", type=BATCH, default=1, help="batch TensorRT tunes for (default 1)")
    b.add_argument("--max-batch", type=BATCH, default=8, help="largest batch of the profile (default 8)")
    b.add_argument("--version-compatible", action="store_true", help="build a version-compatible engine")
    b.add_argument(
        "--exclude-lean-runtime",
        action="store_true",
        help="with --version-compatible: leave the lean runtime out of the plan (the robot provides it)",
    )
    b.add_argument(
        "--workspace-mib",
        type=number(1, 1 << 20, lo_open=False, integer=True),
        default=256,
        help="builder workspace limit in MiB (default 256)",
    )
    b.set_defaults(func=guarded(run_build, "engine build"))

    i = sub.add_parser(
        "info",
        help="check an engine file and show its I/O, and which backend 'auto' would pick",
        description=(
            "Validate ENGINE (file checks, TensorRT, GPU, deserialization), print its inputs and outputs, and "
            "check them against MODEL.onnx if given. Also prints the backend 'auto' would choose and why."
        ),
    )
    i.add_argument("engine", type=Path, metavar="ENGINE", help="the engine (plan) file")
    i.add_argument(
        "--model", type=Path, metavar="MODEL.onnx", help="check the engine's I/O against this model"
    )
    i.add_argument(
        "--runtime", choices=("auto", "full", "lean"), default="auto", help="TensorRT runtime to use"
    )
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(func=guarded(run_info, "engine info"))


def run_build(args: argparse.Namespace) -> int:
    from vibration_anomaly.engine.build import BuildOptions, build_engine
    from vibration_anomaly.errors import InputError, VibrationAnomalyError

    check_input_file(args.model, "MODEL.onnx", max_bytes=MAX_ONNX_BYTES)
    check_output_file(args.out, "--out")
    if not args.min_batch <= args.opt_batch <= args.max_batch:
        raise InputError(
            "--min-batch/--opt-batch/--max-batch",
            f"{args.min_batch}/{args.opt_batch}/{args.max_batch}",
            "expected min <= opt <= max",
        )

    opts = BuildOptions(
        precision=args.precision,
        min_batch=args.min_batch,
        opt_batch=args.opt_batch,
        max_batch=args.max_batch,
        version_compatible=args.version_compatible,
        exclude_lean_runtime=args.exclude_lean_runtime,
        workspace_mib=args.workspace_mib,
    )
    try:
        build_engine(args.model, args.out, opts)
    except InputError:
        raise  # exit 2 (cli.guarded)
    except VibrationAnomalyError as exc:  # no builder or no GPU here: the environment, exit 1
        print(f"engine build: {exc}", file=sys.stderr)
        return 1
    return 0


def run_info(args: argparse.Namespace) -> int:
    from vibration_anomaly.engine.select import select_engine
    from vibration_anomaly.engine.tensorrt import MAX_ENGINE_BYTES, TensorRTEngine
    from vibration_anomaly.errors import VibrationAnomalyError

    # Refused before TensorRT sees it: a FIFO would hang the read, a 2 GB file would be read whole.
    check_input_file(args.engine, "ENGINE", max_bytes=MAX_ENGINE_BYTES)
    if args.model is not None:
        check_input_file(args.model, "--model", max_bytes=MAX_ONNX_BYTES)

    report: dict[str, Any] = {"engine": str(args.engine)}
    rc = 0
    expected: tuple[Any, Any] = (None, None)
    if args.model is not None:
        from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine

        try:
            ort = OnnxRuntimeEngine()
            ort.load(args.model)
            expected = (ort.inputs, ort.outputs)
            ort.unload()
        except VibrationAnomalyError as exc:
            print(f"engine info: {exc}", file=sys.stderr)
            return 1
    eng = TensorRTEngine(expected[0], expected[1], runtime=args.runtime, watchdog_thread=False)
    try:
        eng.load(args.engine)
    except VibrationAnomalyError as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
        rc = 1
    else:
        res = eng.residency()
        report.update(
            inputs=[{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in eng.inputs],
            outputs=[{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in eng.outputs],
            runtime=res.details.get("runtime"),
            device=res.details.get("device"),
            max_batch=res.details.get("max_batch"),
            matches_model=args.model is not None or None,
        )
        eng.unload()
    if args.model is not None:
        try:
            chosen, reason = select_engine("auto", args.model, args.engine, trt_runtime=args.runtime)
            chosen.unload()
            report["auto_choice"] = reason
        except VibrationAnomalyError as exc:
            report["auto_choice"] = f"error: {exc}"
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for k, v in report.items():
            print(f"{k}: {v}")
    return rc
