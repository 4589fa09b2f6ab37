"""evaluate's ``model+orders`` (model.fused): the model fused with the order score, evaluation only.

Real FEMTO records (one held-out bearing, Bearing1_2: healthy 8 s, degraded 1 s; skipped where
../shared/data is absent), real ONNX Runtime with the shipped model.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eval_testkit import femto_subset

from vibration_anomaly.model.cli_support import model_files, open_engine
from vibration_anomaly.model.data import BEARING_PRESETS
from vibration_anomaly.model.evaluate import ModelMethod, evaluate
from vibration_anomaly.model.fused import FUSED, FusedMethod, calibrate_orders, has_orders, order_scores

BEARING = ("Bearing1_2",)  # healthy 8 s, degraded 1 s


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object, object]:
    files = model_files(None)
    return (
        femto_subset(tmp_path_factory.mktemp("fused") / "femto", BEARING),
        files,
        open_engine(files.onnx_int8),
    )


def test_fused_threshold_split_and_ratio_is_the_max(setup: tuple[Path, object, object]) -> None:
    data, files, eng = setup
    res, raw = evaluate(data, files, eng.infer, bearing=BEARING_PRESETS["femto"])  # type: ignore[attr-defined]
    (md,) = raw["machines"]
    fu = res[FUSED]
    assert (
        fu["fusion"]["machines_with_orders"] == ["Bearing1_2"] and fu["fusion"]["machines_model_only"] == []
    )
    th = fu["fusion"]["per_machine"]["Bearing1_2"]
    assert th["target_far_each"] == pytest.approx(0.005)
    # Each part calibrated at half the target: the model's threshold is at least the full-target one.
    full = ModelMethod(files, eng.infer, 0.01)  # type: ignore[arg-type, attr-defined]
    cal_full = full.calibrate(md, full.feats(md.cal, md.fs_hz))
    half = ModelMethod(files, eng.infer, 0.005)  # type: ignore[arg-type, attr-defined]
    cal_half = half.calibrate(md, half.feats(md.cal, md.fs_hz))
    assert th["model_threshold"] == pytest.approx(cal_half.threshold, rel=1e-5)
    assert cal_half.threshold >= cal_full.threshold
    assert md.shaft_hz == pytest.approx(30.0)
    oc = calibrate_orders(order_scores(md.cal, md.fs_hz, md.shaft_hz, md.orders), 0.005)
    assert oc is not None and th["order_threshold"] == pytest.approx(oc.threshold, rel=1e-5)
    # A window's fused ratio is the larger of the two parts' ratios, on every set.
    for key, w in (("healthy", md.held), ("degraded", md.faulty["degraded"])):
        m = half.ratio(cal_half, half.feats(w, md.fs_hz))
        o = oc.ratio(order_scores(w, md.fs_hz, md.shaft_hz, md.orders))
        assert np.allclose(raw["scores"][FUSED][key], np.maximum(m, o), rtol=1e-5, equal_nan=True), key
        assert (o > 0).all()
    # Coherent numbers beside the model's: the same windows, the product's false-alarm report.
    fa = fu["false_alarms"]["pooled"]
    assert fa["windows"] == res["false_alarms"]["pooled"]["windows"] == len(md.held) - fa["not_scored"]
    assert fa["over_threshold"] == int((raw["scores"][FUSED]["healthy"] > 1).sum())
    assert 0.0 <= fu["auroc"] <= 1.0 and fu["auroc"] >= 0.9  # the degraded end of life is loud
    assert set(fu["per_condition"]) == {"degraded"}


def test_fused_only_with_speed_and_orders(setup: tuple[Path, object, object], tmp_path: Path) -> None:
    data, files, eng = setup
    no_rpm = femto_subset(tmp_path / "norpm", BEARING, blank=("rpm",))
    res, raw = evaluate(no_rpm, files, eng.infer, bearing=BEARING_PRESETS["femto"])  # type: ignore[attr-defined]
    assert FUSED not in res and FUSED not in raw["scores"] and "model" in raw["scores"]
    assert "envelope" not in res["baselines"]  # no speed: neither order-aware method
    (md,) = raw["machines"]
    assert md.shaft_hz is None and not has_orders(md)
    # Speed known but no orders (no --bearing): the machine keeps the model's own ratios, untouched.
    md = replace(md, shaft_hz=30.0, orders={})
    fm = FusedMethod(files, eng.infer, 0.01)  # type: ignore[arg-type, attr-defined]
    alone = {"healthy": raw["scores"]["model"]["healthy"]}
    out = fm.ratios(md, np.zeros((0,)), {}, {"healthy": md.held}, alone)
    assert np.array_equal(out["healthy"], alone["healthy"], equal_nan=True)
    assert fm.machines_model_only == ["Bearing1_2"] and fm.machines_with_orders == []
    assert has_orders(replace(md, orders={"bpfo": 5.611}))


def _ladder_at_3200(setup: tuple[Path, object, object], **told: Any) -> dict[str, Any]:
    """evaluate's sensitivity of the fixture's bearing through a 3.2 kHz sensor, at 5x only."""
    from vibration_anomaly.model.sensitivity import sensitivity

    data, files, eng = setup
    return sensitivity(
        str(data),
        files,  # type: ignore[arg-type]
        eng.infer,  # type: ignore[attr-defined]
        amplitudes=(5.0,),
        bearing=BEARING_PRESETS["femto"],
        sensor_rate_hz=3200.0,
        **told,
    )


def test_fused_in_the_sensitivity_ladder_through_a_sensor(setup: tuple[Path, object, object]) -> None:
    s = _ladder_at_3200(setup)
    fu, model = s["methods"][FUSED], s["methods"]["model"]
    fusion = s["setup"]["fusion"]
    assert fusion["machines_with_orders"] == ["Bearing1_2"] and fusion["target_far"] == 0.01
    th = fusion["per_machine"]["Bearing1_2"]
    assert th["target_far_each"] == 0.005 and th["order_threshold"] > 1.0  # over the calibration median
    assert set(fu) == set(model) and set(fu["ladder"]) == {"5"}
    # Calibrated on the sensor's windows (3.2 kHz: one envelope band; BPFO, BPFI and 2 x BSF fit in it).
    assert (
        s["setup"]["sensor"]["delivered_hz"] == 3200 and len(th["order_reference"]) == 2 * 3
    )  # channels x lines
    assert all(r is not None and r > 1.0 for r in th["order_reference"])
    assert fu["knock_alarms_after_voting"] <= s["setup"]["heldout_windows"] // 4  # one per 4 knocked windows


def test_order_calibration_is_cross_fitted_and_skips_lines_without_a_score() -> None:
    rng = np.random.default_rng(0)
    s = np.exp(0.3 * rng.standard_normal((40, 3))) * np.array([5.0, 9.0, 1.0])
    s[:, 2] = np.nan  # a line that does not fit this sensor's band
    oc = calibrate_orders(s, 0.005)
    assert oc is not None and oc.method.endswith("4-fold cross-fitted")
    assert np.allclose(oc.ref[:2], np.median(s[:, :2], axis=0)) and np.isnan(oc.ref[2])
    # Each line against its own median: the columns' different healthy levels do not matter.
    assert 1.0 < oc.threshold < 3.0
    assert (oc.ratio(s) <= 1.0).mean() >= 0.95
    # A window whose first line is 3 x its healthy level is over the threshold; an unscored window is 0.
    w = np.array([[15.0, 9.0, np.nan], [np.nan, np.nan, np.nan]])
    r = oc.ratio(w)
    assert r[0] > 1.0 and r[1] == 0.0
    assert calibrate_orders(np.full((10, 2), np.nan), 0.005) is None
    # A step half-way through the calibration (the second half 3 x louder) raises the cross-fitted
    # threshold above the in-sample one: held-out blocks see the step.
    step = np.exp(0.1 * rng.standard_normal((40, 1))) * np.where(np.arange(40) < 20, 1.0, 3.0)[:, None]
    crossed = calibrate_orders(step, 0.005)
    assert crossed is not None and crossed.threshold > 1.5 * float(np.max(step / np.median(step)))


def test_a_resonance_the_sensor_cannot_pass_leaves_the_model_alone(
    setup: tuple[Path, object, object],
) -> None:
    """Told a 2.5-4.5 kHz resonance, a 3.2 kHz sensor has no band for the envelope and FEMTO's 0.2 s
    windows are too short for the raw spectrum's lines: model+orders is the model at the full target,
    window for window, and says so; at the lab rate it reads the bands that hold the resonance."""
    data, files, eng = setup
    told = (2500.0, 4500.0)
    s = _ladder_at_3200(setup, bearing_resonance_hz=told)
    fusion = s["setup"]["fusion"]
    assert fusion["bearing_resonance_hz"] == [2500.0, 4500.0]
    assert fusion["machines_model_only"] == ["Bearing1_2"] and fusion["machines_with_orders"] == []
    assert s["methods"][FUSED]["ladder"] == s["methods"]["model"]["ladder"]
    res, raw = evaluate(data, files, eng.infer, bearing=BEARING_PRESETS["femto"], bearing_resonance_hz=told)  # type: ignore[attr-defined]
    th = res[FUSED]["fusion"]["per_machine"]["Bearing1_2"]
    (md,) = raw["machines"]
    assert md.shaft_hz is not None and md.orders is not None
    stated = order_scores(md.cal, md.fs_hz, md.shaft_hz, md.orders, resonance_hz=told)
    every = order_scores(md.cal, md.fs_hz, md.shaft_hz, md.orders)
    oc = calibrate_orders(stated, 0.005)
    assert oc is not None and th["order_threshold"] == pytest.approx(oc.threshold, rel=1e-5)
    assert np.isfinite(stated).all() and not np.allclose(stated, every)
