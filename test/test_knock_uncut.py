"""A knock the gate cannot cut (``core.knock_gate.uncut_knock``): the window is not scored, a defect always is."""

from __future__ import annotations

import numpy as np

from vibration_anomaly.core.knock_gate import gate_knocks, uncut_knock
from vibration_anomaly.model import load_default_model
from vibration_anomaly.model.evaluate import ModelMethod
from vibration_anomaly.model.false_alarms import Vote, healthy_false_alarms, scored_or_zero, unscored
from vibration_anomaly.model.frontend import read_window
from vibration_anomaly.model.synth import accel_ring, ring_train

FS = 3200.0
SHORT = 640  # 0.2 s: the laboratory recordings' window at a 3.2 kHz sensor
LONG = 15680  # 4.9 s: the robot's


def background(n: int, seed: int, channels: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FS
    return rng.standard_normal((n, channels)) + 2.0 * np.sin(2 * np.pi * 197.0 * t + 0.4)[:, None]


def knock(n: int, t0_s: float, peak: float, f_hz: float = 300.0, zeta: float = 0.05) -> np.ndarray:
    ring, onset = accel_ring(FS, f_hz, zeta)
    x = np.zeros(n)
    i0 = int(t0_s * FS) - onset
    m = min(len(ring), n - i0)
    x[i0 : i0 + m] = ring[:m]
    return x * peak / np.abs(x).max()


def test_a_knock_filling_a_short_window_is_found_on_its_axis() -> None:
    for seed in range(5):
        x = background(SHORT, seed)
        x[:, 1] += knock(SHORT, 0.03 + 0.02 * seed, 20.0)
        hit = uncut_knock(x, FS)
        assert hit is not None and hit.channel == 1, seed
        assert hit.start <= int((0.03 + 0.02 * seed) * FS) < hit.stop
        assert "axis 1" in hit.describe(FS) and "not scored" in hit.describe(FS)
        assert read_window(x, FS, load_default_model().frontend().config)[2] is not None


def test_a_knock_of_low_modes_is_found_above_the_analysis_bands_edge() -> None:
    """The first difference weakens a knock ringing at 80 or 200 Hz below the window's broadband noise; in
    the analysis band (above 64 Hz at 3.2 kHz) it dominates."""
    for f_hz, peak in ((80.0, 40.0), (200.0, 20.0)):
        x = background(SHORT, 8)
        x[:, 1] += knock(SHORT, 0.05, peak, f_hz=f_hz)
        assert uncut_knock(x, FS) is None, f_hz
        hit = uncut_knock(x, FS, band_hz=64.0)
        assert hit is not None and hit.channel == 1, f_hz
    clean = background(SHORT, 8)
    assert uncut_knock(clean, FS, band_hz=64.0) is None


def test_an_event_as_long_as_half_the_window_is_not_one_knock() -> None:
    """Frame energies of impacts in every other frame (a defect at half the frame rate) with one frame 30x
    the median: bridged over the quiet frames, one run covers most of the window and nothing outside it is
    left to dominate. That is not one knock. The same frame in a quiet window is."""
    from vibration_anomaly.core.knock_gate import _one_event

    impacts = np.array([5.0, 1.0] * 11 + [1.0, 1.0])
    impacts[8] = 30.0
    assert _one_event(impacts) is None
    quiet = np.ones(24)
    quiet[8] = 30.0
    assert _one_event(quiet) == (8, 9, 8, 30.0)


def test_clean_windows_and_repeating_impacts_are_never_a_knock() -> None:
    """A defect repeats, so its other impacts are about as loud as its loudest, however impulsive: impacts
    ringing 500 Hz at 140 Hz in 0.2 s, and at 8 Hz (a slow wheel) in the robot's 4.9 s window, each
    impact's size spread 10 %, at 2 and 20 x the background."""
    rng = np.random.default_rng(3)
    for n, f_defect in ((SHORT, 140.0), (LONG, 8.0)):
        x = background(n, 1)
        assert uncut_knock(x, FS) is None
        times = np.arange(0.004, n / FS, 1.0 / f_defect)
        for peak in (2.0, 20.0):
            hit = x.copy()
            hit[:, 0] += ring_train(rng, FS, n, times, 500.0, peak, 0.05)
            assert uncut_knock(hit, FS, band_hz=64.0) is None, (n, f_defect, peak)
        one = x.copy()  # the same impact once: a knock
        one[:, 0] += ring_train(rng, FS, n, times[:1] + 0.05, 500.0, 20.0, 0.05)
        assert uncut_knock(one, FS) is not None, (n, f_defect)


def test_a_knock_the_gate_cuts_out_of_the_robots_window_leaves_it_scored() -> None:
    cfg = load_default_model().frontend().config
    x = background(LONG, 4)
    x[:, 1] += knock(LONG, 2.0, 60.0)
    assert uncut_knock(x, FS) is not None  # there, before the gate
    _, runs = gate_knocks(x, FS, 64.0, cfg.knock_gate)
    assert [r.channel for r in runs] == [1]
    assert uncut_knock(x, FS, runs, 2 * (LONG // cfg.subframes)) is None  # cut within two sub-frames
    assert uncut_knock(x, FS, runs, 0) is not None  # a cut longer than allowed does not count
    _, channels, left = read_window(x, FS, cfg)
    assert channels == (1,) and left is None
    # one that rings for 1.5 s is more than a third of the window: the gate leaves it, the window is not scored
    y = background(LONG, 5)
    y[:, 0] += knock(LONG, 1.0, 60.0, f_hz=150.0, zeta=0.002)
    _, channels, left = read_window(y, FS, cfg)
    assert channels == () and left is not None and left.channel == 0


def test_evaluate_marks_what_the_robot_would_not_score_and_leaves_it_out_of_rates_and_votes() -> None:
    files = load_default_model()
    method = ModelMethod(files, lambda z: np.zeros(len(z)), 0.01)
    clean = background(SHORT, 6)
    hit = clean.copy()
    hit[:, 0] += knock(SHORT, 0.05, 20.0)
    f = method.feats(np.stack([clean, hit, clean]), FS)
    assert unscored(f).tolist() == [False, True, False]
    assert np.isfinite(f[0]).all() and np.isnan(f[1]).all()
    assert scored_or_zero(np.array([2.0, np.nan])).tolist() == [2.0, 0.0]
    # the vote skips an unscored window: 4 of 6 over, two unscored between them, raise at the 4th over
    vote = Vote(k=4, n=6, inferences_per_hour=60.0, source="test")
    r = np.array([2.0, 2.0, np.nan, np.nan, 2.0, 2.0, 0.5])
    out = healthy_false_alarms({"m": (r, 0.2)}, 0.01, vote)["machines"]["m"]
    assert out["windows"] == 5 and out["not_scored"] == 2 and out["over_threshold"] == 4
    assert out["voted_alarms"] == 1 and out["alarms"][0]["window"] == 5


def test_a_calibration_leaves_out_a_window_the_robot_would_not_score() -> None:
    from vibration_anomaly.core.window import batch_samples
    from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
    from vibration_anomaly.sim.robot import RobotConfig, SimulatedRobot

    n = batch_samples(1000.0, 5.0)
    robot = SimulatedRobot(RobotConfig(seed=3))
    windows = [robot.frames(30 + 60 * k, 30 + 60 * k + n / 1000)[1].astype(np.float64) for k in range(12)]
    ring, onset = accel_ring(1000.0, 150.0, 0.002)  # rings 1.5 s: the gate leaves it (axis 1: no other knock)
    i0 = 1500 - onset
    windows[5][i0 : i0 + len(ring[: n - i0]), 1] += (
        ring[: n - i0] * 30 * windows[5][:, 1].std() / np.abs(ring).max()
    )
    model = load_default_model()
    engine = OnnxRuntimeEngine(intra_op_threads=1)
    engine.load(model.cpu_onnx)
    engine.wake()
    try:
        cal = model.calibrate(engine, windows, 1000.0)
        clean = model.calibrate(engine, windows[:5] + windows[6:], 1000.0)
    finally:
        engine.unload()
    assert cal.extra["windows_not_fitted"] == 1 and "windows_not_fitted" not in clean.extra
    assert cal.threshold == clean.threshold  # fitted on the same eleven windows
