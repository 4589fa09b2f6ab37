"""The shipped score counts only excess: a machine that gets quieter (run-in) does not alarm, a fault still does.

Physics behind it (see ``model/transformer.py``): bearing faults add energy,
impulsiveness and envelope periodicity; a run-in or damped resonance removes
some. Machines here are generated (``synth.random_machine``), calibrated on
their own healthy stretch, then made 10 dB quieter around a quarter of the
analysis band (a resonance that settled), and, separately, given 3x impacts on
top of that quieter state.
"""

from __future__ import annotations

import numpy as np
import pytest

from vibration_anomaly.core.scoring import AlarmVoter, Scorer
from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
from vibration_anomaly.model import load_default_model
from vibration_anomaly.model.synth import defect_impacts, healthy_signal, random_machine

CASES = [(25600.0, 5120, 2, 4), (1000.0, 4900, 3, 5), (8000.0, 4096, 1, 6)]


def _engine(path: object) -> OnnxRuntimeEngine:
    eng = OnnxRuntimeEngine(intra_op_threads=1)
    eng.load(path)
    eng.wake()
    return eng


@pytest.fixture(scope="module")
def int8() -> OnnxRuntimeEngine:
    eng = _engine(load_default_model().onnx)
    yield eng
    eng.unload()


def quieter(
    window: np.ndarray, fs: float, centre_hz: float, depth_db: float = 10.0, width: float = 0.5
) -> np.ndarray:
    """Attenuate a smooth log-frequency bump (gain <= 1 everywhere): the machine only loses energy."""
    f = np.fft.rfftfreq(len(window), 1.0 / fs)
    lf = np.log(np.maximum(f, 1.0))
    g = 10.0 ** (-depth_db / 20.0 * np.exp(-0.5 * ((lf - np.log(centre_hz)) / width) ** 2))
    return np.fft.irfft(np.fft.rfft(window, axis=0) * g[:, None], n=len(window), axis=0)


def _machine(
    fs: float, n: int, channels: int, seed: int
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    fr = load_default_model().frontend()
    rng = np.random.default_rng(seed)
    spec = random_machine(rng, fs, channels)
    top = min(fs / 2, fr.config.max_analysis_hz)
    cal_w = [healthy_signal(rng, spec, n) for _ in range(20)]
    quiet = [quieter(healthy_signal(rng, spec, n), fs, 0.25 * top) for _ in range(12)]
    faulty = []
    for w in quiet:
        w = w.copy()
        w[:, 0] += defect_impacts(
            rng, fs, n, float(np.clip(fs / 100, 5, 200)), 0.4 * top, 3.0 * w[:, 0].std()
        )
        faulty.append(w)
    return cal_w, quiet, faulty


def _ratios(engine: object, fs: float, cal_w: list[np.ndarray], *sets: list[np.ndarray]) -> list[np.ndarray]:
    files = load_default_model()
    fr = files.frontend()
    cal = files.calibrate(engine, cal_w, fs)
    sc = Scorer(engine, fr, cal)  # type: ignore[arg-type]
    return [sc.score_batch(s, fs) / cal.threshold for s in sets]


def test_shipped_model_is_one_sided() -> None:
    assert load_default_model().meta["model"]["residual"] == "excess"


@pytest.mark.parametrize("which", ["int8", "fp32"])
def test_at_or_below_calibration_everywhere_scores_zero(which: str) -> None:
    files = load_default_model()
    eng = _engine(files.onnx if which == "int8" else files.onnx_fp32)
    try:
        rng = np.random.default_rng(0)
        below = -np.abs(rng.standard_normal((8, 31, 4))).astype(np.float32) * np.float32(3.0)
        below[0] = 0.0
        s_below = eng.infer(below)
        raised = below.copy()
        raised[:, 20, 1:3] = 4.0  # one band more impulsive than healthy, the rest quieter
        s_raised = eng.infer(raised)
    finally:
        eng.unload()
    np.testing.assert_array_equal(s_below, np.zeros(8, dtype=np.float32))
    assert np.all(s_raised > 0.5)


@pytest.mark.parametrize(("fs", "n", "channels", "seed"), CASES)
def test_run_in_does_not_alarm_but_impacts_on_top_do(
    int8: OnnxRuntimeEngine, fs: float, n: int, channels: int, seed: int
) -> None:
    cal_w, quiet, faulty = _machine(fs, n, channels, seed)
    q, f = _ratios(int8, fs, cal_w, quiet, faulty)
    assert (q > 1).sum() <= 1
    voter = AlarmVoter(*load_default_model().voting)
    assert not any(voter.update(bool(a)) for a in q > 1)
    assert (f > 1).mean() >= 0.75


def test_two_sided_head_on_the_same_weights_would_alarm() -> None:
    """The same trained predictor with the v2 two-sided residual exceeds on the quieter machines: the head is the fix.

    At least 6 of 36 quieter windows over with the i.i.d. threshold (asserted until then), 4 since the
    model's calibration adds the score drift term (``SCORE_DRIFT_LOG_SD``, thresholds about 10 % higher);
    the one-sided head: 0 either way."""
    torch = pytest.importorskip("torch")
    from vibration_anomaly.model.transformer import load_trained

    files = load_default_model()

    class _Torch:
        def __init__(self, residual: str) -> None:
            self.m = load_trained(files, residual=residual)  # the same weights, the other score head

        def infer(self, x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return self.m(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy()

    above = {"excess": 0, "two-sided": 0}
    for fs, n, channels, seed in CASES:
        cal_w, quiet, _ = _machine(fs, n, channels, seed)
        for residual in above:
            (q,) = _ratios(_Torch(residual), fs, cal_w, quiet)
            above[residual] += int((q > 1).sum())
    assert above["excess"] <= len(CASES)
    assert above["two-sided"] >= above["excess"] + 3
