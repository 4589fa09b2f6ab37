"""Deploy-time checks: when the rollback floor moves, firmware keys that could hide a value, engine identity.

Real Ed25519 keys and signatures, real files on disk; nothing is mocked.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from bundle_testkit import MODEL_BYTES, Signer, model_sha, write_firmware

from vibration_anomaly.bundle import (
    BundleRefused,
    VerifiedBundle,
    commit_accepted,
    load_verified_bundle,
    read_verified_engine,
    verify_engine_file,
    verify_model_file,
)
from vibration_anomaly.bundle.firmware import compare_with_firmware

NEW_MODEL_BYTES = MODEL_BYTES + b"retrained on more machines\n"
ENGINE_BYTES = b"pretend TensorRT plan built from the model\n"
STALE_ENGINE_BYTES = b"pretend TensorRT plan built from an OLDER model\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    return Signer(tmp_path)


def refused(fn: Any, *args: Any, **kw: Any) -> BundleRefused:
    with pytest.raises(BundleRefused) as info:
        fn(*args, **kw)
    return info.value


def state_version(state: Path) -> int:
    return int(json.loads(state.read_text())["version"])


# ------------------------------------------------------------------ finding 1: record only after every check


class Robot:
    """What the detector node does at configure: load without recording, check the model, then commit."""

    def __init__(self, root: Path, signer: Signer) -> None:
        self.signer = signer
        self.state = root / "var" / "bundle_state.json"
        self.firmware = write_firmware(root / "firmware.json", 5, 60)
        self.model = root / "model.onnx"
        self.model.write_bytes(MODEL_BYTES)

    def configure(self, bundle: Path) -> VerifiedBundle:
        b = load_verified_bundle(
            bundle, self.signer.trust_dir, firmware_path=self.firmware, state_path=self.state, record=False
        )
        verify_model_file(b, self.model)
        commit_accepted(b, self.state)
        return b


def test_bundle_whose_model_failed_to_deploy_does_not_block_the_revert(
    tmp_path: Path, signer: Signer
) -> None:
    robot = Robot(tmp_path, signer)
    v7 = signer.write(tmp_path / "v7.yaml", version=7, model_sha256=model_sha())
    v8 = signer.write(tmp_path / "v8.yaml", version=8, model_sha256=sha(NEW_MODEL_BYTES))

    assert robot.configure(v7).version == 7
    assert state_version(robot.state) == 7

    # v8 arrives, but its model never made it onto the robot: configure is refused ...
    exc = refused(robot.configure, v8)
    assert exc.reason == "model_mismatch"
    assert sha(NEW_MODEL_BYTES) in exc.detail and model_sha() in exc.detail
    # ... and the floor did not move, so reverting to v7 (which matches the installed model) boots.
    assert state_version(robot.state) == 7
    assert robot.configure(v7).version == 7
    assert state_version(robot.state) == 7

    # Once the new model is deployed, v8 is accepted and v7 becomes a rollback.
    robot.model.write_bytes(NEW_MODEL_BYTES)
    assert robot.configure(v8).version == 8
    assert state_version(robot.state) == 8
    robot.model.write_bytes(MODEL_BYTES)
    assert refused(robot.configure, v7).reason == "rollback"
    assert state_version(robot.state) == 8
    assert sorted(p.name for p in robot.state.parent.iterdir()) == ["bundle_state.json"]  # no temp files


def test_record_true_records_before_a_later_caller_check(tmp_path: Path, signer: Signer) -> None:
    """The default records at once: the reason a caller with its own checks must pass record=False."""
    robot = Robot(tmp_path, signer)
    robot.configure(signer.write(tmp_path / "v7.yaml", version=7))
    v8 = signer.write(tmp_path / "v8.yaml", version=8, model_sha256=sha(NEW_MODEL_BYTES))
    b = load_verified_bundle(v8, signer.trust_dir, firmware_path=robot.firmware, state_path=robot.state)
    assert state_version(robot.state) == 8
    assert refused(verify_model_file, b, robot.model).reason == "model_mismatch"


@pytest.mark.parametrize("which", ["model", "engine"])
def test_model_or_engine_checked_by_the_loader_is_checked_before_recording(
    tmp_path: Path, signer: Signer, which: str
) -> None:
    state = tmp_path / "state.json"
    good = signer.write(tmp_path / "v7.yaml", version=7, engine_sha256=sha(ENGINE_BYTES))
    load_verified_bundle(good, signer.trust_dir, require_firmware=False, state_path=state)
    stale = tmp_path / "stale.bin"
    stale.write_bytes(STALE_ENGINE_BYTES)
    v8 = signer.write(tmp_path / "v8.yaml", version=8, engine_sha256=sha(ENGINE_BYTES))
    kw = {"model_path": stale} if which == "model" else {"engine_path": stale}
    exc = refused(load_verified_bundle, v8, signer.trust_dir, require_firmware=False, state_path=state, **kw)
    assert exc.reason == f"{which}_mismatch"
    assert state_version(state) == 7


def test_record_false_still_refuses_rollback_and_writes_nothing(tmp_path: Path, signer: Signer) -> None:
    state = tmp_path / "state.json"
    load_verified_bundle(
        signer.write(tmp_path / "v9.yaml", version=9),
        signer.trust_dir,
        require_firmware=False,
        state_path=state,
    )
    before = state.read_bytes()
    exc = refused(
        load_verified_bundle,
        signer.write(tmp_path / "v7.yaml", version=7),
        signer.trust_dir,
        require_firmware=False,
        state_path=state,
        record=False,
    )
    assert exc.reason == "rollback"
    b = load_verified_bundle(
        signer.write(tmp_path / "v10.yaml", version=10),
        signer.trust_dir,
        require_firmware=False,
        state_path=state,
        record=False,
    )
    assert b.version == 10
    assert state.read_bytes() == before


def test_commit_accepted_rechecks_the_state_it_writes(tmp_path: Path, signer: Signer) -> None:
    state = tmp_path / "state.json"
    v9 = load_verified_bundle(
        signer.write(tmp_path / "v9.yaml", version=9),
        signer.trust_dir,
        require_firmware=False,
        state_path=state,
        record=False,
    )
    v9_other = load_verified_bundle(
        signer.write(tmp_path / "v9b.yaml", version=9, max_queued_batches=2),
        signer.trust_dir,
        require_firmware=False,
        state_path=state,
        record=False,
    )
    assert not state.exists()
    assert commit_accepted(v9, state) is True
    assert state_version(state) == 9
    assert json.loads(state.read_text())["payload_sha256"] == v9.payload_sha256
    assert commit_accepted(v9, state) is False  # a reboot: nothing to write
    # Loaded before v9 was committed, committed after: same version, other payload.
    exc = refused(commit_accepted, v9_other, state)
    assert exc.reason == "version_reuse" and exc.source == v9_other.source_path
    # Another process accepted v10 between our load and our commit.
    load_verified_bundle(
        signer.write(tmp_path / "v10.yaml", version=10),
        signer.trust_dir,
        require_firmware=False,
        state_path=state,
    )
    assert refused(commit_accepted, v9, state).reason == "rollback"
    assert state_version(state) == 10


def test_commit_accepted_without_state_and_with_corrupt_state(tmp_path: Path, signer: Signer) -> None:
    b = load_verified_bundle(signer.write(tmp_path / "b.yaml"), signer.trust_dir, require_firmware=False)
    assert commit_accepted(b, None) is False
    corrupt = tmp_path / "state.json"
    corrupt.write_bytes(b"{not json")
    exc = refused(commit_accepted, b, corrupt)
    assert exc.reason == "state" and str(corrupt) in str(exc)
    assert corrupt.read_bytes() == b"{not json"
    with pytest.raises(TypeError, match="VerifiedBundle"):
        commit_accepted({"version": 99}, tmp_path / "other.json")  # type: ignore[arg-type]
    assert not (tmp_path / "other.json").exists()


# ------------------------------------------------------------------ finding 2: dotted firmware keys


@pytest.mark.parametrize(
    ("content", "dotted"),
    [
        # The bypass: nested 20 disagrees, the dotted 60 would have overwritten it under the same name.
        ('{"duty_cycle": {"sample_s": 5, "period_s": 20}, "duty_cycle.period_s": 60}', "duty_cycle.period_s"),
        ('{"duty_cycle.period_s": 60, "duty_cycle": {"sample_s": 5, "period_s": 20}}', "duty_cycle.period_s"),
        # Dotted only: would have satisfied the "must state the duty cycle" check without nesting.
        ('{"duty_cycle.sample_s": 5, "duty_cycle.period_s": 60}', "duty_cycle.sample_s"),
        # A dot inside a section.
        ('{"duty_cycle": {"sample_s": 5, "period_s": 60}, "alarm": {"votes.required": 3}}', "votes.required"),
    ],
)
def test_firmware_key_containing_a_dot_is_refused(
    tmp_path: Path, signer: Signer, content: str, dotted: str
) -> None:
    fw = tmp_path / "fw.json"
    fw.write_text(content)
    exc = refused(load_verified_bundle, signer.write(tmp_path / "b.yaml"), signer.trust_dir, firmware_path=fw)
    assert exc.reason == "firmware_invalid"
    assert f"key '{dotted}' contains '.'" in exc.detail
    assert exc.field is not None and exc.field.endswith(dotted)
    assert str(fw) in str(exc)


def test_firmware_non_string_key_is_refused(tmp_path: Path, signer: Signer) -> None:
    fw = tmp_path / "fw.yaml"
    fw.write_text("duty_cycle:\n  sample_s: 5\n  period_s: 60\n  7: 1\n")
    exc = refused(load_verified_bundle, signer.write(tmp_path / "b.yaml"), signer.trust_dir, firmware_path=fw)
    assert exc.reason == "firmware_invalid"
    assert "keys must be strings" in exc.detail and exc.field == "duty_cycle.7"


def test_compare_with_firmware_refuses_dotted_keys_given_directly(tmp_path: Path, signer: Signer) -> None:
    b = load_verified_bundle(signer.write(tmp_path / "b.yaml"), signer.trust_dir, require_firmware=False)
    exc = refused(
        compare_with_firmware,
        b.effective_values(),
        {"duty_cycle": {"sample_s": 5, "period_s": 20}, "duty_cycle.period_s": 60},
        "fw.json",
    )
    assert exc.reason == "firmware_invalid" and exc.field == "duty_cycle.period_s"
    # The same statement without the dotted key is compared, and the nested 20 is caught.
    exc = refused(
        compare_with_firmware,
        b.effective_values(),
        {"duty_cycle": {"sample_s": 5, "period_s": 20}},
        "fw.json",
    )
    assert exc.reason == "firmware_mismatch" and "period_s: bundle 60, firmware 20" in exc.detail


def test_payload_with_a_dotted_top_level_key_is_refused(tmp_path: Path, signer: Signer) -> None:
    payload = signer.payload()
    payload["duty_cycle.period_s"] = 20
    exc = refused(
        load_verified_bundle,
        signer.write(tmp_path / "b.yaml", payload),
        signer.trust_dir,
        require_firmware=False,
    )
    assert exc.reason == "field" and exc.field == "duty_cycle.period_s"


# ------------------------------------------------------------------ finding 3: TensorRT engine identity


def _bundle(tmp_path: Path, signer: Signer, **changes: Any) -> VerifiedBundle:
    return load_verified_bundle(
        signer.write(tmp_path / "b.yaml", **changes), signer.trust_dir, require_firmware=False
    )


def test_engine_file_matching_the_bundle(tmp_path: Path, signer: Signer) -> None:
    b = _bundle(tmp_path, signer, engine_sha256=sha(ENGINE_BYTES))
    assert b.engine_sha256 == sha(ENGINE_BYTES)
    assert b.effective_values()["engine_sha256"] == sha(ENGINE_BYTES)
    plan = tmp_path / "model.plan"
    plan.write_bytes(ENGINE_BYTES)
    assert verify_engine_file(b, plan) == sha(ENGINE_BYTES)
    assert read_verified_engine(b, str(plan)) == ENGINE_BYTES


def test_stale_engine_is_refused_naming_both_hashes(tmp_path: Path, signer: Signer) -> None:
    b = _bundle(tmp_path, signer, engine_sha256=sha(ENGINE_BYTES))
    plan = tmp_path / "model.plan"
    plan.write_bytes(STALE_ENGINE_BYTES)
    for check in (verify_engine_file, read_verified_engine):
        exc = refused(check, b, plan)
        assert (exc.reason, exc.field) == ("engine_mismatch", "engine_sha256")
        assert sha(ENGINE_BYTES) in exc.detail and sha(STALE_ENGINE_BYTES) in exc.detail
        assert str(plan) in exc.detail and exc.source == b.source_path
        assert refused(check, b, tmp_path / "absent.plan").reason == "engine_missing"


@pytest.mark.parametrize("changes", [{}, {"engine_sha256": None}])
def test_bundle_without_engine_sha256_vouches_for_no_engine(
    tmp_path: Path, signer: Signer, changes: dict[str, Any]
) -> None:
    payload = signer.payload(**changes)
    if not changes:
        payload.pop("engine_sha256", None)
    b = load_verified_bundle(
        signer.write(tmp_path / "b.yaml", payload), signer.trust_dir, require_firmware=False
    )
    assert b.engine_sha256 is None
    plan = tmp_path / "model.plan"
    plan.write_bytes(ENGINE_BYTES)
    for check in (verify_engine_file, read_verified_engine):
        exc = refused(check, b, plan)
        assert exc.reason == "engine_mismatch" and "null" in exc.detail


@pytest.mark.parametrize("value", ["ABCDEF" * 10 + "ABCD", "00" * 31, 12345, True, "g" * 64, ["00" * 32]])
def test_bad_engine_sha256_is_a_field_refusal(tmp_path: Path, signer: Signer, value: Any) -> None:
    text = yaml.safe_dump(signer.payload(engine_sha256=value), sort_keys=False)
    exc = refused(
        load_verified_bundle,
        signer.write(tmp_path / "b.yaml", text),
        signer.trust_dir,
        require_firmware=False,
    )
    assert (exc.reason, exc.field) == ("field", "engine_sha256")


def test_cli_verify_checks_the_engine(
    tmp_path: Path, signer: Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from vibration_anomaly.bundle import cli

    def run(*argv: str | Path) -> int:
        parser = argparse.ArgumentParser(prog="vibration-anomaly")
        cli.register(parser.add_subparsers())
        args = parser.parse_args([str(a) for a in argv])
        return int(args.func(args))

    bundle = signer.write(tmp_path / "b.yaml", engine_sha256=sha(ENGINE_BYTES))
    plan = tmp_path / "model.plan"
    plan.write_bytes(STALE_ENGINE_BYTES)
    state = tmp_path / "state.json"
    assert (
        run("bundle", "verify", bundle, "--trust", signer.trust_dir, "--engine", plan, "--state", state) == 2
    )
    assert "engine_mismatch" in capsys.readouterr().err
    assert not state.exists()
    plan.write_bytes(ENGINE_BYTES)
    assert (
        run("bundle", "verify", bundle, "--trust", signer.trust_dir, "--engine", plan, "--state", state) == 0
    )
    assert "engine: sha256 matches" in capsys.readouterr().out
    assert state_version(state) == 7
