"""Inference backends behind one Engine protocol (see ``base``)."""

from vibration_anomaly.engine.base import Engine, EngineState, Residency, TensorSpec

__all__ = ["Engine", "EngineState", "Residency", "TensorSpec"]
