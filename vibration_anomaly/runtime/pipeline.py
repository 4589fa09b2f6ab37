"""Building the detector's pipeline from a verified bundle: model, engine, calibration, scorer, vote.

ROS-free so the lifecycle node's configure transition is one call, and so the
same checks (the model and any TensorRT plan are the ones the signed bundle
names) hold wherever a pipeline is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vibration_anomaly.bundle import VerifiedBundle, verify_engine_file, verify_model_file
from vibration_anomaly.core.detector import ScorerLike, VoterLike
from vibration_anomaly.engine.base import Engine
from vibration_anomaly.errors import InputError


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

    ``p`` holds ``model``, ``engine``, ``calibration``, ``backend`` and
    ``duty_cycle_time_scale`` (the detector node's parameters of those names).
    Raises BundleRefused when the model or plan is not the one the bundle names.
    """
    from vibration_anomaly.core.scoring import AlarmVoter, Calibration, Scorer
    from vibration_anomaly.engine.select import select_engine
    from vibration_anomaly.model import load_default_model, load_model_dir

    files = load_model_dir(p["model"]) if p["model"] else load_default_model()
    verify_model_file(bundle, files.onnx)
    if not p["calibration"]:
        raise InputError("detector parameters", "calibration",
                         "no per-machine calibration file given (make one with `vibration-anomaly calibrate`)")
    calibration = Calibration.load(p["calibration"])
    engine_path = Path(p["engine"]) if p["engine"] else None
    if engine_path is not None and p["backend"] in ("auto", "tensorrt"):
        # A TensorRT plan is loaded only if it is the one the signed bundle names (engine_sha256).
        verify_engine_file(bundle, engine_path)
    # The TensorRT watchdog forces sleep after this long awake without an inference: one duty period.
    idle_bound = bundle.duty_cycle.period_s * float(p["duty_cycle_time_scale"])
    engine, why = select_engine(p["backend"], files.onnx, engine_path, max_idle_awake_s=idle_bound)
    scorer = Scorer(engine, files.frontend(), calibration)
    voter = AlarmVoter(bundle.alarm.votes_required, bundle.alarm.votes_window)
    return Pipeline(engine, scorer, voter, f"{files.onnx} ({files.model_id})", why)
