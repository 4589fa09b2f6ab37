"""Shared helpers for the test_bundle_* files: real keys and real signatures, made per test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from vibration_anomaly.bundle.dev import DevBundleFiles, sign_dev_bundle
from vibration_anomaly.bundle.trust import generate_private_key, key_id_of, public_key_pem

MODEL_BYTES = b"pretend onnx model bytes\n"


def model_sha() -> str:
    import hashlib

    return hashlib.sha256(MODEL_BYTES).hexdigest()


class Signer:
    """A freshly generated Ed25519 key with its own trust dir under tmp_path."""

    def __init__(self, root: Path, name: str = "signer") -> None:
        self.key = generate_private_key()
        self.key_id = key_id_of(self.key.public_key())
        self.trust_dir = root / f"trust_{name}"
        self.trust_dir.mkdir(parents=True, exist_ok=True)
        (self.trust_dir / f"{name}.pub").write_bytes(public_key_pem(self.key.public_key()))

    def payload(self, **changes: Any) -> dict[str, Any]:
        """A complete, valid payload dict for this key; ``changes`` replace top-level fields."""
        payload: dict[str, Any] = {
            "version": 7,
            "issued_at": "2025-06-01T00:00:00Z",
            "expires_at": None,
            "key_id": self.key_id,
            "duty_cycle": {"sample_s": 5, "period_s": 60},
            "max_queued_batches": 3,
            "model_sha256": model_sha(),
            "alarm": {"votes_required": 3, "votes_window": 5, "score_threshold": None},
            "telemetry": {
                "pushgateway_url": "http://127.0.0.1:9091",
                "job": "vibration_anomaly",
                "push_interval_s": 60,
            },
            "health": {"period_tolerance_s": 1.0, "awake_fraction_max": 0.125, "asleep_power_max_w": 2.5},
        }
        payload.update(changes)
        return payload

    def sign_bytes(self, payload: bytes) -> bytes:
        from vibration_anomaly.bundle import sign_payload

        return sign_payload(payload, self.key)

    def write(self, path: Path, payload: dict[str, Any] | bytes | str | None = None, **changes: Any) -> Path:
        if payload is None:
            payload = self.payload(**changes)
        if isinstance(payload, dict):
            payload = yaml.safe_dump(payload, sort_keys=False)
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        path.write_bytes(self.sign_bytes(payload))
        return path


def write_firmware(path: Path, sample_s: Any = 5, period_s: Any = 60, **extra: Any) -> Path:
    data: dict[str, Any] = {"duty_cycle": {"sample_s": sample_s, "period_s": period_s}}
    data.update(extra)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


BundleFiles = DevBundleFiles
"""Paths written by :func:`write_test_bundle`: bundle, trust_dir, firmware, private_key."""


def write_test_bundle(directory: Path | str, **changes: Any) -> BundleFiles:
    """A bundle signed with a throwaway key, with its trust dir and firmware file, for tests that need other numbers.

    ``changes`` override top-level fields of the shipped example payload (sections
    are merged). Load the files with ``load_verified_bundle`` like a robot would.
    The product-side twin, :func:`vibration_anomaly.bundle.dev.sign_dev_bundle`,
    does the work: simulations (the soak) and bench/ need the same thing.
    """
    return sign_dev_bundle(directory, **changes)
