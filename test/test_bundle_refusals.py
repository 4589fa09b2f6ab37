"""Every reason a bundle is refused, each with real keys and signatures made in the test."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from bundle_testkit import MODEL_BYTES, Signer, model_sha, write_firmware
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey

from vibration_anomaly.bundle import (
    BundleRefused,
    load_verified_bundle,
    read_verified_model,
    verify_model_file,
)
from vibration_anomaly.bundle.firmware import MAX_FIRMWARE_FILE_BYTES
from vibration_anomaly.bundle.trust import private_key_pem


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    return Signer(tmp_path)


def refused(path: Path, trust: Path, **kw: Any) -> BundleRefused:
    kw.setdefault("require_firmware", False)
    with pytest.raises(BundleRefused) as info:
        load_verified_bundle(path, trust, **kw)
    return info.value


# ------------------------------------------------------------------ keys and signatures


def test_unknown_key(tmp_path: Path, signer: Signer) -> None:
    stranger = Signer(tmp_path, "stranger")
    exc = refused(stranger.write(tmp_path / "b.yaml"), signer.trust_dir)
    assert exc.reason == "unknown_key"
    assert stranger.key_id in exc.detail and signer.key_id in exc.detail


def test_header_claims_a_trusted_key_but_another_key_signed(tmp_path: Path, signer: Signer) -> None:
    from vibration_anomaly.bundle import parse_container, render_container

    stranger = Signer(tmp_path, "stranger")
    c = parse_container(
        stranger.write(tmp_path / "s.yaml", stranger.payload(key_id=signer.key_id)).read_bytes()
    )
    (tmp_path / "b.yaml").write_bytes(render_container(signer.key_id, c.signature, c.payload))
    assert refused(tmp_path / "b.yaml", signer.trust_dir).reason == "bad_signature"


def test_payload_swapped_under_a_valid_signature(tmp_path: Path, signer: Signer) -> None:
    from vibration_anomaly.bundle import parse_container, render_container

    a = parse_container(signer.write(tmp_path / "a.yaml").read_bytes())
    b = parse_container(signer.write(tmp_path / "b.yaml", version=8).read_bytes())
    (tmp_path / "x.yaml").write_bytes(render_container(signer.key_id, a.signature, b.payload))
    assert refused(tmp_path / "x.yaml", signer.trust_dir).reason == "bad_signature"


def test_key_rotation_old_and_new_keys_then_old_removed(tmp_path: Path) -> None:
    old, new = Signer(tmp_path, "old"), Signer(tmp_path, "new")
    trust = tmp_path / "fleet_trust"
    trust.mkdir()
    for s in (old, new):
        (trust / f"{s.key_id}.pub").write_bytes(
            (s.trust_dir / f"{'old' if s is old else 'new'}.pub").read_bytes()
        )
    (trust / "README.txt").write_text("not a key; ignored (only *.pub is read)")
    by_old, by_new = old.write(tmp_path / "o.yaml"), new.write(tmp_path / "n.yaml", version=8)
    assert load_verified_bundle(by_old, trust, require_firmware=False).key_id == old.key_id
    assert load_verified_bundle(by_new, trust, require_firmware=False).key_id == new.key_id
    (trust / f"{old.key_id}.pub").unlink()
    assert refused(by_old, trust).reason == "unknown_key"
    assert load_verified_bundle(by_new, trust, require_firmware=False).version == 8


@pytest.mark.parametrize("problem", ["missing_dir", "empty_dir", "garbage", "private_key", "ed448", "huge"])
def test_bad_trust_store_is_refused_with_the_file_named(tmp_path: Path, signer: Signer, problem: str) -> None:
    bundle = signer.write(tmp_path / "b.yaml")
    trust = signer.trust_dir
    bad = trust / "bad.pub"
    if problem == "missing_dir":
        trust = tmp_path / "nope"
    elif problem == "empty_dir":
        trust = tmp_path / "empty"
        trust.mkdir()
    elif problem == "garbage":
        bad.write_text("-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n")
    elif problem == "private_key":
        bad.write_bytes(private_key_pem(signer.key))
    elif problem == "ed448":
        bad.write_bytes(
            Ed448PrivateKey.generate()
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    elif problem == "huge":
        bad.write_bytes(b"x" * 10000)
    exc = refused(bundle, trust)
    assert exc.reason == "trust_store"
    assert (str(bad) if problem not in ("missing_dir", "empty_dir") else str(trust)) in str(exc)


# ------------------------------------------------------------------ parse and fields


@pytest.mark.parametrize(
    "text",
    [
        b"duty_cycle: [unclosed\n",
        b"- just\n- a list\n",
        b"\xff\xfe not utf-8\n",
        b"version: 7\nversion: 8\n",  # duplicate keys: a reader and the loader would disagree
        b"a: &x 1\nb: *x\n",
        b"",
    ],
)
def test_signed_payload_that_does_not_parse(tmp_path: Path, signer: Signer, text: bytes) -> None:
    exc = refused(signer.write(tmp_path / "b.yaml", text), signer.trust_dir)
    assert exc.reason == "parse", exc


def _without(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != key}


FIELD_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("sample_eq_period", {"duty_cycle": {"sample_s": 60, "period_s": 60}}, "duty_cycle.sample_s"),
    ("sample_gt_period", {"duty_cycle": {"sample_s": 70, "period_s": 60}}, "duty_cycle.sample_s"),
    ("sample_zero", {"duty_cycle": {"sample_s": 0, "period_s": 60}}, "duty_cycle.sample_s"),
    ("sample_negative", {"duty_cycle": {"sample_s": -5, "period_s": 60}}, "duty_cycle.sample_s"),
    ("period_too_long", {"duty_cycle": {"sample_s": 5, "period_s": 90000}}, "duty_cycle.period_s"),
    ("period_string", {"duty_cycle": {"sample_s": 5, "period_s": "60"}}, "duty_cycle.period_s"),
    ("period_bool", {"duty_cycle": {"sample_s": 5, "period_s": True}}, "duty_cycle.period_s"),
    ("period_missing", {"duty_cycle": {"sample_s": 5}}, "duty_cycle.period_s"),
    ("duty_typo", {"duty_cycle": {"sample_s": 5, "period_s": 60, "perod_s": 100}}, "duty_cycle.perod_s"),
    ("duty_not_mapping", {"duty_cycle": [5, 60]}, "duty_cycle"),
    ("duty_missing", {"duty_cycle": None}, "duty_cycle"),
    ("version_zero", {"version": 0}, "version"),
    ("version_float", {"version": 7.5}, "version"),
    ("version_string", {"version": "7"}, "version"),
    ("version_missing", {"version": None}, "version"),
    ("issued_naive", {"issued_at": "2025-06-01T00:00:00"}, "issued_at"),
    ("issued_date_only", {"issued_at": "2025-06-01"}, "issued_at"),
    ("issued_garbage", {"issued_at": "yesterday"}, "issued_at"),
    ("issued_missing", {"issued_at": None}, "issued_at"),
    ("expires_before_issued", {"expires_at": "2025-05-01T00:00:00Z"}, "expires_at"),
    ("key_id_malformed", {"key_id": "XYZ"}, "key_id"),
    ("key_id_other_key", {"key_id": "0123456789abcdef"}, "key_id"),
    ("model_sha_short", {"model_sha256": "abc123"}, "model_sha256"),
    ("model_sha_upper", {"model_sha256": model_sha().upper()}, "model_sha256"),
    ("model_sha_missing", {"model_sha256": None}, "model_sha256"),
    ("queue_zero", {"max_queued_batches": 0}, "max_queued_batches"),
    ("queue_huge", {"max_queued_batches": 1001}, "max_queued_batches"),
    ("queue_float", {"max_queued_batches": 2.5}, "max_queued_batches"),
    ("votes_k_gt_n", {"alarm": {"votes_required": 6, "votes_window": 5}}, "alarm.votes_required"),
    ("votes_zero", {"alarm": {"votes_required": 0, "votes_window": 5}}, "alarm.votes_required"),
    ("threshold_text", {"alarm": {"score_threshold": "high"}}, "alarm.score_threshold"),
    (
        "url_ftp",
        {"telemetry": {"pushgateway_url": "ftp://gw:9091", "job": "j", "push_interval_s": 60}},
        "telemetry.pushgateway_url",
    ),
    ("job_empty", {"telemetry": {"job": "", "push_interval_s": 60}}, "telemetry.job"),
    ("push_zero", {"telemetry": {"push_interval_s": 0}}, "telemetry.push_interval_s"),
    ("awake_below_duty", {"health": {"awake_fraction_max": 0.01}}, "health.awake_fraction_max"),
    ("awake_above_one", {"health": {"awake_fraction_max": 1.5}}, "health.awake_fraction_max"),
    ("tolerance_negative", {"health": {"period_tolerance_s": -1}}, "health.period_tolerance_s"),
    ("asleep_power_zero", {"health": {"asleep_power_max_w": 0}}, "health.asleep_power_max_w"),
    ("unknown_top_field", {"sample_s": 5}, "sample_s"),
]


@pytest.mark.parametrize(("case", "changes", "field"), FIELD_CASES, ids=[c[0] for c in FIELD_CASES])
def test_field_missing_or_out_of_range(
    tmp_path: Path, signer: Signer, case: str, changes: dict[str, Any], field: str
) -> None:
    payload = signer.payload()
    for key, value in changes.items():
        payload[key] = value
    exc = refused(signer.write(tmp_path / "b.yaml", payload), signer.trust_dir)
    assert exc.reason == "field", exc
    assert exc.field == field
    assert exc.detail.startswith(field + ":"), exc.detail


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_numbers_are_refused(tmp_path: Path, signer: Signer, value: str) -> None:
    text = yaml.safe_dump(signer.payload(), sort_keys=False).replace("period_s: 60", f"period_s: {value}")
    assert f"period_s: {value}" in text
    exc = refused(signer.write(tmp_path / "b.yaml", text), signer.trust_dir)
    assert (exc.reason, exc.field) == ("field", "duty_cycle.period_s")


# ------------------------------------------------------------------ rollback


def test_rollback_is_refused_and_remembered_across_loads(tmp_path: Path, signer: Signer) -> None:
    state = tmp_path / "robot" / "bundle_state.json"
    v7 = signer.write(tmp_path / "v7.yaml", version=7)
    v9 = signer.write(tmp_path / "v9.yaml", version=9)
    assert load_verified_bundle(v7, signer.trust_dir, require_firmware=False, state_path=state).version == 7
    assert json.loads(state.read_text())["version"] == 7
    assert load_verified_bundle(v9, signer.trust_dir, require_firmware=False, state_path=state).version == 9
    exc = refused(v7, signer.trust_dir, state_path=state)
    assert exc.reason == "rollback" and exc.field == "version"
    assert "bundle 7" in exc.detail and "9" in exc.detail
    # The same bundle again is fine (a reboot), and the state still says 9.
    load_verified_bundle(v9, signer.trust_dir, require_firmware=False, state_path=state)
    assert json.loads(state.read_text())["version"] == 9
    # Without a state path (off-robot tools) there is no rollback check.
    assert load_verified_bundle(v7, signer.trust_dir, require_firmware=False).version == 7
    assert [p.name for p in state.parent.iterdir()] == ["bundle_state.json"]  # no temp files left


def test_same_version_with_different_content_is_refused(tmp_path: Path, signer: Signer) -> None:
    state = tmp_path / "state.json"
    load_verified_bundle(
        signer.write(tmp_path / "a.yaml", version=5),
        signer.trust_dir,
        require_firmware=False,
        state_path=state,
    )
    changed = signer.write(tmp_path / "b.yaml", version=5, max_queued_batches=2)
    exc = refused(changed, signer.trust_dir, state_path=state)
    assert exc.reason == "version_reuse"


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b"[]",
        b'{"version": "9", "payload_sha256": "00"}',
        b'{"version": 3}',
        b"\x00" * 5000,
    ],
)
def test_corrupt_state_is_a_refusal_not_a_crash(tmp_path: Path, signer: Signer, content: bytes) -> None:
    state = tmp_path / "state.json"
    state.write_bytes(content)
    exc = refused(signer.write(tmp_path / "b.yaml"), signer.trust_dir, state_path=state)
    assert exc.reason == "state"
    assert str(state) in str(exc)
    assert state.read_bytes() == content  # not overwritten: a person must look at it


def test_state_is_not_recorded_when_a_later_check_refuses(tmp_path: Path, signer: Signer) -> None:
    state = tmp_path / "state.json"
    fw = write_firmware(tmp_path / "fw.json", 5, 100)
    exc = refused(
        signer.write(tmp_path / "b.yaml", version=3),
        signer.trust_dir,
        state_path=state,
        firmware_path=fw,
        require_firmware=True,
    )
    assert exc.reason == "firmware_mismatch"
    assert not state.exists()


def test_failed_state_write_leaves_the_old_record(
    tmp_path: Path, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state.json"
    load_verified_bundle(
        signer.write(tmp_path / "a.yaml", version=2),
        signer.trust_dir,
        require_firmware=False,
        state_path=state,
    )
    before = state.read_bytes()

    def power_cut(src: str, dst: str) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", power_cut)
    exc = refused(signer.write(tmp_path / "b.yaml", version=3), signer.trust_dir, state_path=state)
    assert exc.reason == "state"
    monkeypatch.undo()
    assert state.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".state")] == []


# ------------------------------------------------------------------ firmware agreement


def test_firmware_disagreement_names_field_and_both_values(tmp_path: Path, signer: Signer) -> None:
    fw = write_firmware(tmp_path / "fw.json", 5, 100)
    exc = refused(
        signer.write(tmp_path / "b.yaml"), signer.trust_dir, firmware_path=fw, require_firmware=True
    )
    assert exc.reason == "firmware_mismatch"
    assert "period_s: bundle 60, firmware 100" in str(exc)
    assert exc.field == "duty_cycle.period_s"


def test_forty_seconds_apart_and_both_fields_reported(tmp_path: Path, signer: Signer) -> None:
    fw = write_firmware(tmp_path / "fw.json", 4, 100)
    exc = refused(
        signer.write(tmp_path / "b.yaml"), signer.trust_dir, firmware_path=fw, require_firmware=True
    )
    assert "duty_cycle.sample_s: bundle 5, firmware 4" in exc.detail
    assert "duty_cycle.period_s: bundle 60, firmware 100" in exc.detail


@pytest.mark.parametrize(
    ("fw_value", "shown"), [("60", "'60' (a string)"), (60.5, "60.5"), (True, "True"), (None, "null")]
)
def test_agreement_is_exact(tmp_path: Path, signer: Signer, fw_value: Any, shown: str) -> None:
    fw = write_firmware(tmp_path / "fw.json", 5, fw_value)
    exc = refused(
        signer.write(tmp_path / "b.yaml"), signer.trust_dir, firmware_path=fw, require_firmware=True
    )
    assert exc.reason == "firmware_mismatch"
    assert f"period_s: bundle 60, firmware {shown}" in exc.detail


def test_yaml_firmware_file_and_equal_numbers_agree(tmp_path: Path, signer: Signer) -> None:
    fw = tmp_path / "fw.yaml"
    fw.write_text("duty_cycle:\n  sample_s: 5.0\n  period_s: 60\nmax_queued_batches: 3\n")
    b = load_verified_bundle(signer.write(tmp_path / "b.yaml"), signer.trust_dir, firmware_path=fw)
    assert b.duty_cycle.period_s == 60


def test_firmware_field_the_bundle_left_to_default_is_compared_with_the_default(
    tmp_path: Path, signer: Signer
) -> None:
    payload = _without(signer.payload(), "max_queued_batches")
    fw = write_firmware(tmp_path / "fw.json", 5, 60, max_queued_batches=5)
    exc = refused(
        signer.write(tmp_path / "b.yaml", payload), signer.trust_dir, firmware_path=fw, require_firmware=True
    )
    assert "max_queued_batches: bundle 3, firmware 5" in exc.detail


def test_missing_firmware_file_refuses_unless_bench_mode(tmp_path: Path, signer: Signer) -> None:
    bundle = signer.write(tmp_path / "b.yaml")
    exc = refused(bundle, signer.trust_dir, firmware_path=tmp_path / "absent.json", require_firmware=True)
    assert exc.reason == "firmware_missing" and "absent.json" in str(exc)
    exc = refused(bundle, signer.trust_dir, require_firmware=True)  # none configured at all
    assert exc.reason == "firmware_missing"
    b = load_verified_bundle(
        bundle, signer.trust_dir, firmware_path=tmp_path / "absent.json", require_firmware=False
    )
    assert b.version == 7


def test_bench_mode_still_compares_a_firmware_file_that_exists(tmp_path: Path, signer: Signer) -> None:
    fw = write_firmware(tmp_path / "fw.json", 5, 100)
    exc = refused(
        signer.write(tmp_path / "b.yaml"), signer.trust_dir, firmware_path=fw, require_firmware=False
    )
    assert exc.reason == "firmware_mismatch"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('{"duty_cycle": {"sample_s": 5}}', "firmware_invalid"),
        ('{"duty_cycle": {"sample_s": 5, "period_s": 60, "perod_s": 100}}', "firmware_invalid"),
        ("[5, 60]", "firmware_invalid"),
        ('{"duty_cycle": {', "firmware_invalid"),
        ("x" * (MAX_FIRMWARE_FILE_BYTES + 1), "too_large"),
    ],
)
def test_malformed_firmware_file(tmp_path: Path, signer: Signer, content: str, reason: str) -> None:
    fw = tmp_path / "fw.json"
    fw.write_text(content)
    exc = refused(
        signer.write(tmp_path / "b.yaml"), signer.trust_dir, firmware_path=fw, require_firmware=True
    )
    assert exc.reason == reason
    assert str(fw) in str(exc)


# ------------------------------------------------------------------ model identity


def test_model_file_is_checked_before_loading(tmp_path: Path, signer: Signer) -> None:
    b = load_verified_bundle(signer.write(tmp_path / "b.yaml"), signer.trust_dir, require_firmware=False)
    good = tmp_path / "model.onnx"
    good.write_bytes(MODEL_BYTES)
    assert verify_model_file(b, good) == b.model_sha256
    assert read_verified_model(b, good) == MODEL_BYTES
    other = tmp_path / "other.onnx"
    other.write_bytes(MODEL_BYTES + b"retrained")
    for check in (verify_model_file, read_verified_model):
        with pytest.raises(BundleRefused) as info:
            check(b, other)
        assert info.value.reason == "model_mismatch"
        assert b.model_sha256 in info.value.detail
        import hashlib

        assert hashlib.sha256(other.read_bytes()).hexdigest() in info.value.detail
    with pytest.raises(BundleRefused) as info:
        verify_model_file(b, tmp_path / "absent.onnx")
    assert info.value.reason == "model_missing"


def test_model_mismatch_at_load_does_not_record_the_version(tmp_path: Path, signer: Signer) -> None:
    state = tmp_path / "state.json"
    other = tmp_path / "other.onnx"
    other.write_bytes(b"not the model")
    exc = refused(signer.write(tmp_path / "b.yaml"), signer.trust_dir, state_path=state, model_path=other)
    assert exc.reason == "model_mismatch"
    assert not state.exists()


# ------------------------------------------------------------------ expiry


def test_expired_bundle_still_boots_but_reports_expired(
    tmp_path: Path, signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    path = signer.write(tmp_path / "b.yaml", expires_at="2025-07-01T00:00:00Z")
    later = datetime(2025, 8, 1, tzinfo=timezone.utc)
    with caplog.at_level("WARNING"):
        b = load_verified_bundle(path, signer.trust_dir, require_firmware=False, now=later)
    assert b.duty_cycle.period_s == 60
    assert b.is_expired(later)
    assert "expired" in caplog.text
    assert not b.is_expired(datetime(2025, 6, 30, tzinfo=timezone.utc))
    assert b.is_expired(datetime(2025, 7, 1))  # naive is taken as UTC; the boundary counts as expired
    assert b.is_expired(later.timestamp())
    assert not b.is_expired((later - timedelta(days=40)).timestamp())
