"""build_pipeline: the configure step without ROS, on the shipped model and the verified example bundle."""

from __future__ import annotations

from pathlib import Path

import pytest
from runtime_testkit import shipped_model_calibration

from vibration_anomaly.bundle import BundleRefused, load_example_bundle
from vibration_anomaly.errors import InputError
from vibration_anomaly.runtime.pipeline import build_pipeline


@pytest.fixture(scope="module")
def calibration_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shipped_model_calibration(tmp_path_factory.mktemp("cal") / "calibration.json")


def params(**changes: object) -> dict[str, object]:
    return {
        "model": "",
        "engine": "",
        "calibration": "",
        "backend": "auto",
        "duty_cycle_time_scale": 1.0,
        **changes,
    }


def test_builds_a_loaded_onnx_pipeline_with_the_bundles_vote(calibration_file: Path) -> None:
    bundle = load_example_bundle()
    p = build_pipeline(bundle, params(calibration=str(calibration_file)))
    try:
        assert p.engine.name == "onnxruntime" and p.engine.state.value == "loaded"
        assert p.backend_reason.startswith("auto:") and "ONNX Runtime" in p.backend_reason
        assert (p.voter.k, p.voter.n) == (bundle.alarm.votes_required, bundle.alarm.votes_window)
    finally:
        p.engine.unload()


def test_missing_calibration_is_named(calibration_file: Path) -> None:
    with pytest.raises(InputError, match="calibration"):
        build_pipeline(load_example_bundle(), params())


def test_a_plan_the_bundle_does_not_name_is_refused_before_loading(
    calibration_file: Path, tmp_path: Path
) -> None:
    plan = tmp_path / "model.engine"
    plan.write_bytes(b"not the engine the bundle names")
    with pytest.raises(BundleRefused) as exc:
        build_pipeline(load_example_bundle(), params(calibration=str(calibration_file), engine=str(plan)))
    assert exc.value.reason == "engine_mismatch"
