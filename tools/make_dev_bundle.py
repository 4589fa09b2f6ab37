#!/usr/bin/env python3
"""(Re)generate the shipped example bundle from its payload, the dev key and the current model.

The example bundle must name the sha256 of the model files shipped in the package
(vibration_anomaly/model/default/model.onnx and its model.json), which change whenever
the model is retrained; run this after every model change. It rewrites the ``key_id``,
``model_sha256`` and ``model_json_sha256`` lines of
vibration_anomaly/bundle/example/payload.yaml (comments kept), bumps
``version`` and ``issued_at`` when anything changed (a robot refuses a changed
bundle under an old version), signs with the DEVELOPMENT key, and verifies the
result against the shipped trust directory and firmware file.

    python tools/make_dev_bundle.py            # regenerate
    python tools/make_dev_bundle.py --check    # exit 1 if the example is stale (CI)
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vibration_anomaly.bundle.checks import sha256_file  # noqa: E402
from vibration_anomaly.bundle.container import sign_payload  # noqa: E402
from vibration_anomaly.bundle.files import atomic_write  # noqa: E402
from vibration_anomaly.bundle.loader import (  # noqa: E402
    EXAMPLE_BUNDLE,
    EXAMPLE_FIRMWARE,
    EXAMPLE_TRUST,
    load_verified_bundle,
)
from vibration_anomaly.bundle.payload import check_payload  # noqa: E402
from vibration_anomaly.bundle.trust import key_id_of, load_private_key  # noqa: E402

EXAMPLE = ROOT / "vibration_anomaly" / "bundle" / "example"
DEV_KEY = EXAMPLE / "DEV_KEY_DO_NOT_USE_ON_ROBOTS.pem"
PAYLOAD = EXAMPLE / "payload.yaml"
DEFAULT_MODEL = ROOT / "vibration_anomaly" / "model" / "default" / "model.onnx"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _set_line(text: str, key: str, value: str) -> str:
    """Replace the value of one top-level ``key:`` line, keeping its trailing comment."""
    pattern = re.compile(rf'^({re.escape(key)}:\s*)("[^"\n]*"|[^\s#\n]+)', re.MULTILINE)
    new, n = pattern.subn(lambda m: m.group(1) + value, text)
    if n != 1:
        raise SystemExit(f"{PAYLOAD}: expected exactly one top-level '{key}:' line, found {n}")
    return new


def _current_version(text: str) -> int:
    m = re.search(r"^version:\s*([0-9]+)", text, re.MULTILINE)
    if m is None:
        raise SystemExit(f"{PAYLOAD}: no top-level 'version:' line")
    return int(m.group(1))


def _signed_payload() -> bytes | None:
    """The payload bytes the shipped example bundle carries now (None: there is none yet)."""
    bundle = EXAMPLE / EXAMPLE_BUNDLE
    if not bundle.is_file():
        return None
    head, sep, payload = bundle.read_bytes().partition(b"\n---\n")
    return payload if sep else None


def build(model: Path) -> tuple[bytes, bytes, str]:
    """Return (payload bytes, bundle bytes, model sha256) for the current inputs."""
    if model.is_file():
        model_sha = sha256_file(model)
    else:
        print(
            f"warning: {model} does not exist yet; using the sha256 of an empty file ({EMPTY_SHA256}). "
            "Re-run this tool when the model lands.",
            file=sys.stderr,
        )
        model_sha = EMPTY_SHA256
    meta = model.parent / "model.json"
    meta_sha = sha256_file(meta) if meta.is_file() else EMPTY_SHA256
    key = load_private_key(DEV_KEY)
    old = PAYLOAD.read_text(encoding="utf-8")
    new = _set_line(old, "key_id", f'"{key_id_of(key.public_key())}"')
    new = _set_line(new, "model_sha256", f'"{model_sha}"')
    new = _set_line(new, "model_json_sha256", f'"{meta_sha}"')
    if new != old or new.encode("utf-8") != _signed_payload():
        # A changed hash line, or a hand edit to payload.yaml since the last signing: a new version.
        new = _set_line(new, "version", str(_current_version(old) + 1))
        stamp = datetime.now(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
        new = _set_line(new, "issued_at", f'"{stamp}"')
    payload = new.encode("utf-8")
    check_payload(payload)  # a bad payload never gets a signature
    return payload, sign_payload(payload, key), model_sha


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL, help="model file the bundle is meant for"
    )
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if the example is stale")
    args = parser.parse_args()

    payload, bundle, model_sha = build(args.model)
    bundle_file = EXAMPLE / EXAMPLE_BUNDLE
    stale = PAYLOAD.read_bytes() != payload or not bundle_file.exists() or bundle_file.read_bytes() != bundle
    if args.check:
        print("stale: run tools/make_dev_bundle.py" if stale else "up to date", file=sys.stderr)
        return 1 if stale else 0
    if stale:
        atomic_write(PAYLOAD, payload)
        atomic_write(bundle_file, bundle)
    verified = load_verified_bundle(
        bundle_file, EXAMPLE / EXAMPLE_TRUST, firmware_path=EXAMPLE / EXAMPLE_FIRMWARE, require_firmware=True
    )
    print(
        f"{'wrote' if stale else 'unchanged'} {bundle_file.relative_to(ROOT)}: version {verified.version}, "
        f"key {verified.key_id}, model_sha256 {model_sha}, payload_sha256 {verified.payload_sha256}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
