"""How small a fault can it see on my machine? Injected incipient defects and knocks on held-out healthy data.

For every machine (see ``evaluate``): calibrate the model and every baseline
on the first part of its healthy windows; take the held-out healthy windows;
inject outer-race defect impacts (``synth.defect_impacts``: a decaying
resonance per ball pass, slip jitter 1.5 %, damping 5 %) into channel 0 at a
ladder of amplitudes, the impact peak being ``amplitude x`` the channel's
healthy RMS (measured on the calibration windows). The resonance is drawn per
window uniformly in [0.3, 0.8] of the analysis band top (min(fs/2, 12.8 kHz));
the defect frequency is the machine's BPFO when its geometry and speed are
known, else ``clip(fs / 100, 5, 200)`` Hz. AUROC is held-out clean vs the same
windows injected; recall is at the calibrated threshold.

Knocks: one broadband transient per held-out window (peak ``knock_peak`` x
healthy RMS, several resonances, fast decay). The per-window exceedance rate
on knocked windows, and the alarms raised by the k-of-n voter when every
window carries a knock, are reported, with the expected false alarms per
robot-month at ``inferences_per_hour`` (30-day month, windows independent).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from vibration_anomaly.core.scoring import AlarmVoter, false_alarms_per_month
from vibration_anomaly.model import ModelFiles
from vibration_anomaly.model.data import load_dataset
from vibration_anomaly.model.evaluate import (
    MachineData,
    ModelMethod,
    _auroc,
    baseline_ratios,
    split_machines,
)
from vibration_anomaly.model.frontend import FrontendConfig
from vibration_anomaly.model.synth import defect_impacts, knock

DEFAULT_AMPLITUDES: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0, 5.0)
DETECT_AUROC = 0.95


def default_defect_hz(md: MachineData) -> float:
    return md.bpfo_hz if md.bpfo_hz else float(np.clip(md.fs_hz / 100, 5, 200))


def inject(
    md: MachineData, windows: np.ndarray, amp: float, rms: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    out = windows.copy()
    top = min(md.fs_hz / 2, FrontendConfig().max_analysis_hz)
    fd = default_defect_hz(md)
    for i in range(len(out)):
        fr = float(rng.uniform(0.3, 0.8) * top)
        out[i, :, 0] += defect_impacts(rng, md.fs_hz, out.shape[1], fd, fr, amp * rms[0])
    return out


def add_knocks(
    md: MachineData, windows: np.ndarray, peak: float, rms: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    out = windows.copy()
    for i in range(len(out)):
        for c in range(out.shape[2]):
            out[i, :, c] += knock(rng, md.fs_hz, out.shape[1], peak * rms[c])
    return out


def sensitivity(
    data_dir: str,
    files: ModelFiles,
    infer: Any,
    *,
    window_s: float = 0.2,
    cal_frac: float = 0.5,
    target_far: float = 0.01,
    amplitudes: tuple[float, ...] = DEFAULT_AMPLITUDES,
    knock_peak: float = 8.0,
    bearing: dict[str, float] | None = None,
    include_trained: bool = False,
    inferences_per_hour: float = 60.0,
    seed: int = 0,
) -> dict[str, Any]:
    from pathlib import Path

    from vibration_anomaly.model.baselines import make_baselines

    rng = np.random.default_rng(seed)
    records = load_dataset(data_dir, bearing)
    trained = {m.split("@")[0] for m in files.meta.get("training", {}).get("real_machines", [])}
    dname = Path(data_dir).resolve().name
    skip = (
        {m.split("/", 1)[1] for m in trained if m.split("/", 1)[0] == dname} if not include_trained else set()
    )
    machines = [md for md in split_machines(records, window_s, cal_frac, skip) if len(md.held) >= 4]
    if not machines:
        raise ValueError(f"{data_dir}: no machine with held-out healthy windows")
    k, n = files.voting
    method = ModelMethod(files, infer, target_far)
    raw: dict[str, dict[str, list[np.ndarray]]] = {}
    alarms: dict[str, int] = {}
    steps = 0
    for i, md in enumerate(machines):
        sys.stderr.write(f"\rsensitivity: machine {i}/{len(machines)}   ")
        sys.stderr.flush()
        rms = np.sqrt(((md.cal - md.cal.mean(axis=1, keepdims=True)) ** 2).mean(axis=(0, 1)))
        sets = {"clean": md.held}
        for a in amplitudes:
            sets[f"{a:g}"] = inject(md, md.held, a, rms, rng)
        sets["knock"] = add_knocks(md, md.held, knock_peak, rms, rng)
        cal = method.calibrate(md, method.feats(md.cal, md.fs_hz))
        for key, w in sets.items():
            raw.setdefault("model", {}).setdefault(key, []).append(
                method.ratio(cal, method.feats(w, md.fs_hz))
            )
        defect = [default_defect_hz(md)]
        for bname, bl in make_baselines(defect, seed).items():
            for key, v in baseline_ratios(bname, bl, md, sets, target_far).items():
                raw.setdefault(bname, {}).setdefault(key, []).append(v)
        steps += len(md.held)
        for mname in raw:
            voter = AlarmVoter(k, n)
            for above in raw[mname]["knock"][-1] > 1:
                if voter.update(bool(above)):
                    alarms[mname] = alarms.get(mname, 0) + 1
                    voter.reset()
    sys.stderr.write(f"\rsensitivity: machine {len(machines)}/{len(machines)}\n")
    out: dict[str, Any] = {"methods": {}}
    for mname, d in raw.items():
        clean = np.concatenate(d["clean"])
        ladder = {}
        smallest = None
        for a in amplitudes:
            inj = np.concatenate(d[f"{a:g}"])
            au = _auroc(clean, inj)
            ladder[f"{a:g}"] = {"auroc": round(au, 4), "recall": round(float((inj > 1).mean()), 4)}
            if smallest is None and au >= DETECT_AUROC:
                smallest = a
        kn = np.concatenate(d["knock"])
        p_clean = float((clean > 1).mean())
        p_knock = float((kn > 1).mean())
        out["methods"][mname] = {
            "ladder": ladder,
            "smallest_detected_amplitude": smallest,
            "heldout_false_alarm_rate": round(p_clean, 4),
            "knock_window_exceedance_rate": round(p_knock, 4),
            "knock_alarms_after_voting": alarms.get(mname, 0),
            "false_alarms_per_month_clean": round(
                false_alarms_per_month(p_clean, k, n, inferences_per_hour), 4
            ),
            "false_alarms_per_month_every_window_knocked": round(
                false_alarms_per_month(p_knock, k, n, inferences_per_hour), 4
            ),
        }
    out["setup"] = {
        "window_s": window_s,
        "target_far": target_far,
        "amplitudes": list(amplitudes),
        "amplitude_definition": "impact peak / healthy broadband RMS of the channel (channel 0 injected)",
        "knock_peak": knock_peak,
        "voting": {"k": k, "n": n},
        "inferences_per_hour": inferences_per_hour,
        "machines": [md.name for md in machines],
        "skipped_trained_machines": sorted(skip),
        "heldout_windows": int(sum(len(md.held) for md in machines)),
        "detect_auroc": DETECT_AUROC,
        "defect_hz": {md.name: round(default_defect_hz(md), 2) for md in machines},
    }
    return out
