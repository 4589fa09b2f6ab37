"""The on-robot rollback memory: the highest (key epoch, version) this robot accepted.

Versions are compared within one key epoch (see ``trust.read_epoch``): a bundle of
a later epoch than the record is accepted whatever its version, because the
epoch is bumped exactly when a compromised key, which may have signed an
inflated version (say 2^53), is revoked; the floor restarts in the new epoch.

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
    epoch: int = 0

    def to_json(self) -> bytes:
        return (
            json.dumps(
                {
                    "epoch": self.epoch,
                    "version": self.version,
                    "payload_sha256": self.payload_sha256,
                    "key_id": self.key_id,
                    "recorded_at": self.recorded_at,
                },
                indent=2,
                sort_keys=True,
            )
            + "\n"
        ).encode()


class RollbackState:
    """The highest accepted (epoch, version), remembered on disk at a configurable path.

    A record written before epochs existed has no ``epoch`` and reads as epoch 0.
    """

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
            raise BundleRefused(
                "state", f"cannot read rollback state: {exc.strerror or exc}", source=src
            ) from exc
        if data is None:
            raise BundleRefused(
                "state", f"rollback state larger than {MAX_STATE_FILE_BYTES} bytes; corrupt", source=src
            )
        try:
            raw: Any = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BundleRefused(
                "state",
                f"rollback state is corrupt (not JSON: {exc}); inspect it, then delete it only if "
                "you know the last accepted version",
                source=src,
            ) from exc
        if not isinstance(raw, Mapping):
            raise BundleRefused("state", "rollback state is corrupt: expected a JSON object", source=src)
        version = raw.get("version")
        sha = raw.get("payload_sha256")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise BundleRefused(
                "state",
                f"rollback state is corrupt: version: expected an integer >= 1, got {version!r}",
                source=src,
                field="version",
            )
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise BundleRefused(
                "state",
                f"rollback state is corrupt: payload_sha256: expected 64 hex digits, got {sha!r}",
                source=src,
                field="payload_sha256",
            )
        epoch = raw.get("epoch", 0)
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise BundleRefused(
                "state",
                f"rollback state is corrupt: epoch: expected an integer >= 0, got {epoch!r}",
                source=src,
                field="epoch",
            )
        return AcceptedRecord(
            version, sha, str(raw.get("key_id", "")), str(raw.get("recorded_at", "")), epoch
        )

    def check(self, epoch: int, version: int, payload_sha256: str) -> AcceptedRecord | None:
        """Refuse what is older than the last accepted bundle, or the same version with other content.

        Older: an earlier epoch (the trust store was rolled back to before a key
        revocation), or the same epoch and a lower version. A later epoch passes
        whatever its version.
        """
        last = self.read()
        if last is None or epoch > last.epoch:
            return last
        if epoch < last.epoch:
            raise BundleRefused(
                "rollback",
                f"epoch: bundle of key epoch {epoch}, but this robot already accepted a bundle of epoch "
                f"{last.epoch} (the trust store's EPOCH went back?; rollback refused; state in {self.path})",
                field="epoch",
            )
        if version < last.version:
            raise BundleRefused(
                "rollback",
                f"version: bundle {version}, last accepted on this robot {last.version} in key epoch {epoch} "
                f"(rollback refused; state in {self.path}; a compromised key's inflated version is left "
                "behind by revoking the key and bumping the trust store's EPOCH, docs/BUNDLE.md)",
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

    def record(
        self, epoch: int, version: int, payload_sha256: str, key_id: str, now: datetime | None = None
    ) -> None:
        when = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat()
        try:
            atomic_write(self.path, AcceptedRecord(version, payload_sha256, key_id, when, epoch).to_json())
        except OSError as exc:
            raise BundleRefused(
                "state",
                f"cannot record the accepted version (rollback protection needs it): {exc.strerror or exc}",
                source=str(self.path),
            ) from exc
