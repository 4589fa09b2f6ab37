"""Report a refused bundle through the destination of the last trusted one.

A robot that refuses its new bundle (bad signature, firmware mismatch, rollback)
runs no inference, but ops must still see *why*: its ``bundle_refused`` metric
has to reach the fleet. The refused bundle's telemetry section cannot be
trusted (that is the point of refusing it), and hard-coding a gateway would be a
second source of truth. So when a bundle is accepted the robot keeps a copy of
its signed bytes; after a refusal, :func:`last_trusted_telemetry` verifies that
copy again (signature against the trust directory, payload schema) and returns
its telemetry settings. Nothing unsigned ever names a destination.

Only the telemetry section is used from the copy; firmware agreement and the
rollback record do not apply (the copy is not run, it only says where to report).
"""

from __future__ import annotations

import logging
from pathlib import Path

from vibration_anomaly.bundle import (
    BundleRefused,
    TelemetrySettings,
    VerifiedBundle,
    verify_bundle_bytes,
)
from vibration_anomaly.bundle.files import atomic_write
from vibration_anomaly.bundle.trust import TrustStore

log = logging.getLogger(__name__)

MAX_COPY_BYTES = 64 * 1024


def remember_trusted(bundle: VerifiedBundle, copy_path: Path | str, trust: TrustStore) -> bool:
    """Keep the accepted bundle's signed bytes at ``copy_path``; True when written.

    The bytes are re-read from ``bundle.source_path`` and kept only if they are
    the bundle that was verified (same payload sha256), so a file replaced
    between verification and this call is never remembered.
    """
    try:
        data = Path(bundle.source_path).read_bytes()
    except OSError as exc:
        log.warning("cannot keep a copy of the accepted bundle: %s", exc)
        return False
    try:
        again = verify_bundle_bytes(
            data, trust, source=bundle.source_path, require_firmware=False, record=False, warn_dev_key=False
        )
    except BundleRefused as exc:
        log.warning("accepted bundle changed on disk before its copy was kept: %s", exc)
        return False
    if again.payload_sha256 != bundle.payload_sha256:
        return False
    atomic_write(Path(copy_path), data)
    return True


def last_trusted_telemetry(copy_path: Path | str, trust: TrustStore) -> TelemetrySettings | None:
    """The telemetry settings of the kept copy, verified again now; None when there is none or it fails."""
    path = Path(copy_path)
    try:
        if path.stat().st_size > MAX_COPY_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    try:
        return verify_bundle_bytes(
            data, trust, source=str(path), require_firmware=False, record=False, warn_dev_key=False
        ).telemetry
    except BundleRefused as exc:
        log.warning("last trusted bundle copy %s no longer verifies: %s", path, exc)
        return None
