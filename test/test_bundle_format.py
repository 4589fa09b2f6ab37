"""Bundle container, signature and VerifiedBundle construction rules, with real Ed25519 keys."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import pickle
from pathlib import Path

import pytest
from bundle_testkit import Signer, model_sha, write_firmware

from vibration_anomaly.bundle import (
    MAX_BUNDLE_BYTES,
    BundleRefused,
    DutyCycle,
    VerifiedBundle,
    check_payload,
    defaults,
    load_verified_bundle,
    parse_container,
    render_container,
)
from vibration_anomaly.errors import InputError, VibrationAnomalyError


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    return Signer(tmp_path)


def _load(path: Path, signer: Signer, **kw: object) -> VerifiedBundle:
    kw.setdefault("require_firmware", False)
    return load_verified_bundle(path, signer.trust_dir, **kw)  # type: ignore[arg-type]


def test_round_trip_gives_the_signed_numbers(tmp_path: Path, signer: Signer) -> None:
    path = signer.write(
        tmp_path / "b.yaml", duty_cycle={"sample_s": 4.5, "period_s": 90}, max_queued_batches=2
    )
    fw = write_firmware(tmp_path / "fw.json", 4.5, 90)
    b = load_verified_bundle(path, signer.trust_dir, firmware_path=fw)
    assert (b.duty_cycle.sample_s, b.duty_cycle.period_s) == (4.5, 90.0)
    assert isinstance(b.duty_cycle.period_s, float)
    assert b.duty_cycle.sleep_s == 85.5
    assert b.max_queued_batches == 2
    assert b.version == 7 and b.key_id == signer.key_id and b.model_sha256 == model_sha()
    assert b.telemetry.pushgateway_url == "http://127.0.0.1:9091"
    assert b.health.asleep_power_max_w == 2.5
    assert b.source_path == str(path)
    assert b.issued_at.isoformat() == "2025-06-01T00:00:00+00:00"
    assert not b.signed_with_dev_key


def test_json_payload_is_accepted(tmp_path: Path, signer: Signer) -> None:
    path = signer.write(tmp_path / "b.bundle", json.dumps(signer.payload(), indent=1))
    assert _load(path, signer).duty_cycle.period_s == 60.0


def test_optional_fields_take_the_documented_defaults(tmp_path: Path, signer: Signer) -> None:
    minimal = {
        k: v
        for k, v in signer.payload().items()
        if k in ("version", "issued_at", "key_id", "duty_cycle", "model_sha256")
    }
    minimal["duty_cycle"] = {"sample_s": 2, "period_s": 40}
    b = _load(signer.write(tmp_path / "b.yaml", minimal), signer)
    assert b.max_queued_batches == defaults.MAX_QUEUED_BATCHES
    assert (b.alarm.votes_required, b.alarm.votes_window) == (defaults.VOTES_REQUIRED, defaults.VOTES_WINDOW)
    assert b.alarm.score_threshold is None
    assert b.telemetry.pushgateway_url is None and b.telemetry.job == defaults.TELEMETRY_JOB
    assert b.telemetry.push_interval_s == defaults.PUSH_INTERVAL_S
    assert b.health.period_tolerance_s == defaults.PERIOD_TOLERANCE_S
    assert b.health.awake_fraction_max == pytest.approx(2 / 40 * defaults.AWAKE_FRACTION_MARGIN)
    assert b.expires_at is None and not b.is_expired()


def test_signature_covers_exact_payload_bytes(tmp_path: Path, signer: Signer) -> None:
    data = signer.write(tmp_path / "b.yaml").read_bytes()
    c = parse_container(data)
    assert data.endswith(c.payload)
    signer.key.public_key().verify(c.signature, c.payload)  # raises if not over exactly these bytes
    assert check_payload(c.payload)["payload_sha256"] == _load(tmp_path / "b.yaml", signer).payload_sha256


# ------------------------------------------------------------------ flipped bytes


def _regions(data: bytes) -> dict[str, range]:
    """Byte ranges of each part of the canonical file, found from the file itself."""
    lines = data.split(b"\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    sig_line = starts[2]
    header_end = starts[5]
    return {
        "magic": range(0, starts[1]),
        "key_id": range(starts[1] + len(b"key_id: "), starts[2] - 1),
        "signature": range(sig_line + len(b"signature: "), starts[3] - 1),
        "payload": range(header_end, len(data)),
    }


def _flip(data: bytes, pos: int, mask: int) -> bytes:
    return data[:pos] + bytes([data[pos] ^ mask]) + data[pos + 1 :]


def _expected_reasons(regions: dict[str, range], pos: int) -> set[str]:
    if pos in regions["payload"]:
        return {"bad_signature"}
    if pos in regions["signature"]:
        return {"bad_signature", "format"}  # another base64 letter, or not base64 / non-canonical
    if pos in regions["key_id"]:
        return {"unknown_key", "format"}
    return {"format"}


def test_every_single_flipped_byte_anywhere_in_the_file_is_refused(tmp_path: Path, signer: Signer) -> None:
    path = signer.write(tmp_path / "b.yaml")
    good = path.read_bytes()
    regions = _regions(good)
    assert len(regions["payload"]) > 400
    from vibration_anomaly.bundle import verify_bundle_bytes
    from vibration_anomaly.bundle.trust import TrustStore

    trust = TrustStore.from_dir(signer.trust_dir)
    seen: dict[str, int] = {}
    for pos in range(len(good)):
        for mask in (0x01, 0x20, 0x80, 0xFF):
            with pytest.raises(BundleRefused) as info:
                verify_bundle_bytes(_flip(good, pos, mask), trust, source="flip", require_firmware=False)
            assert info.value.reason in _expected_reasons(regions, pos), (pos, mask, info.value)
            seen[info.value.reason] = seen.get(info.value.reason, 0) + 1
    assert {"bad_signature", "format", "unknown_key"} <= set(seen)


@pytest.mark.parametrize(
    "fraction",
    [0.0, 0.01, 0.03, 0.05, 0.08, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0],
)
def test_flipped_byte_through_the_file_loader(tmp_path: Path, signer: Signer, fraction: float) -> None:
    path = signer.write(tmp_path / "b.yaml")
    good = path.read_bytes()
    pos = min(len(good) - 1, int(fraction * len(good)))
    path.write_bytes(_flip(good, pos, 0x01))
    with pytest.raises(BundleRefused) as info:
        _load(path, signer)
    assert info.value.reason in _expected_reasons(_regions(good), pos)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("byte_index", range(64))
def test_flipped_byte_in_the_raw_signature_is_bad_signature(
    tmp_path: Path, signer: Signer, byte_index: int
) -> None:
    c = parse_container(signer.write(tmp_path / "b.yaml").read_bytes())
    for mask in (0x01, 0x80):
        sig = bytearray(c.signature)
        sig[byte_index] ^= mask
        (tmp_path / "bad.yaml").write_bytes(render_container(c.key_id, bytes(sig), c.payload))
        with pytest.raises(BundleRefused) as info:
            _load(tmp_path / "bad.yaml", signer)
        assert info.value.reason == "bad_signature"


def test_non_canonical_base64_spelling_of_the_same_signature_is_refused(
    tmp_path: Path, signer: Signer
) -> None:
    """The last base64 letter carries 2 unused bits; accepting variants would let a flip pass."""
    good = signer.write(tmp_path / "b.yaml").read_bytes()
    c = parse_container(good)
    text = base64.b64encode(c.signature).decode()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(text[-3])
    variant = text[:-3] + alphabet[last ^ 1] + text[-2:]
    assert base64.b64decode(variant) == c.signature  # same bytes, different spelling
    tampered = good.replace(text.encode(), variant.encode())
    (tmp_path / "v.yaml").write_bytes(tampered)
    with pytest.raises(BundleRefused) as info:
        _load(tmp_path / "v.yaml", signer)
    assert info.value.reason == "format"


@pytest.mark.parametrize("edit", ["crlf", "append", "truncate", "leading_space", "no_separator", "zero_pad"])
def test_container_edits_are_format_refusals(tmp_path: Path, signer: Signer, edit: str) -> None:
    good = signer.write(tmp_path / "b.yaml").read_bytes()
    n = len(parse_container(good).payload)
    bad = {
        "crlf": good.replace(b"\n", b"\r\n"),
        "append": good + b"\n",
        "truncate": good[:-1],
        "leading_space": b" " + good,
        "no_separator": good.replace(b"---\n", b"", 1),
        "zero_pad": good.replace(f"payload_bytes: {n}".encode(), f"payload_bytes: 0{n}".encode()),
    }[edit]
    (tmp_path / "e.yaml").write_bytes(bad)
    with pytest.raises(BundleRefused) as info:
        _load(tmp_path / "e.yaml", signer)
    assert info.value.reason == "format"


# ------------------------------------------------------------------ size limit


def test_oversized_file_is_refused_before_parsing(tmp_path: Path, signer: Signer) -> None:
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"\xff" * (MAX_BUNDLE_BYTES + 1))  # not even a header: size is checked first
    with pytest.raises(BundleRefused) as info:
        _load(path, signer)
    assert info.value.reason == "too_large"
    assert str(MAX_BUNDLE_BYTES) in info.value.detail


def test_validly_signed_bundle_over_the_limit_is_refused(tmp_path: Path, signer: Signer) -> None:
    from vibration_anomaly.bundle import verify_bundle_bytes
    from vibration_anomaly.bundle.trust import TrustStore

    text = "# " + "x" * MAX_BUNDLE_BYTES + "\n" + json.dumps(signer.payload())
    with pytest.raises(BundleRefused) as info:
        signer.sign_bytes(text.encode())
    assert info.value.reason == "too_large"
    # Build the over-size file by hand (the signer refuses to) and check the loader refuses it too.
    payload = text.encode()
    data = render_container(signer.key_id, signer.key.sign(payload), payload)
    (tmp_path / "big.yaml").write_bytes(data)
    with pytest.raises(BundleRefused) as info:
        _load(tmp_path / "big.yaml", signer)
    assert info.value.reason == "too_large"
    with pytest.raises(BundleRefused) as info:
        verify_bundle_bytes(data, TrustStore.from_dir(signer.trust_dir), source="x", require_firmware=False)
    assert info.value.reason == "too_large"


def test_just_under_the_limit_is_fine(tmp_path: Path, signer: Signer) -> None:
    body = json.dumps(signer.payload()).encode()
    header_len = len(render_container(signer.key_id, b"\0" * 64, b"")) + 6
    pad = MAX_BUNDLE_BYTES - header_len - len(body) - 3
    payload = b"#" + b"x" * pad + b"\n" + body
    data = signer.sign_bytes(payload)
    assert len(data) <= MAX_BUNDLE_BYTES
    (tmp_path / "b.yaml").write_bytes(data)
    assert _load(tmp_path / "b.yaml", signer).version == 7


# ------------------------------------------------------------------ VerifiedBundle cannot be forged


def test_verified_bundle_cannot_be_built_or_altered_outside_the_loader(
    tmp_path: Path, signer: Signer
) -> None:
    b = _load(signer.write(tmp_path / "b.yaml"), signer)
    fields = {f.name: getattr(b, f.name) for f in dataclasses.fields(b)}
    with pytest.raises(TypeError, match="load_verified_bundle"):
        VerifiedBundle(**fields)
    with pytest.raises(TypeError):
        VerifiedBundle(**fields, _token=object())
    with pytest.raises((TypeError, ValueError)):
        dataclasses.replace(b, duty_cycle=DutyCycle(5, 100))
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.duty_cycle = DutyCycle(5, 100)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.duty_cycle.period_s = 100  # type: ignore[misc]
    with pytest.raises(TypeError):
        pickle.dumps(b)
    assert copy.copy(b) is b and copy.deepcopy(b) is b


def test_duty_cycle_is_always_valid_even_when_built_by_hand() -> None:
    with pytest.raises(InputError, match="sample_s"):
        DutyCycle(60, 60)
    with pytest.raises(InputError):
        DutyCycle(float("nan"), 60)
    assert DutyCycle(5, 60).awake_fraction == pytest.approx(5 / 60)


def test_bundle_refused_is_a_package_error_with_reason_and_detail(tmp_path: Path, signer: Signer) -> None:
    path = signer.write(tmp_path / "b.yaml", duty_cycle={"sample_s": 60, "period_s": 60})
    with pytest.raises(VibrationAnomalyError) as info:
        _load(path, signer)
    exc = info.value
    assert isinstance(exc, BundleRefused)
    assert exc.reason == "field" and exc.field == "duty_cycle.sample_s"
    assert "sample_s 60 >= period_s 60" in exc.detail
