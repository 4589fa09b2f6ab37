"""Hash checks of the files a bundle vouches for: ONNX model, TensorRT plan, model.json, calibrations.

A plan built from an older model still passes the engine's I/O checks, and a
calibration from another machine still parses, so the identity of every file
that will be used is checked against the sha256 the signed bundle names. The
``read_verified_*`` forms read each file once (bounded, never blocking on a
FIFO) and return the very bytes they hashed: the caller parses or loads those,
so nothing can swap the file between check and use.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from vibration_anomaly.bundle.files import read_limited
from vibration_anomaly.bundle.refusal import BundleRefused
from vibration_anomaly.bundle.schema import VerifiedBundle

MAX_MODEL_BYTES = 2 * 1024**3
"""ONNX model and TensorRT plan files: the limit ``engine build`` applies (checked before reading)."""
MAX_MODEL_JSON_BYTES = 16 * 1024 * 1024
MAX_CALIBRATION_BYTES = 16 * 1024 * 1024
"""As ``core.scoring.MAX_CALIBRATION_BYTES``: a calibration file is a few hundred KiB at most."""


def _read_once(bundle: VerifiedBundle, path: Path, limit: int, what: str, reason: str, field: str) -> bytes:
    """The whole file, or a ``reason`` refusal naming ``field`` (unreadable, not a regular file, too large)."""
    try:
        data = read_limited(path, limit)
    except OSError as exc:
        raise BundleRefused(
            reason,
            f"{field}: cannot read {what} file {path}: {exc.strerror or exc}",
            source=bundle.source_path,
            field=field,
        ) from exc
    if data is None:
        raise BundleRefused(
            reason,
            f"{field}: {what} file {path} is larger than {limit} bytes",
            source=bundle.source_path,
            field=field,
        )
    return data


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _model_refusal(bundle: VerifiedBundle, path: Path, actual: str) -> BundleRefused:
    return BundleRefused(
        "model_mismatch",
        f"model_sha256: bundle {bundle.model_sha256}, file {path} has {actual}; "
        "this bundle was not made for this model",
        source=bundle.source_path,
        field="model_sha256",
    )


def verify_model_file(bundle: VerifiedBundle, path: Path | str) -> str:
    """Refuse a model file whose sha256 is not the bundle's ``model_sha256``; call before loading it.

    Returns the hash. Where the engine can take bytes (both backends can), prefer
    :func:`read_verified_model`, which leaves no gap between check and load.
    """
    path = Path(path)
    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise BundleRefused(
            "model_missing",
            f"model_sha256: cannot read model file {path}: {exc.strerror or exc}",
            source=bundle.source_path,
            field="model_sha256",
        ) from exc
    if actual != bundle.model_sha256:
        raise _model_refusal(bundle, path, actual)
    return actual


def read_verified_model(bundle: VerifiedBundle, path: Path | str) -> bytes:
    """The model bytes, read once and checked against the bundle (no check-then-swap window)."""
    path = Path(path)
    data = _read_once(bundle, path, MAX_MODEL_BYTES, "model", "model_missing", "model_sha256")
    actual = hashlib.sha256(data).hexdigest()
    if actual != bundle.model_sha256:
        raise _model_refusal(bundle, path, actual)
    return data


def _engine_expected(bundle: VerifiedBundle, path: Path) -> str:
    """The bundle's engine hash, or a refusal: a bundle that names no engine vouches for none."""
    if bundle.engine_sha256 is None:
        raise BundleRefused(
            "engine_mismatch",
            f"engine_sha256: bundle names no TensorRT engine (null), so engine file {path} is not vouched for; "
            "sign a bundle with engine_sha256 set to the plan's sha256, or run the ONNX model",
            source=bundle.source_path,
            field="engine_sha256",
        )
    return bundle.engine_sha256


def _engine_refusal(bundle: VerifiedBundle, path: Path, expected: str, actual: str) -> BundleRefused:
    return BundleRefused(
        "engine_mismatch",
        f"engine_sha256: bundle {expected}, file {path} has {actual}; this engine was not built for this "
        "bundle (stale plan? rebuild it from the bundle's model and re-sign)",
        source=bundle.source_path,
        field="engine_sha256",
    )


def _engine_unreadable(bundle: VerifiedBundle, path: Path, exc: OSError) -> BundleRefused:
    return BundleRefused(
        "engine_missing",
        f"engine_sha256: cannot read engine file {path}: {exc.strerror or exc}",
        source=bundle.source_path,
        field="engine_sha256",
    )


def verify_engine_file(bundle: VerifiedBundle, path: Path | str) -> str:
    """Refuse a TensorRT plan whose sha256 is not the bundle's ``engine_sha256``; call before loading it.

    A plan built from an older model still passes the engine's I/O checks, so
    its identity has to be checked separately. Refuses (``engine_mismatch``)
    when the bundle has no ``engine_sha256`` at all, or the hash differs (both
    are named); ``engine_missing`` when the file cannot be read. Returns the
    hash. Prefer :func:`read_verified_engine` where the bytes can be handed on.
    """
    path = Path(path)
    expected = _engine_expected(bundle, path)
    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise _engine_unreadable(bundle, path, exc) from exc
    if actual != expected:
        raise _engine_refusal(bundle, path, expected, actual)
    return actual


def read_verified_engine(bundle: VerifiedBundle, path: Path | str) -> bytes:
    """The plan bytes, read once and checked against ``engine_sha256`` (no check-then-swap window).

    Same refusals as :func:`verify_engine_file`; deserialize these bytes rather
    than re-reading the file.
    """
    path = Path(path)
    expected = _engine_expected(bundle, path)
    data = _read_once(bundle, path, MAX_MODEL_BYTES, "engine", "engine_missing", "engine_sha256")
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise _engine_refusal(bundle, path, expected, actual)
    return data


def read_verified_model_json(bundle: VerifiedBundle, path: Path | str) -> bytes:
    """``model.json`` (frontend, priors, voting) read once and checked against ``model_json_sha256``.

    A bundle whose ``model_json_sha256`` is null vouches for no model.json: the
    bytes are returned unchecked (the caller warns). Refuses ``model_json_missing``
    (unreadable) or ``model_json_mismatch`` (both hashes named).
    """
    path = Path(path)
    data = _read_once(
        bundle, path, MAX_MODEL_JSON_BYTES, "model.json", "model_json_missing", "model_json_sha256"
    )
    actual = hashlib.sha256(data).hexdigest()
    if bundle.model_json_sha256 is not None and actual != bundle.model_json_sha256:
        raise BundleRefused(
            "model_json_mismatch",
            f"model_json_sha256: bundle {bundle.model_json_sha256}, file {path} has {actual}; this model.json "
            "(frontend, priors, voting) is not the one the bundle was made for",
            source=bundle.source_path,
            field="model_json_sha256",
        )
    return data


def read_verified_listed_model(
    bundle: VerifiedBundle, meta: dict[str, object], path: Path | str
) -> bytes | None:
    """A model file that a vouched-for ``model.json`` lists (its ``files`` map), read once and checked.

    The bundle signs ``model.json`` (``model_json_sha256``), and ``model.json`` names the sha256 of every
    model file it ships, so the FP32 twin of the deploy model is vouched for through it. None when the
    bundle vouches for no model.json or model.json lists no such file: the caller then runs the model
    the bundle names itself. ``model_mismatch`` (both hashes named) or ``model_missing`` otherwise.
    """
    path = Path(path)
    files = meta.get("files")
    expected = files.get(path.name) if isinstance(files, dict) else None
    if bundle.model_json_sha256 is None or not isinstance(expected, str):
        return None
    field = f"model_json_sha256 -> files.{path.name}"
    data = _read_once(bundle, path, MAX_MODEL_BYTES, "model", "model_missing", field)
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise BundleRefused(
            "model_mismatch",
            f"{field}: model.json {expected}, file {path} has {actual}; not the model the bundle vouches for",
            source=bundle.source_path,
            field=field,
        )
    return data


def read_verified_calibration(bundle: VerifiedBundle, path: Path | str, robot_id: str) -> bytes:
    """``robot_id``'s calibration file read once and, when the bundle binds calibrations, checked by hash.

    With a ``calibrations`` map the robot must be listed and the file's sha256
    must be the one named for it (``calibration_mismatch`` otherwise, both
    hashes named): a calibration from another machine, or edited, is refused.
    Without the map the bytes are returned unchecked; the caller still checks
    that they fit the model (``runtime.pipeline``). ``calibration_missing``: unreadable.
    """
    path = Path(path)
    field = f"calibrations.{robot_id}"
    data = _read_once(bundle, path, MAX_CALIBRATION_BYTES, "calibration", "calibration_missing", field)
    if bundle.calibrations is None:
        return data
    expected = bundle.calibration_sha256(robot_id)
    if expected is None:
        listed = [r for r, _ in bundle.calibrations]
        shown = ", ".join(listed[:5]) + (f" and {len(listed) - 5} more" if len(listed) > 5 else "")
        raise BundleRefused(
            "calibration_mismatch",
            f"{field}: robot {robot_id!r} is not listed in the bundle's calibrations ({shown}); add its "
            "calibration's sha256, bump version and re-sign",
            source=bundle.source_path,
            field=field,
        )
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise BundleRefused(
            "calibration_mismatch",
            f"{field}: bundle {expected}, file {path} has {actual}; this is not the calibration the bundle names "
            "for this robot (another machine's, or recalibrated without re-signing)",
            source=bundle.source_path,
            field=field,
        )
    return data
