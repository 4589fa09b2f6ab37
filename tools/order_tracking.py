#!/usr/bin/env python3
"""Speed-aware scoring while the shaft changes speed within the window: tracked, or at one speed.

The simulated robot of ``test/test_runtime_orders.py`` (3 axes, 24 Hz shaft, an outer-race defect of
``--peak`` x the healthy RMS ringing a 1.2 kHz resonance, the SKF 6205 bearing) is calibrated for the
order part at a steady shaft on 20 windows (``model.calibrate(..., shaft_hz, orders)``, what
``vibration-anomaly calibrate --bearing --shaft-hz`` does). Then its shaft swings sinusoidally by
+-``--swing`` over ``--period`` s (``RobotConfig.speed_swing``) and each window's order ratio
(``core.order_calibration``: over 1 is over the order part's threshold) is read three ways:

* ``tracked``: with the speed readings during the window (a JointState at ``--reading-hz``, each off
  by ``--reading-jitter`` of white noise), as the robot does with ``speed_topic`` (``ShaftSpeed.track``:
  the window resampled to its mean speed); with ``--positions COUNTS`` each reading carries the joint's
  position too, from an encoder of that many counts per turn, and the angle is read from it;
* ``mean_speed``: one speed for the whole window, its true mean (a fixed ``shaft_hz``, or tracking off);
* ``steady``: the same windows of the robot with a steady shaft (the best the order part can do).

Prints one JSON object: per condition (healthy windows before the fault, faulty ones after), the
windows whose ratio is over 1, and the ratios' median / 90th percentile / largest.

    .venv/bin/python tools/order_tracking.py --swing 0.1 --rate 3200
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vibration_anomaly.bundle.bearing import orders_from_geometry  # noqa: E402
from vibration_anomaly.core.order_calibration import EXTRA_KEY, OrderCalibration  # noqa: E402
from vibration_anomaly.core.order_check import OrderCheck  # noqa: E402
from vibration_anomaly.core.speed import ShaftSpeed  # noqa: E402
from vibration_anomaly.core.window import batch_samples  # noqa: E402
from vibration_anomaly.sim.robot import FaultSpec, RobotConfig, SimulatedRobot  # noqa: E402

SKF_6205 = {"balls": 9, "ball_diameter": 0.3126, "pitch_diameter": 1.537}
FAULT_AT = 2000.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=3200.0, help="sensor rate in Hz (default 3200)")
    ap.add_argument("--swing", type=float, default=0.1, help="shaft speed swing, +- fraction (default 0.1)")
    ap.add_argument("--period", type=float, default=23.0, help="period of the swing in s (default 23)")
    ap.add_argument("--peak", type=float, default=0.2, help="defect impact peak / healthy RMS (default 0.2)")
    ap.add_argument("--windows", type=int, default=48, help="windows per condition (default 48)")
    ap.add_argument("--reading-hz", type=float, default=50.0, help="speed readings per s (default 50)")
    ap.add_argument("--shaft-hz", type=float, default=24.0, help="mean shaft speed (default 24)")
    ap.add_argument(
        "--reading-jitter",
        type=float,
        default=0.0,
        help="relative white jitter on each speed reading, as an encoder velocity has (default 0)",
    )
    ap.add_argument(
        "--positions",
        type=int,
        default=0,
        metavar="COUNTS",
        help="readings carry the joint's position, quantized to COUNTS per turn (default 0: velocity only)",
    )
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    if not 0 <= args.swing < 0.9 or args.windows < 1 or args.reading_hz <= 0 or args.period <= 0:
        ap.error("need 0 <= --swing < 0.9, --windows >= 1, --reading-hz > 0, --period > 0")

    from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
    from vibration_anomaly.model import load_default_model

    orders = {k: v for k, v in orders_from_geometry(**SKF_6205).items() if k != "ftf"}
    fault = FaultSpec(
        start_s=FAULT_AT, resonance_hz=1200.0, initial_peak=args.peak, final_peak=args.peak, growth_s=1.0
    )

    def robot(swing: float) -> SimulatedRobot:
        cfg = RobotConfig(
            rate_hz=args.rate, seed=args.seed, shaft_hz=args.shaft_hz, fault=fault,
            speed_swing=swing, speed_swing_s=args.period,
        )  # fmt: skip
        return SimulatedRobot(cfg)

    n = batch_samples(args.rate, 5.0)
    steady, swinging = robot(0.0), robot(args.swing)
    model = load_default_model()
    engine = OnnxRuntimeEngine(intra_op_threads=1)
    engine.load(model.onnx)
    engine.wake()
    print(f"calibrating on 20 steady windows at {args.rate:g} Hz ...", file=sys.stderr)
    windows = [steady.frames(20.0 + 60 * k, 20.0 + 60 * k + n / args.rate)[1] for k in range(20)]
    cal = model.calibrate(engine, windows, args.rate, shaft_hz=args.shaft_hz, orders=orders)
    engine.unload()
    oc = OrderCalibration.from_dict(cal.extra[EXTRA_KEY])

    out: dict[str, object] = {"args": vars(args), "order_threshold": oc.threshold, "parts": list(oc.parts)}
    cost: list[float] = []
    rng = np.random.default_rng(args.seed)
    for label, first in (("healthy", 100.0), ("faulty", FAULT_AT + 100.0)):
        ratios: dict[str, list[float]] = {"tracked": [], "mean_speed": [], "steady": []}
        spreads: list[float] = []
        for k in range(args.windows):
            t0 = first + 37.0 * k  # 37 s apart: every phase of the swing
            t, x = swinging.frames(t0, t0 + n / args.rate)
            topic = ShaftSpeed(topic="/joint_states")
            for s in np.arange(t[0] - 0.05, t[-1] + 0.05, 1.0 / args.reading_hz):
                jitter = 1.0 + args.reading_jitter * float(rng.standard_normal())
                turns = math.nan
                if args.positions > 0:  # what the encoder counted, in turns
                    turns = (
                        math.floor(float(swinging.shaft_turns(np.float64(s))) * args.positions)
                        / args.positions
                    )
                topic.report(float(swinging.shaft_hz_at(s)) * jitter, float(s), turns=turns)
            c = time.process_time()
            r = OrderCheck(oc, topic).read(x, args.rate, float(t[0]), float(t[-1]))
            cost.append(time.process_time() - c)
            mean = OrderCheck(oc, ShaftSpeed(float(np.mean(swinging.shaft_hz_at(t)))))
            still = OrderCheck(oc, ShaftSpeed(args.shaft_hz))
            ratios["tracked"].append(float(r.ratio or 0.0))
            ratios["mean_speed"].append(
                float(mean.read(x, args.rate, float(t[0]), float(t[-1])).ratio or 0.0)
            )
            ts, xs = steady.frames(t0, t0 + n / args.rate)
            ratios["steady"].append(
                float(still.read(xs, args.rate, float(ts[0]), float(ts[-1])).ratio or 0.0)
            )
            spreads.append(r.speed_spread)
            if args.positions > 0:  # the angle came from the positions, not the velocity
                got, _ = topic.track(x, args.rate, float(t[0]), float(t[-1]))
                assert got is not None and (not got.resampled or got.by == "position"), "positions not used"
        print(f"{label}: {args.windows} windows read", file=sys.stderr)
        out[label] = {
            "speed_change_in_window": {"median": float(np.median(spreads)), "max": float(np.max(spreads))},
            **{
                how: {
                    "over": int(sum(v > 1.0 for v in vals)),
                    "of": len(vals),
                    "median": round(float(np.median(vals)), 3),
                    "p90": round(float(np.percentile(vals, 90)), 3),
                    "max": round(float(np.max(vals)), 3),
                }
                for how, vals in ratios.items()
            },
        }
    out["tracked_read_cpu_ms_median"] = round(float(np.median(cost)) * 1000, 2)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
