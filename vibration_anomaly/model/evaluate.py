"""Evaluate the model against classic baselines on a manifest directory (and, optionally, sensitivity).

Protocol (the same for the model and every baseline, in one run):

* Records are grouped by machine (``data.load_dataset``). Each machine's
  healthy records are cut into windows of ``window_s`` seconds, in time
  order (``window_s`` None: 0.2 s or the model's minimum length, whichever
  is longer); the first ``cal_frac`` of them calibrate the machine (normalisation
  and threshold at ``target_far``), the rest are held-out healthy windows.
  No held-out window overlaps a calibration window.
* Faulty records of the machine are cut the same way and scored with that
  machine's calibration.
* Scores are reported as the ratio score / threshold, so machines pool into
  one AUROC; precision and recall are at the calibrated threshold (ratio 1).
* Machines the model was trained on (listed in its model.json) are skipped
  unless ``include_trained``: never evaluate on a training bearing.
* ``model+orders`` (``model.fused``, the robot's speed-aware scoring): the model fused with
  the order score where a machine's shaft speed and defect orders are known.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vibration_anomaly.core.calibration import calibrate_features, threshold_from_scores
from vibration_anomaly.core.calibration.fit import SCORE_DRIFT_LOG_SD
from vibration_anomaly.core.calibration.segments import reduce_segments, segments_for, split_segments
from vibration_anomaly.errors import InputError
from vibration_anomaly.model import ModelFiles
from vibration_anomaly.model.data import Record, cut_windows, load_dataset
from vibration_anomaly.model.false_alarms import (
    Vote,
    bundle_vote,
    healthy_false_alarms,
    scored_or_zero,
    unscored,
)

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
    shaft_hz: float | None = None
    orders: dict[str, float] = field(default_factory=dict)


def defect_frequencies(rec: Record) -> list[float]:
    shaft = rec.shaft_hz()
    if shaft is None:
        return []
    return [o * shaft for k, o in rec.orders().items() if k != "ftf"]


MIN_MACHINE_WINDOWS = 8
DEFAULT_WINDOW_S = 0.2


def window_samples(window_s: float | None, fs: float, min_samples: int, source: str = "--window-s") -> int:
    """Samples per window at ``fs``; None picks 0.2 s or the model's minimum, whichever is longer.

    The fixed 0.2 s default gave 200 samples at a robot's 1 kHz and a bare
    "need at least 256"; the automatic choice works at any rate, and a given
    window that is too short is refused with the smallest one that works.
    """
    if window_s is None:
        return max(int(round(DEFAULT_WINDOW_S * fs)), min_samples)
    n = int(round(window_s * fs))
    if n < min_samples:
        raise InputError(
            source,
            f"{window_s:g}",
            f"is {n} samples at {fs:g} Hz; the model needs at least "
            f"{min_samples} (use --window-s {math.ceil(min_samples / fs * 1000) / 1000:g} or more, "
            "or leave it out for the automatic choice)",
        )
    return n


def check_protocol(window_s: float | None, cal_frac: float, target_far: float) -> None:
    """The evaluation's own numbers, refused where NaN or out of range would poison every table."""
    if window_s is not None and not (math.isfinite(window_s) and 0 < window_s <= 600):
        raise InputError("--window-s", repr(window_s), "expected seconds > 0 and <= 600")
    if not (math.isfinite(cal_frac) and 0 < cal_frac < 1):
        raise InputError("--cal-frac", repr(cal_frac), "expected a share > 0 and < 1 (the rest is held out)")
    if not (math.isfinite(target_far) and 0 < target_far < 0.5):
        raise InputError("--target-far", repr(target_far), "expected a false-alarm rate > 0 and < 0.5")


def split_machines(
    records: list[Record],
    window_s: float | None,
    cal_frac: float = 0.5,
    skip: set[str] | None = None,
    min_samples: int = 256,
) -> list[MachineData]:
    names = sorted({m for r in records if r.healthy for m in r.machines})
    out = []
    for name in names:
        if skip and name in skip:
            continue
        healthy = [r for r in records if r.healthy and name in r.machines]
        fs = healthy[0].fs_hz
        n = window_samples(window_s, fs, min_samples)
        hw = [cut_windows(r.signal, n) for r in healthy if abs(r.fs_hz - fs) < 1e-6 * fs]
        w = np.concatenate([x for x in hw if len(x)]) if any(len(x) for x in hw) else np.zeros((0, n, 1))
        if len(w) < MIN_MACHINE_WINDOWS:
            log.warning(
                "machine %s: only %d healthy windows of %d samples; skipped (need %d)",
                name,
                len(w),
                n,
                MIN_MACHINE_WINDOWS,
            )
            continue
        k = max(4, int(round(cal_frac * len(w))))
        if k >= len(w) - 1:
            raise InputError(
                "--cal-frac",
                f"{cal_frac:g}",
                f"leaves {len(w) - k} of machine {name}'s {len(w)} "
                "healthy windows held out; at least 2 are needed (lower it)",
            )
        md = MachineData(name, fs, n, w[:k], w[k:])
        for r in records:
            if r.healthy or name not in r.machines:
                continue
            if abs(r.fs_hz - fs) > 1e-6 * fs or r.signal.shape[1] != w.shape[2]:
                log.warning("record %s: rate/channels differ from machine %s; skipped", r.file, name)
                continue
            fw = cut_windows(r.signal, n)
            if len(fw):
                md.faulty[r.condition] = (
                    np.concatenate([md.faulty[r.condition], fw]) if r.condition in md.faulty else fw
                )
        fds = defect_frequencies(healthy[0])
        md.defect_hz = fds
        sh = healthy[0].shaft_hz()
        md.shaft_hz, md.orders = sh, healthy[0].orders()
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

    score_drift = SCORE_DRIFT_LOG_SD  # the calibration's drift term (tools/score_drift.py varies it)

    def __init__(self, files: ModelFiles, infer: Any, target_far: float, segments: int | None = 1) -> None:
        self.files = files
        self.infer = infer
        self.frontend = files.frontend()
        self.target_far = target_far
        self.segments = segments  # per window (core.calibration.segments); None: segments_for its length
        self._feat_cache: dict[int, np.ndarray] = {}

    def feats(self, windows: np.ndarray, fs: float) -> np.ndarray:
        """Features of each window's segments, window-major (``core.calibration.segments``: as the robot).

        A whole window the robot would not score (a knock the gate could not cut out,
        ``core.knock_gate.uncut_knock``) has NaN features: ``ratio`` gives it NaN, ``calibrate`` leaves it out.
        """
        w = np.asarray(windows)
        k = self.segments_of(w.shape[1], fs)
        f = self.frontend.batch(split_segments(w, k), fs)
        if k == 1 and len(f):
            f[[u is not None for u in self.frontend.batch_uncut]] = np.nan
        return f

    def segments_of(self, window_samples: int, fs: float) -> int:
        return segments_for(window_samples, fs) if self.segments is None else self.segments

    def _score_z(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(self.infer(np.ascontiguousarray(z, dtype=np.float32)), dtype=np.float64)

    def calibrate(self, md: MachineData, cal_feats: np.ndarray) -> Any:
        return calibrate_features(
            self._score_z,
            cal_feats[~unscored(cal_feats)],
            fs_hz=md.fs_hz,
            window_samples=md.window,
            target_far=self.target_far,
            prior_std=self.files.prior_std,
            prior_weight=self.files.prior_weight,
            machine=md.name,
            drift_std=self.files.drift_std,
            segments=self.segments_of(md.window, md.fs_hz),
            drift_log_sd=self.score_drift,
        )

    def ratio(self, cal: Any, feats: np.ndarray) -> np.ndarray:
        if len(feats) == 0:
            return np.zeros(0)
        skip = unscored(feats)  # marked only where windows are scored whole (feats): a row per window
        if skip.any():
            out = np.full(len(feats), np.nan)
            out[~skip] = self.ratio(cal, feats[~skip])
            return out
        z = cal.normalise(feats)
        n, c = z.shape[:2]
        worst = self._score_z(z.reshape(n * c, *z.shape[2:])).reshape(n, c).max(axis=1)
        return np.asarray(reduce_segments(worst, cal.segments)) / cal.threshold


def baseline_ratios(
    name: str, bl: Any, md: MachineData, sets: dict[str, np.ndarray], target_far: float, folds: int = 4
) -> dict[str, np.ndarray]:
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


def summarize(h: np.ndarray, f: np.ndarray) -> dict[str, Any]:
    """AUROC, precision, recall, false-alarm rate of healthy ``h`` and faulty ``f`` ratios. A window the
    robot would not score (NaN: a knock left in) is outside the AUROC (it separates the scored windows) and
    the false-alarm rate (as in ``false_alarms``); where faulty it is missed in the recall."""
    nh, nf = np.isnan(np.asarray(h, dtype=np.float64)), np.isnan(np.asarray(f, dtype=np.float64))
    auroc = _auroc(np.asarray(h)[~nh], np.asarray(f)[~nf])
    h, f = scored_or_zero(h), scored_or_zero(f)
    tp, fp, n_h = float((f > 1).sum()), float((h > 1).sum()), int((~nh).sum())
    out: dict[str, Any] = {
        "auroc": round(auroc, 4),
        "precision": round(tp / (tp + fp), 4) if tp + fp > 0 else float("nan"),
        "recall": round(tp / len(f), 4) if len(f) else float("nan"),
        "false_alarm_rate": round(fp / n_h, 4) if n_h else float("nan"),
    }
    if nh.any() or nf.any():
        out["not_scored"] = {"healthy": int(nh.sum()), "faulty": int(nf.sum())}
    return out


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
    window_s: float | None = None,
    cal_frac: float = 0.5,
    target_far: float = 0.01,
    bearing: dict[str, float] | None = None,
    include_trained: bool = False,
    seed: int = 0,
    vote: Vote | None = None,
    sensor_rate_hz: float | None = None,
    segments: int | None = 1,
    bearing_resonance_hz: tuple[float, float] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (results JSON, raw scores for the report).

    ``vote``: the k-of-n alarm rule and duty cycle for the healthy false alarms
    (``model.false_alarms``); None: the shipped example bundle's.
    ``sensor_rate_hz``: every record first goes through ``sensor_model`` (what
    a robot's sensor at that rate would have delivered); windows are cut after.
    """
    from vibration_anomaly.model.baselines import make_baselines
    from vibration_anomaly.model.fused import FUSED, FusedMethod

    check_protocol(window_s, cal_frac, target_far)
    records = load_dataset(data_dir, bearing)
    trained = {m.split("@")[0] for m in files.meta.get("training", {}).get("real_machines", [])}
    dname = Path(data_dir).resolve().name
    skip = (
        {m.split("/", 1)[1] for m in trained if m.split("/", 1)[0] == dname} if not include_trained else set()
    )
    min_samples = int(files.meta.get("frontend", {}).get("min_samples", 256))
    if sensor_rate_hz is not None:
        from vibration_anomaly.model.sensor_model import sensor_records

        records = sensor_records(records, sensor_rate_hz, min_samples, MIN_MACHINE_WINDOWS)
    machines = split_machines(records, window_s, cal_frac, skip, min_samples)
    if not machines:
        raise InputError(
            str(data_dir),
            "machines",
            f"no machine with {MIN_MACHINE_WINDOWS} healthy windows or more "
            f"(skipped as trained on: {sorted(skip) or 'none'}; --include-trained scores them)",
        )
    if not any(len(v) for md in machines for v in md.faulty.values()):
        raise InputError(
            str(data_dir),
            "condition",
            "no faulty windows for the evaluated machines; AUROC, "
            "precision and recall need healthy and faulty records (a condition other than 'normal')",
        )
    methods: dict[str, ModelMethod] = {"model": ModelMethod(files, infer_int8, target_far, segments)}
    if infer_fp32 is not None:
        methods["model_fp32"] = ModelMethod(files, infer_fp32, target_far, segments)
    fused = FusedMethod(files, infer_int8, target_far, segments=segments, resonance_hz=bearing_resonance_hz)
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
        alone = {k: raw["model"][k][-1] for k in sets}
        for k, v in fused.ratios(md, fcal, fe, sets, alone).items():
            raw.setdefault(FUSED, {}).setdefault(k, []).append(v)
        for bname, bl in make_baselines(md.defect_hz or None, seed, md.fs_hz).items():
            r = baseline_ratios(bname, bl, md, sets, target_far)
            for k, v in r.items():
                raw.setdefault(bname, {}).setdefault(k, []).append(v)
    _progress(len(machines), len(machines), "evaluating machines")
    if not fused.orders_known:
        del raw[FUSED]  # no speed or no orders anywhere: the model alone decides
    cat = {m: {k: np.concatenate(v) for k, v in d.items()} for m, d in raw.items()}

    def block(m: str) -> dict[str, Any]:
        d = cat[m]
        h = d["healthy"]
        f = np.concatenate([d[c] for c in conds if c in d]) if conds else np.zeros(0)
        out: dict[str, Any] = dict(summarize(h, f))
        out["per_condition"] = {c: summarize(h, d[c]) for c in conds if c in d}
        return out

    res: dict[str, Any] = {"data": str(data_dir), **block("model")}
    if "model_fp32" in cat:
        res["fp32"] = block("model_fp32")
        res["int8_minus_fp32_auroc"] = round(res["auroc"] - res["fp32"]["auroc"], 4)
    res["baselines"] = {m: block(m) for m in cat if not m.startswith("model")}
    the_vote = vote or bundle_vote()

    def false_alarms(m: str) -> dict[str, Any]:
        held = {md.name: (r, md.window / md.fs_hz) for md, r in zip(machines, raw[m]["healthy"], strict=True)}
        return healthy_false_alarms(held, target_far, the_vote)

    res["false_alarms"] = false_alarms("model")
    if FUSED in cat:  # the model fused with the order score (model.fused)
        res[FUSED] = {**block(FUSED), "false_alarms": false_alarms(FUSED), "fusion": fused.summary()}
    res["setup"] = {
        "window_s": window_s if window_s is not None else {md.name: md.window / md.fs_hz for md in machines},
        "cal_frac": cal_frac,
        "target_far": target_far,
        "sensor_rate_hz": sensor_rate_hz,
        "machines": [md.name for md in machines],
        "skipped_trained_machines": sorted(skip),
        "calibration_windows": int(sum(len(md.cal) for md in machines)),
        "heldout_healthy_windows": int(sum(len(md.held) for md in machines)),
        "faulty_windows": {c: int(sum(len(md.faulty.get(c, [])) for md in machines)) for c in conds},
        "model": files.meta.get("name"),
        "model_files": files.meta.get("files"),
    }
    return res, {"scores": cat, "machines": machines}
