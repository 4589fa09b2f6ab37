"""Evaluate the model against classic baselines on a manifest directory (and, optionally, sensitivity).

Protocol (the same for the model and every baseline, in one run):

* Records are grouped by machine (``data.load_dataset``). Each machine's
  healthy records are cut into windows of ``window_s`` seconds, in time
  order; the first ``cal_frac`` of them calibrate the machine (normalisation
  and threshold at ``target_far``), the rest are held-out healthy windows.
  No held-out window overlaps a calibration window.
* Faulty records of the machine are cut the same way and scored with that
  machine's calibration.
* Scores are reported as the ratio score / threshold, so machines pool into
  one AUROC; precision and recall are at the calibrated threshold (ratio 1).
* Machines the model was trained on (listed in its model.json) are skipped
  unless ``include_trained``: never evaluate on a training bearing.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vibration_anomaly.core.scoring import calibrate_features, threshold_from_scores
from vibration_anomaly.model import ModelFiles
from vibration_anomaly.model.data import Record, cut_windows, load_dataset

log = logging.getLogger(__name__)


@dataclass
class MachineData:
    name: str
    fs_hz: float
    window: int
    cal: np.ndarray  # (N, n, C)
    held: np.ndarray
    faulty: dict[str, np.ndarray] = field(default_factory=dict)
    defect_hz: list[float] = field(default_factory=list)
    bpfo_hz: float | None = None


def defect_frequencies(rec: Record) -> list[float]:
    shaft = rec.shaft_hz()
    if shaft is None:
        return []
    return [o * shaft for k, o in rec.orders().items() if k != "ftf"]


def split_machines(records: list[Record], window_s: float, cal_frac: float = 0.5,
                   skip: set[str] | None = None) -> list[MachineData]:
    names = sorted({m for r in records if r.healthy for m in r.machines})
    out = []
    for name in names:
        if skip and name in skip:
            continue
        healthy = [r for r in records if r.healthy and name in r.machines]
        fs = healthy[0].fs_hz
        n = int(round(window_s * fs))
        hw = [cut_windows(r.signal, n) for r in healthy if abs(r.fs_hz - fs) < 1e-6 * fs]
        w = np.concatenate([x for x in hw if len(x)]) if any(len(x) for x in hw) else np.zeros((0, n, 1))
        if len(w) < 8:
            log.warning("machine %s: only %d healthy windows of %g s; skipped (need 8)", name, len(w), window_s)
            continue
        k = max(4, int(round(cal_frac * len(w))))
        md = MachineData(name, fs, n, w[:k], w[k:])
        for r in records:
            if r.healthy or name not in r.machines:
                continue
            if abs(r.fs_hz - fs) > 1e-6 * fs or r.signal.shape[1] != w.shape[2]:
                log.warning("record %s: rate/channels differ from machine %s; skipped", r.file, name)
                continue
            fw = cut_windows(r.signal, n)
            if len(fw):
                md.faulty[r.condition] = np.concatenate([md.faulty[r.condition], fw]) if r.condition in md.faulty else fw
        fds = defect_frequencies(healthy[0])
        md.defect_hz = fds
        sh = healthy[0].shaft_hz()
        if sh and "bpfo" in healthy[0].orders():
            md.bpfo_hz = healthy[0].orders()["bpfo"] * sh
        out.append(md)
    return out


def _auroc(neg: np.ndarray, pos: np.ndarray) -> float:
    neg = np.asarray(neg, dtype=float)
    pos = np.asarray(pos, dtype=float)
    if len(neg) == 0 or len(pos) == 0:
        return float("nan")
    allv = np.concatenate([neg, pos])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    sv = allv[order]
    i = 0
    while i < len(sv):  # average ranks over ties
        j = i
        while j + 1 < len(sv) and sv[j + 1] == sv[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    rp = ranks[len(neg) :].sum()
    return float((rp - len(pos) * (len(pos) + 1) / 2) / (len(neg) * len(pos)))


class ModelMethod:
    """The model behind an engine-like ``infer``: per-machine calibration and ratio scores."""

    def __init__(self, files: ModelFiles, infer: Any, target_far: float) -> None:
        self.files = files
        self.infer = infer
        self.frontend = files.frontend()
        self.target_far = target_far
        self._feat_cache: dict[int, np.ndarray] = {}

    def feats(self, windows: np.ndarray, fs: float) -> np.ndarray:
        return self.frontend.batch(windows, fs)

    def _score_z(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(self.infer(np.ascontiguousarray(z, dtype=np.float32)), dtype=np.float64)

    def calibrate(self, md: MachineData, cal_feats: np.ndarray) -> Any:
        return calibrate_features(self._score_z, cal_feats, fs_hz=md.fs_hz, window_samples=md.window,
                                  target_far=self.target_far, prior_std=self.files.prior_std,
                                  prior_weight=self.files.prior_weight, machine=md.name,
                                  drift_std=self.files.drift_std)

    def ratio(self, cal: Any, feats: np.ndarray) -> np.ndarray:
        if len(feats) == 0:
            return np.zeros(0)
        z = cal.normalise(feats)
        n, c = z.shape[:2]
        return self._score_z(z.reshape(n * c, *z.shape[2:])).reshape(n, c).max(axis=1) / cal.threshold


def baseline_ratios(name: str, bl: Any, md: MachineData, sets: dict[str, np.ndarray], target_far: float,
                    folds: int = 4) -> dict[str, np.ndarray]:
    """Fit a baseline on the calibration windows, threshold on cross-fitted held-out calibration scores."""
    fs = md.fs_hz
    n = len(md.cal)
    blocks = np.array_split(np.arange(n), max(2, min(folds, n // 2)))
    held = np.empty(n)
    for blk in blocks:
        rest = np.setdiff1d(np.arange(n), blk)
        held[blk] = bl.fit(md.cal[rest], fs).score(md.cal[blk], fs)
    fitted = bl.fit(md.cal, fs)
    thr, _ = threshold_from_scores(np.maximum(held[np.isfinite(held)], 1e-9), target_far)
    return {k: fitted.score(v, fs) / thr if len(v) else np.zeros(0) for k, v in sets.items()}


def summarize(h: np.ndarray, f: np.ndarray) -> dict[str, float]:
    tp = float((f > 1).sum())
    fp = float((h > 1).sum())
    return {
        "auroc": round(_auroc(h, f), 4),
        "precision": round(tp / (tp + fp), 4) if tp + fp > 0 else float("nan"),
        "recall": round(tp / len(f), 4) if len(f) else float("nan"),
        "false_alarm_rate": round(fp / len(h), 4) if len(h) else float("nan"),
    }


def _progress(i: int, n: int, label: str) -> None:
    sys.stderr.write(f"\r{label}: {i}/{n}   ")
    if i >= n:
        sys.stderr.write("\n")
    sys.stderr.flush()


def evaluate(
    data_dir: str | Path,
    files: ModelFiles,
    infer_int8: Any,
    infer_fp32: Any | None = None,
    *,
    window_s: float = 0.2,
    cal_frac: float = 0.5,
    target_far: float = 0.01,
    bearing: dict[str, float] | None = None,
    include_trained: bool = False,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (results JSON, raw scores for the report)."""
    from vibration_anomaly.model.baselines import make_baselines

    records = load_dataset(data_dir, bearing)
    trained = {m.split("@")[0] for m in files.meta.get("training", {}).get("real_machines", [])}
    dname = Path(data_dir).resolve().name
    skip = {m.split("/", 1)[1] for m in trained if m.split("/", 1)[0] == dname} if not include_trained else set()
    machines = split_machines(records, window_s, cal_frac, skip)
    if not machines:
        raise ValueError(f"{data_dir}: no machine with enough healthy windows of {window_s} s (skipped trained: {sorted(skip)})")
    methods: dict[str, ModelMethod] = {"model": ModelMethod(files, infer_int8, target_far)}
    if infer_fp32 is not None:
        methods["model_fp32"] = ModelMethod(files, infer_fp32, target_far)
    raw: dict[str, dict[str, list[np.ndarray]]] = {}
    conds = sorted({c for md in machines for c in md.faulty})
    for i, md in enumerate(machines):
        _progress(i, len(machines), "evaluating machines")
        sets = {"healthy": md.held, **md.faulty}
        fe = {k: methods["model"].feats(v, md.fs_hz) for k, v in sets.items()}
        fcal = methods["model"].feats(md.cal, md.fs_hz)
        for mname, m in methods.items():
            cal = m.calibrate(md, fcal)
            for k in sets:
                raw.setdefault(mname, {}).setdefault(k, []).append(m.ratio(cal, fe[k]))
        for bname, bl in make_baselines(md.defect_hz or None, seed).items():
            r = baseline_ratios(bname, bl, md, sets, target_far)
            for k, v in r.items():
                raw.setdefault(bname, {}).setdefault(k, []).append(v)
    _progress(len(machines), len(machines), "evaluating machines")
    cat = {m: {k: np.concatenate(v) for k, v in d.items()} for m, d in raw.items()}

    def block(m: str) -> dict[str, Any]:
        d = cat[m]
        h = d["healthy"]
        f = np.concatenate([d[c] for c in conds if c in d]) if conds else np.zeros(0)
        out = summarize(h, f)
        out["per_condition"] = {c: summarize(h, d[c]) for c in conds if c in d}
        return out

    res: dict[str, Any] = {"data": str(data_dir), **block("model")}
    if "model_fp32" in cat:
        res["fp32"] = block("model_fp32")
        res["int8_minus_fp32_auroc"] = round(res["auroc"] - res["fp32"]["auroc"], 4)
    res["baselines"] = {m: block(m) for m in cat if not m.startswith("model")}
    res["setup"] = {
        "window_s": window_s, "cal_frac": cal_frac, "target_far": target_far,
        "machines": [md.name for md in machines], "skipped_trained_machines": sorted(skip),
        "calibration_windows": int(sum(len(md.cal) for md in machines)),
        "heldout_healthy_windows": int(sum(len(md.held) for md in machines)),
        "faulty_windows": {c: int(sum(len(md.faulty.get(c, [])) for md in machines)) for c in conds},
        "model": files.meta.get("name"), "model_files": files.meta.get("files"),
    }
    return res, {"scores": cat, "machines": machines}
