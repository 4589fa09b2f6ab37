"""Building the detector's pipeline from a verified bundle: model, engine, calibration, scorer, vote.

ROS-free so the lifecycle node's configure transition is one call, and so the
same checks hold wherever a pipeline is built. What is checked is what is
loaded: every file (ONNX model, TensorRT plan, ``model.json``, the machine's
calibration) is read once, hashed against the signed bundle, and those very
bytes are parsed or handed to the engine; no file is opened a second time, so
replacing one between check and load changes nothing. The calibration must
also fit the model: made for this model (``model_id``) and with a threshold
that is plausible against its own healthy scores and, where ``model.json``
states it, the model's held-out score range.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vibration_anomaly.bundle import (
    BundleRefused,
    VerifiedBundle,
    read_verified_calibration,
    read_verified_engine,
    read_verified_listed_model,
    read_verified_model,
    read_verified_model_json,
)
from vibration_anomaly.core.detector import ScorerLike, VoterLike
from vibration_anomaly.engine.base import Engine
from vibration_anomaly.errors import InputError

if TYPE_CHECKING:
    from vibration_anomaly.core.calibration import Calibration
    from vibration_anomaly.model import ModelFiles

log = logging.getLogger(__name__)

THRESHOLD_OVER_MEDIAN_MAX = 1000.0
"""A calibrated threshold is a few times the machine's median healthy score (2-4 on the shipped model);
a thousand times is no threshold at all: the alarm could never fire."""
THRESHOLD_RANGE_FACTOR = 100.0
"""How far outside the model's held-out score range (``model.json`` ``heldout_score_range``) a threshold may lie."""


@dataclass
class Pipeline:
    """What configure builds: a LOADED engine and the scorer and voter over it."""

    engine: Engine
    scorer: ScorerLike
    voter: VoterLike
    model: str
    backend_reason: str = ""


PipelineFactory = Callable[[VerifiedBundle, dict[str, Any]], Pipeline]
"""(verified bundle, node parameters) -> Pipeline. The node runs it on the engine thread."""


def build_pipeline(bundle: VerifiedBundle, p: dict[str, Any]) -> Pipeline:
    """Shipped (or ``model``) ONNX model, optional ``engine`` plan for TensorRT, per-machine ``calibration``.

    ``p`` holds ``model``, ``engine``, ``calibration``, ``backend``,
    ``duty_cycle_time_scale`` and ``robot_id`` (the detector node's parameters
    of those names). Raises BundleRefused when a file is not the one the bundle
    names or the calibration does not fit the model; InputError for a missing
    or unparsable file.
    """
    from vibration_anomaly.core.order_calibration import EXTRA_KEY as ORDERS_KEY
    from vibration_anomaly.core.order_calibration import OrderCalibration
    from vibration_anomaly.core.scoring import AlarmVoter, Scorer
    from vibration_anomaly.engine.select import select_engine
    from vibration_anomaly.model import load_default_model, load_model_dir

    files = load_model_dir(p["model"]) if p["model"] else load_default_model()
    model_bytes = read_verified_model(bundle, files.onnx)
    meta_path = files.directory / "model.json"
    files = dataclasses.replace(
        files, meta=_json_object(read_verified_model_json(bundle, meta_path), meta_path)
    )
    if bundle.model_json_sha256 is None:
        log.warning(
            "%s: bundle names no model_json_sha256; %s (frontend, priors, voting) is not vouched for",
            bundle.source_path,
            meta_path,
        )
    if not p["calibration"]:
        raise InputError(
            "detector parameters",
            "calibration",
            "no per-machine calibration file given (make one with `vibration-anomaly calibrate`)",
        )
    cal_path = Path(p["calibration"])
    calibration = _calibration(
        read_verified_calibration(bundle, cal_path, str(p.get("robot_id", ""))), cal_path
    )
    check_calibration_fits(bundle, files, calibration, cal_path)
    frontend = files.frontend_for(calibration, str(cal_path))  # its options checked before anything loads
    if ORDERS_KEY in calibration.extra:  # speed-aware scoring's record: checked too (runtime.wiring uses it)
        OrderCalibration.from_dict(calibration.extra[ORDERS_KEY], str(cal_path))
    engine_path = Path(p["engine"]) if p["engine"] else None
    plan_bytes = None
    if engine_path is not None and p["backend"] in ("auto", "tensorrt"):
        # A TensorRT plan is loaded only if it is the one the signed bundle names (engine_sha256): these bytes.
        plan_bytes = read_verified_engine(bundle, engine_path)
    # The TensorRT watchdog forces sleep after this long awake without an inference: one duty period.
    idle_bound = bundle.duty_cycle.period_s * float(p["duty_cycle_time_scale"])
    cpu_model = None
    if files.onnx_fp32 is not None:
        # ONNX Runtime runs the FP32 twin (faster on the CPU) when model.json, vouched for, lists it.
        cpu_bytes = read_verified_listed_model(bundle, files.meta, files.onnx_fp32)
        cpu_model = None if cpu_bytes is None else (files.onnx_fp32, cpu_bytes)
    engine, why = select_engine(
        p["backend"],
        files.onnx,
        engine_path,
        max_idle_awake_s=idle_bound,
        model_bytes=model_bytes,
        engine_bytes=plan_bytes,
        cpu_model=cpu_model,
    )
    # its plan is made now, not when awake (for the segments a window is scored as: core.calibration.segments)
    frontend.prepare(calibration.window_samples // calibration.segments, calibration.fs_hz)
    scorer = Scorer(engine, frontend, calibration)
    voter = AlarmVoter(bundle.alarm.votes_required, bundle.alarm.votes_window)
    runs = cpu_model[0] if cpu_model is not None and engine.name == "onnxruntime" else files.onnx
    return Pipeline(engine, scorer, voter, f"{runs} ({files.model_id})", why)


def _json_object(data: bytes, path: Path) -> dict[str, Any]:
    """Parse verified bytes as a JSON object; InputError naming the file otherwise."""
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise InputError(str(path), "encoding", f"not UTF-8 text (byte {e.start}); expected JSON") from None
    except RecursionError:
        raise InputError(str(path), "json", "nested too deeply") from None
    except ValueError as e:
        raise InputError(str(path), "json", f"not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise InputError(str(path), "json", f"expected a JSON object, got {type(value).__name__}")
    return value


def _calibration(data: bytes, path: Path) -> Calibration:
    from vibration_anomaly.core.calibration import Calibration

    return Calibration.from_dict(_json_object(data, path), source=str(path))


def check_calibration_fits(bundle: VerifiedBundle, files: ModelFiles, cal: Calibration, path: Path) -> None:
    """Refuse a calibration made for another model, or with a threshold at which the alarm cannot work.

    ``calibration_foreign``: its ``model_id`` is not the verified model's (the
    first 16 hex digits of ``model_sha256``). ``calibration_implausible``: its
    threshold is below its own median healthy score (alarms on healthy data),
    more than ``THRESHOLD_OVER_MEDIAN_MAX`` times it (never alarms: the
    threshold of 1e300 a calibration from another machine once carried), or,
    where ``model.json`` states ``heldout_score_range`` [low, high], outside
    [low / ``THRESHOLD_RANGE_FACTOR``, high x ``THRESHOLD_RANGE_FACTOR``].
    """
    model_id = bundle.model_sha256[:16]
    if cal.model_id != model_id:
        made_for = f"model {cal.model_id}" if cal.model_id else "no model (model_id empty)"
        raise BundleRefused(
            "calibration_foreign",
            f"model_id: calibration made for {made_for}, but this bundle runs model {model_id}; "
            "calibrate this machine for this model (`vibration-anomaly calibrate`)",
            source=str(path),
            field="calibration.model_id",
        )
    thr, median = cal.threshold, cal.healthy_score_median
    known = math.isfinite(median) and median > 0  # unknown median (older calibrations): not checked here
    if known and not median <= thr <= median * THRESHOLD_OVER_MEDIAN_MAX:
        raise BundleRefused(
            "calibration_implausible",
            f"threshold: {thr:g} against this calibration's median healthy score {median:g} (expected "
            f"between 1 and {THRESHOLD_OVER_MEDIAN_MAX:g} times it); at this threshold the alarm "
            f"{'fires on healthy windows' if thr < median else 'can never fire'}",
            source=str(path),
            field="calibration.threshold",
        )
    span = files.meta.get("heldout_score_range")
    if span is None:
        return
    if (
        not isinstance(span, list)
        or len(span) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in span)
        or not 0 < span[0] <= span[1]
    ):
        raise InputError(
            str(files.directory / "model.json"),
            "heldout_score_range",
            f"expected [low, high] with 0 < low <= high, got {span!r:.60}",
        )
    low, high = float(span[0]) / THRESHOLD_RANGE_FACTOR, float(span[1]) * THRESHOLD_RANGE_FACTOR
    if not low <= thr <= high:
        raise BundleRefused(
            "calibration_implausible",
            f"threshold: {thr:g} outside {low:g}..{high:g} ({THRESHOLD_RANGE_FACTOR:g} times beyond the model's "
            f"held-out score range {span[0]:g}..{span[1]:g}); this calibration does not fit this model",
            source=str(path),
            field="calibration.threshold",
        )
