#!/usr/bin/env python3
"""Knocks on robot-length windows: the simulated robot at a sensor rate, one extra knock in every window.

``evaluate --sensitivity --sensor-rate`` knocks FEMTO's 0.2-0.26 s windows, where a knock's frame modes
ring through most of the window. The robot scores 5 s sample windows cut into 8 sub-frames of 0.6 s,
where the frontend's median over sub-frames is meant to make one knock harmless. This measures that:
the simulated robot (``sim.robot``, 3 axes, its own random knocks, healthy bearing) at ``--rate``,
commissioned on 20 healthy windows with the shipped model as the robot runs it (banded frontend, the
file ONNX Runtime runs), then ``--windows`` held-out windows a duty period apart, each scored clean and
with one knock added per axis (``synth.physical_knock``: three frame modes in 20 Hz-2 kHz, peak
``--peak`` x that axis's healthy in-band RMS). Prints JSON: windows over threshold and 4-of-6 voted
alarms (the example bundle's vote) in time order, clean and knocked.

    .venv/bin/python tools/knock_robot.py --rate 1000 --peak 8
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vibration_anomaly.bundle import load_example_bundle  # noqa: E402
from vibration_anomaly.core.scoring import AlarmVoter, Scorer  # noqa: E402
from vibration_anomaly.core.window import batch_samples  # noqa: E402
from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine  # noqa: E402
from vibration_anomaly.model import load_default_model  # noqa: E402
from vibration_anomaly.model.synth import physical_knock  # noqa: E402
from vibration_anomaly.sim.robot import RobotConfig, SimulatedRobot  # noqa: E402


def voted(over: list[bool], k: int, n: int) -> int:
    voter, alarms = AlarmVoter(k, n), 0
    for o in over:
        if voter.update(o):
            alarms += 1
            voter.reset()
    return alarms


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=1000.0, help="sensor rate in Hz (default 1000)")
    ap.add_argument(
        "--peak", type=float, default=8.0, help="knock peak over the axis's healthy RMS (default 8)"
    )
    ap.add_argument("--windows", type=int, default=60, help="held-out windows (default 60)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    model = load_default_model()
    bundle = load_example_bundle()
    dc, al = bundle.duty_cycle, bundle.alarm
    robot = SimulatedRobot(RobotConfig(rate_hz=args.rate, seed=args.seed))
    n = batch_samples(args.rate, dc.sample_s)

    def window(k: int) -> np.ndarray:
        t0 = 10.0 + dc.period_s * k
        return robot.frames(t0, t0 + n / args.rate)[1].astype(np.float64)

    engine = OnnxRuntimeEngine(intra_op_threads=1)
    engine.load(model.cpu_onnx)
    engine.wake()
    cal = model.calibrate(engine, [window(k) for k in range(20)], args.rate)
    scorer = Scorer(engine, model.frontend(cal.frontend), cal)
    rms = np.median([window(k).std(axis=0) for k in range(20)], axis=0)
    rng = np.random.default_rng(args.seed + 1)
    clean, knocked = [], []
    for k in range(20, 20 + args.windows):
        w = window(k)
        clean.append(scorer.score(w, args.rate) / cal.threshold)
        hit = w.copy()
        for ax in range(w.shape[1]):
            hit[:, ax] += physical_knock(rng, args.rate, len(w), args.peak * rms[ax])
        knocked.append(scorer.score(hit, args.rate) / cal.threshold)
    engine.unload()
    out = {
        "rate_hz": args.rate,
        "window_s": n / args.rate,
        "knock_peak_x_rms": args.peak,
        "windows": args.windows,
        "vote": f"{al.votes_required} of {al.votes_window}",
        "clean_over_threshold": int(sum(r > 1 for r in clean)),
        "clean_voted_alarms": voted([r > 1 for r in clean], al.votes_required, al.votes_window),
        "knocked_over_threshold": int(sum(r > 1 for r in knocked)),
        "knocked_voted_alarms": voted([r > 1 for r in knocked], al.votes_required, al.votes_window),
        "knocked_ratio_median": round(float(np.median(knocked)), 3),
        "clean_ratio_median": round(float(np.median(clean)), 3),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
