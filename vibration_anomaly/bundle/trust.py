"""Keys and the trust store (public keys and the key epoch).

A robot trusts a *directory* of public keys rather than one key so that keys can
be rotated without a flag day: ship the new ``.pub`` file to the fleet, start
signing with the new key, then delete the old ``.pub``. Private keys never need
to be on a robot; only ``*.pub`` files are read here, and a ``.pub`` file that
holds a private key is refused so one cannot slip onto a robot by mistake.

The trust directory may also hold an ``EPOCH`` file: one integer, 0 when absent.
Ops bump it together with revoking a compromised key; bundles state the epoch
they were signed for and must match it, and the rollback floor restarts in a new
epoch, so a version inflated by the compromised key (2^53) does not lock the
fleet out for good (docs/BUNDLE.md, "Revoking a compromised key").
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from vibration_anomaly.bundle.files import read_limited
from vibration_anomaly.bundle.refusal import BundleRefused

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:  # Python 3.10 (Humble robots)
        from importlib.abc import Traversable

KEY_ID_HEX_CHARS = 16
"""A key id is the first 16 hex digits (64 bits) of sha256 over the raw 32-byte public key."""

MAX_KEY_FILE_BYTES = 4096
"""A PEM Ed25519 key is ~120 bytes; anything much larger is not a key file."""

PUBLIC_KEY_SUFFIX = ".pub"

EPOCH_FILE = "EPOCH"
"""Name of the key-epoch file in a trust directory (absent: epoch 0)."""

MAX_EPOCH = 2**31 - 1
MAX_EPOCH_FILE_BYTES = 64
_EPOCH_RE = re.compile(rb"(0|[1-9][0-9]{0,9})\n?")

DEV_KEY_ID = "7ea7cc13c5a8a762"
"""Key id of the development key shipped in ``vibration_anomaly/bundle/example``.

Its private half is public knowledge (it is in the package), so a bundle signed
with it proves nothing; :attr:`VerifiedBundle.signed_with_dev_key` lets health
checks flag a robot that trusts it.
"""

_KEY_ID_RE = re.compile(r"[0-9a-f]{16}")
_PRIVATE_PEM_RE = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """Derive the key id from the key itself so the trust store needs no naming convention."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:KEY_ID_HEX_CHARS]


def is_key_id(text: str) -> bool:
    return bool(_KEY_ID_RE.fullmatch(text))


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
        data = read_limited(path, MAX_KEY_FILE_BYTES)
    except OSError as exc:
        raise BundleRefused(
            "key", f"cannot read private key: {exc.strerror or exc}", source=str(path)
        ) from exc
    if data is None:
        raise BundleRefused(
            "key", f"larger than {MAX_KEY_FILE_BYTES} bytes; not a key file", source=str(path)
        )
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


# ---------------------------------------------------------------- trust store


@dataclass(frozen=True)
class TrustedKey:
    key_id: str
    key: Ed25519PublicKey
    source: str


class TrustStore:
    """key_id -> public key, built from a directory of ``*.pub`` PEM files, and the key ``epoch``.

    A malformed ``.pub`` or ``EPOCH`` file refuses the whole store instead of
    being skipped: a half-read trust directory is how a rotation silently goes wrong.
    """

    def __init__(self, keys: Iterable[TrustedKey], source: str, epoch: int = 0) -> None:
        self.source = source
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= MAX_EPOCH:
            raise BundleRefused(
                "trust_store",
                f"epoch: expected an integer in 0..{MAX_EPOCH}, got {epoch!r}",
                source=source,
                field="epoch",
            )
        self.epoch = epoch
        self._keys: dict[str, TrustedKey] = {}
        for k in keys:
            self._keys.setdefault(k.key_id, k)
        if not self._keys:
            raise BundleRefused(
                "trust_store",
                f"no public keys (*{PUBLIC_KEY_SUFFIX} files) found; nothing can be trusted",
                source=source,
            )

    @classmethod
    def from_dir(cls, directory: Path | Traversable) -> TrustStore:
        source = str(directory)
        try:
            if not directory.is_dir():
                raise BundleRefused(
                    "trust_store", "not a directory (expected a directory of *.pub files)", source=source
                )
            listed = list(directory.iterdir())
        except OSError as exc:
            raise BundleRefused("trust_store", f"cannot list: {exc.strerror or exc}", source=source) from exc
        entries = sorted((e for e in listed if e.name.endswith(PUBLIC_KEY_SUFFIX)), key=lambda e: e.name)
        epoch_file = next((e for e in listed if e.name == EPOCH_FILE), None)
        epoch = 0 if epoch_file is None else read_epoch(epoch_file)
        return cls((_load_public_key(e) for e in entries), source, epoch)

    @classmethod
    def from_public_keys(
        cls, keys: Iterable[Ed25519PublicKey], source: str = "<in memory>", epoch: int = 0
    ) -> TrustStore:
        return cls((TrustedKey(key_id_of(k), k, source) for k in keys), source, epoch)

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
        data = read_limited(entry, MAX_KEY_FILE_BYTES)
    except OSError as exc:
        raise BundleRefused("trust_store", f"cannot read key: {exc.strerror or exc}", source=source) from exc
    if data is None:
        raise BundleRefused(
            "trust_store", f"larger than {MAX_KEY_FILE_BYTES} bytes; not a key file", source=source
        )
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
        raise BundleRefused(
            "trust_store", f"expected an Ed25519 public key, got {type(key).__name__}", source=source
        )
    return TrustedKey(key_id_of(key), key, source)


def read_epoch(entry: Path | Traversable) -> int:
    """The key epoch an ``EPOCH`` file states: one decimal integer, an optional newline, nothing else."""
    source = str(entry)
    try:
        data = read_limited(entry, MAX_EPOCH_FILE_BYTES)
    except OSError as exc:
        raise BundleRefused(
            "trust_store", f"cannot read the key epoch: {exc.strerror or exc}", source=source, field="epoch"
        ) from exc
    if data is None or not _EPOCH_RE.fullmatch(data) or int(data) > MAX_EPOCH:
        shown = (
            "more than 64 bytes"
            if data is None
            else repr(data[:MAX_EPOCH_FILE_BYTES].decode("ascii", "replace"))
        )
        raise BundleRefused(
            "trust_store",
            f"epoch: expected one integer in 0..{MAX_EPOCH} (e.g. '1' and a newline), got {shown}",
            source=source,
            field="epoch",
        )
    return int(data)
