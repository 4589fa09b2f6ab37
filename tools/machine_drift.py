"""Where a machine's held-out healthy windows exceed its threshold: channel, band (Hz) and feature.

`evaluate` says how many held-out healthy windows of a machine are over its calibrated threshold; this
says what lifted them. The machine is calibrated exactly as `evaluate` does it (first half of its healthy
windows, the shipped model, INT8, target 1 %), optionally through the sensor model. For each held-out
window over the threshold it prints the largest z-score (channel, band in Hz, feature), and for the
largest few (channel, band, feature) cells their median z on the calibration windows, the held-out
windows and the machine's degraded record: a cell that climbs calibration -> held-out -> degraded is the
signature the machine's end of life carries, one that does not is a healthy change.

    PYTHONPATH=. python tools/machine_drift.py --data ../shared/data/femto --machine Bearing3_2 [--sensor-rate 3200] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from vibration_anomaly.clikit import guarded
from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
from vibration_anomaly.model import load_default_model
from vibration_anomaly.model.cli_support import add_dataset_options
from vibration_anomaly.model.data import load_dataset
from vibration_anomaly.model.evaluate import ModelMethod, split_machines
from vibration_anomaly.model.frontend_config import FEATURE_NAMES, band_edges


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dataset_options(ap)
    ap.add_argument("--machine", required=True, help="machine name, or a unique part of it (Bearing3_2)")
    ap.add_argument("--cells", type=int, default=4, help="cells to follow from calibration to degraded")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    # a missing folder or a bad manifest: one line naming it, exit 2 (as the package's commands)
    return guarded(run, "tools/machine_drift.py")(ap.parse_args())


def run(a: argparse.Namespace) -> int:
    files = load_default_model()
    min_samples = int(files.meta.get("frontend", {}).get("min_samples", 256))
    records = [r for r in load_dataset(a.data) if any(a.machine in m for m in r.machines)]
    if a.sensor_rate:
        from vibration_anomaly.model.sensor_model import sensor_records

        records = sensor_records(records, a.sensor_rate, min_samples, 8)
    machines = [
        m for m in split_machines(records, a.window_s, 0.5, set(), min_samples) if a.machine in m.name
    ]
    machines = [m for m in machines if m.name == a.machine] or machines  # an exact name wins
    if len(machines) != 1:
        print(
            f"--machine {a.machine!r}: matches {[m.name for m in machines] or 'no machine'}", file=sys.stderr
        )
        return 2
    md = machines[0]
    engine = OnnxRuntimeEngine()
    engine.load(files.onnx)
    engine.wake()
    method = ModelMethod(files, engine.infer, 0.01)
    cal_feats = method.feats(md.cal, md.fs_hz)
    cal = method.calibrate(md, cal_feats)
    edges = band_edges(method.frontend.config, md.fs_hz)

    def where(cell: tuple[int, ...]) -> str:
        ch, tok, feat = cell
        return f"channel {ch}, {edges[tok, 0]:.0f}-{edges[tok, 1]:.0f} Hz, {FEATURE_NAMES[feat]}"

    sets = {"calibration": cal_feats, "held-out": method.feats(md.held, md.fs_hz)}
    sets.update({f"{cond} record": method.feats(w, md.fs_hz) for cond, w in md.faulty.items()})
    z = {k: cal.normalise(v) for k, v in sets.items()}  # (windows, channels, bands, features)
    ratios = {k: method.ratio(cal, v) for k, v in sets.items()}
    held_z, held_r = z["held-out"], ratios["held-out"]
    over = [int(i) for i in np.flatnonzero(held_r > 1)]
    windows = [
        {
            "window": i,
            "ratio": round(float(held_r[i]), 2),
            "largest_z": round(float(held_z[i].max()), 2),
            "where": where(tuple(int(v) for v in np.unravel_index(np.argmax(held_z[i]), held_z[i].shape))),
        }
        for i in over
    ]
    # The cells most raised on the held-out windows (median over them), followed through every set.
    med = np.nanmedian(held_z, axis=0)
    top = np.argsort(med.ravel())[::-1][: a.cells]
    cells = []
    for flat in top:
        cell = tuple(int(v) for v in np.unravel_index(flat, med.shape))
        cells.append(
            {
                "where": where(cell),
                "median_z": {k: round(float(np.nanmedian(v[(slice(None), *cell)])), 2) for k, v in z.items()},
            }
        )
    out = {
        "machine": md.name,
        "fs_hz": md.fs_hz,
        "window_samples": md.window,
        "held_out_over_threshold": f"{len(over)}/{int((~np.isnan(held_r)).sum())}",
        "held_out_not_scored": int(np.isnan(held_r).sum()),  # a knock-like event left in (knock_gate)
        "median_ratio": {k: round(float(np.nanmedian(v)), 2) for k, v in ratios.items() if len(v)},
        "windows_over": windows,
        "most_raised_cells": cells,
        # what a cell's climb is to be read against: at end of life most cells are raised
        "every_cell_median_z": {k: round(float(np.nanmedian(v)), 2) for k, v in z.items()},
    }
    if a.json:
        print(json.dumps(out))
        return 0
    print(
        f"{md.name} at {md.fs_hz:g} Hz, {md.window}-sample windows: {out['held_out_over_threshold']} held-out over"
    )
    print("median ratio: " + ", ".join(f"{k} {v}" for k, v in out["median_ratio"].items()))
    for w in windows:
        print(
            f"  held-out window {w['window']}: ratio {w['ratio']}, largest z {w['largest_z']} ({w['where']})"
        )
    print("most raised on the held-out windows (median z):")
    for c in cells:
        print(f"  {c['where']}: " + ", ".join(f"{k} {v}" for k, v in c["median_z"].items()))
    print("every cell (median z): " + ", ".join(f"{k} {v}" for k, v in out["every_cell_median_z"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
