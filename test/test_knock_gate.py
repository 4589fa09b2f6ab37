"""The knock gate (``core.knock_gate``): a knock is found and replaced; defects, tones and clean windows are not touched."""

from __future__ import annotations

import numpy as np
import pytest

from vibration_anomaly.core.knock_gate import knock_runs, suppress_knocks
from vibration_anomaly.model import load_default_model
from vibration_anomaly.model.frontend import Frontend, FrontendConfig
from vibration_anomaly.model.frontend_full import FullRateFrontend
from vibration_anomaly.model.synth import accel_ring, physical_defect, physical_knock

FS = 3200.0
N = 15680  # 4.9 s, the robot's window
CUT = 64.0  # the frontend's high-pass at 3.2 kHz (hp_frac x 1600 Hz)


def background(seed: int, channels: int = 3) -> np.ndarray:
    """Broadband noise plus a slow motion component and a gear tone at 197 Hz, per axis."""
    rng = np.random.default_rng(seed)
    t = np.arange(N) / FS
    x = rng.standard_normal((N, channels))
    x += 3.0 * np.sin(2 * np.pi * 1.3 * t)[:, None]  # robot motion, below the analysis band
    x += 2.0 * np.sin(2 * np.pi * 197.0 * t + 0.4)[:, None]
    return x


def knock_at(t0_s: float, peak: float, f_hz: float = 300.0, zeta: float = 0.05) -> np.ndarray:
    ring, onset = accel_ring(FS, f_hz, zeta)
    x = np.zeros(N)
    i0 = int(t0_s * FS) - onset
    x[i0 : i0 + len(ring)] = ring[: N - i0]
    return x * peak / np.abs(x).max()


def test_a_clean_window_is_returned_as_it_is() -> None:
    x = background(0)
    assert knock_runs(x, FS, CUT, 4.0) == ([], None)
    assert suppress_knocks(x, FS, CUT, 4.0) is x


def test_a_knock_is_found_on_its_axis_and_replaced_by_the_level_around_it() -> None:
    x = background(1)
    k = knock_at(2.0, 60.0)
    hit = x.copy()
    hit[:, 1] += k
    runs, _ = knock_runs(hit, FS, CUT, 4.0)
    assert [r.channel for r in runs] == [1]
    (run,) = runs
    assert run.start <= int(2.0 * FS) < run.stop <= int(2.4 * FS)
    out = suppress_knocks(hit, FS, CUT, 4.0)
    # every other axis and every sample outside the run are exactly as they came
    assert np.array_equal(out[:, [0, 2]], hit[:, [0, 2]])
    assert np.array_equal(out[: run.start, 1], hit[: run.start, 1])
    assert np.array_equal(out[run.stop :, 1], hit[run.stop :, 1])
    inside = slice(run.start, run.stop)
    assert np.std(hit[inside, 1] - x[inside, 1]) > 10  # the knock was there
    assert np.std(out[inside, 1]) == pytest.approx(np.std(x[inside, 1]), rel=0.25)


def test_the_tone_runs_through_the_replaced_stretch() -> None:
    """Cutting the gear tone would leave a dip in its band's envelope that reads as impulsiveness."""
    x = background(2, channels=1)
    hit = x.copy()
    hit[:, 0] += knock_at(3.0, 80.0, f_hz=900.0)
    out = suppress_knocks(hit, FS, CUT, 4.0)
    (run,) = knock_runs(hit, FS, CUT, 4.0)[0]
    t = np.arange(N) / FS
    ref = np.exp(-2j * np.pi * 197.0 * t)
    seg = slice(run.start, run.stop)
    # the 197 Hz component over the stretch, before and after: the same amplitude and phase
    before = np.mean(x[seg, 0] * ref[seg])
    after = np.mean(out[seg, 0] * ref[seg])
    assert abs(after - before) < 0.15 * abs(before)


def test_a_bearing_defect_is_never_taken_for_a_knock() -> None:
    """Impacts repeating at 140 Hz, even 20 x the background: every frame holds some, so none is a seed."""
    rng = np.random.default_rng(3)
    x = background(3, channels=1)
    for peak in (2.0, 20.0):
        d, _, _ = physical_defect(rng, FS, N, 140.0, peak)
        hit = x.copy()
        hit[:, 0] += d
        assert knock_runs(hit, FS, CUT, 4.0) == ([], None)


def test_a_short_window_or_a_gate_of_zero_is_left_alone() -> None:
    x = background(4, channels=1)
    x[1000:1100, 0] += 500.0
    assert suppress_knocks(x[:480], FS, CUT, 4.0) is not None
    assert knock_runs(x[:480], FS, CUT, 4.0) == ([], None)  # 7 frames of 20 ms: too few to tell
    assert suppress_knocks(x, FS, CUT, 0.0) is x


@pytest.mark.parametrize("frontend_cls", [Frontend, FullRateFrontend])
def test_the_frontend_sees_the_window_as_if_the_knock_had_not_happened(frontend_cls: type) -> None:
    rng = np.random.default_rng(5)
    x = background(5)
    hit = x.copy()
    for ax in range(3):
        hit[:, ax] += physical_knock(rng, FS, N, 40.0)
    gated = frontend_cls(FrontendConfig(knock_gate=4.0))
    plain = frontend_cls(FrontendConfig(knock_gate=0.0))
    clean = plain(x, FS)
    assert np.array_equal(gated(x, FS), clean)  # nothing to gate: the very same features
    # the band energies (feature 0): the knock's leak into every band, with and without the gate
    off = np.abs(plain(hit, FS) - clean)[..., 0].max()
    on = np.abs(gated(hit, FS) - clean)[..., 0].max()
    assert off > 0.1 and on < off / 3, (off, on)


def test_the_shipped_model_gates_and_a_config_written_before_the_gate_does_not() -> None:
    """``test_frontend_banded`` checks the same through calibrations (``ModelFiles.frontend_for``)."""
    files = load_default_model()
    assert files.meta["frontend"]["knock_gate"] == 4.0
    assert files.frontend().config.knock_gate == 4.0
    assert FrontendConfig.from_dict({"env_min_hz": 10.0}).knock_gate == 0.0


def test_a_bearing_defect_with_a_knock_on_top_is_still_seen() -> None:
    """The gate removes the knock, not the defect: the simulated robot's outer-race impacts (1 x the axis's
    RMS, 86 Hz, ringing 310 Hz, 1 kHz IMU), scored by the shipped model as the robot does, with and without
    a knock of 8 x RMS on every axis."""
    from vibration_anomaly.core.scoring import Scorer
    from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
    from vibration_anomaly.sim.robot import FaultSpec, RobotConfig, SimulatedRobot

    rate, n = 1000.0, 4900
    model = load_default_model()
    engine = OnnxRuntimeEngine(intra_op_threads=1)
    engine.load(model.cpu_onnx)
    engine.wake()

    def window(robot: SimulatedRobot, k: int) -> np.ndarray:
        return robot.frames(10 + 60 * k, 10 + 60 * k + n / rate)[1].astype(np.float64)

    try:
        healthy = SimulatedRobot(RobotConfig(rate_hz=rate, seed=7))
        cal = model.calibrate(engine, [window(healthy, k) for k in range(20)], rate)
        assert model.frontend_for(cal).config.knock_gate == 4.0
        scorer = Scorer(engine, model.frontend_for(cal), cal)
        fault = FaultSpec(start_s=0.0, initial_peak=1.0, final_peak=1.0)
        faulty = SimulatedRobot(RobotConfig(rate_hz=rate, seed=7, fault=fault))
        rng = np.random.default_rng(1)
        plain, knocked = [], []
        for k in range(20, 32):
            w = window(faulty, k)
            plain.append(scorer.score(w, rate) / cal.threshold)
            hit = w.copy()
            for ax in range(3):
                hit[:, ax] += physical_knock(rng, rate, n, 8.0 * float(w[:, ax].std()))
            knocked.append(scorer.score(hit, rate) / cal.threshold)
    finally:
        engine.unload()
    assert min(plain) > 1 and min(knocked) > 1, (plain, knocked)  # seen: medians 2.21 and 2.19
    assert np.median(knocked) > 0.9 * np.median(plain)


def test_tone_clip_of_rows_is_each_row_clipped_on_its_own() -> None:
    """The gate clips its channels' tones in one call (rows); each row must come out as the 1-D rule gives it."""
    from vibration_anomaly.core import envelope

    rng = np.random.default_rng(3)
    n, fs = 4900, 1000.0
    t = np.arange(n) / fs
    rows = rng.standard_normal((3, n)) + np.array([[4.0], [0.0], [9.0]]) * np.sin(2 * np.pi * 50.0 * t)
    spec = np.fft.rfft(rows, axis=1)
    together = envelope.clip_tones(spec)
    for j in range(3):
        np.testing.assert_array_equal(together[j], envelope.clip_tones(spec[j]))
    line = int(round(50.0 * n / fs))
    assert abs(together[0, line]) < 0.2 * abs(spec[0, line])  # the 50 Hz line is clipped where it is a tone
    assert together[1, line] == spec[1, line]  # no tone in row 1: its noise at 50 Hz is kept
