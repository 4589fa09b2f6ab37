"""Frontend: shapes at the rates we meet, scale invariance, and bad input named by field."""

from __future__ import annotations

import numpy as np
import pytest

from vibration_anomaly.errors import InputError
from vibration_anomaly.model.frontend import Frontend, FrontendConfig, band_edges
from vibration_anomaly.model.synth import healthy_signal, random_machine


@pytest.mark.parametrize(
    ("fs", "n", "c"), [(1000.0, 5000, 3), (12000.0, 2400, 2), (25600.0, 2560, 1), (51200.0, 4096, 1)]
)
def test_shapes_at_each_rate(fs: float, n: int, c: int) -> None:
    fr = Frontend()
    x = healthy_signal(np.random.default_rng(0), random_machine(np.random.default_rng(1), fs, c), n)
    f = fr(x, fs)
    assert f.shape == (c, 31, 4)
    assert f.dtype == np.float32
    assert np.all(np.isfinite(f))


def test_bands_follow_the_analysis_band() -> None:
    cfg = FrontendConfig()
    e1k = band_edges(cfg, 1000.0)
    assert e1k.max() == pytest.approx(500.0) and e1k.min() == pytest.approx(20.0)
    e51 = band_edges(cfg, 51200.0)
    assert e51.max() == pytest.approx(cfg.max_analysis_hz)


def test_gain_only_shifts_log_energy() -> None:
    fr = Frontend()
    x = healthy_signal(np.random.default_rng(2), random_machine(np.random.default_rng(3), 1000.0, 3), 5000)
    a, b = fr(x, 1000.0), fr(100.0 * x, 1000.0)
    np.testing.assert_allclose(b[..., 0] - a[..., 0], np.log(1e4), atol=1e-3)
    np.testing.assert_allclose(b[..., 1:], a[..., 1:], atol=1e-3)


def test_impacts_show_in_the_resonance_band() -> None:
    from vibration_anomaly.model.synth import defect_impacts

    rng = np.random.default_rng(4)
    fs, n = 1000.0, 5000
    x = rng.standard_normal((n, 1))
    y = x.copy()
    y[:, 0] += defect_impacts(rng, fs, n, 37.0, 300.0, 3.0)
    fr = Frontend()
    d = fr(y, fs) - fr(x, fs)
    edges = band_edges(fr.config, fs)
    inside = (edges[:, 0] <= 300) & (edges[:, 1] > 300)
    far = edges[:, 1] <= 200
    assert d[0, inside, 0].max() > 1.0  # band energy up where the resonance rings
    assert np.abs(d[0, far, 0]).max() < 0.3  # and not far from it
    assert d[0, inside, 3].max() > 1.5  # envelope harmonic lines at the defect rate


@pytest.mark.parametrize(
    ("window", "fs", "field"),
    [
        (np.full((2000, 3), np.nan), 1000.0, "window"),
        (np.r_[np.zeros((1999, 3)), [[np.inf, 0, 0]]], 1000.0, "window"),
        (np.zeros((100, 3)), 1000.0, "window.shape[0]"),
        (np.zeros((2, 100, 3)), 1000.0, "window.shape"),
        (np.zeros((2000, 3)), 0.0, "fs_hz"),
        (np.zeros((2000, 3)), "fast", "fs_hz"),
        (np.array([["a"] * 3] * 2000), 1000.0, "window.dtype"),
        (np.zeros((2000, 40)), 1000.0, "window.shape[1]"),
    ],
)
def test_bad_input_names_the_field(window: np.ndarray, fs: object, field: str) -> None:
    with pytest.raises(InputError) as ei:
        Frontend()(window, fs, source="imu")
    assert ei.value.field == field
    assert ei.value.source == "imu"
