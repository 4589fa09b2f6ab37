"""Fleet telemetry follows the bundle's life (issue 14 item 4), against a real Pushgateway on loopback.

A reconfigure to a new bundle shows its version on the gateway; an expired bundle shows
``bundle_expired 1`` within a duty period; an untrusted bundle refused after a good one is reported as
``bundle_refused`` through the last trusted bundle's destination, and no longer pushed as healthy.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bundle_testkit import write_test_bundle

from vibration_anomaly.runtime import ConfigureFailed, DetectorRuntime, Pipeline, RuntimeParams
from vibration_anomaly.telemetry.localservers import Pushgateway, find_binary

NO_GATEWAY = (
    ""
    if find_binary(("prometheus-pushgateway", "pushgateway"))
    else "prometheus-pushgateway is not installed (apt-get install prometheus-pushgateway)"
)
pytestmark = pytest.mark.skipif(bool(NO_GATEWAY), reason=NO_GATEWAY or "-")


@pytest.fixture(scope="module")
def gateway() -> Iterator[Pushgateway]:
    gw = Pushgateway().start()
    try:
        yield gw
    finally:
        gw.stop()


def _model(tmp: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", "T", "F"])
    y = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])
    nodes = [helper.make_node("ReduceMean", ["features"], ["score"], axes=[1, 2], keepdims=0)]
    m = helper.make_model(
        helper.make_graph(nodes, "mean", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]
    )
    m.ir_version = 8
    path = tmp / "mean.onnx"
    onnx.save(m, path)
    return path


def _factory(model: Path) -> Any:
    def build(bundle: Any, params: dict[str, Any]) -> Pipeline:
        import numpy as np

        from vibration_anomaly.bundle import verify_model_file
        from vibration_anomaly.core.scoring import AlarmVoter, Scorer, calibrate
        from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
        from vibration_anomaly.model.frontend import Frontend

        verify_model_file(bundle, model)
        engine = OnnxRuntimeEngine()
        engine.load(model)
        engine.wake()
        rng = np.random.default_rng(0)
        cal = calibrate(engine, Frontend(), [rng.normal(size=(490, 3)) for _ in range(8)], 1000.0)
        engine.sleep()
        voter = AlarmVoter(bundle.alarm.votes_required, bundle.alarm.votes_window)
        return Pipeline(engine, Scorer(engine, Frontend(), cal), voter, str(model), "test")

    return build


def _gauge(text: str, name: str, robot: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith(f"vibration_anomaly_{name}") and f'robot_id="{robot}"' in line:
            labels = re.findall(r'(version|reason)="([^"]*)"', line)
            out[labels[0][1] if labels else ""] = float(line.rsplit(" ", 1)[1])
    return out


def _wait(gw: Pushgateway, name: str, robot: str, want: dict[str, float], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    got: dict[str, float] = {}
    while time.monotonic() < deadline:
        got = _gauge(gw.metrics_text(), name, robot)
        if got == want:
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} for {robot}: {got}, expected {want}")


def test_telemetry_follows_accepted_expired_and_refused_bundles(tmp_path: Path, gateway: Pushgateway) -> None:
    model = _model(tmp_path)
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    tel = {"pushgateway_url": gateway.url, "job": "vibration_anomaly", "push_interval_s": 1.0}
    v1 = write_test_bundle(tmp_path / "v1", version=1, model_sha256=sha, telemetry=tel)
    robot = "r-telemetry"
    state = tmp_path / "state"
    rt = DetectorRuntime(lambda: time.time(), pipeline_factory=_factory(model), threaded=False)

    def params(files: Any, trust: Path | None = None) -> RuntimeParams:
        return RuntimeParams(
            robot_id=robot,
            bundle=str(files.bundle),
            trust_dir=str(trust or files.trust_dir),
            firmware=str(files.firmware),
            rollback_state=str(state / "bundle_state.json"),
            event_log="",
            use_duty_cycle_driver=False,
        )

    rt.configure(params(v1))
    _wait(gateway, "bundle_info", robot, {"1": 1.0})
    # v2, signed by the same fleet key, past its expiry: accepted (expiry warns), and shown as expired.
    v2 = write_test_bundle(
        tmp_path / "v2",
        version=2,
        model_sha256=sha,
        telemetry=tel,
        issued_at="1999-01-01T00:00:00Z",
        expires_at="2000-01-01T00:00:00Z",
    )
    trust = tmp_path / "trust"
    trust.mkdir()
    for d in (v1.trust_dir, v2.trust_dir):
        for pub in Path(d).glob("*.pub"):
            (trust / pub.name).write_bytes(pub.read_bytes())
    rt.teardown()
    rt.configure(params(v2, trust))
    _wait(gateway, "bundle_info", robot, {"2": 1.0})
    _wait(gateway, "bundle_expired", robot, {"": 1.0})
    # v3 signed by a key this robot does not trust, naming another gateway: refused, and the refusal reaches
    # the fleet through v2's (trusted, re-verified) settings, never through the refused bundle's own.
    v3 = write_test_bundle(
        tmp_path / "v3",
        version=3,
        model_sha256=sha,
        telemetry={**tel, "pushgateway_url": "http://127.0.0.1:9"},
    )
    rt.teardown()
    with pytest.raises(ConfigureFailed):
        rt.configure(params(v3, trust))
    _wait(gateway, "bundle_refused", robot, {"untrusted": 1.0})
    assert _gauge(gateway.metrics_text(), "bundle_info", robot) == {}  # no longer pushed as a healthy bundle
    rt.close()
