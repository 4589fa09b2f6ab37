"""The detector's model: frontend (numpy), shipped ONNX files, and (with the [train] extra) training.

Run time needs only numpy and onnxruntime: ``load_default_model()`` gives the
paths of the shipped model files and their parsed ``model.json``; the
frontend is built from the parameters stored there. Training, export and
quantization live in submodules that import torch / onnx lazily.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vibration_anomaly.errors import InputError
from vibration_anomaly.model.frontend import Frontend, FrontendConfig
from vibration_anomaly.model.frontend_full import FullRateFrontend

DEFAULT_DIR = Path(__file__).resolve().parent / "default"


LATER_OPTIONS = ("env_min_hz", "knock_gate")
"""Frontend options changed or added (issue 16) after calibrations were first written without them."""


def _build_frontend(method: str, config: dict[str, Any]) -> Frontend:
    cfg = FrontendConfig.from_dict(config)
    if method == Frontend.method:
        return Frontend(cfg)
    if method == FullRateFrontend.method:
        return FullRateFrontend(cfg)
    raise InputError(
        "calibration", "extra.frontend", f"unknown frontend {method!r}; expected 'banded' or 'full'"
    )


@dataclass(frozen=True)
class ModelFiles:
    """A model directory: INT8 QDQ ONNX (what robots run), optional FP32 ONNX, and model.json."""

    directory: Path
    onnx_int8: Path
    onnx_fp32: Path | None
    meta: dict[str, Any]

    @property
    def onnx(self) -> Path:
        """The file to deploy (INT8 QDQ: ONNX Runtime runs it, TensorRT builds an INT8 engine from it)."""
        return self.onnx_int8

    @property
    def cpu_onnx(self) -> Path:
        """The file ONNX Runtime on the CPU runs: the FP32 twin where there is one, else the INT8 model.

        Measured (``bench/bench_model.py``): on ONNX Runtime's CPU provider the FP32 graph is both
        quicker to wake (a session from optimised bytes) and to run than the INT8 QDQ one, whose
        quantize/dequantize pairs cost more than its integer matmuls save at this size. TensorRT
        builds its INT8 engine from ``onnx``.
        """
        return self.onnx_fp32 or self.onnx_int8

    def frontend(self, method: str = Frontend.method, config: dict[str, Any] | None = None) -> Frontend:
        """This model's frontend; ``method`` is a calibration's ``frontend`` ("banded", or "full" for old ones).

        ``config``: options that replace model.json's (``frontend_for`` passes a calibration's).
        """
        return _build_frontend(method, {**self.meta.get("frontend", {}), **(config or {})})

    def frontend_for(self, calibration: Any, source: str = "calibration") -> Frontend:
        """The frontend that made the features ``calibration`` was fitted on, to score against it.

        Its method (``Calibration.frontend``) and options (``extra.frontend_config``, checked). A
        calibration made before the options were recorded was made with this model.json's less those
        added or changed since (``LATER_OPTIONS``), which ``FrontendConfig.from_dict`` gives the values
        they had then; one recorded before an option was added (``knock_gate``) gets that option's old
        value the same way: a robot commissioned before keeps its features. ``source`` names the file in errors.
        """
        recorded = calibration.extra.get("frontend_config")
        # An option the record lacks (or every option, without a record) keeps the value it had then.
        legacy = {k: v for k, v in self.meta.get("frontend", {}).items() if k not in LATER_OPTIONS}
        options = {} if recorded is None else FrontendConfig.check_options(recorded, source)
        return _build_frontend(calibration.frontend, {**legacy, **options})

    @property
    def prior_std(self) -> np.ndarray | None:
        p = self.meta.get("feature_prior_std")
        return None if p is None else np.asarray(p, dtype=np.float64)

    @property
    def drift_std(self) -> np.ndarray | None:
        """Healthy drift prior (T, F) added to every calibration's std (``core.calibration.fit_normalisation``)."""
        p = self.meta.get("feature_drift_std")
        return None if p is None else np.asarray(p, dtype=np.float64)

    @property
    def prior_weight(self) -> float:
        return float(self.meta.get("prior_weight", 8.0))

    @property
    def voting(self) -> tuple[int, int]:
        v = self.meta.get("voting", {"k": 4, "n": 6})
        return int(v["k"]), int(v["n"])

    @property
    def model_id(self) -> str:
        return str(self.meta.get("files", {}).get(self.onnx_int8.name, ""))[:16]

    def calibrate(self, engine: Any, windows: Any, fs_hz: float, **kwargs: Any) -> Any:
        """``core.calibration.calibrate`` with this model's frontend and its training priors (std, weight, drift).

        The one way callers should calibrate a machine for this model: the priors
        belong to the model, and a caller that forgot one (the drift allowance)
        would get a calibration that false-alarms on ordinary drift.
        """
        import numpy as np

        from vibration_anomaly.core import sensor_health
        from vibration_anomaly.core.calibration import calibrate

        kwargs.setdefault("model_id", self.model_id)
        frontend = self.frontend()
        cal = calibrate(
            engine,
            frontend,
            windows,
            fs_hz,
            prior_std=self.prior_std,
            prior_weight=self.prior_weight,
            drift_std=self.drift_std,
            **kwargs,
        )
        # The sensor's healthy level on this machine (median over the windows, so one busy window does
        # not inflate it): the robot's loose-mount check compares with it.
        per_window = [sensor_health.baseline(np.asarray(w))["rms"] for w in windows]
        cal.extra.setdefault("sensor", {"rms": [float(v) for v in np.median(np.asarray(per_window), axis=0)]})
        return cal


def load_model_dir(directory: str | Path) -> ModelFiles:
    d = Path(directory)
    meta_path = d / "model.json"
    if not meta_path.is_file():
        raise InputError(str(d), "model.json", "not found; expected model.json beside model.onnx")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(str(meta_path), "json", f"not valid JSON: {e}") from None
    onnx = d / "model.onnx"
    if not onnx.is_file():
        raise InputError(str(d), "model.onnx", "not found")
    fp32 = d / "model_fp32.onnx"
    return ModelFiles(d, onnx, fp32 if fp32.is_file() else None, meta)


def load_default_model() -> ModelFiles:
    """The model shipped in the package (vibration_anomaly/model/default/)."""
    return load_model_dir(DEFAULT_DIR)


__all__ = ["DEFAULT_DIR", "ModelFiles", "load_default_model", "load_model_dir"]
