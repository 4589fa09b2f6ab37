"""The shipped example bundle, its tool, and the single-source-of-truth rule."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bundle_testkit import write_test_bundle
from cryptography.hazmat.primitives import serialization

import vibration_anomaly.bundle.loader as bundle_mod
from vibration_anomaly.bundle import (
    BundleRefused,
    defaults,
    load_example_bundle,
    load_verified_bundle,
    parse_container,
)
from vibration_anomaly.bundle.trust import DEV_KEY_ID, key_id_of, load_private_key

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "vibration_anomaly" / "bundle" / "example"
MODEL = ROOT / "vibration_anomaly" / "model" / "default" / "model.onnx"


def test_shipped_example_verifies_against_shipped_trust_and_firmware() -> None:
    b = load_verified_bundle(
        EXAMPLE / "dev_bundle.yaml", EXAMPLE / "trust", firmware_path=EXAMPLE / "firmware.json"
    )
    firmware = json.loads((EXAMPLE / "firmware.json").read_text())
    assert b.duty_cycle.sample_s == firmware["duty_cycle"]["sample_s"]
    assert b.duty_cycle.period_s == firmware["duty_cycle"]["period_s"]
    assert b.signed_with_dev_key and b.key_id == DEV_KEY_ID
    assert not b.is_expired()


def test_load_example_bundle_verifies_for_real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    b = load_example_bundle()
    assert (b.duty_cycle.sample_s, b.duty_cycle.period_s) == (defaults.SAMPLE_S, defaults.PERIOD_S)
    assert b.max_queued_batches == defaults.MAX_QUEUED_BATCHES
    # Point it at a tampered copy: it must refuse, not trust the package.
    copy = tmp_path / "example"
    shutil.copytree(EXAMPLE, copy)
    data = bytearray((copy / "dev_bundle.yaml").read_bytes())
    data[data.index(b"period_s: 60") + len("period_s: 6")] = ord("9")
    (copy / "dev_bundle.yaml").write_bytes(bytes(data))
    monkeypatch.setattr(bundle_mod, "example_dir", lambda: copy)
    with pytest.raises(BundleRefused) as info:
        load_example_bundle()
    assert info.value.reason == "bad_signature"
    shutil.copy(EXAMPLE / "dev_bundle.yaml", copy / "dev_bundle.yaml")
    (copy / "firmware.json").write_text('{"duty_cycle": {"sample_s": 5, "period_s": 100}}')
    with pytest.raises(BundleRefused, match="period_s: bundle 60, firmware 100"):
        load_example_bundle()
    with pytest.raises(BundleRefused, match="firmware 100"):  # bench mode still compares an existing file
        load_example_bundle(require_firmware=False)
    (copy / "firmware.json").unlink()
    with pytest.raises(BundleRefused) as info:
        load_example_bundle()
    assert info.value.reason == "firmware_missing"


def test_example_payload_file_is_exactly_what_was_signed() -> None:
    c = parse_container((EXAMPLE / "dev_bundle.yaml").read_bytes())
    assert c.payload == (EXAMPLE / "payload.yaml").read_bytes()


def test_dev_key_is_marked_and_matches_the_trust_dir() -> None:
    key = load_private_key(EXAMPLE / "DEV_KEY_DO_NOT_USE_ON_ROBOTS.pem")
    assert key_id_of(key.public_key()) == DEV_KEY_ID
    assert b"DO NOT USE ON ROBOTS" in (EXAMPLE / "DEV_KEY_DO_NOT_USE_ON_ROBOTS.pem").read_bytes()
    pubs = sorted((EXAMPLE / "trust").glob("*.pub"))
    assert len(pubs) == 1 and "DEV" in pubs[0].name
    pub = serialization.load_pem_public_key(pubs[0].read_bytes())
    assert key_id_of(pub) == DEV_KEY_ID  # type: ignore[arg-type]
    assert all(b"PRIVATE KEY-----" not in p.read_bytes() for p in (EXAMPLE / "trust").iterdir())


def test_make_dev_bundle_reports_the_example_up_to_date() -> None:
    """Fails when the model (or payload) changed: run tools/make_dev_bundle.py and commit."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_dev_bundle.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


def test_example_names_the_shipped_model() -> None:
    if not MODEL.exists():
        pytest.skip(f"{MODEL} not built yet")
    actual = hashlib.sha256(MODEL.read_bytes()).hexdigest()
    assert load_example_bundle().model_sha256 == actual, "run tools/make_dev_bundle.py"


def test_write_test_bundle_makes_files_the_real_loader_accepts(tmp_path: Path) -> None:
    files = write_test_bundle(tmp_path, duty_cycle={"sample_s": 0.5, "period_s": 2.0}, version=3)
    b = load_verified_bundle(files.bundle, files.trust_dir, firmware_path=files.firmware)
    assert (b.duty_cycle.sample_s, b.duty_cycle.period_s, b.version) == (0.5, 2.0, 3)
    assert b.health.awake_fraction_max == pytest.approx(0.5 / 2.0 * defaults.AWAKE_FRACTION_MARGIN)
    assert not b.signed_with_dev_key
    # The throwaway key is not the dev key, and the example trust dir does not trust it.
    with pytest.raises(BundleRefused) as info:
        load_verified_bundle(files.bundle, EXAMPLE / "trust", require_firmware=False)
    assert info.value.reason == "unknown_key"


_CONTRACT_NAMES = (
    "sample_s",
    "period_s",
    "sleep_s",
    "max_queued_batches",
    "max_queued",
    "votes_required",
    "votes_window",
    "push_interval_s",
    "period_tolerance_s",
    "awake_fraction_max",
)
_LITERAL_DEFAULT = re.compile(
    r"\b(" + "|".join(_CONTRACT_NAMES) + r")\b\s*(?::\s*[A-Za-z_.| \[\]]+)?\s*=\s*-?[0-9]"
)


def test_no_second_hard_coded_copy_of_the_contract_numbers() -> None:
    """Outside bundle/defaults.py no package code assigns a literal to a duty-cycle contract name."""
    offenders = []
    for path in sorted((ROOT / "vibration_anomaly").rglob("*.py")):
        if path == ROOT / "vibration_anomaly" / "bundle" / "defaults.py":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if _LITERAL_DEFAULT.search(code) or re.search(r"DutyCycle\(\s*-?[0-9]", code):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "take these from the verified bundle or bundle.defaults:\n" + "\n".join(offenders)
