"""What the model's commands share: the model and engine they open, JSON without NaN, the exit-2 wrapper.

Used by ``model.cli`` (train, evaluate) and ``model.calibrate_cli``. The
backend (onnxruntime) and the model loaders are imported inside the functions,
never at import time.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from vibration_anomaly.clikit import guarded, number
from vibration_anomaly.errors import InputError, VibrationAnomalyError
from vibration_anomaly.fileio import json_safe  # noqa: F401 - re-exported for the model commands


def add_dataset_options(ap: argparse.ArgumentParser) -> None:
    """``--data``, ``--sensor-rate``, ``--window-s`` as ``evaluate`` reads them (the dataset tools in tools/)."""
    ap.add_argument("--data", required=True, help="dataset folder with manifest.csv (as evaluate reads)")
    ap.add_argument(
        "--sensor-rate",
        type=number(0, 1_000_000, unit="Hz"),
        default=None,
        help="pass the records through the sensor model (evaluate's --sensor-rate)",
    )
    ap.add_argument(
        "--window-s", type=number(0, 600, unit="s"), default=None, help="window length (default: evaluate's)"
    )


def model_files(path: str | None) -> Any:
    from vibration_anomaly.model import load_default_model, load_model_dir

    if path is None:
        return load_default_model()
    if not Path(path).is_dir():
        raise InputError(
            "--model", path, "is not a directory; expected a model directory (model.json, model.onnx)"
        )
    return load_model_dir(path)


def open_engine(onnx_path: Path) -> Any:
    from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine

    eng = OnnxRuntimeEngine(intra_op_threads=1)
    try:
        eng.load(onnx_path)
    except VibrationAnomalyError as e:
        raise InputError("--model", str(onnx_path), f"cannot be loaded: {e}") from None
    eng.wake()
    return eng


def wrap(fn: Any) -> Any:
    """Refused input is exit 2 with one line however the command is called (``cli.guarded``)."""
    return guarded(fn, fn.__name__.removeprefix("cmd_"))


def parse_bearing(text: str | None, option: str = "--bearing") -> dict[str, float] | None:
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
            raise InputError(
                option, k.strip() or part, "expected a preset or bpfo=/bpfi=/bsf=/ftf=/rpm= orders"
            )
        try:
            val = float(v)
        except ValueError:
            raise InputError(option, k.strip(), f"expected a number, got {v!r}") from None
        if not (math.isfinite(val) and 0 < val <= 100_000):
            raise InputError(option, k.strip(), f"got {v!r}; expected a finite order (or rpm) > 0")
        out[k.strip()] = val
    return out


def segments_arg(text: str) -> int | None:
    """``--segments``: ``auto`` (None: one per second of window, ``core.calibration.segments``) or 1-64."""
    import argparse

    if text.strip().lower() == "auto":
        return None
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"got {text!r}; expected 'auto' or an integer from 1 to 64"
        ) from None
    if not 1 <= k <= 64:
        raise argparse.ArgumentTypeError(f"got {k}; expected 'auto' or an integer from 1 to 64")
    return k
