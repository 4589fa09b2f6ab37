"""The ROS-free composition root: what the detector node, the demo and the soak all build.

``DetectorRuntime`` (configure sequence, engine thread, bus and sinks, queue, detector, inference
worker, power and telemetry wiring, health board) over ``core/`` (the plain objects), ``config/``
(the signed bundle), ``engine/`` (backends) and ``model/`` (frontend, calibration). Above it only
adapters: ``nodes/`` (rclpy), ``sim/`` (simulated robots), ``cli``.
"""

from vibration_anomaly.runtime.params import DEFAULTS, RuntimeParams
from vibration_anomaly.runtime.pipeline import Pipeline, PipelineFactory, build_pipeline
from vibration_anomaly.runtime.runtime import ConfigureFailed, DetectorRuntime

__all__ = [
    "DEFAULTS",
    "ConfigureFailed",
    "DetectorRuntime",
    "Pipeline",
    "PipelineFactory",
    "RuntimeParams",
    "build_pipeline",
]
