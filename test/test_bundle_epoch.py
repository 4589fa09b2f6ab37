"""Key epochs: the signed way out of a compromised key's inflated version (issue 14, item 8).

A key that signed version 2^53 would, with a plain version floor, lock every
robot out of every legitimate bundle for good. Ops revoke the key (delete its
.pub) and bump the trust store's EPOCH; bundles of the new epoch start a new
floor, and nothing on the robot is deleted by hand.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from bundle_testkit import Signer, write_firmware

from vibration_anomaly.bundle import BundleRefused, TrustStore, commit_accepted, load_verified_bundle
from vibration_anomaly.bundle.schema import MAX_VERSION
from vibration_anomaly.bundle.trust import public_key_pem

INFLATED = 2**53
assert INFLATED == MAX_VERSION


def refused(fn, *args, **kwargs) -> BundleRefused:  # type: ignore[no-untyped-def]
    with pytest.raises(BundleRefused) as info:
        fn(*args, **kwargs)
    return info.value


def record(state: Path) -> tuple[int, int]:
    raw = json.loads(state.read_text())
    return raw["epoch"], raw["version"]


class Robot:
    """One robot's trust dir (ops-managed), firmware statement and rollback state."""

    def __init__(self, root: Path, *signers: Signer) -> None:
        self.trust = root / "robot_trust"
        self.trust.mkdir(parents=True)
        for s in signers:
            self.trust_key(s)
        self.firmware = write_firmware(root / "fw.json")
        self.state = root / "var" / "bundle_state.json"

    def trust_key(self, signer: Signer) -> None:
        (self.trust / f"{signer.key_id}.pub").write_bytes(public_key_pem(signer.key.public_key()))

    def revoke(self, signer: Signer) -> None:
        (self.trust / f"{signer.key_id}.pub").unlink()

    def set_epoch(self, epoch: int) -> None:
        (self.trust / "EPOCH").write_text(f"{epoch}\n")

    def load(self, bundle: Path, **kw: object):  # type: ignore[no-untyped-def]
        return load_verified_bundle(
            bundle, self.trust, firmware_path=self.firmware, state_path=self.state, **kw
        )


def test_a_revoked_key_with_an_inflated_version_is_left_behind_by_an_epoch_bump(tmp_path: Path) -> None:
    old, new = Signer(tmp_path, "old"), Signer(tmp_path, "new")
    robot = Robot(tmp_path, old)
    inflated = old.write(tmp_path / "inflated.yaml", version=INFLATED)
    assert robot.load(inflated).version == INFLATED  # the compromised key got through once
    assert record(robot.state) == (0, INFLATED)

    # Without an epoch bump no legitimate bundle can ever pass again: that is the fault.
    robot.trust_key(new)
    plain = new.write(tmp_path / "plain.yaml", version=1)
    assert refused(robot.load, plain).reason == "rollback"

    # Ops revoke the old key and bump the epoch, in the trust dir, as they deploy the new key.
    robot.revoke(old)
    robot.set_epoch(1)
    fresh = new.write(tmp_path / "fresh.yaml", version=1, epoch=1)
    accepted = robot.load(fresh)
    assert (accepted.epoch, accepted.version) == (1, 1)
    assert record(robot.state) == (1, 1)  # the state was never deleted by hand, only moved on

    # The old key's bundle is refused; so is a bundle of the old epoch signed by a still-trusted key.
    assert refused(robot.load, inflated).reason == "unknown_key"
    stale = new.write(tmp_path / "stale.yaml", version=2)  # epoch 0
    assert refused(robot.load, stale).reason == "epoch_revoked"

    # The floor works as before inside the new epoch.
    v2 = new.write(tmp_path / "v2.yaml", version=2, epoch=1)
    assert robot.load(v2).version == 2
    assert refused(robot.load, fresh).reason == "rollback"
    reuse = new.write(tmp_path / "reuse.yaml", version=2, epoch=1, max_queued_batches=4)
    assert refused(robot.load, reuse).reason == "version_reuse"
    assert record(robot.state) == (1, 2)


def test_bumping_the_epoch_without_removing_the_key_still_refuses_its_old_bundles(tmp_path: Path) -> None:
    old = Signer(tmp_path, "old")
    robot = Robot(tmp_path, old)
    inflated = old.write(tmp_path / "inflated.yaml", version=INFLATED)
    robot.load(inflated)
    robot.set_epoch(1)
    exc = refused(robot.load, inflated)
    assert exc.reason == "epoch_revoked" and exc.field == "epoch"
    assert "epoch 0" in exc.detail and "epoch 1" in exc.detail
    assert record(robot.state) == (0, INFLATED)


def test_a_key_cannot_raise_the_epoch_on_its_own(tmp_path: Path) -> None:
    """A bundle must match the trust store's epoch: a compromised key signing epoch 7 gains nothing."""
    key = Signer(tmp_path, "k")
    robot = Robot(tmp_path, key)
    ahead = key.write(tmp_path / "ahead.yaml", version=INFLATED, epoch=7)
    exc = refused(robot.load, ahead)
    assert exc.reason == "epoch_mismatch" and exc.field == "epoch"
    assert "epoch 7" in exc.detail and "epoch 0" in exc.detail
    assert not robot.state.exists()


def test_deferred_commit_moves_the_floor_to_the_new_epoch(tmp_path: Path) -> None:
    """The node's path: load with record=False, check the model and the rest, then commit_accepted."""
    old, new = Signer(tmp_path, "old"), Signer(tmp_path, "new")
    robot = Robot(tmp_path, old, new)
    commit_accepted(robot.load(old.write(tmp_path / "a.yaml", version=INFLATED), record=False), robot.state)
    robot.revoke(old)
    robot.set_epoch(1)
    b = robot.load(new.write(tmp_path / "b.yaml", version=1, epoch=1), record=False)
    assert record(robot.state) == (0, INFLATED)  # nothing recorded until the caller's checks passed
    assert commit_accepted(b, robot.state) is True
    assert record(robot.state) == (1, 1)
    assert commit_accepted(b, robot.state) is False  # a reboot


def test_a_trust_store_rolled_back_to_an_older_epoch_is_a_rollback(tmp_path: Path) -> None:
    key = Signer(tmp_path, "k")
    robot = Robot(tmp_path, key)
    robot.set_epoch(2)
    robot.load(key.write(tmp_path / "e2.yaml", version=3, epoch=2))
    robot.set_epoch(1)  # someone restored an old trust dir
    exc = refused(robot.load, key.write(tmp_path / "e1.yaml", version=9, epoch=1))
    assert exc.reason == "rollback" and exc.field == "epoch"
    assert record(robot.state) == (2, 3)


def test_a_record_from_before_epochs_reads_as_epoch_zero(tmp_path: Path) -> None:
    key = Signer(tmp_path, "k")
    robot = Robot(tmp_path, key)
    robot.state.parent.mkdir(parents=True)
    robot.state.write_text(
        json.dumps(
            {
                "version": 9,
                "payload_sha256": "0" * 64,
                "key_id": key.key_id,
                "recorded_at": "2025-06-01T00:00:00+00:00",
            }
        )
    )
    assert refused(robot.load, key.write(tmp_path / "v8.yaml", version=8)).reason == "rollback"
    robot.set_epoch(1)
    assert robot.load(key.write(tmp_path / "e1.yaml", version=1, epoch=1)).epoch == 1
    assert record(robot.state) == (1, 1)


def test_no_epoch_file_is_epoch_zero_and_bundles_without_epoch_are_epoch_zero(tmp_path: Path) -> None:
    key = Signer(tmp_path, "k")
    assert TrustStore.from_dir(key.trust_dir).epoch == 0
    b = load_verified_bundle(key.write(tmp_path / "b.yaml"), key.trust_dir, require_firmware=False)
    assert b.epoch == 0 and b.as_dict()["epoch"] == 0


@pytest.mark.parametrize("text", ["x", "-1", "01", "1 2", "1\n\n", " 1", "1.0", str(2**31), "", "9" * 70])
def test_a_malformed_epoch_file_refuses_the_trust_store(tmp_path: Path, text: str) -> None:
    key = Signer(tmp_path, "k")
    (key.trust_dir / "EPOCH").write_text(text)
    exc = refused(TrustStore.from_dir, key.trust_dir)
    assert exc.reason == "trust_store" and exc.field == "epoch"
    assert "EPOCH" in str(exc)


def test_an_epoch_file_that_is_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    key = Signer(tmp_path, "k")
    os.mkfifo(key.trust_dir / "EPOCH")
    assert refused(TrustStore.from_dir, key.trust_dir).reason == "trust_store"


@pytest.mark.parametrize("value", ["1", -1, True, 1.0, 2**31])
def test_the_payload_epoch_is_a_plain_integer(tmp_path: Path, value: object) -> None:
    key = Signer(tmp_path, "k")
    exc = refused(
        load_verified_bundle,
        key.write(tmp_path / "b.yaml", epoch=value),
        key.trust_dir,
        require_firmware=False,
    )
    assert exc.reason == "field" and exc.field == "epoch"


def test_bundle_sign_and_verify_handle_the_epoch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    import yaml

    from vibration_anomaly.bundle import cli
    from vibration_anomaly.bundle.trust import private_key_pem

    def run(*argv: object) -> int:
        parser = argparse.ArgumentParser(prog="vibration-anomaly")
        cli.register(parser.add_subparsers())
        args = parser.parse_args([str(a) for a in argv])
        return int(args.func(args))

    key = Signer(tmp_path, "k")
    (tmp_path / "k.pem").write_bytes(private_key_pem(key.key))
    (tmp_path / "payload.yaml").write_text(yaml.safe_dump(key.payload(epoch=1), sort_keys=False))
    out = tmp_path / "b.yaml"
    assert run("bundle", "sign", tmp_path / "payload.yaml", "--key", tmp_path / "k.pem", "--out", out) == 0
    assert run("bundle", "verify", out, "--trust", key.trust_dir) == 2
    assert "(epoch_mismatch)" in capsys.readouterr().err
    (key.trust_dir / "EPOCH").write_text("1\n")
    assert run("bundle", "verify", out, "--trust", key.trust_dir) == 0
    assert "key epoch 1" in capsys.readouterr().out
