"""The frontend's options and what it checks before it computes: ``FrontendConfig`` (saved in model.json,
recorded in a calibration), the band edges, and the raw window's validation. ``frontend`` imports them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from vibration_anomaly.errors import InputError

FEATURE_NAMES: tuple[str, ...] = (
    "log_energy",
    "log_env_kurtosis_median",
    "log_env_kurtosis_q25",
    "log_env_harmonic_peak",
)


@dataclass(frozen=True)
class FrontendConfig:
    """Parameters of the frontend; saved in model.json so a model always gets the features it was trained on."""

    levels: int = 4
    subframes: int = 8
    hp_frac: float = 0.04
    max_analysis_hz: float = 12800.0
    env_min_hz: float = 10.0
    min_samples: int = 256
    env_clip: float = 8.0
    eps: float = 1e-12
    env_tol_bins: int = 1
    knock_gate: float = 4.0  # core.knock_gate's seed factor; 0: off (a calibration made before it existed)

    @property
    def n_tokens(self) -> int:
        return 2 ** (self.levels + 1) - 1

    @property
    def n_features(self) -> int:
        return len(FEATURE_NAMES)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def check_options(cls, d: Any, source: str, field_name: str = "extra.frontend_config") -> dict[str, Any]:
        """``d`` as options of this config (a calibration's record), or InputError naming what is wrong."""
        if not isinstance(d, dict):
            raise InputError(source, field_name, f"expected a JSON object, got {type(d).__name__}")
        for key, value in d.items():
            if key not in cls.__dataclass_fields__:
                raise InputError(source, f"{field_name}.{key}", f"unknown frontend option {key!r}")
            whole = isinstance(cls.__dataclass_fields__[key].default, int)
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not (
                number and math.isfinite(value) and value >= 0 and (not whole or float(value).is_integer())
            ):
                want = "a whole number >= 0" if whole else "a finite number >= 0"
                raise InputError(source, f"{field_name}.{key}", f"expected {want}, got {value!r}")
        return dict(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FrontendConfig:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        # A model.json (or calibration) written before an option existed gets the value it had then.
        known.setdefault("env_tol_bins", 0)  # exact bins
        known.setdefault("env_min_hz", 2.0)
        known.setdefault("knock_gate", 0.0)  # no knock gate
        return cls(**known)


def analysis_band(cfg: FrontendConfig, fs_hz: float) -> tuple[float, float]:
    """(low, top) of the analysis band in Hz: content below ``low`` (robot motion, shaft orders) is not read."""
    top = min(fs_hz / 2.0, cfg.max_analysis_hz)
    return cfg.hp_frac * top, top


def band_edges(cfg: FrontendConfig, fs_hz: float) -> np.ndarray:
    """(T, 2) band edges in Hz, level by level (level 0 first), low to high within a level."""
    lo, top = analysis_band(cfg, fs_hz)
    edges: list[tuple[float, float]] = []
    for level in range(cfg.levels + 1):
        n = 2**level
        e = np.linspace(lo, top, n + 1)
        edges.extend(zip(e[:-1], e[1:], strict=True))
    return np.asarray(edges, dtype=np.float64)


def validate_window(window: Any, fs_hz: Any, cfg: FrontendConfig, source: str = "window") -> np.ndarray:
    """Check a raw window and return it as float64 (n_samples, n_channels); raise InputError naming the field."""
    try:
        fs = float(fs_hz)
    except (TypeError, ValueError):
        raise InputError(source, "fs_hz", f"expected a number of Hz, got {fs_hz!r}") from None
    if not np.isfinite(fs) or fs <= 0:
        raise InputError(source, "fs_hz", f"expected a positive finite sampling rate, got {fs_hz!r}")
    if not isinstance(window, np.ndarray):
        try:
            window = np.asarray(window)
        except Exception:  # noqa: BLE001 - anything unconvertible is bad input
            raise InputError(source, "window", "expected a numeric array (n_samples, n_channels)") from None
    if window.dtype.kind not in "fiu":
        raise InputError(source, "window.dtype", f"expected a real numeric array, got dtype {window.dtype}")
    if window.ndim == 1:
        window = window[:, None]
    if window.ndim != 2:
        raise InputError(
            source, "window.shape", f"expected (n_samples, n_channels), got shape {window.shape}"
        )
    n, c = window.shape
    if c < 1 or c > 16:
        raise InputError(source, "window.shape[1]", f"expected 1 to 16 channels, got {c}")
    if n < cfg.min_samples:
        raise InputError(
            source, "window.shape[0]", f"too short: {n} samples, need at least {cfg.min_samples}"
        )
    x = window.astype(np.float64, copy=False)
    if not np.all(np.isfinite(x)):
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise InputError(source, "window", f"{bad} NaN or inf samples; expected finite values")
    return x
