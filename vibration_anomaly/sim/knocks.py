"""Knocks on robot-length windows: the simulated robot at a sensor rate, one extra knock in every window.

``evaluate --sensitivity --sensor-rate`` knocks FEMTO's 0.2-0.26 s windows, where a knock's frame modes
ring through most of the window. The robot scores 5 s sample windows cut into 8 sub-frames of 0.6 s,
where the frontend's median over sub-frames is meant to make one knock harmless. ``knock_trial``
measures that: the simulated robot (``sim.robot``, 3 axes, its own random knocks, healthy bearing) at
``rate_hz``, commissioned on 20 healthy windows with the shipped model as the robot runs it (banded
frontend, the file ONNX Runtime runs, the calibration's frontend options), then ``windows`` held-out
windows a duty period apart, each scored clean and with one knock added per axis
(``synth.physical_knock``: three frame modes in 20 Hz-2 kHz, peak ``peak`` x that axis's healthy
in-band RMS). Windows over threshold and voted alarms (the example bundle's k-of-n, reset after each
alarm) in time order, clean and knocked. ``tools/knock_robot.py`` is its command line.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vibration_anomaly.bundle import load_example_bundle
from vibration_anomaly.core.scoring import Scorer
from vibration_anomaly.core.window import batch_samples
from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
from vibration_anomaly.model import load_default_model
from vibration_anomaly.model.false_alarms import voted_alarms
from vibration_anomaly.model.synth import physical_knock
from vibration_anomaly.sim.robot import RobotConfig, SimulatedRobot

COMMISSIONING_WINDOWS = 20


def knock_trial(
    rate_hz: float,
    peak: float = 8.0,
    windows: int = 60,
    seed: int = 0,
    frontend_config: dict[str, Any] | None = None,
    segments: int | None = 1,
    commissioning: int = COMMISSIONING_WINDOWS,
) -> dict[str, Any]:
    """Clean and knocked held-out windows of the simulated robot: over threshold and voted alarms.

    ``frontend_config``: frontend options replacing model.json's for commissioning and scoring alike
    (to measure another choice; ``None`` is the robot's). ``segments``: how many segments a window is
    scored as (``core.calibration.segments``; 1, the default: whole; None: one per second, opt-in).
    """
    model = load_default_model()
    if frontend_config:
        model.meta["frontend"] = {**model.meta.get("frontend", {}), **frontend_config}
    bundle = load_example_bundle()
    dc, al = bundle.duty_cycle, bundle.alarm
    robot = SimulatedRobot(RobotConfig(rate_hz=rate_hz, seed=seed))
    n = batch_samples(rate_hz, dc.sample_s)

    def window(k: int) -> np.ndarray:
        t0 = 10.0 + dc.period_s * k
        return robot.frames(t0, t0 + n / rate_hz)[1].astype(np.float64)

    healthy = [window(k) for k in range(commissioning)]
    engine = OnnxRuntimeEngine(intra_op_threads=1)
    engine.load(model.cpu_onnx)
    engine.wake()
    try:
        cal = model.calibrate(engine, healthy, rate_hz, segments=segments)
        scorer = Scorer(engine, model.frontend_for(cal), cal)
        rms = np.median([w.std(axis=0) for w in healthy], axis=0)
        rng = np.random.default_rng(seed + 1)
        clean, knocked = [], []
        for k in range(commissioning, commissioning + windows):
            w = window(k)
            clean.append(scorer.score(w, rate_hz) / cal.threshold)
            hit = w.copy()
            for ax in range(w.shape[1]):
                hit[:, ax] += physical_knock(rng, rate_hz, len(w), peak * rms[ax])
            knocked.append(scorer.score(hit, rate_hz) / cal.threshold)
    finally:
        engine.unload()
    k_of, n_of = al.votes_required, al.votes_window
    clean = [r for r in clean if r == r]  # NaN: a knock left in, not scored (core.knock_gate.uncut_knock)
    kept = [r for r in knocked if r == r]
    return {
        "rate_hz": rate_hz,
        "window_s": n / rate_hz,
        "knock_peak_x_rms": peak,
        "windows": windows,
        "seed": seed,
        "frontend": {k: cal.extra["frontend_config"][k] for k in ("env_min_hz", "knock_gate")},
        "segments": cal.segments,
        "commissioning_windows": commissioning,
        "vote": f"{k_of} of {n_of}",
        "clean_over_threshold": int(sum(r > 1 for r in clean)),
        "clean_voted_alarms": len(voted_alarms([r > 1 for r in clean], k_of, n_of)),
        "clean_not_scored": windows - len(clean),
        "knocked_over_threshold": int(sum(r > 1 for r in kept)),
        "knocked_not_scored": len(knocked) - len(kept),
        "knocked_voted_alarms": len(voted_alarms([r > 1 for r in kept], k_of, n_of)),
        "knocked_ratio_median": round(float(np.median(kept)), 3) if kept else None,
        "clean_ratio_median": round(float(np.median(clean)), 3) if clean else None,
    }
