"""The one-file container: a strict header, the payload bytes, an Ed25519 signature.

File format (``docs/BUNDLE.md`` has the full story)::

    vibration-anomaly-bundle: 1
    key_id: 7ea7cc13c5a8a762
    signature: <88 characters of base64: Ed25519 over the payload bytes>
    payload_bytes: 812
    ---
    <the payload: YAML or JSON text, exactly the bytes that were signed>

The header is strict and canonical: the parser re-renders it from what it parsed
and refuses the file unless the bytes are identical, so *every* changed byte in
the file is refused, either here (``format``), as another key (``unknown_key``),
or by the signature (``bad_signature``). There is no tolerated slack (trailing
whitespace, comments, alternative base64 spellings) where a change could hide.
Nothing in the container is trusted until the signature checked out.
"""

from __future__ import annotations

import base64
import binascii
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vibration_anomaly.bundle.files import read_limited
from vibration_anomaly.bundle.refusal import BundleRefused
from vibration_anomaly.bundle.trust import is_key_id, key_id_of

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:  # Python 3.10 (Humble robots)
        from importlib.abc import Traversable

MAX_BUNDLE_BYTES = 64 * 1024
"""Size limit of a whole bundle file, checked before anything is parsed."""

FORMAT_VERSION = 1
MAGIC = f"vibration-anomaly-bundle: {FORMAT_VERSION}"
SIGNATURE_BYTES = 64

_HEADER_RE = re.compile(
    rb"\Avibration-anomaly-bundle: (?P<fmt>[0-9]+)\n"
    rb"key_id: (?P<key_id>[^\n]*)\n"
    rb"signature: (?P<signature>[^\n]*)\n"
    rb"payload_bytes: (?P<length>[0-9]{1,6})\n"
    rb"---\n"
)


@dataclass(frozen=True)
class SignedContainer:
    """The parsed header and the untouched payload bytes; nothing here is trusted yet."""

    key_id: str
    signature: bytes
    payload: bytes


def render_container(key_id: str, signature: bytes, payload: bytes) -> bytes:
    """The one canonical spelling of a bundle file (the parser compares against it)."""
    header = (
        f"{MAGIC}\n"
        f"key_id: {key_id}\n"
        f"signature: {base64.b64encode(signature).decode('ascii')}\n"
        f"payload_bytes: {len(payload)}\n"
        "---\n"
    )
    return header.encode("ascii") + payload


def parse_container(data: bytes) -> SignedContainer:
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleRefused("too_large", f"{len(data)} bytes, over the {MAX_BUNDLE_BYTES}-byte limit")
    m = _HEADER_RE.match(data)
    if m is None:
        raise BundleRefused(
            "format",
            f"not a bundle file: expected the header lines '{MAGIC}', 'key_id: ...', 'signature: ...', "
            "'payload_bytes: N', '---' (LF line endings), each exactly once and in that order",
        )
    if m["fmt"] != str(FORMAT_VERSION).encode():
        raise BundleRefused(
            "format",
            f"bundle format {m['fmt'].decode('ascii', 'replace')!r} is not supported "
            f"(this software reads format {FORMAT_VERSION})",
        )
    key_id = m["key_id"].decode("ascii", "replace")
    if not is_key_id(key_id):
        raise BundleRefused(
            "format", f"key_id: expected 16 lowercase hex digits, got {key_id!r}", field="key_id"
        )
    try:
        signature = base64.b64decode(m["signature"], validate=True)
    except (binascii.Error, ValueError):
        raise BundleRefused("format", "signature: not valid base64", field="signature") from None
    if len(signature) != SIGNATURE_BYTES:
        raise BundleRefused(
            "format", f"signature: expected {SIGNATURE_BYTES} bytes, got {len(signature)}", field="signature"
        )
    payload = data[m.end() :]
    declared = int(m["length"])
    if declared != len(payload):
        raise BundleRefused(
            "format",
            f"payload_bytes: header says {declared}, file holds {len(payload)} (truncated or edited?)",
            field="payload_bytes",
        )
    container = SignedContainer(key_id, signature, payload)
    # Canonical form only: a second spelling of the same header (leading zeros, other
    # base64 padding bits) would be a place where a change goes unnoticed.
    if render_container(key_id, signature, payload) != data:
        raise BundleRefused(
            "format", "header is not in canonical form (re-sign the payload with `bundle sign`)"
        )
    return container


def sign_payload(payload: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """Bundle file bytes for ``payload`` signed by ``private_key``; the payload is not checked.

    ``bundle sign`` checks the payload first (:func:`check_payload`); this low
    level call exists so tests can make validly signed bad payloads.
    """
    if not isinstance(payload, bytes):
        raise TypeError("payload must be bytes: the signature covers exact bytes")
    data = render_container(key_id_of(private_key.public_key()), private_key.sign(payload), payload)
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleRefused(
            "too_large", f"signed bundle would be {len(data)} bytes, over the {MAX_BUNDLE_BYTES}-byte limit"
        )
    return data


def read_bundle_bytes(path: Path | Traversable) -> bytes:
    try:
        data = read_limited(path, MAX_BUNDLE_BYTES)
    except FileNotFoundError:
        raise BundleRefused("missing", "bundle file does not exist", source=str(path)) from None
    except OSError as exc:
        raise BundleRefused(
            "missing", f"cannot read bundle file: {exc.strerror or exc}", source=str(path)
        ) from exc
    if data is None:
        raise BundleRefused(
            "too_large",
            f"larger than the {MAX_BUNDLE_BYTES}-byte limit (checked before parsing)",
            source=str(path),
        )
    return data
