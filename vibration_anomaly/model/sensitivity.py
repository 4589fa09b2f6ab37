"""How small a fault can it see on my machine, through my sensor? Injected defects and knocks on held-out data.

For every machine (see ``evaluate``): calibrate the model and every baseline
on the first part of its healthy windows; take the held-out healthy windows;
inject outer-race defect impacts into channel 0 at a ladder of amplitudes,
the impact peak being ``amplitude x`` the channel's healthy broadband RMS
at the recording's rate (measured on the calibration windows). AUROC is
held-out clean vs the same windows injected; recall is at the calibrated
threshold.

**Injection is physical, at the recording's own rate** (``synth.physical_defect``,
``synth.ImpactPhysics``): every impact rings a structural resonance drawn per
window in Hz (default 2.5-4.5 kHz) and a low-frequency structural mode
(default 100-400 Hz, peak ``f_mode / f_resonance`` of the resonance's),
repeating at the defect frequency with 1.5 % slip. The defect frequency is
the machine's BPFO when its geometry and speed are known, else
``clip(fs / 100, 5, 200)`` Hz. Until issue 16 the resonance was drawn in
[0.3, 0.8] of the analysis band top, i.e. *relative to the sensor*: at a
1 kHz sensor that put a 150-400 Hz "resonance" inside the band and reported
detections no real 1 kHz sensor could make.

**Then the sensor** (``sensor_rate_hz``, ``evaluate --sensor-rate``): the
calibration, held-out, injected and knocked windows are cut at the lab rate
with a margin of real signal each side, passed through
``sensor_model.SensorModel`` (anti-aliased resampling) and trimmed, so the
model and every baseline see what the robot's sensor would have delivered,
and a resonance above the sensor's band is gone, as it would be on the
robot. Without a sensor rate the recording's rate is the sensor.

Knocks: one broadband transient per held-out window and channel
(``synth.physical_knock``: three frame modes in 20 Hz - 2 kHz, peak
``knock_peak`` x healthy RMS at the lab rate), injected before the sensor.
Reported: the per-window exceedance rate on knocked windows, and the alarms
of the ``AlarmVoter`` with a signed bundle's k-of-n (``false_alarms.bundle_vote``:
``evaluate --bundle``, default the shipped example) run in time order over each
machine's knocked windows, with the expected false alarms per robot-month
at that bundle's duty cycle (30-day month, windows independent).

``model+orders`` (``model.fused``, the robot's speed-aware scoring) is laddered beside the
model where the machine's shaft speed and defect orders are known.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from vibration_anomaly.core.scoring import false_alarms_per_month
from vibration_anomaly.errors import InputError
from vibration_anomaly.model import ModelFiles
from vibration_anomaly.model.data import Record, load_dataset
from vibration_anomaly.model.evaluate import (
    MIN_MACHINE_WINDOWS,
    MachineData,
    ModelMethod,
    _auroc,
    baseline_ratios,
    split_machines,
    window_samples,
)
from vibration_anomaly.model.false_alarms import Vote, bundle_vote, scored_or_zero, voted_alarms
from vibration_anomaly.model.sensor_model import SOURCE, SensorModel, sensor_for
from vibration_anomaly.model.synth import (
    DEFAULT_PHYSICS,
    KNOCK_HZ,
    ImpactPhysics,
    physical_defect,
    physical_knock,
)

log = logging.getLogger(__name__)

DEFAULT_AMPLITUDES: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0, 5.0)
DETECT_AUROC = 0.95


def default_defect_hz(md: MachineData) -> float:
    return md.bpfo_hz if md.bpfo_hz else float(np.clip(md.fs_hz / 100, 5, 200))


def inject(
    md: MachineData,
    windows: np.ndarray,
    amp: float,
    rms: np.ndarray,
    rng: np.random.Generator,
    physics: ImpactPhysics = DEFAULT_PHYSICS,
    drawn: list[tuple[float | None, float | None]] | None = None,
) -> np.ndarray:
    """Defect impacts at the recording's rate in channel 0 of every window (the whole window, margins too)."""
    out = windows.copy()
    fd = default_defect_hz(md)
    for i in range(len(out)):
        x, f_res, f_mode = physical_defect(rng, md.fs_hz, out.shape[1], fd, amp * rms[0], physics)
        out[i, :, 0] += x
        if drawn is not None:
            drawn.append((f_res, f_mode))
    return out


def add_knocks(
    md: MachineData,
    windows: np.ndarray,
    peak: float,
    rms: np.ndarray,
    rng: np.random.Generator,
    margin: int = 0,
) -> np.ndarray:
    """One knock per window and channel, inside the window proper (not in its sensor margins)."""
    out = windows.copy()
    core = out.shape[1] - 2 * margin
    for i in range(len(out)):
        for c in range(out.shape[2]):
            out[i, margin : margin + core, c] += physical_knock(rng, md.fs_hz, core, peak * rms[c])
    return out


def lab_machines(
    records: list[Record],
    window_s: float | None,
    cal_frac: float,
    skip: set[str],
    min_samples: int,
    sensor_rate_hz: float | None,
) -> list[tuple[MachineData, SensorModel | None, int]]:
    """Machines cut at the lab rate: (machine, its sensor or None, sensor window samples).

    With a sensor, the lab windows carry the sensor's margins and map exactly
    onto sensor windows of ``window_s`` (None: the automatic choice at the
    sensor's rate), rounded up to a whole number of the resampler's steps.
    """
    if sensor_rate_hz is None:
        mds = split_machines(records, window_s, cal_frac, skip, min_samples)
        return [(md, None, md.window) for md in mds]
    out: list[tuple[MachineData, SensorModel | None, int]] = []
    for fs in sorted({r.fs_hz for r in records if r.healthy}):
        group = [r for r in records if abs(r.fs_hz - fs) <= 1e-6 * fs]
        sm = sensor_for(fs, sensor_rate_hz, f"the {fs:g} Hz recordings")
        n_out = window_samples(window_s, sm.fs_out_hz, min_samples)
        n_lab, n_out = sm.window_lengths(n_out)
        healthy = [r for r in group if r.healthy]
        seconds = (
            max(sum(len(r.signal) for r in healthy if m in r.machines) for r in healthy for m in r.machines)
            / fs
        )
        if seconds * fs < n_lab * MIN_MACHINE_WINDOWS:
            raise InputError(
                SOURCE,
                f"{sensor_rate_hz:g}",
                f"needs windows of {n_out} samples ({n_out / sm.fs_out_hz:g} s, the model's minimum being "
                f"{min_samples}); the longest machine at {fs:g} Hz has {seconds:g} s of healthy data, "
                f"fewer than {MIN_MACHINE_WINDOWS} such windows with the resampler's margins",
            )
        out += [(md, sm, n_out) for md in split_machines(group, n_lab / fs, cal_frac, skip, min_samples)]
    return out


def sensitivity(
    data_dir: str,
    files: ModelFiles,
    infer: Any,
    *,
    window_s: float | None = None,
    cal_frac: float = 0.5,
    target_far: float = 0.01,
    amplitudes: tuple[float, ...] = DEFAULT_AMPLITUDES,
    knock_peak: float = 8.0,
    bearing: dict[str, float] | None = None,
    include_trained: bool = False,
    inferences_per_hour: float | None = None,
    sensor_rate_hz: float | None = None,
    physics: ImpactPhysics = DEFAULT_PHYSICS,
    seed: int = 0,
    vote: Vote | None = None,
    segments: int | None = 1,
    bearing_resonance_hz: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """``vote``: the k-of-n (and duty cycle) the knocks are voted with (``evaluate --bundle``); None: the
    shipped example bundle's (``false_alarms.bundle_vote``). ``inferences_per_hour``: None, the vote's."""
    from vibration_anomaly.model.baselines import make_baselines
    from vibration_anomaly.model.fused import FUSED, FusedMethod

    rng = np.random.default_rng(seed)
    records = load_dataset(data_dir, bearing)
    trained = {m.split("@")[0] for m in files.meta.get("training", {}).get("real_machines", [])}
    dname = Path(data_dir).resolve().name
    skip = (
        {m.split("/", 1)[1] for m in trained if m.split("/", 1)[0] == dname} if not include_trained else set()
    )
    min_samples = int(files.meta.get("frontend", {}).get("min_samples", 256))
    machines = [
        x
        for x in lab_machines(records, window_s, cal_frac, skip, min_samples, sensor_rate_hz)
        if len(x[0].held) >= 4
    ]
    if not machines:
        raise InputError(str(data_dir), "machines", "no machine with 4 held-out healthy windows or more")
    vote = vote or bundle_vote()
    k, n, vote_source = vote.k, vote.n, vote.source
    if inferences_per_hour is None:
        inferences_per_hour = vote.inferences_per_hour
    method = ModelMethod(files, infer, target_far, segments)
    fused = FusedMethod(files, infer, target_far, segments=segments, resonance_hz=bearing_resonance_hz)
    raw: dict[str, dict[str, list[np.ndarray]]] = {}
    alarms: dict[str, int] = {}
    drawn: list[tuple[float | None, float | None]] = []
    used: list[MachineData] = []
    for i, (lab, sm, n_out) in enumerate(machines):
        sys.stderr.write(f"\rsensitivity: machine {i}/{len(machines)}   ")
        sys.stderr.flush()
        rms = np.sqrt(((lab.cal - lab.cal.mean(axis=1, keepdims=True)) ** 2).mean(axis=(0, 1)))
        sets = {"clean": lab.held}
        for a in amplitudes:
            sets[f"{a:g}"] = inject(lab, lab.held, a, rms, rng, physics, drawn)
        sets["knock"] = add_knocks(lab, lab.held, knock_peak, rms, rng, sm.margin()[0] if sm else 0)
        if sm is not None:
            sets = {key: sm.windows(w) for key, w in sets.items()}
            md = replace(lab, fs_hz=sm.fs_out_hz, window=n_out, cal=sm.windows(lab.cal), held=sets["clean"])
            md.faulty = {}
        else:
            md = lab
        used.append(md)
        fcal = method.feats(md.cal, md.fs_hz)
        cal = method.calibrate(md, fcal)
        fe = {key: method.feats(w, md.fs_hz) for key, w in sets.items()}
        for key in sets:
            raw.setdefault("model", {}).setdefault(key, []).append(method.ratio(cal, fe[key]))
        alone = {key: raw["model"][key][-1] for key in sets}
        for key, v in fused.ratios(md, fcal, fe, sets, alone).items():
            raw.setdefault(FUSED, {}).setdefault(key, []).append(v)
        for bname, bl in make_baselines([default_defect_hz(lab)], seed, md.fs_hz).items():
            for key, v in baseline_ratios(bname, bl, md, sets, target_far).items():
                raw.setdefault(bname, {}).setdefault(key, []).append(v)
        for mname in raw:
            kr = raw[mname]["knock"][-1]  # a window the robot would not score (NaN) is not voted
            alarms[mname] = alarms.get(mname, 0) + len(voted_alarms(kr[~np.isnan(kr)] > 1, k, n))
    sys.stderr.write(f"\rsensitivity: machine {len(machines)}/{len(machines)}\n")
    if not fused.orders_known:
        del raw[FUSED]
    out: dict[str, Any] = {"methods": {}}
    for mname, d in raw.items():
        clean_all = np.concatenate(d["clean"])
        ladder = {}
        smallest = None
        for a in amplitudes:
            raw_inj = np.concatenate(d[f"{a:g}"])
            inj = scored_or_zero(raw_inj)  # recall: a window the robot would not score is not detected
            au = _auroc(clean_all[~np.isnan(clean_all)], raw_inj[~np.isnan(raw_inj)])  # the scored ones
            ladder[f"{a:g}"] = {"auroc": round(au, 4), "recall": round(float((inj > 1).mean()), 4)}
            if np.isnan(raw_inj).any():
                ladder[f"{a:g}"]["not_scored"] = round(float(np.isnan(raw_inj).mean()), 4)
            if smallest is None and au >= DETECT_AUROC:
                smallest = a
        kn = np.concatenate(d["knock"])
        kn_scored = kn[~np.isnan(kn)]
        clean_scored = clean_all[~np.isnan(clean_all)]
        p_clean = float((clean_scored > 1).mean()) if len(clean_scored) else 0.0
        p_knock = float((kn_scored > 1).mean()) if len(kn_scored) else 0.0
        scored_frac = len(kn_scored) / max(len(kn), 1)
        out["methods"][mname] = {
            "ladder": ladder,
            "smallest_detected_amplitude": smallest,
            "heldout_false_alarm_rate": round(p_clean, 4),
            "knock_window_exceedance_rate": round(float((np.nan_to_num(kn) > 1).mean()), 4),
            "knock_windows_not_scored": round(1.0 - scored_frac, 4),
            "knock_alarms_after_voting": alarms.get(mname, 0),
            "false_alarms_per_month_clean": round(
                false_alarms_per_month(p_clean, k, n, inferences_per_hour), 4
            ),
            "false_alarms_per_month_every_window_knocked": round(
                false_alarms_per_month(p_knock, k, n, inferences_per_hour * scored_frac), 4
            ),
        }
    res_f = [f for f, _ in drawn]
    out["setup"] = {
        "window_s": {md.name: round(md.window / md.fs_hz, 6) for md in used},
        "target_far": target_far,
        "amplitudes": list(amplitudes),
        "amplitude_definition": "resonance impact peak / healthy broadband RMS of the channel at the "
        "recording's rate (channel 0 injected)",
        "injection": {
            "at": "recording rate, before the sensor model",
            "resonance_hz": list(physics.resonance_hz),
            "zeta_resonance": physics.zeta_resonance,
            "mode_hz": list(physics.mode_hz),
            "zeta_mode": physics.zeta_mode,
            "mode_peak": "f_mode / f_resonance of the resonance peak (impulse, equal modal mass)",
            "windows_with_resonance": round(sum(f is not None for f in res_f) / max(len(res_f), 1), 4),
            "knock_modes_hz": list(KNOCK_HZ),
        },
        "sensor": machines[0][1].describe() if machines[0][1] is not None else None,
        "knock_peak": knock_peak,
        "voting": {"k": k, "n": n, "from": vote_source},
        "inferences_per_hour": inferences_per_hour,
        "machines": [md.name for md in used],
        "skipped_trained_machines": sorted(skip),
        "calibration_windows": int(sum(len(md.cal) for md in used)),
        "heldout_windows": int(sum(len(md.held) for md in used)),
        "detect_auroc": DETECT_AUROC,
        "fusion": fused.summary() if FUSED in raw else None,
        "defect_hz": {lab.name: round(default_defect_hz(lab), 2) for lab, _, _ in machines},
    }
    return out
