"""Per-machine calibration (numpy only; runs on the robot).

The model never sees raw features: each machine is calibrated on a healthy
stretch of its own data, and that calibration (feature normalisation and the
alarm threshold) is stored beside the model as JSON. This is what lets one
model serve machines with different sensors, mounts, gains and sampling rates.

* ``Calibration`` (``record``): frozen record of the per-machine normalisation (per
  channel, token and feature mean / std), the score threshold, the false-alarm
  rate it was set for and how it was fitted; its JSON form, checked on load.
* ``calibrate(...)`` (``fit``): fits a Calibration from healthy windows (see its
  docstring for the statistics and why); ``calibrate_features``,
  ``fit_normalisation`` and ``threshold_from_scores`` are its steps.
"""

from vibration_anomaly.core.calibration.fit import (
    calibrate,
    calibrate_features,
    fit_normalisation,
    threshold_from_scores,
)
from vibration_anomaly.core.calibration.record import (
    CALIBRATION_VERSION,
    MAX_CALIBRATION_BYTES,
    MAX_FS_HZ,
    MAX_WINDOW_S,
    QUIET_GATE,
    Z_CLIP,
    Calibration,
    zscores,
)

__all__ = [
    "CALIBRATION_VERSION",
    "MAX_CALIBRATION_BYTES",
    "MAX_FS_HZ",
    "MAX_WINDOW_S",
    "QUIET_GATE",
    "Z_CLIP",
    "Calibration",
    "calibrate",
    "calibrate_features",
    "fit_normalisation",
    "threshold_from_scores",
    "zscores",
]
