"""Hash checks of the files a bundle vouches for: the ONNX model and the TensorRT plan.

A plan built from an older model still passes the engine's I/O checks, so the
identity of every file that will be loaded is checked against the sha256 the
signed bundle names. The ``read_verified_*`` forms return the checked bytes, so
that nothing can swap the file between check and load.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from vibration_anomaly.bundle.refusal import BundleRefused
from vibration_anomaly.bundle.schema import VerifiedBundle


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
        source=bundle.source_path, field="model_sha256",
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
        raise BundleRefused("model_missing", f"model_sha256: cannot read model file {path}: "
                            f"{exc.strerror or exc}", source=bundle.source_path, field="model_sha256") from exc
    if actual != bundle.model_sha256:
        raise _model_refusal(bundle, path, actual)
    return actual


def read_verified_model(bundle: VerifiedBundle, path: Path | str) -> bytes:
    """The model bytes, read once and checked against the bundle (no check-then-swap window)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BundleRefused("model_missing", f"model_sha256: cannot read model file {path}: "
                            f"{exc.strerror or exc}", source=bundle.source_path, field="model_sha256") from exc
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
            source=bundle.source_path, field="engine_sha256",
        )
    return bundle.engine_sha256


def _engine_refusal(bundle: VerifiedBundle, path: Path, expected: str, actual: str) -> BundleRefused:
    return BundleRefused(
        "engine_mismatch",
        f"engine_sha256: bundle {expected}, file {path} has {actual}; this engine was not built for this "
        "bundle (stale plan? rebuild it from the bundle's model and re-sign)",
        source=bundle.source_path, field="engine_sha256",
    )


def _engine_unreadable(bundle: VerifiedBundle, path: Path, exc: OSError) -> BundleRefused:
    return BundleRefused("engine_missing", f"engine_sha256: cannot read engine file {path}: {exc.strerror or exc}",
                         source=bundle.source_path, field="engine_sha256")


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
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _engine_unreadable(bundle, path, exc) from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise _engine_refusal(bundle, path, expected, actual)
    return data
