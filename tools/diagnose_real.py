"""The alarm's diagnosis (core.diagnosis) on real recordings with known bearings: how often is it right?

    PYTHONPATH=. python tools/diagnose_real.py --cwru ../shared/data/cwru [--rate 3200] [--json out.json]
    PYTHONPATH=. python tools/diagnose_real.py --femto ../shared/data/femto --window 1
    PYTHONPATH=. python tools/diagnose_real.py --noise 400
    ... --keep-tones: without the tone removal (core.envelope.tone_free_spectrum), for comparison

CWRU: every record cut into 5 s windows (the robot's sample window); each window's drive-end channel
(where the seeded fault is) diagnosed with the recorded rpm and the SKF 6205 geometry (9 balls, 0.3126 in
on 1.537 in), as a robot would be told them. ``--rate`` first resamples with an anti-aliasing filter
(scipy's resample_poly) to a robot sensor's rate. Prints the confusion counts, labelled condition
(rows) against the named location (columns). FEMTO: the damaged part is not documented, so only the
locations named on its degraded and healthy records are counted. ``--noise N``: N white-noise windows
(1 kHz, 5 s, shaft 20-39 Hz) with the CWRU geometry, at the shipped factor and at 10x, to show the
factor's false namings.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from vibration_anomaly.bundle.bearing import orders_from_geometry
from vibration_anomaly.core import diagnosis, envelope
from vibration_anomaly.core.events import LOCATIONS
from vibration_anomaly.model.data import load_dataset

WINDOW_S = 5.0
CWRU_6205 = orders_from_geometry(9, 0.3126, 1.537)
FEMTO = orders_from_geometry(13, 3.5, 25.6)


def _windows(x: np.ndarray, fs: float, window_s: float = WINDOW_S) -> list[np.ndarray]:
    n = int(window_s * fs)
    if len(x) < n:
        return [x] if len(x) >= 0.9 * n else []
    return [x[i : i + n] for i in range(0, len(x) - n + 1, n)]


def _resample(x: np.ndarray, fs: float, rate: float | None) -> tuple[np.ndarray, float]:
    if not rate or rate == fs:
        return x, fs
    from fractions import Fraction

    from scipy.signal import resample_poly

    f = Fraction(rate / fs).limit_denominator(1000)
    return resample_poly(x, f.numerator, f.denominator), fs * f.numerator / f.denominator


def run(
    data: str, orders: dict[str, float], rate: float | None, channel: int, window_s: float = WINDOW_S
) -> dict[str, dict[str, int]]:
    table: dict[str, Counter[str]] = {}
    for rec in load_dataset(data):
        shaft = rec.shaft_hz()
        x, fs = _resample(rec.signal[:, channel], rec.fs_hz, rate)
        for w in _windows(x, fs, window_s):
            d = diagnosis.locate(w, fs, shaft, orders)
            table.setdefault(rec.condition, Counter())[d.location] += 1
    return {cond: {loc: int(c[loc]) for loc in LOCATIONS} for cond, c in sorted(table.items())}


def noise(n: int) -> dict[str, dict[str, int]]:
    out = {}
    for factor in (diagnosis.FACTOR, 10.0):
        saved, diagnosis.FACTOR = diagnosis.FACTOR, factor
        try:
            c: Counter[str] = Counter()
            for seed in range(n):
                rng = np.random.default_rng(1000 + seed)
                c[
                    diagnosis.locate(rng.standard_normal(5000), 1000.0, 20.0 + seed % 20, CWRU_6205).location
                ] += 1
        finally:
            diagnosis.FACTOR = saved
        out[f"factor {factor:g}"] = {loc: int(c[loc]) for loc in LOCATIONS}
    return out


def _print(title: str, table: dict[str, dict[str, int]]) -> None:
    print(title)
    print(f"  {'':14s}" + "".join(f"{loc:>12s}" for loc in LOCATIONS))
    for row, counts in table.items():
        print(f"  {row:14s}" + "".join(f"{counts[loc]:12d}" for loc in LOCATIONS))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cwru")
    p.add_argument("--femto")
    p.add_argument("--noise", type=int, default=0)
    p.add_argument("--rate", type=float, help="resample to this sensor rate first (anti-aliased)")
    p.add_argument("--channel", type=int, default=0, help="0 = de (drive end / horizontal), 1 = fe")
    p.add_argument(
        "--window", type=float, default=WINDOW_S, help="window seconds (FEMTO's degraded records: 1 s)"
    )
    p.add_argument("--keep-tones", action="store_true", help="skip the tone removal (for comparison)")
    p.add_argument("--json")
    a = p.parse_args(argv)
    if a.keep_tones:
        envelope.TONE_FACTOR = float("inf")  # read by core.envelope.tone_free_spectrum at each call
    results: dict[str, dict[str, dict[str, int]]] = {}
    suffix = f" at {a.rate:g} Hz" if a.rate else ""
    if a.cwru:
        results["cwru"] = run(a.cwru, CWRU_6205, a.rate, a.channel, a.window)
        _print(f"CWRU, {a.window:g} s windows{suffix}: condition (rows) vs named location", results["cwru"])
    if a.femto:
        results["femto"] = run(a.femto, FEMTO, a.rate, a.channel, a.window)
        _print(f"FEMTO, {a.window:g} s windows{suffix}: condition (rows) vs named location", results["femto"])
    if a.noise:
        results["noise"] = noise(a.noise)
        _print(f"{a.noise} white-noise windows (1 kHz, 5 s)", results["noise"])
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0 if results else 2


if __name__ == "__main__":
    sys.exit(main())
