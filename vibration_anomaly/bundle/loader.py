"""The loader: the one place a bundle file becomes trusted numbers, and the rollback floor.

Order of checks, cheapest and least trusting first: size (before parsing),
header, key, signature, then only signed bytes are parsed (``parse``), then
fields and ranges (``field``), the key epoch against the trust store's
(``epoch_revoked`` / ``epoch_mismatch``), then rollback, firmware agreement, model and
engine hashes, and only then (unless the caller defers it with ``record=False``)
the accepted version is recorded. See :func:`load_verified_bundle` for the
contract when the caller checks further files itself.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vibration_anomaly.bundle.checks import verify_engine_file, verify_model_file
from vibration_anomaly.bundle.container import parse_container, read_bundle_bytes
from vibration_anomaly.bundle.firmware import compare_with_firmware, read_firmware_statement, strict_yaml_load
from vibration_anomaly.bundle.payload import _field_error, check_payload
from vibration_anomaly.bundle.refusal import BundleRefused
from vibration_anomaly.bundle.rollback import AcceptedRecord, RollbackState
from vibration_anomaly.bundle.schema import _LOADER_TOKEN, VerifiedBundle, _as_utc
from vibration_anomaly.bundle.trust import TrustStore

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:  # Python 3.10 (Humble robots)
        from importlib.abc import Traversable

log = logging.getLogger(__name__)

EXAMPLE_PACKAGE = "vibration_anomaly.bundle"
EXAMPLE_DIR = "example"
EXAMPLE_BUNDLE = "dev_bundle.yaml"
EXAMPLE_FIRMWARE = "firmware.json"
EXAMPLE_TRUST = "trust"


def check_epoch(bundle: VerifiedBundle, trust: TrustStore) -> None:
    """Refuse a bundle not signed for the trust store's key epoch (see ``trust.read_epoch``).

    Lower: signed before a key revocation (``epoch_revoked``); higher: the trust
    store has not been brought to that epoch yet (``epoch_mismatch``), which also
    keeps a key, compromised or not, from raising the epoch on its own.
    """
    if bundle.epoch < trust.epoch:
        raise BundleRefused(
            "epoch_revoked",
            f"epoch: bundle signed for key epoch {bundle.epoch}, but the trust store {trust.source} is at epoch "
            f"{trust.epoch}: bundles of earlier epochs were revoked with their keys",
            field="epoch",
        )
    if bundle.epoch != trust.epoch:
        raise BundleRefused(
            "epoch_mismatch",
            f"epoch: bundle signed for key epoch {bundle.epoch}, but the trust store {trust.source} is at epoch "
            f"{trust.epoch}; deploy the trust store's EPOCH (with the key change) before bundles of a new epoch",
            field="epoch",
        )


def _newer(bundle: VerifiedBundle, last: AcceptedRecord) -> bool:
    return (bundle.epoch, bundle.version) > (last.epoch, last.version)


def verify_bundle_bytes(
    data: bytes,
    trust: TrustStore,
    *,
    source: str,
    firmware_path: Path | Traversable | None = None,
    require_firmware: bool = True,
    state_path: Path | None = None,
    model_path: Path | None = None,
    engine_path: Path | None = None,
    record: bool = True,
    now: datetime | float | None = None,
    warn_dev_key: bool = True,
) -> VerifiedBundle:
    """Every check, in order; the single path from bytes to a :class:`VerifiedBundle`.

    ``record`` False runs the rollback check but leaves the state file alone;
    the caller then calls :func:`commit_accepted` once its own checks passed.
    """
    try:
        container = parse_container(data)
        trust.verify(container.key_id, container.signature, container.payload)
        values = check_payload(container.payload)
        if values["key_id"] != container.key_id:
            raise _field_error(
                "key_id",
                f"payload names key {values['key_id']}, but the bundle is signed by {container.key_id}",
            )
        bundle = VerifiedBundle(**values, source_path=source, _token=_LOADER_TOKEN)
        check_epoch(bundle, trust)

        state = RollbackState(state_path) if state_path is not None else None
        last = state.check(bundle.epoch, bundle.version, bundle.payload_sha256) if state is not None else None

        if firmware_path is not None:
            fw_exists = firmware_path.exists() if isinstance(firmware_path, Path) else firmware_path.is_file()
            if fw_exists or require_firmware:
                fw = read_firmware_statement(firmware_path)
                compare_with_firmware(bundle.effective_values(), fw, str(firmware_path))
            else:
                log.warning(
                    "%s: firmware file %s missing; agreement NOT checked (require_firmware is off: "
                    "bench use only)",
                    source,
                    firmware_path,
                )
        elif require_firmware:
            raise BundleRefused(
                "firmware_missing",
                "no firmware duty-cycle file configured; the agreement check needs one "
                "(set require_firmware false only on a bench)",
            )
        else:
            log.info("%s: no firmware file given; agreement not checked (caller opted out)", source)

        if model_path is not None:
            verify_model_file(bundle, model_path)
        if engine_path is not None:
            verify_engine_file(bundle, engine_path)

        # Last, after every check this call makes: a refused bundle must never raise the floor.
        if record and state is not None and (last is None or _newer(bundle, last)):
            state.record(bundle.epoch, bundle.version, bundle.payload_sha256, bundle.key_id, _as_utc(now))
    except BundleRefused as exc:
        raise exc.with_source(source) from None

    if bundle.is_expired(now):
        log.warning(
            "%s: bundle version %d expired at %s; still running it, health is WARN until a newer "
            "bundle arrives",
            source,
            bundle.version,
            bundle.expires_at.isoformat() if bundle.expires_at else "?",
        )
    if warn_dev_key and bundle.signed_with_dev_key:
        log.warning(
            "%s: signed with the DEVELOPMENT key %s; never trust it on a robot", source, bundle.key_id
        )
    return bundle


def load_verified_bundle(
    path: Path | str,
    trust_dir: Path | str | TrustStore,
    *,
    firmware_path: Path | str | None = None,
    require_firmware: bool = True,
    state_path: Path | str | None = None,
    model_path: Path | str | None = None,
    engine_path: Path | str | None = None,
    record: bool = True,
    now: datetime | float | None = None,
) -> VerifiedBundle:
    """The one way to turn a bundle file into trusted numbers, or a :class:`BundleRefused` saying why.

    ``state_path`` None disables the rollback check (off-robot tools); on a
    robot pass a path on persistent storage. ``model_path`` / ``engine_path``,
    when given, are hashed and compared (:func:`verify_model_file`,
    :func:`verify_engine_file`) before anything is recorded. ``now`` only
    affects the expiry warning (an expired bundle still loads; see
    ``is_expired``).

    Recording contract: the accepted version must be recorded only after
    *everything* the caller checks has passed, or a bundle refused later (say,
    ``model_mismatch`` because its model failed to deploy) would still raise the
    rollback floor and block the revert to the previous, working bundle.

    * ``record=True`` (default): the version is recorded here, after every
      check this call makes. Use it only when this call makes *all* the checks
      (model/engine passed here, or none needed: the ``bundle verify`` CLI).
    * ``record=False``: the rollback check still runs (a lower version is still
      refused) but the state file is not touched. Run your own checks (model,
      engine, calibration, ...), then call ``commit_accepted(bundle,
      state_path)``; if any of them refuses, do not commit.
    """
    trust = trust_dir if isinstance(trust_dir, TrustStore) else TrustStore.from_dir(Path(trust_dir))
    data = read_bundle_bytes(Path(path))
    return verify_bundle_bytes(
        data,
        trust,
        source=str(path),
        firmware_path=None if firmware_path is None else Path(firmware_path),
        require_firmware=require_firmware,
        state_path=None if state_path is None else Path(state_path),
        model_path=None if model_path is None else Path(model_path),
        engine_path=None if engine_path is None else Path(engine_path),
        record=record,
        now=now,
    )


def commit_accepted(
    bundle: VerifiedBundle, state_path: Path | str | None, *, now: datetime | float | None = None
) -> bool:
    """Record ``bundle`` as accepted on this robot; call once every check of the caller has passed.

    The second half of ``load_verified_bundle(..., record=False)``. The state
    file is re-read and re-checked first (another process may have accepted a
    newer bundle in between), so this refuses with ``rollback`` /
    ``version_reuse`` / ``state`` exactly as the loader would; then it is
    written atomically (temporary file, fsync, rename, fsync of the directory).
    Returns True when the record was written, False when it already held this
    version (a reboot) or ``state_path`` is None (no rollback state, as in the
    loader).
    """
    if not isinstance(bundle, VerifiedBundle):
        raise TypeError(f"commit_accepted needs a VerifiedBundle, got {type(bundle).__name__}")
    if state_path is None:
        return False
    state = RollbackState(Path(state_path))
    try:
        last = state.check(bundle.epoch, bundle.version, bundle.payload_sha256)
        if last is not None and not _newer(bundle, last):
            return False
        state.record(bundle.epoch, bundle.version, bundle.payload_sha256, bundle.key_id, _as_utc(now))
    except BundleRefused as exc:
        raise exc.with_source(bundle.source_path) from None
    return True


def example_payload() -> dict[str, Any]:
    """The shipped example payload as a plain dict (unverified; a starting point for new payloads)."""
    raw = strict_yaml_load((example_dir() / "payload.yaml").read_text(encoding="utf-8"))
    return dict(raw)


def example_dir() -> Traversable:
    """The shipped example: development-key bundle, its trust dir and a matching firmware file."""
    return resources.files(EXAMPLE_PACKAGE) / EXAMPLE_DIR


def load_example_bundle(
    require_firmware: bool = True, *, now: datetime | float | None = None
) -> VerifiedBundle:
    """Verify the shipped example for real (signature, trust dir, firmware file); for the simulator and tests.

    No rollback state is used. The example is signed with the development key,
    so ``signed_with_dev_key`` is True.
    """
    root = example_dir()
    bundle_file = root / EXAMPLE_BUNDLE
    return verify_bundle_bytes(
        read_bundle_bytes(bundle_file),
        TrustStore.from_dir(root / EXAMPLE_TRUST),
        source=str(bundle_file),
        firmware_path=root / EXAMPLE_FIRMWARE,
        require_firmware=require_firmware,
        now=now,
        warn_dev_key=False,
    )
