"""Keys, the trust store and the on-robot rollback memory.

A robot trusts a *directory* of public keys rather than one key so that keys can
be rotated without a flag day: ship the new ``.pub`` file to the fleet, start
signing with the new key, then delete the old ``.pub``. Private keys never need
to be on a robot; only ``*.pub`` files are read here, and a ``.pub`` file that
holds a private key is refused so one cannot slip onto a robot by mistake.

The rollback memory is a small JSON file holding the highest bundle version this
robot has accepted. It is written atomically (temporary file, fsync, rename,
fsync of the directory) so that a power cut leaves either the old or the new
record, never a torn one; an unreadable record is a refusal, not a crash, because
silently forgetting it would re-open the rollback hole it exists to close.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import json
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from vibration_anomaly.errors import VibrationAnomalyError

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:  # Python 3.10 (Humble robots)
        from importlib.abc import Traversable

KEY_ID_HEX_CHARS = 16
"""A key id is the first 16 hex digits (64 bits) of sha256 over the raw 32-byte public key."""

MAX_KEY_FILE_BYTES = 4096
"""A PEM Ed25519 key is ~120 bytes; anything much larger is not a key file."""

MAX_STATE_FILE_BYTES = 4096

PUBLIC_KEY_SUFFIX = ".pub"

DEV_KEY_ID = "7ea7cc13c5a8a762"
"""Key id of the development key shipped in ``config/example``.

Its private half is public knowledge (it is in the package), so a bundle signed
with it proves nothing; :attr:`VerifiedBundle.signed_with_dev_key` lets health
checks flag a robot that trusts it.
"""

_KEY_ID_RE = re.compile(r"[0-9a-f]{16}")
_PRIVATE_PEM_RE = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")


class BundleRefused(VibrationAnomalyError):
    """The config bundle cannot be trusted or disagrees with the firmware: do not boot.

    ``reason`` is a short machine-readable code (see ``docs/BUNDLE.md`` for the
    list) for diagnostics and metrics; ``detail`` is the human sentence, which
    names the field and both values where there are two sides.
    """

    def __init__(self, reason: str, detail: str, *, source: str | None = None, field: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.source = source
        self.field = field
        where = f"{source}: " if source else ""
        super().__init__(f"{where}bundle refused ({reason}): {detail}")

    def with_source(self, source: str) -> BundleRefused:
        """Re-raise helper: attach the file name when a lower layer did not know it."""
        if self.source is not None:
            return self
        return BundleRefused(self.reason, self.detail, source=source, field=self.field)


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """Derive the key id from the key itself so the trust store needs no naming convention."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:KEY_ID_HEX_CHARS]


def is_key_id(text: str) -> bool:
    return bool(_KEY_ID_RE.fullmatch(text))


def _read_limited(source: Path | Traversable, limit: int) -> bytes | None:
    """Read at most ``limit`` bytes; None when the file is larger (checked before any parsing).

    A FIFO, device or directory at the path raises ``OSError`` at once: a plain
    ``open()`` of a FIFO blocks until a writer appears, so it is opened
    non-blocking and checked with ``fstat`` before a byte is read.
    """
    if not isinstance(source, (str, os.PathLike)):
        with source.open("rb") as fh:  # a packaged resource (importlib Traversable)
            data = fh.read(limit + 1)
        return None if len(data) > limit else data
    fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
                    else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
            raise OSError(errno.EINVAL, f"is {kind}; expected a regular file", str(source))
        data = fh.read(limit + 1)
    return None if len(data) > limit else data


# ---------------------------------------------------------------- private keys


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey, passphrase: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(path: Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """Load a signing key, with an error that says what is wrong with the file."""
    path = Path(path)
    try:
        data = _read_limited(path, MAX_KEY_FILE_BYTES)
    except OSError as exc:
        raise BundleRefused("key", f"cannot read private key: {exc.strerror or exc}", source=str(path)) from exc
    if data is None:
        raise BundleRefused("key", f"larger than {MAX_KEY_FILE_BYTES} bytes; not a key file", source=str(path))
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError as exc:  # encrypted without passphrase, or passphrase for a plain key
        raise BundleRefused("key", f"passphrase problem: {exc}", source=str(path)) from exc
    except ValueError as exc:
        raise BundleRefused(
            "key", f"not a PEM private key (or wrong passphrase): {exc}", source=str(path)
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleRefused(
            "key", f"expected an Ed25519 private key, got {type(key).__name__}", source=str(path)
        )
    return key


def write_new_file(path: Path, data: bytes, *, mode: int = 0o644, overwrite: bool = False) -> None:
    """Create ``path`` with ``mode`` from the start (a private key is never world-readable, even briefly)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists; refusing to overwrite (use --force)")
    atomic_write(path, data, mode=mode)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write so that readers (and a power cut) see either the old file or the new one, never half."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    # The rename itself is only durable once the directory entry is on disk.
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# ---------------------------------------------------------------- trust store


@dataclass(frozen=True)
class TrustedKey:
    key_id: str
    key: Ed25519PublicKey
    source: str


class TrustStore:
    """key_id -> public key, built from a directory of ``*.pub`` PEM files.

    A malformed ``.pub`` file refuses the whole store instead of being skipped:
    a half-read trust directory is how a rotation silently goes wrong.
    """

    def __init__(self, keys: Iterable[TrustedKey], source: str) -> None:
        self.source = source
        self._keys: dict[str, TrustedKey] = {}
        for k in keys:
            self._keys.setdefault(k.key_id, k)
        if not self._keys:
            raise BundleRefused(
                "trust_store", f"no public keys (*{PUBLIC_KEY_SUFFIX} files) found; nothing can be trusted",
                source=source,
            )

    @classmethod
    def from_dir(cls, directory: Path | Traversable) -> TrustStore:
        source = str(directory)
        try:
            if not directory.is_dir():
                raise BundleRefused("trust_store", "not a directory (expected a directory of *.pub files)",
                                    source=source)
            entries = sorted(
                (e for e in directory.iterdir() if e.name.endswith(PUBLIC_KEY_SUFFIX)), key=lambda e: e.name
            )
        except OSError as exc:
            raise BundleRefused("trust_store", f"cannot list: {exc.strerror or exc}", source=source) from exc
        return cls((_load_public_key(e) for e in entries), source)

    @classmethod
    def from_public_keys(cls, keys: Iterable[Ed25519PublicKey], source: str = "<in memory>") -> TrustStore:
        return cls((TrustedKey(key_id_of(k), k, source) for k in keys), source)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __iter__(self) -> Iterator[TrustedKey]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    def key_ids(self) -> tuple[str, ...]:
        return tuple(sorted(self._keys))

    def verify(self, key_id: str, signature: bytes, payload: bytes) -> None:
        """Raise unless ``signature`` is ``key_id``'s Ed25519 signature over exactly ``payload``."""
        trusted = self._keys.get(key_id)
        if trusted is None:
            raise BundleRefused(
                "unknown_key",
                f"signed by key {key_id}, which is not in the trust store {self.source} "
                f"(trusted: {', '.join(self.key_ids())})",
                field="key_id",
            )
        try:
            trusted.key.verify(signature, payload)
        except InvalidSignature:
            raise BundleRefused(
                "bad_signature",
                f"signature does not match the payload for key {key_id} ({trusted.source}); "
                "the file was altered or signed with another key",
                field="signature",
            ) from None


def _load_public_key(entry: Path | Traversable) -> TrustedKey:
    source = str(entry)
    try:
        data = _read_limited(entry, MAX_KEY_FILE_BYTES)
    except OSError as exc:
        raise BundleRefused("trust_store", f"cannot read key: {exc.strerror or exc}", source=source) from exc
    if data is None:
        raise BundleRefused("trust_store", f"larger than {MAX_KEY_FILE_BYTES} bytes; not a key file",
                            source=source)
    if _PRIVATE_PEM_RE.search(data):
        raise BundleRefused(
            "trust_store",
            "holds a PRIVATE key; a trust directory holds public keys only (private keys stay off the robot)",
            source=source,
        )
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise BundleRefused("trust_store", f"not a PEM public key: {exc}", source=source) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise BundleRefused("trust_store", f"expected an Ed25519 public key, got {type(key).__name__}",
                            source=source)
    return TrustedKey(key_id_of(key), key, source)


# ---------------------------------------------------------------- rollback state


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
            data = _read_limited(self.path, MAX_STATE_FILE_BYTES)
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


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
