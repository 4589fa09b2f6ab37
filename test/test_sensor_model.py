"""The sensor model of evaluation (issue 16): anti-aliased resampling, physical injection, evaluate --sensor-rate.

Real scipy, real ONNX Runtime, real FEMTO records (one held-out bearing; skipped
where ../shared/data is absent).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from eval_testkit import femto_subset, run_cli

from vibration_anomaly.errors import InputError
from vibration_anomaly.model.data import Record
from vibration_anomaly.model.sensor_model import SensorModel, sensor_for, sensor_records
from vibration_anomaly.model.synth import ImpactPhysics, physical_defect, physical_knock

RATES = [(25600.0, 1000.0), (25600.0, 3200.0), (25600.0, 6600.0), (12000.0, 1000.0), (51200.0, 6600.0)]


def _tone(fs: float, f: float, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(fs * seconds)) / fs
    return np.sin(2 * np.pi * f * t + 0.3)


def _amp(y: np.ndarray, trim: int = 100) -> float:
    return float(np.sqrt(2) * y[trim:-trim].std())


@pytest.mark.parametrize(("fs", "rate"), RATES)
def test_tone_in_band_keeps_its_amplitude_and_above_nyquist_is_40db_down(fs: float, rate: float) -> None:
    sm = sensor_for(fs, rate)
    assert sm.fs_out_hz == pytest.approx(rate)
    for frac in (0.05, 0.2, 0.35, 0.4):  # up to the passband edge
        assert _amp(sm.apply(_tone(fs, frac * rate))) == pytest.approx(1.0, rel=0.01), frac
    for frac in (0.5, 0.55, 0.7, 0.95, 2.3):  # from the output Nyquist on: would alias into the band
        assert _amp(sm.apply(_tone(fs, frac * rate))) < 0.01, frac  # >= 40 dB down


def test_lengths_and_windows_with_margins_equal_the_continuous_resampling() -> None:
    fs, rate = 25600.0, 1000.0
    sm = sensor_for(fs, rate)
    assert (sm.up, sm.down) == (5, 128)
    x = np.random.default_rng(0).standard_normal((51200, 2))
    y = sm.apply(x)
    assert y.shape == (2000, 2)
    assert sm.apply(x[:1001]).shape == (-(-1001 * 5 // 128), 2)
    n_lab, n_out = sm.window_lengths(256)
    assert n_out == 260 and n_out % sm.up == 0  # rounded up to whole resampler steps
    m_in, m_out = sm.margin()
    assert (n_lab - 2 * m_in) * sm.up == n_out * sm.down
    starts = [0, n_lab, 3 * n_lab]
    w = np.stack([x[s : s + n_lab] for s in starts])
    ws = sm.windows(w)
    assert ws.shape == (3, n_out, 2)
    for i, s in enumerate(starts):
        o = (s + m_in) * sm.up // sm.down
        ref = y[o : o + n_out]
        assert np.abs(ws[i] - ref).max() < 1e-3 * ref.std(), "margins must keep the filter transient out"


def test_refusals_name_the_rate_and_the_record() -> None:
    with pytest.raises(InputError, match="--sensor-rate.*at or above"):
        sensor_for(25600.0, 25600.0)
    with pytest.raises(InputError, match="--sensor-rate.*at or above"):
        sensor_for(1000.0, 3200.0)
    with pytest.raises(InputError, match="--sensor-rate"):
        sensor_for(25600.0, float("nan"))
    rec = Record("normal_M.npz", "normal", 25600.0, np.zeros((25600 * 8, 1)), ("M",))
    with pytest.raises(InputError, match="--sensor-rate.*at or above normal_M.npz"):
        sensor_records([rec], 51200.0, 256, 8)
    with pytest.raises(InputError, match=r"--sensor-rate.*8 windows of at least 256.*256 Hz or more"):
        sensor_records([rec], 200.0, 256, 8)  # 8 s at 200 Hz: 1600 samples < 8 x 256
    (ok,) = sensor_records([rec], 300.0, 256, 8)
    assert ok.fs_hz == pytest.approx(300.0) and ok.signal.shape == (2400, 1)


def _peak_hz(x: np.ndarray, fs: float, lo: float = 0.0) -> float:
    f = np.fft.rfftfreq(len(x), 1 / fs)
    s = np.abs(np.fft.rfft(x)) ** 2
    s[f < lo] = 0
    return float(f[s.argmax()])


def test_physical_defect_rings_where_stated_and_the_sensor_decides_what_survives() -> None:
    fs, n = 25600.0, 25600
    rng = np.random.default_rng(3)
    ph = ImpactPhysics(resonance_hz=(2000.0, 2100.0), mode_hz=(200.0, 210.0))
    x, f_res, f_mode = physical_defect(rng, fs, n, 150.0, 1.0, ph)
    assert f_res is not None and 2000 <= f_res <= 2100 and f_mode is not None and 200 <= f_mode <= 210
    assert abs(_peak_hz(x, fs, lo=1000) - f_res) < 60  # the resonance is where it was drawn (+-60 Hz)
    assert np.abs(x).max() == pytest.approx(1.0, rel=0.5)
    rng = np.random.default_rng(3)  # the same draws, the resonance alone
    alone, _, _ = physical_defect(
        rng, fs, n, 150.0, 1.0, ImpactPhysics(resonance_hz=(2000.0, 2100.0), mode_hz=(1e5, 2e5))
    )
    # What survives a sensor is the part of the lab spectrum below its band: all of the 2 kHz resonance at
    # 6.6 kHz (passband to 2.64 kHz), only its skirt below
    # 1.28 kHz at 3.2 kHz (an acceleration ring falls as f^2 below its mode), nothing at 1 kHz; the 200 Hz mode whole.
    f = np.fft.rfftfreq(n, 1 / fs)

    def kept_and_bounds(part: np.ndarray, sm: SensorModel) -> tuple[float, float, float]:
        spec = np.abs(np.fft.rfft(part)) ** 2
        k = float((sm.apply(part) ** 2).sum()) * sm.down / sm.up / float((part**2).sum())
        return k, *(float(spec[f < q * sm.fs_out_hz].sum() / spec.sum()) for q in (0.4, 0.5))

    for rate, res_range in ((6600.0, (0.85, 1.0)), (3200.0, (0.0, 0.01)), (1000.0, (0.0, 1e-4))):
        sm = sensor_for(fs, rate)
        k_res, lo_res, hi_res = kept_and_bounds(alone, sm)
        k_mode, lo_mode, hi_mode = kept_and_bounds(x - alone, sm)
        assert res_range[0] < k_res < res_range[1], (rate, k_res)
        assert k_mode > 0.85, (rate, k_mode)
        for k, lo, hi in ((k_res, lo_res, hi_res), (k_mode, lo_mode, hi_mode)):
            if hi > 1e-3:  # what survives is the lab spectrum below the band (0.9: a finite record's ends)
                assert 0.9 * lo <= k <= 1.01 * hi, (rate, k, lo, hi)
    # A recording that cannot carry the resonance (1 kHz) gets the low mode only.
    y, f_res, f_mode = physical_defect(np.random.default_rng(1), 1000.0, 2000, 30.0, 1.0)
    assert f_res is None and f_mode is not None and 100 <= f_mode <= 400
    assert np.abs(y).max() < 400 / 3500 * 1.5  # the mode's peak: f_mode / f_resonance of the impact's


def test_physical_knock_has_its_peak_and_stays_in_the_stated_modes() -> None:
    x = physical_knock(np.random.default_rng(0), 25600.0, 5120, 8.0, modes_hz=(300.0, 320.0))
    assert np.abs(x).max() == pytest.approx(8.0)
    assert 250 <= _peak_hz(x, 25600.0) <= 370


@pytest.fixture(scope="module")
def femto_one(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One held-out FEMTO bearing (Bearing1_2: healthy 8 s, degraded 1 s), the shared files linked."""
    return femto_subset(tmp_path_factory.mktemp("femto1"), ("Bearing1_2",))


def test_evaluate_sensor_rate_on_a_real_bearing(femto_one: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["evaluate", "--data", str(femto_one), "--bearing", "femto", "--json", "--sensitivity"]
    # All injected energy above the 1 kHz sensor's band: nothing gets through, every method at chance.
    argv = base + ["--amplitudes", "5", "--resonance-hz", "2500,4500", "--mode-hz", "1500,2000"]
    assert run_cli(argv + ["--sensor-rate", "1000"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["setup"]["sensor_rate_hz"] == 1000
    assert res["setup"]["window_s"] == {"Bearing1_2": pytest.approx(0.256)}
    s = res["sensitivity"]
    assert s["setup"]["sensor"]["delivered_hz"] == 1000 and s["setup"]["window_s"]["Bearing1_2"] == 0.26
    assert s["setup"]["injection"]["windows_with_resonance"] == 1.0  # injected at 25.6 kHz, then the sensor
    voting = s["setup"][
        "voting"
    ]  # evaluate's vote (--bundle, default the shipped example), as the false alarms'
    assert (voting["k"], voting["n"]) == (4, 6) and voting["from"].startswith("shipped example bundle")
    assert voting["from"] == res["false_alarms"]["vote"]["source"]
    for name, m in s["methods"].items():
        assert 0.3 <= m["ladder"]["5"]["auroc"] <= 0.7, name
    assert res["auroc"] >= 0.9  # the degraded end of life is still far louder in the 1 kHz band
    # The same injection at the recording's own rate: the model sees it.
    assert run_cli(argv) == 0
    lab = json.loads(capsys.readouterr().out)["sensitivity"]
    assert lab["setup"]["sensor"] is None and lab["methods"]["model"]["ladder"]["5"]["auroc"] >= 0.95


def test_sensor_rate_refusal_is_one_line_naming_it(
    femto_one: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["evaluate", "--data", str(femto_one), "--sensor-rate", "30000"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--sensor-rate" in err and "25600" in err and "\n" not in err
    from vibration_anomaly.cli import main  # the option's parser refuses it: argparse's exit 2, one line

    argv = ["evaluate", "--data", str(femto_one), "--sensitivity", "--resonance-hz", "4500,2500"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "--resonance-hz" in err and "LO < HI" in err and "\n" not in err


def test_envelope_baseline_only_where_the_sensor_can_show_the_defect_frequency() -> None:
    from vibration_anomaly.model.baselines import make_baselines

    assert "envelope" in make_baselines([168.0], 0, 1000.0)
    assert "envelope" not in make_baselines([168.0], 0, 300.0)  # 168 Hz is above a 300 Hz sensor's Nyquist
    assert "envelope" in make_baselines([168.0, 140.0], 0, 300.0)
