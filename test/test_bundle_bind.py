"""What is checked is what is loaded (issue 14, item 6): model, plan, model.json and calibration.

Each file is read once, hashed against the signed bundle, and those bytes are
what the engine, the frontend and the scorer get; replacing a file after the
check changes nothing. model.json and the machine's calibration are bound too.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bundle_testkit import write_test_bundle
from runtime_testkit import shipped_model_calibration

import vibration_anomaly.runtime.pipeline as pipeline_mod
from vibration_anomaly.bundle import BundleRefused, VerifiedBundle, load_example_bundle, load_verified_bundle
from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
from vibration_anomaly.model import DEFAULT_DIR
from vibration_anomaly.runtime.pipeline import build_pipeline


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def calibration(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real calibration of the shipped model on a simulated robot, as JSON (tests edit copies of it)."""
    path = shipped_model_calibration(tmp_path_factory.mktemp("cal") / "calibration.json")
    return json.loads(path.read_text())


def write_cal(path: Path, cal: dict[str, Any], **changes: Any) -> Path:
    path.write_text(json.dumps({**cal, **changes}))
    return path


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A copy of the shipped model folder: same bytes, so the shipped example bundle names it."""
    d = tmp_path / "model"
    shutil.copytree(DEFAULT_DIR, d)
    return d


def params(**changes: object) -> dict[str, object]:
    return {
        "model": "",
        "engine": "",
        "calibration": "",
        "backend": "onnx",
        "duty_cycle_time_scale": 1.0,
        "robot_id": "r042",
        **changes,
    }


def refused(bundle: VerifiedBundle, p: dict[str, object]) -> BundleRefused:
    with pytest.raises(BundleRefused) as info:
        build_pipeline(bundle, p)
    return info.value


def scores(engine: Any, x: np.ndarray) -> np.ndarray:
    engine.wake()
    try:
        return np.asarray(engine.infer(x))
    finally:
        engine.sleep()


# ---------------------------------------------------------------- the race, impossible by construction


def test_a_model_replaced_right_after_its_check_does_not_get_loaded(
    model_dir: Path,
    tmp_path: Path,
    calibration: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    onnx = model_dir / "model.onnx"
    verified = onnx.read_bytes()
    impostor = (model_dir / "model_fp32.onnx").read_bytes()  # same I/O, other weights: scores differently
    (model_dir / "model_fp32.onnx").unlink()  # no FP32 twin: ONNX Runtime runs the deploy model itself
    real_read = pipeline_mod.read_verified_model
    swapped: list[bytes] = []

    def read_then_swap(bundle: VerifiedBundle, path: Path) -> bytes:
        data = real_read(bundle, path)
        (model_dir / "swap.tmp").write_bytes(impostor)
        os.replace(model_dir / "swap.tmp", path)  # the attacker wins the race: right after the hash
        swapped.append(data)
        return data

    monkeypatch.setattr(pipeline_mod, "read_verified_model", read_then_swap)
    cal = write_cal(tmp_path / "cal.json", calibration)
    p = build_pipeline(load_example_bundle(), params(model=str(model_dir), calibration=str(cal)))
    assert swapped == [verified] and onnx.read_bytes() == impostor

    x = np.random.default_rng(0).normal(size=(2, *p.engine.inputs[0].shape[1:])).astype(np.float32)
    want, other = OnnxRuntimeEngine(), OnnxRuntimeEngine()
    want.load_bytes(verified)
    other.load_bytes(impostor)
    got = scores(p.engine, x)
    np.testing.assert_array_equal(got, scores(want, x))
    assert not np.array_equal(got, scores(other, x))  # the test would notice a re-read of the path
    assert p.engine.residency().details["model"] == str(onnx)
    for e in (p.engine, want, other):
        e.unload()


def test_onnx_runtime_runs_the_fp32_twin_model_json_vouches_for(
    model_dir: Path, tmp_path: Path, calibration: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CPU backend runs model_fp32.onnx (faster there), checked against the hash the signed model.json lists."""
    twin = model_dir / "model_fp32.onnx"
    verified = twin.read_bytes()
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["files"]["model_fp32.onnx"] == sha(verified)
    impostor = (model_dir / "model.onnx").read_bytes()
    real_read = pipeline_mod.read_verified_listed_model

    def read_then_swap(bundle: VerifiedBundle, m: dict[str, Any], path: Path) -> bytes | None:
        data = real_read(bundle, m, path)
        (model_dir / "swap.tmp").write_bytes(impostor)
        os.replace(model_dir / "swap.tmp", path)  # swapped right after the check
        return data

    monkeypatch.setattr(pipeline_mod, "read_verified_listed_model", read_then_swap)
    cal = write_cal(tmp_path / "cal.json", calibration)
    p = build_pipeline(load_example_bundle(), params(model=str(model_dir), calibration=str(cal)))
    assert p.engine.residency().details["model"] == str(twin) and str(twin) in p.model
    x = np.random.default_rng(1).normal(size=(2, *p.engine.inputs[0].shape[1:])).astype(np.float32)
    want = OnnxRuntimeEngine()
    want.load_bytes(verified)
    np.testing.assert_array_equal(scores(p.engine, x), scores(want, x))
    for e in (p.engine, want):
        e.unload()


def test_a_tampered_fp32_twin_is_refused_and_an_unvouched_model_json_runs_the_deploy_model(
    model_dir: Path, tmp_path: Path, calibration: dict[str, Any]
) -> None:
    cal = write_cal(tmp_path / "cal.json", calibration)
    blob = bytearray((model_dir / "model_fp32.onnx").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (model_dir / "model_fp32.onnx").write_bytes(bytes(blob))
    exc = refused(load_example_bundle(), params(model=str(model_dir), calibration=str(cal)))
    assert exc.reason == "model_mismatch" and exc.field.endswith("files.model_fp32.onnx"), exc
    assert sha(bytes(blob)) in exc.detail
    # A bundle that vouches for no model.json vouches for nothing it lists: the deploy model runs.
    files = write_test_bundle(tmp_path / "b", model_json_sha256=None)
    bundle = load_verified_bundle(files.bundle, files.trust_dir, firmware_path=files.firmware)
    p = build_pipeline(bundle, params(model=str(model_dir), calibration=str(cal)))
    assert p.engine.residency().details["model"] == str(model_dir / "model.onnx")
    p.engine.unload()


def test_a_plan_is_handed_over_as_the_verified_bytes(
    model_dir: Path,
    tmp_path: Path,
    calibration: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = tmp_path / "model.engine"
    plan.write_bytes(b"\x01plan bytes" * 200)
    verified = plan.read_bytes()
    files = write_test_bundle(tmp_path / "deploy", engine_sha256=sha(verified))
    bundle = load_verified_bundle(files.bundle, files.trust_dir, firmware_path=files.firmware)
    real_read = pipeline_mod.read_verified_engine

    def read_then_swap(bundle: VerifiedBundle, path: Path) -> bytes:
        data = real_read(bundle, path)
        path.write_bytes(b"\x02a stale plan" * 200)
        return data

    seen: dict[str, Any] = {}

    def fake_select(backend: str, model_path: Path, engine_path: Path | None, **kw: Any) -> tuple[Any, str]:
        seen.update(kw, engine_path=engine_path)
        engine = OnnxRuntimeEngine()
        engine.load_bytes(kw["model_bytes"], model_path)
        return engine, "test"

    import vibration_anomaly.engine.select as select_mod

    monkeypatch.setattr(pipeline_mod, "read_verified_engine", read_then_swap)
    monkeypatch.setattr(select_mod, "select_engine", fake_select)
    cal = write_cal(tmp_path / "cal.json", calibration)
    p = build_pipeline(bundle, params(calibration=str(cal), engine=str(plan), backend="tensorrt"))
    p.engine.unload()
    assert seen["engine_bytes"] == verified and plan.read_bytes() != verified
    assert sha(seen["model_bytes"]) == bundle.model_sha256


def test_the_tensorrt_engine_loads_plan_bytes_without_opening_a_file(tmp_path: Path) -> None:
    from test_tensorrt_backend import PLAN_MAGIC, FakeCuda, make

    from vibration_anomaly.engine.tensorrt.plan import CorruptEngineError

    e = make(FakeCuda())
    e.load_bytes(PLAN_MAGIC + bytes(range(256)) * 8, tmp_path / "gone.engine")  # no such file: never read
    assert e.residency().held == ("model_plan",)
    e.unload()
    with pytest.raises(CorruptEngineError, match="too small"):
        make(FakeCuda()).load_bytes(b"\x01" * 10, "plan")


# ---------------------------------------------------------------- model.json bound by hash


def test_the_shipped_bundle_names_the_shipped_model_json() -> None:
    assert load_example_bundle().model_json_sha256 == sha((DEFAULT_DIR / "model.json").read_bytes())


def test_a_model_json_the_bundle_does_not_name_is_refused(
    model_dir: Path,
    tmp_path: Path,
    calibration: dict[str, Any],
) -> None:
    meta = json.loads((model_dir / "model.json").read_text())
    meta["voting"] = {"k": 1, "n": 1}
    (model_dir / "model.json").write_text(json.dumps(meta))
    cal = write_cal(tmp_path / "cal.json", calibration)
    exc = refused(load_example_bundle(), params(model=str(model_dir), calibration=str(cal)))
    assert exc.reason == "model_json_mismatch" and exc.field == "model_json_sha256"
    assert sha((model_dir / "model.json").read_bytes()) in exc.detail


# ---------------------------------------------------------------- calibrations


def test_a_calibration_made_for_another_model_is_refused(tmp_path: Path, calibration: dict[str, Any]) -> None:
    cal = write_cal(tmp_path / "cal.json", calibration, model_id="0123456789abcdef")
    exc = refused(load_example_bundle(), params(calibration=str(cal)))
    assert exc.reason == "calibration_foreign" and exc.field == "calibration.model_id"
    assert "0123456789abcdef" in exc.detail and str(cal) in str(exc)


@pytest.mark.parametrize("factor", [1e300 / 3.0, 0.5])
def test_a_threshold_at_which_the_alarm_cannot_work_is_refused(
    tmp_path: Path,
    calibration: dict[str, Any],
    factor: float,
) -> None:
    """1e300 from another machine: never fires; below the healthy median: fires on healthy windows."""
    median = calibration["healthy_score_median"]
    cal = write_cal(tmp_path / "cal.json", calibration, threshold=median * factor)
    exc = refused(load_example_bundle(), params(calibration=str(cal)))
    assert exc.reason == "calibration_implausible" and exc.field == "calibration.threshold"


def test_the_models_held_out_score_range_bounds_the_threshold(
    model_dir: Path,
    tmp_path: Path,
    calibration: dict[str, Any],
) -> None:
    meta = json.loads((model_dir / "model.json").read_text())
    meta["heldout_score_range"] = [1.0, 1.5]
    (model_dir / "model.json").write_bytes(json.dumps(meta).encode())
    files = write_test_bundle(
        tmp_path / "deploy", model_json_sha256=sha((model_dir / "model.json").read_bytes())
    )
    bundle = load_verified_bundle(files.bundle, files.trust_dir, firmware_path=files.firmware)
    ok = write_cal(tmp_path / "ok.json", calibration)
    build_pipeline(bundle, params(model=str(model_dir), calibration=str(ok))).engine.unload()
    # No healthy median to compare with (an older calibration): the model's range still catches it.
    far = write_cal(tmp_path / "far.json", calibration, threshold=1e300, healthy_score_median=None)
    exc = refused(bundle, params(model=str(model_dir), calibration=str(far)))
    assert exc.reason == "calibration_implausible" and "held-out" in exc.detail


def test_a_bundle_can_bind_each_robots_calibration_by_hash(
    tmp_path: Path, calibration: dict[str, Any]
) -> None:
    mine = write_cal(tmp_path / "mine.json", calibration)
    theirs = write_cal(tmp_path / "theirs.json", calibration, machine="r043")  # plausible, but not ours
    files = write_test_bundle(
        tmp_path / "deploy", calibrations={"r042": sha(mine.read_bytes()), "r043": sha(theirs.read_bytes())}
    )
    bundle = load_verified_bundle(files.bundle, files.trust_dir, firmware_path=files.firmware)
    assert bundle.calibration_sha256("r042") == sha(mine.read_bytes())
    build_pipeline(bundle, params(calibration=str(mine))).engine.unload()

    exc = refused(bundle, params(calibration=str(theirs)))
    assert exc.reason == "calibration_mismatch" and exc.field == "calibrations.r042"
    exc = refused(bundle, params(calibration=str(mine), robot_id="r999"))
    assert exc.reason == "calibration_mismatch" and "not listed" in exc.detail


def test_calibration_file_problems_are_named(tmp_path: Path) -> None:
    bundle = load_example_bundle()
    exc = refused(bundle, params(calibration=str(tmp_path / "none.json")))
    assert exc.reason == "calibration_missing"
    os.mkfifo(tmp_path / "fifo.json")
    assert refused(bundle, params(calibration=str(tmp_path / "fifo.json"))).reason == "calibration_missing"


# ---------------------------------------------------------------- payload fields


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"model_json_sha256": "ABC"}, "model_json_sha256"),
        ({"calibrations": {}}, "calibrations"),
        ({"calibrations": ["r1"]}, "calibrations"),
        ({"calibrations": {"bad id!": "0" * 64}}, "calibrations"),
        ({"calibrations": {"r1": "0" * 63}}, "calibrations.r1"),
    ],
)
def test_binding_fields_are_checked(tmp_path: Path, changes: dict[str, Any], field: str) -> None:
    files = write_test_bundle(tmp_path, **changes)
    with pytest.raises(BundleRefused) as info:
        load_verified_bundle(files.bundle, files.trust_dir, firmware_path=files.firmware)
    assert info.value.reason == "field" and info.value.field == field


def test_robot_ids_with_dots_can_be_bound_and_the_firmware_check_ignores_the_map(tmp_path: Path) -> None:
    files = write_test_bundle(tmp_path, calibrations={"robot17.site-a": "0" * 64})
    bundle = load_verified_bundle(files.bundle, files.trust_dir, firmware_path=files.firmware)
    assert bundle.calibration_sha256("robot17.site-a") == "0" * 64
    assert not any(k.startswith("calibrations") for k in bundle.effective_values())
