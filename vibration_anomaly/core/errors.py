"""Moved to :mod:`vibration_anomaly.errors` (the package root: every layer raises them).

Kept for one release so that code importing the old path keeps working; import from
``vibration_anomaly.errors``.
"""

from vibration_anomaly.errors import EngineError, EngineStateError, InputError, VibrationAnomalyError

__all__ = ["EngineError", "EngineStateError", "InputError", "VibrationAnomalyError"]
