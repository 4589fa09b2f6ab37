"""`vibration-anomaly bundle ...` through the registered argparse commands, and one real subprocess."""

from __future__ import annotations

import argparse
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from bundle_testkit import MODEL_BYTES, Signer, write_firmware

from vibration_anomaly.bundle import cli, load_verified_bundle, parse_container

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "vibration_anomaly" / "bundle" / "example"


def run(*argv: str | Path) -> int:
    parser = argparse.ArgumentParser(prog="vibration-anomaly")
    cli.register(parser.add_subparsers())
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


def _payload_for(signer_key_id: str, tmp_path: Path, **changes: object) -> Path:
    payload = yaml.safe_load((EXAMPLE / "payload.yaml").read_text())
    payload["key_id"] = signer_key_id
    payload.update(changes)
    path = tmp_path / "payload.yaml"
    path.write_text(yaml.safe_dump(payload, sort_keys=False))
    return path


def _keygen(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    assert (
        run(
            "bundle",
            "keygen",
            "--private",
            tmp_path / "k.pem",
            "--public",
            tmp_path / "trust" / "k.pub",
            *extra,
        )
        == 0
    )
    out = capsys.readouterr().out
    return out.split("key_id:")[1].strip()


def test_keygen_sign_verify_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_id = _keygen(tmp_path, capsys)
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    payload = _payload_for(key_id, tmp_path)
    out = tmp_path / "robot.bundle"
    assert run("bundle", "sign", payload, "--key", tmp_path / "k.pem", "--out", out) == 0
    assert key_id in capsys.readouterr().out
    assert parse_container(out.read_bytes()).payload == payload.read_bytes()

    fw = write_firmware(tmp_path / "fw.json", 5, 60)
    assert run("bundle", "verify", out, "--trust", tmp_path / "trust", "--firmware", fw) == 0
    assert "trusted" in capsys.readouterr().out

    assert run("bundle", "show", out) == 0
    shown = capsys.readouterr().out
    assert "NOT verified" in shown and "period_s: 60" in shown and "never expires" in shown
    assert run("bundle", "show", out, "--trust", tmp_path / "trust") == 0
    assert "signature: valid" in capsys.readouterr().out


def test_keygen_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _keygen(tmp_path, capsys)
    before = (tmp_path / "k.pem").read_bytes()
    assert (
        run("bundle", "keygen", "--private", tmp_path / "k.pem", "--public", tmp_path / "trust" / "k.pub")
        == 2
    )
    assert "exists" in capsys.readouterr().err
    assert (tmp_path / "k.pem").read_bytes() == before
    assert (
        run(
            "bundle",
            "keygen",
            "--private",
            tmp_path / "k.pem",
            "--public",
            tmp_path / "trust" / "k.pub",
            "--force",
        )
        == 0
    )
    assert (tmp_path / "k.pem").read_bytes() != before


def test_passphrase_protected_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUNDLE_KEY_PASS", "correct horse battery staple")
    key_id = _keygen(tmp_path, capsys, "--passphrase-env", "BUNDLE_KEY_PASS")
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "k.pem").read_bytes()
    payload = _payload_for(key_id, tmp_path)
    out = tmp_path / "b.bundle"
    assert run("bundle", "sign", payload, "--key", tmp_path / "k.pem", "--out", out) == 2
    assert "passphrase" in capsys.readouterr().err
    assert not out.exists()
    assert (
        run(
            "bundle",
            "sign",
            payload,
            "--key",
            tmp_path / "k.pem",
            "--out",
            out,
            "--passphrase-env",
            "BUNDLE_KEY_PASS",
        )
        == 0
    )
    monkeypatch.setenv("BUNDLE_KEY_PASS", "wrong")
    assert (
        run(
            "bundle",
            "sign",
            payload,
            "--key",
            tmp_path / "k.pem",
            "--out",
            out,
            "--passphrase-env",
            "BUNDLE_KEY_PASS",
        )
        == 2
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"key_id": "0123456789abcdef"}, "key_id: payload 0123456789abcdef, signing key"),
        ({"duty_cycle": {"sample_s": 60, "period_s": 60}}, "duty_cycle.sample_s"),
    ],
)
def test_sign_refuses_a_bad_payload_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], changes: dict[str, object], message: str
) -> None:
    key_id = _keygen(tmp_path, capsys)
    payload = _payload_for(key_id, tmp_path, **changes)
    out = tmp_path / "b.bundle"
    assert run("bundle", "sign", payload, "--key", tmp_path / "k.pem", "--out", out) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_verify_refusals_exit_2_with_reason_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signer = Signer(tmp_path)
    bundle = signer.write(tmp_path / "b.yaml", version=4)
    trust = signer.trust_dir

    fw = write_firmware(tmp_path / "fw.json", 5, 100)
    assert run("bundle", "verify", bundle, "--trust", trust, "--firmware", fw) == 2
    assert "period_s: bundle 60, firmware 100" in capsys.readouterr().err

    assert run("bundle", "verify", bundle, "--trust", trust, "--firmware", tmp_path / "absent.json") == 2
    assert "(firmware_missing)" in capsys.readouterr().err

    assert run("bundle", "verify", bundle, "--trust", EXAMPLE / "trust") == 2
    assert "(unknown_key)" in capsys.readouterr().err

    flipped = tmp_path / "flipped.yaml"
    data = bytearray(bundle.read_bytes())
    data[-10] ^= 0x01
    flipped.write_bytes(bytes(data))
    assert run("bundle", "verify", flipped, "--trust", trust) == 2
    assert "(bad_signature)" in capsys.readouterr().err

    state = tmp_path / "state.json"
    assert (
        run(
            "bundle",
            "verify",
            signer.write(tmp_path / "v5.yaml", version=5),
            "--trust",
            trust,
            "--state",
            state,
        )
        == 0
    )
    assert run("bundle", "verify", bundle, "--trust", trust, "--state", state) == 2
    assert "(rollback)" in capsys.readouterr().err

    model = tmp_path / "m.onnx"
    model.write_bytes(MODEL_BYTES + b"x")
    assert run("bundle", "verify", bundle, "--trust", trust, "--model", model) == 2
    assert "(model_mismatch)" in capsys.readouterr().err
    model.write_bytes(MODEL_BYTES)
    assert run("bundle", "verify", bundle, "--trust", trust, "--model", model) == 0


def test_show_reports_expired_and_refuses_untrusted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signer = Signer(tmp_path)
    bundle = signer.write(tmp_path / "b.yaml", expires_at="2025-07-01T00:00:00Z")
    assert run("bundle", "show", bundle) == 0
    assert "EXPIRED" in capsys.readouterr().out
    assert run("bundle", "verify", bundle, "--trust", signer.trust_dir) == 0  # expired still boots
    assert "WARN: expired" in capsys.readouterr().out
    assert run("bundle", "show", bundle, "--trust", EXAMPLE / "trust") == 2
    assert "REFUSED (unknown_key)" in capsys.readouterr().out
    (tmp_path / "junk").write_bytes(b"hello")
    assert run("bundle", "show", tmp_path / "junk") == 2
    assert "(format)" in capsys.readouterr().err


def test_help_and_usage_errors() -> None:
    with pytest.raises(SystemExit) as info:
        run("bundle", "--help")
    assert info.value.code == 0
    with pytest.raises(SystemExit) as info:
        run("bundle", "verify", "x.bundle")  # --trust is required
    assert info.value.code == 2


def test_real_process_exit_codes(tmp_path: Path) -> None:
    """Exit status as seen by a shell script or CI, not just the returned int."""
    script = (
        "import argparse, sys\n"
        "from vibration_anomaly.bundle import cli\n"
        "p = argparse.ArgumentParser(prog='vibration-anomaly'); cli.register(p.add_subparsers())\n"
        "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ok = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            "bundle",
            "verify",
            str(EXAMPLE / "dev_bundle.yaml"),
            "--trust",
            str(EXAMPLE / "trust"),
            "--firmware",
            str(EXAMPLE / "firmware.json"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert "DEVELOPMENT key" in ok.stdout
    fw = write_firmware(tmp_path / "fw.json", 5, 100)
    bad = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            "bundle",
            "verify",
            str(EXAMPLE / "dev_bundle.yaml"),
            "--trust",
            str(EXAMPLE / "trust"),
            "--firmware",
            str(fw),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "period_s: bundle 60, firmware 100" in bad.stderr
    assert (
        load_verified_bundle(
            EXAMPLE / "dev_bundle.yaml", EXAMPLE / "trust", firmware_path=EXAMPLE / "firmware.json"
        ).version
        >= 1
    )
