"""How far each machine's healthy score level moves after its calibration, and what the drift term buys.

The model's calibration adds ``core.calibration.fit.SCORE_DRIFT_LOG_SD`` in quadrature to the spread of
its calibration scores, because a machine's typical score moves from one stretch of its life to the next
(docs/MODEL.md "Thresholds from few windows"). This measures that move on a dataset, so the constant can
be re-measured for a retrained model or a fleet's own recordings. Each machine is calibrated as
`evaluate` does (first half of its healthy windows, INT8, target 1 %), trained machines included, and
for each drift term given it prints: the threshold, the median of the cross-fitted calibration scores,
the median of the held-out healthy scores, their log ratio (the shift), and the held-out windows over the
threshold. Machines are grouped as the model's training machines and the others.

    PYTHONPATH=. python tools/score_drift.py --data ../shared/data/femto [--model DIR] [--sensor-rate 6600] [--drift 0,0.2] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from vibration_anomaly.clikit import guarded, number_list
from vibration_anomaly.core.calibration.fit import SCORE_DRIFT_LOG_SD
from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
from vibration_anomaly.model.cli_support import add_dataset_options, model_files
from vibration_anomaly.model.data import load_dataset
from vibration_anomaly.model.evaluate import MIN_MACHINE_WINDOWS, ModelMethod, split_machines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dataset_options(ap)
    ap.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    ap.add_argument(
        "--drift",
        type=number_list(0.0, 5.0, lo_open=False),
        default=(0.0, SCORE_DRIFT_LOG_SD),
        help=f"drift terms to compare, comma-separated (default: 0,{SCORE_DRIFT_LOG_SD:g}, the shipped one)",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    # a missing folder or a bad manifest: one line naming it, exit 2 (as the package's commands)
    return guarded(run, "tools/score_drift.py")(ap.parse_args())


def run(a: argparse.Namespace) -> int:
    files = model_files(a.model)
    # the model's training machines are named "<dataset folder>/<machine>"
    dname = Path(a.data).resolve().name
    trained = {
        m.split("@")[0].split("/", 1)[1]
        for m in files.meta.get("training", {}).get("real_machines", [])
        if m.split("/", 1)[0] == dname
    }
    min_samples = int(files.meta.get("frontend", {}).get("min_samples", 256))
    records = load_dataset(a.data)
    if a.sensor_rate:
        from vibration_anomaly.model.sensor_model import sensor_records

        records = sensor_records(records, a.sensor_rate, min_samples, MIN_MACHINE_WINDOWS)
    machines = split_machines(records, a.window_s, 0.5, set(), min_samples)
    engine = OnnxRuntimeEngine()
    engine.load(files.onnx)
    engine.wake()
    method = ModelMethod(files, engine.infer, 0.01)
    rows: dict[str, dict[str, Any]] = {}
    for i, md in enumerate(machines):
        print(f"\rscore_drift: machine {i + 1}/{len(machines)}   ", end="", file=sys.stderr, flush=True)
        cal_feats, held_feats = method.feats(md.cal, md.fs_hz), method.feats(md.held, md.fs_hz)
        row: dict[str, Any] = {"training": md.name in trained, "by_drift": {}}
        for d in a.drift:
            method.score_drift = d
            cal = method.calibrate(md, cal_feats)
            ratio = method.ratio(cal, held_feats)
            scored = ratio[~np.isnan(ratio)]
            cal_median = float(cal.extra["held_out_scores_p50_p90_max"][0])
            held_median = float(np.median(scored)) * cal.threshold if len(scored) else 0.0
            # the same for every drift term; none where a median is 0 (the one-sided score of a machine
            # at or below its calibration everywhere) or every held-out window was left unscored
            ok = cal_median > 0 and held_median > 0
            row["shift"] = round(math.log(held_median / cal_median), 3) if ok else None
            row["by_drift"][f"{d:g}"] = {
                "threshold": round(cal.threshold, 4),
                "over": int((scored > 1).sum()),
                "windows": len(scored),
            }
        rows[md.name] = row
    print(file=sys.stderr)
    out = {
        "data": a.data,
        "sensor_rate_hz": a.sensor_rate,
        "machines": rows,
        "groups": _groups(rows, a.drift),
    }
    if a.json:
        print(json.dumps(out))
        return 0
    for name, r in rows.items():
        cells = "  ".join(
            f"drift {d}: thr {v['threshold']:.3g} over {v['over']}/{v['windows']}"
            for d, v in r["by_drift"].items()
        )
        shift = "  n/a" if r["shift"] is None else f"{r['shift']:+.2f}"
        print(f"{name:<14} {'trained' if r['training'] else 'held-out':<8} shift {shift}  {cells}")
    for g, v in out["groups"].items():
        over = "  ".join(f"drift {d}: {c}" for d, c in v["over"].items())
        rms = "n/a" if v["rms_shift"] is None else f"{v['rms_shift']:.3f} (robust {v['robust_shift']:.3f})"
        print(f"{g:<23} rms shift {rms}  over  {over}")
    return 0


def _groups(rows: dict[str, dict[str, Any]], drifts: tuple[float, ...]) -> dict[str, Any]:
    """Per group (training machines, the others): rms and robust (1.4826 x median |shift|) shift, over counts."""
    out: dict[str, Any] = {}
    for g, is_trained in (("training machines", True), ("other machines", False)):
        sel = [r for r in rows.values() if r["training"] == is_trained]
        if not sel:
            continue
        sh = np.array([r["shift"] for r in sel if r["shift"] is not None])
        out[g] = {
            "machines": len(sel),
            "rms_shift": round(float(np.sqrt(np.mean(sh**2))), 3) if len(sh) else None,
            "robust_shift": round(float(1.4826 * np.median(np.abs(sh))), 3) if len(sh) else None,
            "over": {
                f"{d:g}": f"{sum(r['by_drift'][f'{d:g}']['over'] for r in sel)}/"
                f"{sum(r['by_drift'][f'{d:g}']['windows'] for r in sel)}"
                for d in drifts
            },
        }
    return out


if __name__ == "__main__":
    raise SystemExit(main())
