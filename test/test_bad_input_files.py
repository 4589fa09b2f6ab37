"""Bad files given to the Python API: calibration files, ONNX models and plans, model folders, power models, traces.

The companion of test_bad_input.py (the command line): each case builds a
real bad file (a FIFO, a directory, a device, a non-UTF-8 or absurd JSON, ...)
and asserts an InputError naming the file and the field, and that no file
changed or appeared. Outputs are checked to be atomic: a failure leaves the
old file as it was and no temp file beside it. docs/INPUTS.md lists the kinds.
The only patched things are our own size limits (so "too large" needs no GB file).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vibration_anomaly import fileio
from vibration_anomaly.core.calibration import Calibration
from vibration_anomaly.core.calibration import record as calibration_record
from vibration_anomaly.errors import InputError


def _cal(**over: Any) -> Calibration:
    rng = np.random.default_rng(0)
    kw: dict[str, Any] = dict(
        mean=rng.normal(size=(3, 31, 4)),
        std=np.abs(rng.normal(size=(3, 31, 4))) + 0.1,
        threshold=2.5,
        target_far=0.01,
        fs_hz=1000.0,
        window_samples=4900,
        n_windows=40,
        method="empirical quantile",
        machine="m1",
        healthy_score_median=float("nan"),
    )
    kw.update(over)
    return Calibration(**kw)


def _doc(**over: Any) -> dict[str, Any]:
    d = _cal().to_dict()
    d["healthy_score_median"] = None
    d.update(over)
    return d


def snapshot(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink() or p.is_fifo():
            out[str(p)] = "special"
        elif p.is_file():
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir():
            out[str(p)] = "dir"
    return out


# ---------------------------------------------------------------- Calibration.from_dict: every field named


FIELD_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("threshold zero (would vote on every window)", {"threshold": 0}, "threshold"),
    ("threshold negative", {"threshold": -1.5}, "threshold"),
    ("threshold null", {"threshold": None}, "threshold"),
    ("threshold text", {"threshold": "2.5"}, "threshold"),
    ("threshold true", {"threshold": True}, "threshold"),
    ("threshold with 400 digits", {"threshold": 10**400}, "threshold"),
    ("threshold missing", {"threshold": ...}, "threshold"),
    ("target_far zero", {"target_far": 0}, "target_far"),
    ("target_far 0.5", {"target_far": 0.5}, "target_far"),
    ("target_far absurd", {"target_far": 3}, "target_far"),
    ("target_far null", {"target_far": None}, "target_far"),
    ("target_far missing", {"target_far": ...}, "target_far"),
    ("fs_hz zero", {"fs_hz": 0}, "fs_hz"),
    ("fs_hz negative", {"fs_hz": -1000}, "fs_hz"),
    ("fs_hz absurd", {"fs_hz": 1e12}, "fs_hz"),
    ("fs_hz missing", {"fs_hz": ...}, "fs_hz"),
    ("window_samples zero", {"window_samples": 0}, "window_samples"),
    ("window_samples fractional", {"window_samples": 4900.5}, "window_samples"),
    ("window_samples absurd for the rate", {"window_samples": 10**9}, "window_samples"),
    ("n_windows negative", {"n_windows": -3}, "n_windows"),
    ("mean not numbers", {"mean": [["a"]]}, "mean/std"),
    ("std of another shape", {"std": [[[1.0]]]}, "mean/std"),
    ("std zero", {"std": np.zeros((3, 31, 4)).tolist()}, "mean/std"),
    ("extra not an object", {"extra": [1, 2]}, "extra"),
    ("machine not a string", {"machine": 7}, "machine"),
    ("version 2", {"version": 2}, "version"),
]


@pytest.mark.parametrize(
    ("over", "field"), [(o, f) for _, o, f in FIELD_CASES], ids=[k for k, _, _ in FIELD_CASES]
)
def test_calibration_field_is_a_named_refusal(over: dict[str, Any], field: str) -> None:
    d = _doc(**{k: v for k, v in over.items() if v is not ...})
    for k in (k for k, v in over.items() if v is ...):
        del d[k]
    with pytest.raises(InputError) as ei:
        Calibration.from_dict(d, source="cal.json")
    assert ei.value.field == field and ei.value.source == "cal.json"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
@pytest.mark.parametrize("field", ["threshold", "fs_hz", "window_samples", "target_far"])
def test_non_finite_numbers_in_the_file_are_refused(tmp_path: Path, field: str, literal: str) -> None:
    """Python's json reads NaN, Infinity and 1e999 (inf) without complaint; the loader must not."""
    p = tmp_path / "cal.json"
    text = json.dumps(_doc(**{field: 12345.25}), indent=1).replace("12345.25", literal)
    p.write_text(text)
    with pytest.raises(InputError) as ei:
        Calibration.load(p)
    assert ei.value.field == field and ei.value.source == str(p)


# ---------------------------------------------------------------- Calibration.load: the file itself


def _fifo(d: Path) -> Path:
    os.mkfifo(d / "cal.json")
    return d / "cal.json"


def _write(name: str, data: bytes) -> Any:
    def make(d: Path) -> Path:
        (d / name).write_bytes(data)
        return d / name

    return make


def _dir(d: Path) -> Path:
    (d / "cal.json").mkdir()
    return d / "cal.json"


LOAD_CASES: list[tuple[str, Any, tuple[str, ...]]] = [
    ("missing", lambda d: d / "none.json", ("none.json", "not found")),
    ("a directory", _dir, ("directory",)),
    ("not JSON", _write("cal.json", b"{not json"), ("json", "not valid JSON")),
    ("not UTF-8", _write("cal.json", b'{"version": 1, "\xff\xfe": 2}'), ("encoding", "UTF-8")),
    ("empty", _write("cal.json", b""), ("json",)),
    ("a JSON list", _write("cal.json", b"[1, 2]"), ("expected a JSON object",)),
    ("nested 100000 deep", _write("cal.json", b"[" * 100_000 + b"]" * 100_000), ("json", "nested")),
    ("an integer of 5000 digits", _write("cal.json", b'{"version": ' + b"9" * 5000 + b"}"), ("json",)),
]


@pytest.mark.parametrize(
    ("make", "needles"), [(m, n) for _, m, n in LOAD_CASES], ids=[k for k, _, _ in LOAD_CASES]
)
def test_calibration_load_refuses_bad_files(tmp_path: Path, make: Any, needles: tuple[str, ...]) -> None:
    path = make(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(InputError) as ei:
        Calibration.load(path)
    msg = str(ei.value)
    assert msg.startswith(str(path)), msg
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"
    assert snapshot(tmp_path) == before


def test_calibration_load_refuses_a_device() -> None:
    with pytest.raises(InputError, match="/dev/zero: path: is a device"):
        Calibration.load("/dev/zero")


def test_calibration_load_refuses_an_oversized_file_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "cal.json"
    _cal().save(p)
    monkeypatch.setattr(calibration_record, "MAX_CALIBRATION_BYTES", 1000)
    with pytest.raises(InputError) as ei:
        Calibration.load(p)
    assert ei.value.field == "size" and "before reading" in str(ei.value)


def test_calibration_load_refuses_a_fifo_at_once(tmp_path: Path) -> None:
    """In a subprocess with a timeout: opening a FIFO for reading would block until a writer appears."""
    fifo = _fifo(tmp_path)
    code = (
        "import sys\nfrom vibration_anomaly.core.calibration import Calibration\n"
        "try:\n    Calibration.load(sys.argv[1])\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
    )
    p = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True, text=True, timeout=60)
    assert p.stdout.startswith(f"InputError {fifo}: path: is a FIFO"), p.stdout + p.stderr


def test_core_does_not_import_the_command_line() -> None:
    code = (
        "import sys\nimport vibration_anomaly.core.scoring\n"
        "print(sorted(m for m in sys.modules if m in ('vibration_anomaly.cli', 'argparse')))"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "vibration_anomaly.cli" not in p.stdout, p.stdout + p.stderr


# ---------------------------------------------------------------- Calibration.save: atomic


def test_calibration_round_trips_through_a_dict_with_an_unknown_median() -> None:
    back = Calibration.from_dict(
        _cal().to_dict()
    )  # healthy_score_median NaN in memory, as calibrate leaves it
    assert math.isnan(back.healthy_score_median) and back.window_samples == 4900


def test_calibration_save_is_atomic_and_round_trips(tmp_path: Path) -> None:
    p = tmp_path / "new" / "cal.json"  # a missing folder is created
    cal = _cal()
    cal.save(p)
    assert [x.name for x in p.parent.iterdir()] == ["cal.json"]
    doc = json.loads(p.read_text(), parse_constant=lambda c: pytest.fail(f"bare {c} written"))
    assert doc["healthy_score_median"] is None  # NaN is written as null, strict JSON
    back = Calibration.load(p)
    assert back.threshold == cal.threshold and math.isnan(back.healthy_score_median)
    np.testing.assert_allclose(back.std, cal.std)


def test_calibration_save_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    p = tmp_path / "cal.json"
    _cal().save(p)
    before = snapshot(tmp_path)
    bad = _cal(extra={"not json": object()})
    with pytest.raises(TypeError):
        bad.save(p)
    assert snapshot(tmp_path) == before
    # Into a missing folder: the folder is not left behind either.
    with pytest.raises(TypeError):
        bad.save(tmp_path / "a" / "b" / "cal.json")
    assert snapshot(tmp_path) == before


def test_calibration_save_uses_a_unique_temp_name(tmp_path: Path) -> None:
    """A stale ``cal.json.tmp`` (from an older writer, or another process) is neither used nor removed."""
    (tmp_path / "cal.json.tmp").write_text("someone else's")
    _cal().save(tmp_path / "cal.json")
    assert (tmp_path / "cal.json.tmp").read_text() == "someone else's"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["cal.json", "cal.json.tmp"]


# ---------------------------------------------------------------- engine build: the ONNX file, the plan


def test_engine_build_refuses_oversized_onnx_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vibration_anomaly.engine import build

    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"\0" * 5000)
    monkeypatch.setattr(build, "MAX_ONNX_BYTES", 1000)
    before = snapshot(tmp_path)
    with pytest.raises(InputError) as ei:  # refused before TensorRT is even imported (none is needed here)
        build.build_engine(onnx, tmp_path / "e.plan")
    assert ei.value.source == str(onnx) and ei.value.field == "size" and "before reading" in str(ei.value)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind", ["fifo", "directory", "missing"])
def test_engine_build_refuses_what_is_not_an_onnx_file(tmp_path: Path, kind: str) -> None:
    from vibration_anomaly.engine import build

    onnx = tmp_path / "m.onnx"
    if kind == "fifo":
        os.mkfifo(onnx)
    elif kind == "directory":
        onnx.mkdir()
    with pytest.raises(InputError) as ei:
        build.build_engine(onnx, tmp_path / "e.plan")
    assert ei.value.source == str(onnx)
    assert {"fifo": "FIFO", "directory": "directory", "missing": "not found"}[kind] in str(ei.value)
    assert not (tmp_path / "e.plan").exists()


def test_engine_plan_is_written_atomically(tmp_path: Path) -> None:
    from vibration_anomaly.engine.build import write_plan

    out = tmp_path / "engines" / "m.plan"
    write_plan(out, bytearray(b"plan-1"))
    assert out.read_bytes() == b"plan-1" and [x.name for x in out.parent.iterdir()] == ["m.plan"]
    before = snapshot(tmp_path)
    with pytest.raises(TypeError):
        write_plan(out, object())  # not a buffer: fails after the temp file exists
    assert snapshot(tmp_path) == before
    write_plan(out, b"plan-2")
    assert out.read_bytes() == b"plan-2" and [x.name for x in out.parent.iterdir()] == ["m.plan"]


# ---------------------------------------------------------------- output folders (train --out)


def test_atomic_dir_new_folder_appears_complete_or_not_at_all(tmp_path: Path) -> None:
    out = tmp_path / "a" / "model"
    with pytest.raises(RuntimeError), fileio.atomic_dir(out) as tmp:
        (tmp / "model.onnx").write_bytes(b"half")
        raise RuntimeError("export failed")
    assert list(tmp_path.iterdir()) == []  # no temp folder, no created parent
    with fileio.atomic_dir(out) as tmp:
        (tmp / "model.onnx").write_bytes(b"whole")
        (tmp / "model.json").write_text("{}")
    assert sorted(x.name for x in out.iterdir()) == ["model.json", "model.onnx"]
    assert sorted(x.name for x in out.parent.iterdir()) == ["model"]


def test_atomic_dir_existing_folder_keeps_its_other_files(tmp_path: Path) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"old")
    (out / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    with pytest.raises(KeyboardInterrupt), fileio.atomic_dir(out) as tmp:
        (tmp / "model.onnx").write_bytes(b"half")
        raise KeyboardInterrupt
    assert snapshot(tmp_path) == before
    with fileio.atomic_dir(out) as tmp:
        (tmp / "model.onnx").write_bytes(b"new")
    assert (out / "model.onnx").read_bytes() == b"new" and (out / "notes.txt").read_text() == "mine"
    assert sorted(x.name for x in out.iterdir()) == ["model.onnx", "notes.txt"]


def test_train_refuses_no_data_as_input_error(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from vibration_anomaly.model.train import TrainConfig, train

    with pytest.raises(InputError, match="--synth-machines"):
        train(TrainConfig(synth_machines=0, steps=1), tmp_path / "m", progress=False)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- power --model-watts, demo --fault-after


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ("nan,4", "asleep"),
        ("4,nan", "awake"),
        ("inf,inf", "asleep"),
        ("-1,4", "asleep"),
        ("4,-inf", "awake"),
        ("4,5000", "awake"),
        ("11,4", "value"),
        ("4", "value"),
    ],
)
def test_custom_power_model_refuses_non_finite_or_negative_watts(spec: str, field: str) -> None:
    from vibration_anomaly.power.modelled import custom_model

    with pytest.raises(InputError) as ei:
        custom_model(spec)
    assert ei.value.source == "--model-watts" and ei.value.field == field


@pytest.mark.parametrize("text", ["inf", "nan", "-inf", "-1", "soon", ""])
def test_parse_fault_after_refuses(text: str) -> None:
    from vibration_anomaly.sim.demo import parse_fault_after

    with pytest.raises(InputError) as ei:
        parse_fault_after(text)
    assert ei.value.source == "--fault-after"


def test_parse_fault_after_accepts() -> None:
    from vibration_anomaly.sim.demo import parse_fault_after

    assert (
        parse_fault_after("1.5") == 1.5
        and parse_fault_after(" none ") is None
        and parse_fault_after("0") == 0.0
    )
