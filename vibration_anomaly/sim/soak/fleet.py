"""What the fleet's robots share: the signing key and bundles, model folders, calibrations, frame pools."""

from __future__ import annotations

import json
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
from vibration_anomaly.sim.robot import FaultSpec, RobotConfig, SimulatedRobot
from vibration_anomaly.sim.soak.accel import _MemoFrontend, _PooledOnnxEngine, _SessionPool
from vibration_anomaly.sim.soak.options import (
    COMMISSIONING_WINDOWS,
    POOL_WINDOWS,
    PUSH_INTERVAL_S,
    RATE_HZ,
    SoakOptions,
)


class _Fleet:
    """What robots share: the signing key and bundles, model folders, calibrations, frame pools, caches."""

    def __init__(self, opts: SoakOptions, root: Path, gateway_url: str | None) -> None:
        from vibration_anomaly.bundle import example_payload, sign_payload
        from vibration_anomaly.bundle.trust import generate_private_key, key_id_of, public_key_pem
        from vibration_anomaly.model import load_default_model

        self.opts, self.root = opts, root
        self.model = load_default_model()
        self.sessions = _SessionPool()
        self.features: OrderedDict[bytes, np.ndarray] = OrderedDict()
        key = generate_private_key()
        self.trust = root / "trust"
        self.trust.mkdir(parents=True)
        key_id = key_id_of(key.public_key())
        (self.trust / f"{key_id}.pub").write_bytes(public_key_pem(key.public_key()))
        base = example_payload()
        base.update(key_id=key_id, expires_at=None)
        base["telemetry"] = {
            **base.get("telemetry", {}),
            "pushgateway_url": gateway_url,
            "job": "vibration_anomaly_soak",
            "push_interval_s": PUSH_INTERVAL_S,
        }
        self.payload = base
        dc = base["duty_cycle"]
        self.sample_s, self.period_s = float(dc["sample_s"]), float(dc["period_s"])
        self.awake_fraction_limit = float(base.get("health", {}).get("awake_fraction_max") or 0.125)

        def sign(name: str, **changes: Any) -> Path:
            import yaml

            payload = {**base, **changes}
            for k, v in changes.items():
                if isinstance(v, dict) and isinstance(base.get(k), dict):
                    payload[k] = {**base[k], **v}
            path = root / "bundles" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(sign_payload(yaml.safe_dump(payload, sort_keys=False).encode(), key))
            return path

        self.good = sign("good_v10.yaml", version=10)
        good_v11 = sign("good_v11.yaml", version=11)
        data = bytearray(good_v11.read_bytes())
        data[data.rindex(b"version: 11")] ^= 0x01  # one flipped payload byte: the signature no longer matches
        self.tampered = root / "bundles" / "tampered_v11.yaml"
        self.tampered.write_bytes(bytes(data))
        # Validly signed and newer, but it cannot run: the failure comes after verification, in configure.
        self.unusable = sign("unusable_v12.yaml", version=12, duty_cycle={"sample_s": 0.001, "period_s": 60})
        self.firmware_ok = (
            json.dumps({"duty_cycle": {"sample_s": dc["sample_s"], "period_s": dc["period_s"]}}) + "\n"
        )
        self.firmware_unusable = (
            json.dumps({"duty_cycle": {"sample_s": 0.001, "period_s": dc["period_s"]}}) + "\n"
        )
        self.firmware_bad = (
            json.dumps({"duty_cycle": {"sample_s": dc["sample_s"], "period_s": dc["period_s"] + 40}}) + "\n"
        )
        # A corrupt copy of the shipped model (one byte flipped mid-file), with its model.json.
        self.corrupt_model = root / "corrupt_model"
        self.corrupt_model.mkdir()
        shutil.copy2(self.model.directory / "model.json", self.corrupt_model / "model.json")
        blob = bytearray(self.model.onnx.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        (self.corrupt_model / "model.onnx").write_bytes(bytes(blob))
        self.calibrations: dict[int, Path] = {}
        self.pools: dict[tuple[int, bool], list[np.ndarray]] = {}
        self._commission()

    def _commission(self) -> None:
        """Once per machine model: healthy commissioning windows -> calibration file; frame pools."""
        engine = OnnxRuntimeEngine(intra_op_threads=1)
        engine.load(self.model.cpu_onnx)  # the file the robots' ONNX Runtime runs: calibrate on its scores
        engine.wake()
        n = max(1, min(self.opts.machine_models, self.opts.robots))
        s, p = self.sample_s, self.period_s
        for m in range(n):
            seed = self.opts.seed * 1000 + m
            healthy = SimulatedRobot(RobotConfig(rate_hz=RATE_HZ, seed=seed))
            windows = [
                healthy.frames(k * p + s + 20.0, k * p + 2 * s + 20.0)[1]
                for k in range(COMMISSIONING_WINDOWS)
            ]
            cal = self.model.calibrate(engine, windows, RATE_HZ, machine=f"soak-machine-{m}")
            path = self.root / f"calibration_m{m}.json"
            cal.save(path)
            self.calibrations[m] = path
            self.pools[(m, False)] = [
                healthy.frames(k * p, k * p + s)[1]
                for k in range(COMMISSIONING_WINDOWS, COMMISSIONING_WINDOWS + POOL_WINDOWS)
            ]
            faulty = SimulatedRobot(
                RobotConfig(rate_hz=RATE_HZ, seed=seed, fault=FaultSpec(start_s=0.0, growth_s=1.0))
            )
            self.pools[(m, True)] = [faulty.frames(k * p, k * p + s)[1] for k in range(10, 10 + POOL_WINDOWS)]
        engine.sleep()
        engine.unload()

    def factory(self, bundle: Any, p: dict[str, Any]) -> Any:
        """``runtime.build_pipeline`` as the node runs it, then the soak's accelerations on its engine and frontend."""
        from vibration_anomaly.runtime import build_pipeline

        pipeline = build_pipeline(bundle, p)
        engine = pipeline.engine
        if type(engine) is OnnxRuntimeEngine:
            engine.__class__ = _PooledOnnxEngine
            engine.soak_pool = self.sessions  # type: ignore[attr-defined]
            engine.soak_key = str(p.get("model") or "default")  # type: ignore[attr-defined]
        scorer = pipeline.scorer
        if hasattr(scorer, "frontend"):
            scorer.frontend = _MemoFrontend(scorer.frontend, self.features)
        return pipeline
