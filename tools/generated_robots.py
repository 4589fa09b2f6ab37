"""Write a manifest directory of generated robots (model.synth) for ``evaluate``, e.g. through a 3.2 kHz sensor.

    PYTHONPATH=. python tools/generated_robots.py OUT [--robots 3] [--seed 100] [--fs 25600] [--seconds 16]
        [--degraded-seconds 2]
    PYTHONPATH=. python -m vibration_anomaly evaluate --data OUT --bearing femto --json --sensitivity \\
        --sensor-rate 3200

Each robot is ``synth.random_machine`` (random resonances, shaft tones, motion, gain; 3 axes) recorded
at ``--fs`` (a lab-grade rate, so ``--sensor-rate`` models the robot's sensor the way it does for
FEMTO): ``--seconds`` of healthy signal, and a ``--degraded-seconds`` (2 s) "degraded" record of the same machine with outer-race
impacts (``synth.physical_defect``, default physics: a 2.5-4.5 kHz resonance and a 100-400 Hz mode,
peak 5 x the healthy RMS, channel 0) at the bearing's BPFO (``--bpfo``, default FEMTO's 5.611) and a
shaft speed drawn in 10-40 Hz (manifest ``rpm``). Robot i is drawn from ``default_rng(seed + i)``; the
shipped model's generated training machines came from one stream seeded 0, so these are unseen draws.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from vibration_anomaly.model.synth import healthy_signal, physical_defect, random_machine


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out")
    p.add_argument("--robots", type=int, default=3)
    p.add_argument("--seed", type=int, default=100)
    p.add_argument("--fs", type=float, default=25600.0)
    p.add_argument("--seconds", type=float, default=16.0)
    p.add_argument("--bpfo", type=float, default=5.611)
    p.add_argument(
        "--degraded-seconds", type=float, default=2.0, help="length of each degraded record (default 2 s)"
    )
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(a.robots):
        rng = np.random.default_rng(a.seed + i)
        spec = random_machine(rng, a.fs, 3)
        shaft = float(rng.uniform(10.0, 40.0))
        name = f"robot{a.seed + i}"
        h = healthy_signal(rng, spec, int(a.seconds * a.fs))
        np.savez_compressed(out / f"normal_{name}.npz", x=h[:, 0], y=h[:, 1], z=h[:, 2], fs=a.fs)
        d = healthy_signal(rng, spec, int(a.degraded_seconds * a.fs))
        rms = float(h[:, 0].std())
        d[:, 0] += physical_defect(rng, a.fs, len(d), a.bpfo * shaft, 5.0 * rms)[0]
        np.savez_compressed(out / f"degraded_{name}.npz", x=d[:, 0], y=d[:, 1], z=d[:, 2], fs=a.fs)
        rows += [[f"normal_{name}.npz", "normal", name, a.fs, round(shaft * 60, 3)]]
        rows += [[f"degraded_{name}.npz", "degraded", name, a.fs, round(shaft * 60, 3)]]
    with (out / "manifest.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "condition", "machine", "fs_hz", "rpm"])
        w.writerows(rows)
    print(f"{len(rows)} records of {a.robots} robots in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
