"""Calibration fit / save / load and the Scorer over the real ONNX Runtime engine and shipped model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vibration_anomaly.core.calibration import Calibration, calibrate, threshold_from_scores
from vibration_anomaly.core.scoring import Scorer
from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
from vibration_anomaly.errors import InputError
from vibration_anomaly.model import load_default_model
from vibration_anomaly.model.synth import defect_impacts, healthy_signal, knock, random_machine

FS = 1000.0
N = 5000


@pytest.fixture(scope="module")
def robot() -> tuple[object, object, object, np.random.Generator]:
    files = load_default_model()
    eng = OnnxRuntimeEngine(intra_op_threads=1)
    eng.load(files.onnx)
    eng.wake()
    rng = np.random.default_rng(7)
    spec = random_machine(rng, FS, 3)
    yield files, eng, spec, rng
    eng.unload()


def test_robot_imu_calibrate_and_score(robot: tuple, tmp_path: Path) -> None:
    files, eng, spec, rng = robot
    fr = files.frontend()
    cal = calibrate(eng, fr, [healthy_signal(rng, spec, N) for _ in range(24)], FS, prior_std=files.prior_std)
    assert cal.n_channels == 3 and cal.threshold > 0 and cal.window_samples == N
    sc = Scorer(eng, fr, cal)
    healthy = np.array([sc.score(healthy_signal(rng, spec, N), FS) for _ in range(12)])
    faulty = []
    for _ in range(6):
        w = healthy_signal(rng, spec, N)
        w[:, 0] += defect_impacts(rng, FS, N, 41.0, 260.0, 3.0 * w[:, 0].std())
        faulty.append(sc.score(w, FS))
    assert np.median(healthy) < cal.threshold
    assert min(faulty) > cal.threshold
    # A knock in an otherwise healthy window stays below a defect.
    w = healthy_signal(rng, spec, N)
    w[:, 1] += knock(rng, FS, N, 8.0 * w[:, 1].std())
    assert sc.score(w, FS) < min(faulty)
    v = sc.score_window(healthy_signal(rng, spec, N), FS)
    assert cal.segments == 1 and "segments" not in cal.extra  # scored whole unless asked
    assert len(v.channel_scores) == 3 and v.score == max(v.channel_scores)
    # Asked (calibrate --segments auto), a 5 s window is scored as 5 segments of 1 s: the window's score
    # is the second lowest of its segments' worst-channel scores; each channel's, the same per channel.
    windows = [healthy_signal(rng, spec, N) for _ in range(12)]
    cal = calibrate(eng, fr, windows, FS, prior_std=files.prior_std, segments=None)
    assert cal.segments == 5 and cal.extra["segments"] == 5
    sc = Scorer(eng, fr, cal)
    w = healthy_signal(rng, spec, N)
    v = sc.score_window(w, FS)
    seg = sc.segment_scores(w, FS)
    assert seg.shape == (5, 3)
    assert v.score == pytest.approx(np.sort(seg.max(axis=1))[1])
    assert np.allclose(v.channel_scores, np.sort(seg, axis=0)[1]) and max(v.channel_scores) <= v.score + 1e-12
    windows = [healthy_signal(rng, spec, N) for _ in range(3)]
    batch = sc.score_batch(windows, FS)
    assert batch.shape == (3,) and np.allclose(batch, [sc.score(x, FS) for x in windows], rtol=1e-5)

    p = tmp_path / "cal.json"
    cal.save(p)
    back = Calibration.load(p)
    assert back.threshold == pytest.approx(cal.threshold)
    np.testing.assert_allclose(back.std, cal.std, rtol=1e-5)
    w = healthy_signal(rng, spec, N)
    assert Scorer(eng, fr, back).score(w, FS) == pytest.approx(sc.score(w, FS), rel=1e-4)

    with pytest.raises(InputError) as ei:
        sc.score(np.zeros((N, 1)) + rng.standard_normal((N, 1)), FS)
    assert ei.value.field == "features.shape"
    with pytest.raises(InputError) as ei:
        sc.score(healthy_signal(rng, spec, N), 2000.0)
    assert ei.value.field == "fs_hz"


def test_load_rejects_bad_files(tmp_path: Path) -> None:
    p = tmp_path / "c.json"
    p.write_text("{not json")
    with pytest.raises(InputError):
        Calibration.load(p)
    p.write_text(
        json.dumps(
            {
                "version": 1,
                "mean": [[[0.0]]],
                "std": [[[0.0]]],
                "threshold": 1,
                "fs_hz": 1,
                "window_samples": 1,
            }
        )
    )
    with pytest.raises(InputError) as ei:
        Calibration.load(p)
    assert ei.value.field == "mean/std"
    with pytest.raises(InputError):
        Calibration.load(tmp_path / "missing.json")


def test_threshold_quantiles() -> None:
    rng = np.random.default_rng(0)
    s = np.exp(rng.standard_normal(20000))
    thr, how = threshold_from_scores(s, 0.01)
    assert how == "empirical quantile"
    fresh = np.exp(rng.standard_normal(20000))
    assert (fresh > thr).mean() == pytest.approx(0.01, abs=0.004)
    thr_small, how_small = threshold_from_scores(s[:12], 0.01)
    assert how_small == "lognormal extrapolation" and thr_small >= s[:12].max()


def test_a_short_calibration_holds_its_target_on_new_healthy_windows() -> None:
    """Healthy log-scores Gaussian, thresholds fitted on n of them, the false-alarm rate of each threshold
    on new windows averaged over 4000 calibrations. The plug-in quantile (mean + z sd) gives 1.7 % at
    n = 20 and 2.3 % at n = 12 for a 1 % target; the prediction bound holds it (at most 1 %: the largest
    calibration score can only raise it)."""
    import math

    from vibration_anomaly.core.calibration.fit import _norm_ppf, _t_ppf

    rng = np.random.default_rng(5)
    for n, target in ((12, 0.01), (20, 0.01), (40, 0.005)):
        rates, plug_in = [], []
        for _ in range(4000):
            ls = rng.standard_normal(n)
            thr, how = threshold_from_scores(np.exp(ls), target)
            assert how == "lognormal extrapolation"
            rates.append(0.5 * math.erfc(math.log(thr) / math.sqrt(2)))
            naive = ls.mean() + _norm_ppf(1 - target) * ls.std(ddof=1)
            plug_in.append(0.5 * math.erfc(naive / math.sqrt(2)))
        assert 0.8 * target <= float(np.mean(rates)) <= 1.05 * target, (n, np.mean(rates))
        assert float(np.mean(plug_in)) > 1.4 * target, (n, np.mean(plug_in))  # what it replaced
    assert abs(_t_ppf(0.99, 19) - 2.5395) < 1e-3 and abs(_t_ppf(0.995, 5) - 4.0321) < 5e-3


def test_a_calibration_holds_its_target_when_the_healthy_level_moves_between_periods() -> None:
    """The healthy log-score level of the period after a calibration sits sd 0.2 from the calibration's, as
    on FEMTO's bearings (docs/MODEL.md "Thresholds from few windows"). The prediction bound for i.i.d.
    windows is exceeded more often than its target there; with the drift term it holds the target."""
    import math

    rng = np.random.default_rng(11)
    n, target, drift, within = 20, 0.01, 0.2, 0.4
    iid, with_drift = [], []
    for _ in range(4000):
        ls = rng.normal(0.0, within, n)  # the calibration period, its level at 0
        later = rng.normal(0.0, drift)  # the next period's level
        for thr_list, d in ((iid, 0.0), (with_drift, drift)):
            thr, _ = threshold_from_scores(np.exp(ls), target, drift_log_sd=d)
            thr_list.append(0.5 * math.erfc((math.log(thr) - later) / (within * math.sqrt(2))))
    assert float(np.mean(iid)) > 1.5 * target, np.mean(iid)  # what the drift term is for
    assert 0.7 * target <= float(np.mean(with_drift)) <= 1.1 * target, np.mean(with_drift)


def test_the_model_calibration_adds_the_drift_term_and_records_it() -> None:
    """``calibrate_features`` (the model's calibration, on the robot and in evaluate) fits its threshold
    with ``SCORE_DRIFT_LOG_SD`` by default: the same windows with the term off give a lower one."""
    from vibration_anomaly.core.calibration import calibrate_features
    from vibration_anomaly.core.calibration.fit import SCORE_DRIFT_LOG_SD

    f = np.random.default_rng(2).standard_normal((24, 1, 3, 4))

    def score(z: np.ndarray) -> np.ndarray:
        return np.exp(0.5 * z.reshape(len(z), -1).mean(axis=1))

    shipped = calibrate_features(score, f, fs_hz=1000.0, window_samples=256)
    iid = calibrate_features(score, f, fs_hz=1000.0, window_samples=256, drift_log_sd=0.0)
    assert SCORE_DRIFT_LOG_SD > 0 and shipped.extra["score_drift_log_sd"] == SCORE_DRIFT_LOG_SD
    assert f"score drift {SCORE_DRIFT_LOG_SD:g}" in shipped.method and "score drift" not in iid.method
    assert shipped.threshold > 1.05 * iid.threshold, (shipped.threshold, iid.threshold)


def test_drift_prior_widens_the_std_in_quadrature() -> None:
    from vibration_anomaly.core.calibration import fit_normalisation

    rng = np.random.default_rng(1)
    f = rng.standard_normal((40, 2, 3, 4)) * 0.1
    prior = np.full((3, 4), 0.1)
    drift = np.zeros((3, 4))
    drift[:, 0] = 0.3  # only the energy feature drifts
    _, sd0 = fit_normalisation(f, prior, 8.0)
    mu, sd1 = fit_normalisation(f, prior, 8.0, drift_std=drift)
    np.testing.assert_allclose(sd1[..., 0], np.sqrt(sd0[..., 0] ** 2 + 0.09))
    np.testing.assert_allclose(sd1[..., 1:], sd0[..., 1:])
    np.testing.assert_allclose(mu, f.mean(axis=0))


def test_shipped_model_carries_its_drift_prior() -> None:
    files = load_default_model()
    d = files.drift_std
    assert d is not None and d.shape == files.prior_std.shape and np.all(d >= 0)


def test_segments_of_a_six_axis_window_score_as_if_each_were_scored_alone(robot: tuple) -> None:
    """The scorer hands the frontend the segments side by side as channels, at most 16 a call."""
    from vibration_anomaly.core.calibration.segments import split_segments

    files, eng, spec, rng = robot
    fr = files.frontend()

    def six() -> np.ndarray:
        return np.concatenate([healthy_signal(rng, spec, N), healthy_signal(rng, spec, N)], axis=1)

    cal = calibrate(eng, fr, [six() for _ in range(8)], FS, prior_std=files.prior_std, segments=None)
    assert cal.segments == 5 and cal.n_channels == 6
    w = six()
    got = Scorer(eng, fr, cal).segment_scores(w, FS)
    alone = [eng.infer(cal.normalise(fr(s, FS))) for s in split_segments(w[None], 5)]
    assert got.shape == (5, 6) and np.allclose(got, np.stack(alone), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [0, -1, 2.5, "5", True, 65, 2000])
def test_a_bad_segments_record_is_refused_by_name(robot: tuple, bad: object) -> None:
    from vibration_anomaly.errors import InputError

    files, eng, spec, rng = robot
    cal = calibrate(eng, files.frontend(), [healthy_signal(rng, spec, N) for _ in range(6)], FS)
    d = cal.to_dict()
    d["extra"]["segments"] = bad  # 2000 segments of a 5000-sample window leave 2 samples each
    with pytest.raises(InputError, match=r"extra\.segments"):
        Calibration.from_dict(d, "robot.json")
    d["extra"]["segments"] = 5
    assert Calibration.from_dict(d, "robot.json").segments == 5
