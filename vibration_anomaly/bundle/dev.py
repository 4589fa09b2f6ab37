"""Bundles signed with a throwaway key, for simulations, benchmarks and tests that need other numbers.

Nothing here is trusted: the files are written like a deployment would ship
them (bundle, a trust dir holding only the throwaway public key, a firmware
statement) and must be loaded with ``load_verified_bundle`` like a robot would.
Product code that simulates deployments (the soak, bench/) uses this; tests use
``write_test_bundle`` in ``test/bundle_testkit.py``, which calls it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vibration_anomaly.bundle.container import sign_payload
from vibration_anomaly.bundle.loader import example_payload
from vibration_anomaly.bundle.trust import generate_private_key, key_id_of, private_key_pem, public_key_pem


@dataclass(frozen=True)
class DevBundleFiles:
    """Paths written by :func:`sign_dev_bundle`, ready for ``load_verified_bundle``."""

    bundle: Path
    trust_dir: Path
    firmware: Path
    private_key: Path


def sign_dev_bundle(directory: Path | str, **changes: Any) -> DevBundleFiles:
    """Sign a bundle with a throwaway key made here; for tests and simulations that need other numbers.

    ``changes`` override top-level payload fields of the example payload
    (sections are merged: ``duty_cycle={"sample_s": 0.5, "period_s": 2}``).
    Writes the bundle, a trust dir holding only the throwaway public key, and a
    firmware file stating the bundle's duty cycle. Nothing is verified here and
    no VerifiedBundle is returned: load the files with
    :func:`load_verified_bundle` like a robot would.
    """
    directory = Path(directory)
    (directory / "trust").mkdir(parents=True, exist_ok=True)
    key = generate_private_key()
    payload = example_payload()
    payload["key_id"] = key_id_of(key.public_key())
    for name, value in changes.items():
        if isinstance(value, Mapping) and isinstance(payload.get(name), Mapping):
            payload[name] = {**payload[name], **value}
        else:
            payload[name] = value
    health_changes = changes.get("health")
    if "duty_cycle" in changes and not (
        isinstance(health_changes, Mapping) and "awake_fraction_max" in health_changes
    ):
        # The example's awake_fraction_max fits 5 s / 60 s only; let the documented default follow the new cycle.
        health = payload.get("health")
        if isinstance(health, Mapping):
            payload["health"] = {k: v for k, v in health.items() if k != "awake_fraction_max"}
    payload_bytes = yaml.safe_dump(payload, sort_keys=False).encode("utf-8")
    files = DevBundleFiles(
        bundle=directory / "bundle.yaml",
        trust_dir=directory / "trust",
        firmware=directory / "firmware.json",
        private_key=directory / "signing_key.pem",
    )
    files.private_key.write_bytes(private_key_pem(key))
    (files.trust_dir / f"{payload['key_id']}.pub").write_bytes(public_key_pem(key.public_key()))
    files.bundle.write_bytes(sign_payload(payload_bytes, key))
    dc = payload.get("duty_cycle")
    if isinstance(dc, Mapping):
        statement = {"duty_cycle": {k: dc[k] for k in ("sample_s", "period_s") if k in dc}}
        files.firmware.write_text(json.dumps(statement) + "\n", encoding="utf-8")
    return files
