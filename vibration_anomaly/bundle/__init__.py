"""The signed duty-cycle config bundle: the one place a file becomes trusted numbers.

Modules, along the seams of the format (``docs/BUNDLE.md`` has the whole story):

* ``container``: the one-file format (strict header, payload bytes, Ed25519 signature);
* ``trust``: keys and the trust store; ``rollback``: the on-robot rollback memory;
* ``schema``: the trusted value objects (``VerifiedBundle`` and its settings);
  ``payload``: the payload field checks that build them;
* ``firmware``: the agreement check with the firmware's own statement;
* ``checks``: hashes of the files a bundle vouches for (model, TensorRT plan);
* ``loader``: every check in order, ``commit_accepted``, the shipped example;
* ``dev``: bundles signed with a throwaway key (simulations, benchmarks, tests);
* ``cli``: ``vibration-anomaly bundle``; ``defaults``: the documented payload defaults.

The names below are the public API; import them from here.
"""

from __future__ import annotations

from vibration_anomaly.bundle.checks import (
    read_verified_calibration,
    read_verified_engine,
    read_verified_listed_model,
    read_verified_model,
    read_verified_model_json,
    sha256_file,
    verify_engine_file,
    verify_model_file,
)
from vibration_anomaly.bundle.container import (
    MAX_BUNDLE_BYTES,
    parse_container,
    render_container,
    sign_payload,
)
from vibration_anomaly.bundle.loader import (
    commit_accepted,
    example_dir,
    example_payload,
    load_example_bundle,
    load_verified_bundle,
    verify_bundle_bytes,
)
from vibration_anomaly.bundle.payload import check_payload
from vibration_anomaly.bundle.refusal import BundleRefused
from vibration_anomaly.bundle.schema import (
    AlarmSettings,
    DutyCycle,
    HealthSettings,
    TelemetrySettings,
    VerifiedBundle,
)
from vibration_anomaly.bundle.trust import DEV_KEY_ID, TrustStore

__all__ = [
    "DEV_KEY_ID",
    "MAX_BUNDLE_BYTES",
    "AlarmSettings",
    "BundleRefused",
    "DutyCycle",
    "HealthSettings",
    "TelemetrySettings",
    "TrustStore",
    "VerifiedBundle",
    "check_payload",
    "commit_accepted",
    "example_dir",
    "example_payload",
    "load_example_bundle",
    "load_verified_bundle",
    "parse_container",
    "read_verified_calibration",
    "read_verified_engine",
    "read_verified_model",
    "read_verified_listed_model",
    "read_verified_model_json",
    "render_container",
    "sha256_file",
    "sign_payload",
    "verify_bundle_bytes",
    "verify_engine_file",
    "verify_model_file",
]
