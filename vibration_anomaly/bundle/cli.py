"""``vibration-anomaly bundle ...``: make keys, sign payloads, verify and show bundles.

Exit codes: 0 success; 2 refused, unusable input or bad usage (the reason goes
to stderr as ``bundle refused (<reason>): <detail>``). ``verify`` exits 0 only
when the bundle is trusted and, with ``--firmware``, agrees with the firmware.
Signing belongs on a build host, never on a robot (docs/BUNDLE.md).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vibration_anomaly.clikit import check_input_file, check_output_file, guarded

EXIT_OK = 0
EXIT_REFUSED = 2


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bundle",
        help="signed duty-cycle config bundles: keygen, sign, verify, show",
        description="Create signing keys, sign a payload into a bundle, verify a bundle against a trust "
        "directory and the firmware's duty-cycle file, or show what a bundle says. See docs/BUNDLE.md.",
    )
    sub = parser.add_subparsers(dest="bundle_command", metavar="SUBCOMMAND")
    sub.required = True

    p = sub.add_parser(
        "keygen",
        help="make an Ed25519 signing key pair",
        description="Make an Ed25519 key pair. Keep the private key on the signing host (never on a robot); "
        "copy only the public key into each robot's trust directory. Prints the key id.",
    )
    p.add_argument(
        "--private", required=True, type=Path, metavar="FILE", help="private key to create (mode 0600)"
    )
    p.add_argument(
        "--public",
        required=True,
        type=Path,
        metavar="FILE",
        help="public key to create (put it in trust directories; name it *.pub)",
    )
    p.add_argument(
        "--passphrase-env",
        metavar="VAR",
        help="encrypt the private key with the passphrase in this environment variable",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing key files")
    p.set_defaults(func=guarded(_keygen, "bundle keygen"))

    p = sub.add_parser(
        "sign",
        help="check a payload and sign it into a bundle",
        description="Check PAYLOAD (YAML/JSON) against the bundle schema, then sign its exact bytes with the "
        "Ed25519 key and write the bundle. The payload's key_id must be the key's id.",
    )
    p.add_argument("payload", type=Path, metavar="PAYLOAD", help="payload file (YAML or JSON)")
    p.add_argument("--key", required=True, type=Path, metavar="FILE", help="PEM Ed25519 private key")
    p.add_argument("--out", required=True, type=Path, metavar="BUNDLE", help="bundle file to write")
    p.add_argument(
        "--passphrase-env", metavar="VAR", help="environment variable holding the key's passphrase"
    )
    p.set_defaults(func=guarded(_sign, "bundle sign"))

    p = sub.add_parser(
        "verify",
        help="verify a bundle (and its agreement with the firmware)",
        description="Run every check the robot runs at start-up. Exit 0 only when the bundle is trusted and, "
        "with --firmware, every field the firmware file states agrees exactly. With --state the accepted "
        "version is recorded only after every requested check (--model, --engine included) passed.",
    )
    p.add_argument("bundle", type=Path, metavar="BUNDLE")
    p.add_argument("--trust", required=True, type=Path, metavar="DIR", help="directory of trusted *.pub keys")
    p.add_argument("--firmware", type=Path, metavar="FILE", help="firmware duty-cycle file to compare with")
    p.add_argument(
        "--state",
        type=Path,
        metavar="FILE",
        help="rollback state file to check against AND update (as a robot would)",
    )
    p.add_argument(
        "--model", type=Path, metavar="FILE", help="ONNX model file whose sha256 must be model_sha256"
    )
    p.add_argument(
        "--engine",
        type=Path,
        metavar="FILE",
        help="TensorRT plan file whose sha256 must be engine_sha256 (refused when the bundle has none)",
    )
    p.set_defaults(func=guarded(_verify, "bundle verify"))

    p = sub.add_parser(
        "show",
        help="print a bundle's payload, signer and expiry",
        description="Print the header, the payload and whether it has expired. Without --trust the signature "
        "is NOT checked and the output says so; with --trust it is.",
    )
    p.add_argument("bundle", type=Path, metavar="BUNDLE")
    p.add_argument("--trust", type=Path, metavar="DIR", help="also verify against this trust directory")
    p.set_defaults(func=guarded(_show, "bundle show"))


def _err(message: str) -> int:
    print(message, file=sys.stderr)
    return EXIT_REFUSED


def _passphrase(var: str | None) -> bytes | None:
    if var is None:
        return None
    value = os.environ.get(var)
    if not value:
        raise LookupError(f"--passphrase-env {var}: environment variable is unset or empty")
    return value.encode("utf-8")


def _keygen(args: argparse.Namespace) -> int:
    from vibration_anomaly.bundle.files import write_new_file
    from vibration_anomaly.bundle.trust import (
        generate_private_key,
        key_id_of,
        private_key_pem,
        public_key_pem,
    )

    try:
        passphrase = _passphrase(args.passphrase_env)
    except LookupError as exc:
        return _err(str(exc))
    if os.path.abspath(args.private) == os.path.abspath(args.public):
        return _err(
            f"--private/--public: both are {args.private}; expected two different files "
            "(the public key would overwrite the private one)"
        )
    for option, path in (("--private", args.private), ("--public", args.public)):
        if path.exists() and not args.force:
            return _err(f"{option}: {path}: exists; refusing to overwrite a key (use --force)")
        check_output_file(path, option)
    if args.public.suffix != ".pub":
        print(f"note: {args.public}: trust directories only read *.pub files", file=sys.stderr)
    key = generate_private_key()
    private_existed = args.private.exists()
    try:
        write_new_file(args.private, private_key_pem(key, passphrase), mode=0o600, overwrite=args.force)
        try:
            write_new_file(args.public, public_key_pem(key.public_key()), mode=0o644, overwrite=args.force)
        except BaseException:
            # A private key without its public half is an orphan nobody can use: remove what we created.
            if not private_existed:
                with contextlib.suppress(OSError):
                    args.private.unlink()
            raise
    except OSError as exc:
        return _err(f"cannot write key: {exc.filename or ''}: {exc.strerror or exc}")
    key_id = key_id_of(key.public_key())
    print(f"key_id: {key_id}")
    print(
        f"private key: {args.private} (keep it off robots)\npublic key:  {args.public} (copy into trust dirs)",
        file=sys.stderr,
    )
    return EXIT_OK


def _sign(args: argparse.Namespace) -> int:
    from vibration_anomaly.bundle.container import MAX_BUNDLE_BYTES, sign_payload
    from vibration_anomaly.bundle.files import atomic_write, read_limited
    from vibration_anomaly.bundle.loader import verify_bundle_bytes
    from vibration_anomaly.bundle.payload import check_payload
    from vibration_anomaly.bundle.refusal import BundleRefused
    from vibration_anomaly.bundle.trust import TrustStore, key_id_of, load_private_key

    check_output_file(args.out, "--out")
    try:
        passphrase = _passphrase(args.passphrase_env)
        key = load_private_key(args.key, passphrase)
        try:
            # Non-blocking open + fstat: a FIFO given as the payload is refused, not waited on.
            read = read_limited(args.payload, MAX_BUNDLE_BYTES)
        except OSError as exc:
            return _err(f"{args.payload}: cannot read payload: {exc.strerror or exc}")
        payload = read if read is not None else b"x" * (MAX_BUNDLE_BYTES + 1)
        if len(payload) > MAX_BUNDLE_BYTES:
            raise BundleRefused(
                "too_large", f"payload larger than {MAX_BUNDLE_BYTES} bytes", source=str(args.payload)
            )
        try:
            values = check_payload(payload)
        except BundleRefused as exc:
            raise exc.with_source(str(args.payload)) from None
        key_id = key_id_of(key.public_key())
        if values["key_id"] != key_id:
            raise BundleRefused(
                "field",
                f"key_id: payload {values['key_id']}, signing key {key_id}; "
                f'set key_id: "{key_id}" in the payload',
                source=str(args.payload),
                field="key_id",
            )
        data = sign_payload(payload, key)
        # Prove the written bytes verify before anyone ships them.
        verify_bundle_bytes(
            data,
            TrustStore.from_public_keys([key.public_key()], epoch=values["epoch"]),
            source=str(args.out),
            require_firmware=False,
            warn_dev_key=False,
        )
        atomic_write(args.out, data)
    except LookupError as exc:
        return _err(str(exc))
    except BundleRefused as exc:
        return _err(str(exc))
    except OSError as exc:
        return _err(f"{args.out}: cannot write bundle: {exc}")
    print(
        f"signed {args.out}: version {values['version']}, key_id {key_id}, "
        f"payload_sha256 {values['payload_sha256']}"
    )
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from vibration_anomaly.bundle.loader import load_verified_bundle
    from vibration_anomaly.bundle.refusal import BundleRefused

    # The model/engine hash reads the file to its end: a FIFO or device there would never finish.
    for option, path in (("--model", args.model), ("--engine", args.engine)):
        if path is not None:
            check_input_file(path, option)
    try:
        b = load_verified_bundle(
            args.bundle,
            args.trust,
            firmware_path=args.firmware,
            require_firmware=args.firmware is not None,
            state_path=args.state,
            model_path=args.model,
            engine_path=args.engine,
        )
    except BundleRefused as exc:
        return _err(str(exc))
    dc = b.duty_cycle
    print(
        f"trusted: {args.bundle}: version {b.version}, key_id {b.key_id}, key epoch {b.epoch}, "
        f"duty_cycle sample_s {dc.sample_s:g} period_s {dc.period_s:g}, max_queued_batches {b.max_queued_batches}"
    )
    print(
        f"firmware: {'agrees (' + str(args.firmware) + ')' if args.firmware else 'not checked (no --firmware)'}"
    )
    if args.model:
        print(f"model: sha256 matches ({args.model})")
    if args.engine:
        print(f"engine: sha256 matches ({args.engine})")
    if b.is_expired():
        print(
            f"WARN: expired at {b.expires_at.isoformat() if b.expires_at else '?'} (still boots; health WARN)"
        )
    if b.signed_with_dev_key:
        print("WARN: signed with the DEVELOPMENT key; never trust it on a robot")
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    from vibration_anomaly.bundle.container import parse_container, read_bundle_bytes
    from vibration_anomaly.bundle.loader import load_verified_bundle
    from vibration_anomaly.bundle.payload import check_payload
    from vibration_anomaly.bundle.refusal import BundleRefused
    from vibration_anomaly.bundle.trust import DEV_KEY_ID

    try:
        container = parse_container(read_bundle_bytes(args.bundle))
    except BundleRefused as exc:
        return _err(str(exc.with_source(str(args.bundle))))
    print(f"bundle: {args.bundle}")
    print(f"key_id: {container.key_id}{' (DEVELOPMENT key)' if container.key_id == DEV_KEY_ID else ''}")
    status = 0
    if args.trust is None:
        print("signature: present, NOT verified (pass --trust DIR to verify)")
    else:
        try:
            load_verified_bundle(args.bundle, args.trust, require_firmware=False)
            print(f"signature: valid, trusted by {args.trust}")
        except BundleRefused as exc:
            print(f"signature/trust: REFUSED ({exc.reason}): {exc.detail}")
            status = EXIT_REFUSED
    print(f"payload: {len(container.payload)} bytes, sha256 {hashlib.sha256(container.payload).hexdigest()}")
    try:
        values = check_payload(container.payload)
    except BundleRefused as exc:
        print(f"payload check: FAILED ({exc.reason}): {exc.detail}")
        values = None
        status = EXIT_REFUSED
    if values is not None:
        expires = values["expires_at"]
        if expires is None:
            print("expires_at: none (never expires)")
        else:
            expired = datetime.now(timezone.utc) >= expires
            print(
                f"expires_at: {expires.isoformat()} ({'EXPIRED: boots, health WARN' if expired else 'not expired'})"
            )
    print("--- payload ---")
    text = container.payload.decode("utf-8", errors="replace")
    # Unverified text may hold terminal control sequences: show them escaped, never raw.
    sys.stdout.write("".join(c if c.isprintable() or c in "\n\t" else f"\\x{ord(c):02x}" for c in text))
    if not text.endswith("\n"):
        sys.stdout.write("\n")
    return status
