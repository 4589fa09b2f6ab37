"""The on-robot rollback memory: the highest bundle version this robot accepted.

A small JSON file, written atomically (temporary file, fsync, rename, fsync of
the directory) so that a power cut leaves either the old or the new record,
never a torn one; an unreadable record is a refusal, not a crash, because
silently forgetting it would re-open the rollback hole it exists to close.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vibration_anomaly.bundle.files import atomic_write, read_limited
from vibration_anomaly.bundle.refusal import BundleRefused

MAX_STATE_FILE_BYTES = 4096


@dataclass(frozen=True)
class AcceptedRecord:
    """What this robot last accepted: the floor below which bundles are rollbacks."""

    version: int
    payload_sha256: str
    key_id: str
    recorded_at: str

    def to_json(self) -> bytes:
        return (json.dumps(
            {"version": self.version, "payload_sha256": self.payload_sha256, "key_id": self.key_id,
             "recorded_at": self.recorded_at},
            indent=2, sort_keys=True,
        ) + "\n").encode()


class RollbackState:
    """The highest accepted bundle version, remembered on disk at a configurable path."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read(self) -> AcceptedRecord | None:
        """None when nothing was accepted yet; a refusal when the record exists but is unreadable."""
        src = str(self.path)
        try:
            data = read_limited(self.path, MAX_STATE_FILE_BYTES)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BundleRefused("state", f"cannot read rollback state: {exc.strerror or exc}", source=src) from exc
        if data is None:
            raise BundleRefused("state", f"rollback state larger than {MAX_STATE_FILE_BYTES} bytes; corrupt",
                                source=src)
        try:
            raw: Any = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BundleRefused(
                "state", f"rollback state is corrupt (not JSON: {exc}); inspect it, then delete it only if "
                "you know the last accepted version", source=src,
            ) from exc
        if not isinstance(raw, Mapping):
            raise BundleRefused("state", "rollback state is corrupt: expected a JSON object", source=src)
        version = raw.get("version")
        sha = raw.get("payload_sha256")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise BundleRefused("state", f"rollback state is corrupt: version: expected an integer >= 1, "
                                f"got {version!r}", source=src, field="version")
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise BundleRefused("state", f"rollback state is corrupt: payload_sha256: expected 64 hex digits, "
                                f"got {sha!r}", source=src, field="payload_sha256")
        return AcceptedRecord(version, sha, str(raw.get("key_id", "")), str(raw.get("recorded_at", "")))

    def check(self, version: int, payload_sha256: str) -> AcceptedRecord | None:
        """Refuse a version lower than the last accepted one, or the same version with other content."""
        last = self.read()
        if last is None:
            return None
        if version < last.version:
            raise BundleRefused(
                "rollback",
                f"version: bundle {version}, last accepted on this robot {last.version} "
                f"(rollback refused; state in {self.path})",
                field="version",
            )
        if version == last.version and payload_sha256 != last.payload_sha256:
            raise BundleRefused(
                "version_reuse",
                f"version: bundle {version} has payload sha256 {payload_sha256}, but version {last.version} "
                f"was accepted with payload sha256 {last.payload_sha256}; a changed bundle needs a higher version",
                field="version",
            )
        return last

    def record(self, version: int, payload_sha256: str, key_id: str, now: datetime | None = None) -> None:
        when = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat()
        try:
            atomic_write(self.path, AcceptedRecord(version, payload_sha256, key_id, when).to_json())
        except OSError as exc:
            raise BundleRefused(
                "state", f"cannot record the accepted version (rollback protection needs it): "
                f"{exc.strerror or exc}", source=str(self.path),
            ) from exc
