"""The quiet-band gate (``core.calibration.zscores``): a steady tone that fades after calibration is not an alarm.

A band's envelope kurtosis is lowest while a tone fills it; when the tone goes (a motor line at another
speed, a structural line that stops ringing) the kurtosis rises to noise's while the energy drops. Without
the gate the shipped model read that as new impulsiveness, far over threshold; a real defect adds energy
and is scored as before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pytest

from vibration_anomaly.core.calibration import QUIET_GATE, Calibration, calibrate_features, zscores
from vibration_anomaly.core.scoring import Scorer
from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
from vibration_anomaly.errors import InputError
from vibration_anomaly.model import load_default_model
from vibration_anomaly.model.synth import defect_impacts

FS, N = 3200.0, 15680  # a 4.9 s robot window from a 3.2 kHz accelerometer
TONE_HZ = 140.0  # in the analysis band (64-1600 Hz at 3.2 kHz), as the line FEMTO Bearing3_2 lost


def window(seed: int, tone: float) -> np.ndarray:
    """Noise on 3 axes plus a steady tone of amplitude ``tone`` (0: faded)."""
    rng = np.random.default_rng(seed)
    t = np.arange(N) / FS
    x = rng.standard_normal((N, 3))
    x += tone * np.sin(2 * np.pi * TONE_HZ * t + rng.uniform(0, 2 * np.pi))[:, None]
    return x


def test_only_a_band_well_below_its_healthy_energy_loses_its_excess_kurtosis() -> None:
    mean, std = np.zeros((1, 3, 4)), np.ones((1, 3, 4))
    f = np.array(
        [
            [
                [-3.0, 2.5, 1.5, 4.0],  # quiet (energy z -3): kurtosis capped at 0, the envelope peak kept
                [-1.0, 2.5, 1.5, 4.0],  # within 2 std: untouched
                [-3.0, -0.5, -1.5, 1.0],  # quiet, kurtosis already below healthy: untouched
            ]
        ]
    )
    z = zscores(f, mean, std, QUIET_GATE)
    assert z.dtype == np.float32
    np.testing.assert_array_equal(z[0, 0], [-3.0, 0.0, 0.0, 4.0])
    np.testing.assert_array_equal(z[0, 1:], f[0, 1:])
    np.testing.assert_array_equal(zscores(f, mean, std, 0.0), f.astype(np.float32))  # off: plain z-scores


def test_a_calibration_records_the_gate_and_one_made_before_it_is_scored_without() -> None:
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(8, 1, 3, 4))
    cal = calibrate_features(lambda z: np.abs(z).mean(axis=(1, 2)), feats, fs_hz=FS, window_samples=N)
    assert cal.quiet_gate == QUIET_GATE == cal.extra["quiet_gate"]
    quiet = cal.mean + cal.std * np.array([-3.0, 3.0, 3.0, 0.0])  # every band quiet and impulsive
    assert np.all(cal.normalise(quiet)[..., 1:3] == 0.0)
    before = dataclasses.replace(cal, extra={k: v for k, v in cal.extra.items() if k != "quiet_gate"})
    assert before.quiet_gate == 0.0
    np.testing.assert_allclose(before.normalise(quiet)[..., 1:3], 3.0, rtol=1e-5)
    assert Calibration.from_dict(cal.to_dict()).quiet_gate == QUIET_GATE  # survives the file


@pytest.mark.parametrize("bad", ["2", -1.0, float("nan"), True, 1e9])
def test_a_tampered_gate_is_refused_by_name(bad: object) -> None:
    rng = np.random.default_rng(0)
    cal = calibrate_features(
        lambda z: np.abs(z).mean(axis=(1, 2)), rng.normal(size=(8, 1, 3, 4)), fs_hz=FS, window_samples=N
    )
    d = cal.to_dict()
    d["extra"]["quiet_gate"] = bad
    with pytest.raises(InputError) as ei:
        Calibration.from_dict(d, "cal.json")
    assert ei.value.field == "extra.quiet_gate"


@pytest.fixture(scope="module")
def scored() -> Iterator[tuple[Scorer, Scorer, Calibration]]:
    """The shipped model calibrated on 20 windows holding a steady tone; scorers with and without the gate."""
    model = load_default_model()
    engine = OnnxRuntimeEngine(intra_op_threads=1)
    engine.load(model.cpu_onnx)
    engine.wake()
    try:
        cal = model.calibrate(engine, [window(s, 4.0) for s in range(20)], FS)
        off = dataclasses.replace(cal, extra={**cal.extra, "quiet_gate": 0.0})
        frontend = model.frontend_for(cal)
        yield Scorer(engine, frontend, cal), Scorer(engine, frontend, off), cal
    finally:
        engine.unload()


def test_a_tone_that_fades_after_calibration_is_not_an_alarm(
    scored: tuple[Scorer, Scorer, Calibration],
) -> None:
    gated, plain, cal = scored
    faded = [window(100 + s, 0.0) for s in range(8)]
    with_gate = [gated.score(w, FS) / cal.threshold for w in faded]
    without = [plain.score(w, FS) / cal.threshold for w in faded]
    assert max(with_gate) < 1.5 and np.median(with_gate) < 1.0, with_gate  # seen: 0.32-1.04, median 0.4
    assert min(without) > 5.0, without  # seen: 22-25 x threshold: the failure the gate removes


def test_a_defect_is_scored_the_same_with_the_gate(scored: tuple[Scorer, Scorer, Calibration]) -> None:
    """Impacts add energy to the band they ring in: the gate does not touch them, tone or no tone."""
    gated, plain, cal = scored
    rng = np.random.default_rng(5)
    for tone in (4.0, 0.0):
        for s in range(3):
            w = window(200 + s, tone)
            w[:, 0] += defect_impacts(rng, FS, N, 87.0, 900.0, 1.5)
            a, b = gated.score(w, FS) / cal.threshold, plain.score(w, FS) / cal.threshold
            assert a > 2.0, (tone, a)  # seen: 4.5-6.5
            if tone:
                assert a == pytest.approx(b, rel=1e-6)
