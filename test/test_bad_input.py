"""Bad input, as a new user or a failing sensor gives it: every kind is a named refusal, never a traceback.

Each case builds its own bad file(s) in a copy of a small workspace (a good
recording, a good calibration, a dataset, a signed bundle), snapshots every
file, runs ``vibration_anomaly.cli.main`` in-process and asserts three things:
the exit code, that the one stderr line names the problem, and that no file
changed or appeared (no stray temp, no overwritten calibration). A few cases
run in a subprocess to prove the real exit code, the absence of a traceback,
and that a FIFO does not hang. docs/INPUTS.md lists the kinds.

Everything is real: numpy npz/CSV files, rosbags-written bags, cryptography keys;
the only patched things are our own size limits (so "too large" needs no GB file).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from vibration_anomaly import cli
from vibration_anomaly.model import data as data_mod
from vibration_anomaly.model import records as records_mod

FS = 1000.0
REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "vibration_anomaly" / "bundle" / "example"


def _signal(n: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FS
    x = rng.normal(0.0, 0.3, (n, channels))
    for c in range(channels):
        x[:, c] += 0.5 * np.sin(2 * np.pi * (37 + 11 * c) * t) + 0.2 * np.sin(2 * np.pi * 121 * t)
    return x


def _npz(path: Path, x: np.ndarray, fs: float | None = FS) -> Path:
    arrays = {k: x[:, i].astype(np.float32) for i, k in enumerate("xyz"[: x.shape[1]])}
    if fs is not None:
        arrays["fs"] = np.float64(fs)
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def _csv(path: Path, t: np.ndarray, x: np.ndarray) -> Path:
    rows = np.column_stack([t, x])
    np.savetxt(path, rows, delimiter=",", header="t,x,y,z", comments="", fmt="%.6f")
    return path


def _manifest(d: Path, rows: list[str], header: str = "file,condition,fs_hz,machine") -> Path:
    (d / "manifest.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    return d


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with good files; each test copies it, so the good calibration is made only once."""
    ws = tmp_path_factory.mktemp("ws")
    _npz(ws / "good.npz", _signal(40_000))
    ds = ws / "ds"
    ds.mkdir()
    _npz(ds / "normal_a.npz", _signal(30_000, seed=1))
    fault = _signal(10_000, seed=2)
    fault[::97] += 6.0  # impacts
    _npz(ds / "fault_a.npz", fault)
    _manifest(ds, ["normal_a.npz,normal,1000,a", "fault_a.npz,outer_race,1000,a"])
    assert (
        cli.main(
            ["calibrate", "--input", str(ws / "good.npz"), "--out", str(ws / "cal.json"), "--window-s", "1"]
        )
        == 0
    )
    return ws


@pytest.fixture()
def ws(base: Path, tmp_path: Path) -> Path:
    d = tmp_path / "ws"
    shutil.copytree(base, d)
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


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def assert_refused(
    ws: Path, argv: list[str], needles: tuple[str, ...], capsys: pytest.CaptureFixture[str], rc: int = 2
) -> str:
    before = snapshot(ws)
    got, _out, err = run(argv, capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert got == rc, err
    assert "Traceback" not in err
    assert len(lines) == 1, f"expected one stderr line, got: {err!r}"
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    assert snapshot(ws) == before, "a file changed, appeared or vanished"
    return lines[0]


# ---------------------------------------------------------------- the table of kinds


@dataclass(frozen=True)
class Case:
    kind: str
    setup: Callable[[Path], list[str]]
    needles: tuple[str, ...]


def cal(*extra: str, inp: str = "good.npz") -> Callable[[Path], list[str]]:
    return lambda ws: ["calibrate", "--input", str(ws / inp), "--out", str(ws / "cal.json"), *extra]


def ev(*extra: str, data: str = "ds") -> Callable[[Path], list[str]]:
    return lambda ws: ["evaluate", "--data", str(ws / data), *extra]


def with_file(
    make: Callable[[Path], object], argv: Callable[[Path], list[str]]
) -> Callable[[Path], list[str]]:
    def setup(ws: Path) -> list[str]:
        make(ws)
        return argv(ws)

    return setup


def _write(name: str, content: bytes | str) -> Callable[[Path], object]:
    def make(ws: Path) -> object:
        p = ws / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p.write_bytes(content) if isinstance(content, bytes) else p.write_text(content)

    return make


def _rec(name: str, x: np.ndarray, fs: float | None = FS) -> Callable[[Path], object]:
    return lambda ws: _npz(ws / name, x, fs)


def _ds(
    rows: list[str],
    files: dict[str, tuple[np.ndarray, float | None]] | None = None,
    header: str = "file,condition,fs_hz,machine",
) -> Callable[[Path], object]:
    def make(ws: Path) -> object:
        d = ws / "ds"
        for name, (x, fs) in (files or {}).items():
            _npz(d / name, x, fs)
        return _manifest(d, rows, header)

    return make


def _truncated(ws: Path) -> None:
    good = (ws / "good.npz").read_bytes()
    (ws / "trunc.npz").write_bytes(good[: len(good) // 2])


def _pickled(ws: Path) -> None:
    np.savez(ws / "pickled.npz", x=np.array([{"a": 1}, None], dtype=object))


def _dead() -> np.ndarray:
    x = _signal(20_000)
    x[:, 1] = 0.0
    return x


def _clipped() -> np.ndarray:
    x = _signal(20_000) * 4
    return np.clip(x, -2.0, 2.0)


def _stuck() -> np.ndarray:
    x = _signal(20_000)
    x[5000:, 2] = x[5000, 2]
    return x


def _nan_burst() -> np.ndarray:
    x = _signal(20_000)
    x[1000:1100, 0] = np.nan
    return x


GOOD = _signal(20_000, seed=5)
T = np.arange(5000) / FS

CASES: list[Case] = [
    # numbers on the command line
    Case("target-far NaN keeps the good calibration", cal("--target-far", "nan"), ("--target-far", "'nan'")),
    Case("target-far inf", cal("--target-far", "inf"), ("--target-far", "finite")),
    Case("target-far zero", cal("--target-far", "0"), ("--target-far", "> 0")),
    Case("target-far negative", cal("--target-far", "-0.1"), ("--target-far",)),
    Case("target-far absurd", cal("--target-far", "0.9"), ("--target-far", "< 0.5")),
    Case("window-s NaN", cal("--window-s", "nan"), ("--window-s",)),
    Case("window-s zero", cal("--window-s", "0"), ("--window-s",)),
    Case("window-s negative", cal("--window-s", "-5"), ("--window-s",)),
    Case("window-s absurd", cal("--window-s", "1e9"), ("--window-s", "<= 600")),
    Case("window-s not a number", cal("--window-s", "five"), ("--window-s", "'five'")),
    Case("fs-hz NaN", cal("--fs-hz", "nan"), ("--fs-hz",)),
    Case("fs-hz zero", cal("--fs-hz", "0"), ("--fs-hz",)),
    Case("fs-hz negative", cal("--fs-hz", "-1000"), ("--fs-hz",)),
    Case("fs-hz absurd", cal("--fs-hz", "1e12"), ("--fs-hz", "1e+06")),
    Case("fs-hz disagrees with the file", cal("--fs-hz", "2000"), ("--fs-hz", "2000", "1000 Hz")),
    Case("cal-frac above 1", ev("--cal-frac", "1.5"), ("--cal-frac", "< 1")),
    Case("cal-frac zero", ev("--cal-frac", "0"), ("--cal-frac",)),
    Case("cal-frac NaN", ev("--cal-frac", "nan"), ("--cal-frac",)),
    Case("cal-frac leaves nothing held out", ev("--cal-frac", "0.99"), ("--cal-frac", "held out")),
    Case("amplitudes with NaN", ev("--sensitivity", "--amplitudes", "1,nan"), ("--amplitudes", "nan")),
    Case("amplitudes empty", ev("--amplitudes", ""), ("--amplitudes",)),
    Case("amplitudes negative", ev("--amplitudes", "1,-2"), ("--amplitudes", "-2")),
    Case("amplitudes repeated", ev("--amplitudes", "1,1"), ("--amplitudes", "at most once")),
    Case("knock-peak inf", ev("--knock-peak", "inf"), ("--knock-peak",)),
    Case("seed negative", ev("--seed", "-1"), ("--seed",)),
    Case("bearing order NaN", ev("--bearing", "bpfo=nan"), ("--bearing", "bpfo")),
    Case("window too short for the model at 1 kHz", ev("--window-s", "0.1"), ("--window-s", "256", "0.256")),
    Case("demo hours NaN", lambda ws: ["demo", "--hours", "nan"], ("--hours",)),
    Case("demo hours zero", lambda ws: ["demo", "--hours", "0"], ("--hours",)),
    Case("demo hours absurd (unbounded run)", lambda ws: ["demo", "--hours", "1e9"], ("--hours", "744")),
    Case("demo rate zero", lambda ws: ["demo", "--rate", "0"], ("--rate",)),
    Case("demo fault-after inf", lambda ws: ["demo", "--fault-after", "inf"], ("--fault-after",)),
    Case("demo hiccups negative", lambda ws: ["demo", "--hiccups", "-1"], ("--hiccups",)),
    Case("power interval zero", lambda ws: ["power", "--interval", "0", "--count", "1"], ("--interval",)),
    Case("power interval NaN", lambda ws: ["power", "--interval", "nan", "--count", "1"], ("--interval",)),
    Case("power count negative", lambda ws: ["power", "--count", "-1"], ("--count",)),
    Case("power model-watts inf", lambda ws: ["power", "--model-watts", "inf,inf"], ("--model-watts",)),
    Case(
        "power model-watts asleep above awake",
        lambda ws: ["power", "--model-watts", "11,4"],
        ("--model-watts", "asleep <= awake"),
    ),
    Case(
        "engine build batch zero",
        lambda ws: ["engine", "build", str(ws / "m.onnx"), "--out", str(ws / "e.plan"), "--min-batch", "0"],
        ("--min-batch",),
    ),
    Case(
        "engine build min above max",
        with_file(
            _write("m.onnx", b"x"),
            lambda ws: [
                "engine",
                "build",
                str(ws / "m.onnx"),
                "--out",
                str(ws / "e.plan"),
                "--min-batch",
                "9",
            ],
        ),
        ("min <= opt <= max",),
    ),
    Case("train steps zero", lambda ws: ["train", "--out", str(ws / "m"), "--steps", "0"], ("--steps",)),
    Case("unknown option", cal("--fast"), ("unrecognized arguments", "--help")),
    # recordings
    Case("input missing", cal(inp="nope.npz"), ("nope.npz", "not found")),
    Case(
        "input a plain directory", with_file(lambda ws: (ws / "d").mkdir(), cal(inp="d")), ("metadata.yaml",)
    ),
    Case(
        "input a device",
        lambda ws: ["calibrate", "--input", "/dev/zero", "--out", str(ws / "cal.json")],
        ("/dev/zero", "a device"),
    ),
    Case(
        "npz corrupt", with_file(_write("bad.npz", os.urandom(4096)), cal(inp="bad.npz")), ("bad.npz", "npz")
    ),
    Case("npz truncated", with_file(_truncated, cal(inp="trunc.npz")), ("trunc.npz", "truncated")),
    Case("npz with pickled objects", with_file(_pickled, cal(inp="pickled.npz")), ("pickled.npz",)),
    Case(
        "npz without signal arrays",
        with_file(lambda ws: np.savez(ws / "e.npz", fs=np.float64(FS)), cal(inp="e.npz")),
        ("e.npz", "no 1-D signal"),
    ),
    Case(
        "npz fs NaN", with_file(_rec("f.npz", GOOD, float("nan")), cal(inp="f.npz")), ("f.npz", "fs", "nan")
    ),
    Case("npz fs zero", with_file(_rec("f.npz", GOOD, 0.0), cal(inp="f.npz")), ("f.npz", "fs")),
    Case(
        "npz NaN burst",
        with_file(_rec("n.npz", _nan_burst()), cal(inp="n.npz")),
        ("n.npz", "NaN", "sample 1000"),
    ),
    Case(
        "npz without a rate and no --fs-hz",
        with_file(_rec("r.npz", GOOD, None), cal(inp="r.npz")),
        ("r.npz", "--fs-hz"),
    ),
    Case(
        "unknown file type",
        with_file(_write("rec.txt", "1,2\n"), cal(inp="rec.txt")),
        ("rec.txt", "unknown format"),
    ),
    Case(
        "csv timestamps backward",
        with_file(lambda ws: _csv(ws / "b.csv", T[::-1].copy(), GOOD[:5000]), cal(inp="b.csv")),
        ("b.csv", "line 3", "backward"),
    ),
    Case(
        "csv timestamps shuffled",
        with_file(
            lambda ws: _csv(ws / "s.csv", np.random.default_rng(0).permutation(T), GOOD[:5000]),
            cal(inp="s.csv"),
        ),
        ("s.csv", "timestamps must increase"),
    ),
    Case(
        "csv timestamps repeated",
        with_file(lambda ws: _csv(ws / "r.csv", np.repeat(T[:2500], 2), GOOD[:5000]), cal(inp="r.csv")),
        ("r.csv", "repeats"),
    ),
    Case(
        "csv not numeric",
        with_file(_write("t.csv", "t,x\n0,a\n0.001,b\n"), cal(inp="t.csv")),
        ("t.csv", "numeric"),
    ),
    Case(
        "csv wrong columns",
        with_file(_write("w.csv", "t,x,y\n0,1,2\n0.001,1,2\n"), cal(inp="w.csv")),
        ("w.csv", "columns"),
    ),
    Case("csv empty", with_file(_write("e.csv", "t,x\n"), cal(inp="e.csv")), ("e.csv", "rows")),
    Case(
        "csv not text", with_file(_write("u.csv", b"t,x\n\xff\xfe\x00\x01\n"), cal(inp="u.csv")), ("u.csv",)
    ),
    Case(
        "rosbag2 directory with broken metadata",
        with_file(_write("bag/metadata.yaml", "{{{ not yaml"), cal(inp="bag")),
        ("bag", "rosbag2"),
    ),
    Case(
        "rosbag2 .db3 not a database",
        with_file(_write("x/rec.db3", b"junk" * 100), cal(inp="x/rec.db3")),
        ("rec.db3", "metadata.yaml"),
    ),
    # sensor health at calibration
    Case(
        "dead channel recording",
        with_file(_rec("dead.npz", _dead()), cal("--window-s", "1", inp="dead.npz")),
        ("dead.npz", "dead_channel", "channel 1"),
    ),
    Case(
        "clipped recording",
        with_file(_rec("clip.npz", _clipped()), cal("--window-s", "1", inp="clip.npz")),
        ("clip.npz", "clipping"),
    ),
    Case(
        "stuck recording",
        with_file(_rec("stuck.npz", _stuck()), cal("--window-s", "1", inp="stuck.npz")),
        ("stuck.npz", "stuck_value", "channel 2"),
    ),
    # outputs
    Case(
        "--out is a directory",
        lambda ws: ["calibrate", "--input", str(ws / "good.npz"), "--out", str(ws / "ds")],
        ("--out", "directory"),
    ),
    Case(
        "--out under a file",
        lambda ws: ["calibrate", "--input", str(ws / "good.npz"), "--out", str(ws / "good.npz" / "cal.json")],
        ("--out", "not a folder"),
    ),
    Case("--report is a directory", ev("--report", "/tmp"), ("--report", "directory")),
    Case("--trace is a directory", lambda ws: ["demo", "--trace", str(ws / "ds")], ("--trace", "directory")),
    Case(
        "train --out is a file",
        lambda ws: ["train", "--out", str(ws / "good.npz")],
        ("--out", "not a directory"),
    ),
    # datasets and manifests
    Case("--data missing", ev(data="nope"), ("--data", "not found")),
    Case("--data is a file", ev(data="good.npz"), ("--data", "not a directory")),
    Case(
        "manifest missing",
        with_file(lambda ws: (ws / "ds" / "manifest.csv").unlink(), ev()),
        ("manifest.csv",),
    ),
    Case(
        "manifest fs_hz NaN",
        with_file(_ds(["normal_a.npz,normal,nan,a", "fault_a.npz,outer_race,1000,a"]), ev()),
        ("manifest.csv", "line 2: fs_hz", "nan"),
    ),
    Case(
        "manifest fs_hz zero",
        with_file(_ds(["normal_a.npz,normal,0,a", "fault_a.npz,outer_race,1000,a"]), ev()),
        ("line 2: fs_hz",),
    ),
    Case(
        "manifest fs_hz negative",
        with_file(_ds(["normal_a.npz,normal,1000,a", "fault_a.npz,outer_race,-1,a"]), ev()),
        ("line 3: fs_hz",),
    ),
    Case(
        "manifest fs_hz text",
        with_file(_ds(["normal_a.npz,normal,fast,a", "fault_a.npz,outer_race,1000,a"]), ev()),
        ("line 2: fs_hz", "fast"),
    ),
    Case(
        "manifest fs_hz absurd",
        with_file(_ds(["normal_a.npz,normal,1e9,a", "fault_a.npz,outer_race,1000,a"]), ev()),
        ("line 2: fs_hz",),
    ),
    Case(
        "manifest fs_hz disagrees with the file",
        with_file(
            _ds(
                ["normal_a.npz,normal,1000,a", "fault_a.npz,outer_race,1000,a"],
                {"normal_a.npz": (_signal(30_000), 2000.0)},
            ),
            ev(),
        ),
        ("normal_a.npz", "2000", "1000"),
    ),
    Case(
        "label 'Normal ' (space)",
        with_file(_ds(["normal_a.npz,Normal ,1000,a", "fault_a.npz,outer_race,1000,a"]), ev()),
        ("line 2: condition", "exactly"),
    ),
    Case(
        "label 'NORMAL'",
        with_file(_ds(["normal_a.npz,NORMAL,1000,a", "fault_a.npz,outer_race,1000,a"]), ev()),
        ("line 2: condition", "'normal'"),
    ),
    Case(
        "label empty",
        with_file(_ds(["normal_a.npz,normal,1000,a", "fault_a.npz,,1000,a"]), ev()),
        ("line 3: condition", "empty"),
    ),
    Case(
        "record listed twice",
        with_file(
            _ds(
                ["normal_a.npz,normal,1000,a", "normal_a.npz,normal,1000,a", "fault_a.npz,outer_race,1000,a"]
            ),
            ev(),
        ),
        ("line 3: file", "twice"),
    ),
    Case(
        "manifest row with extra values",
        with_file(_ds(["normal_a.npz,normal,1000,a,extra", "fault_a.npz,outer_race,1000,a"]), ev()),
        ("line 2",),
    ),
    Case(
        "manifest without condition column",
        with_file(_ds(["normal_a.npz,1000,a"], header="file,fs_hz,machine"), ev()),
        ("condition", "column missing"),
    ),
    Case(
        "manifest record missing",
        with_file(_ds(["normal_a.npz,normal,1000,a", "gone.npz,outer_race,1000,a"]), ev()),
        ("gone.npz", "not found"),
    ),
    Case(
        "one machine at two rates",
        with_file(
            _ds(
                ["normal_a.npz,normal,1000,a", "normal_b.npz,normal,2000,a", "fault_a.npz,outer_race,1000,a"],
                {"normal_b.npz": (_signal(30_000), 2000.0)},
            ),
            ev(),
        ),
        ("normal_b.npz", "machine a", "one rate"),
    ),
    Case(
        "fault record at another rate than its machine",
        with_file(
            _ds(
                ["normal_a.npz,normal,1000,a", "fault_b.npz,outer_race,2000,a"],
                {"fault_b.npz": (_signal(20_000), 2000.0)},
            ),
            ev(),
        ),
        ("fault_b.npz", "2000 Hz", "machine a"),
    ),
    Case(
        "no faulty records (would be a NaN table)",
        with_file(_ds(["normal_a.npz,normal,1000,a"]), ev()),
        ("condition", "no faulty windows"),
    ),
    Case(
        "no healthy records",
        with_file(_ds(["fault_a.npz,outer_race,1000,a"]), ev()),
        ("no record with condition",),
    ),
    Case(
        "manifest not UTF-8",
        with_file(_write("ds/manifest.csv", b"file,condition\n\xff\xfe,normal\n"), ev()),
        ("manifest.csv", "UTF-8"),
    ),
    # bundles and keys
    Case(
        "keygen one path for both keys",
        lambda ws: ["bundle", "keygen", "--private", str(ws / "k"), "--public", str(ws / "k")],
        ("--private/--public", "two different"),
    ),
    Case(
        "keygen public key under a file",
        lambda ws: [
            "bundle",
            "keygen",
            "--private",
            str(ws / "k.pem"),
            "--public",
            str(ws / "good.npz" / "k.pub"),
        ],
        ("--public", "not a folder"),
    ),
    Case(
        "sign --out is a directory",
        lambda ws: [
            "bundle",
            "sign",
            str(EXAMPLE / "payload.yaml"),
            "--key",
            str(EXAMPLE / "DEV_KEY_DO_NOT_USE_ON_ROBOTS.pem"),
            "--out",
            str(ws / "ds"),
        ],
        ("--out", "directory"),
    ),
    Case(
        "verify --trust is a file",
        lambda ws: ["bundle", "verify", str(EXAMPLE / "dev_bundle.yaml"), "--trust", str(ws / "good.npz")],
        ("trust_store", "not a directory"),
    ),
    Case(
        "verify bundle is a directory",
        lambda ws: ["bundle", "verify", str(ws / "ds"), "--trust", str(EXAMPLE / "trust")],
        ("ds", "directory"),
    ),
    Case(
        "engine info on a missing file",
        lambda ws: ["engine", "info", str(ws / "none.plan")],
        ("ENGINE", "does not exist"),
    ),
    Case(
        "engine info on a directory", lambda ws: ["engine", "info", str(ws / "ds")], ("ENGINE", "a directory")
    ),
    Case(
        "bearing resonance reversed",
        ev("--bearing-resonance-hz", "4500,2500"),
        ("--bearing-resonance-hz", "0 < LO < HI"),
    ),
    Case(
        "bearing resonance one number",
        ev("--bearing-resonance-hz", "3000"),
        ("--bearing-resonance-hz", "LO,HI"),
    ),
    Case(
        "bearing resonance without a bearing",
        cal("--shaft-hz", "24", "--bearing-resonance-hz", "2500,4500"),
        ("--bearing-resonance-hz", "needs --bearing"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])
def test_bad_input_is_a_named_refusal(case: Case, ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = case.setup(ws)
    assert_refused(ws, argv, case.needles, capsys)


def test_the_suite_covers_at_least_60_kinds() -> None:
    kinds = {c.kind for c in CASES}
    assert len(kinds) == len(CASES) and len(kinds) >= 60


# ---------------------------------------------------------------- limits (our own constants, lowered)


def test_npz_too_large_is_refused_before_unpacking(
    ws: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records_mod, "MAX_RECORD_BYTES", 10_000)
    assert_refused(ws, cal()(ws), ("good.npz", "size", "before unpacking"), capsys)


def test_csv_too_large_is_refused_before_reading(
    ws: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _csv(ws / "big.csv", T, GOOD[:5000])
    monkeypatch.setattr(records_mod, "MAX_CSV_BYTES", 1000)
    assert_refused(ws, cal(inp="big.csv")(ws), ("big.csv", "size", "before reading"), capsys)


def test_manifest_too_large_is_refused(
    ws: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data_mod, "MAX_MANIFEST_BYTES", 10)
    assert_refused(ws, ev()(ws), ("manifest.csv", "size"), capsys)


# ---------------------------------------------------------------- rosbag2 written with rosbags


@pytest.mark.skipif(
    importlib.util.find_spec("rosbags") is None, reason="rosbags ([eval] extra) not installed"
)
def test_bag_without_imu_topic_is_named(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    String = ts.types["std_msgs/msg/String"]
    with Writer(ws / "strbag", version=9, storage_plugin=StoragePlugin.SQLITE3) as w:
        conn = w.add_connection("/chatter", String.__msgtype__, typestore=ts)
        w.write(conn, 1, ts.serialize_cdr(String("hi"), String.__msgtype__))
    assert_refused(ws, cal(inp="strbag")(ws), ("strbag", "no sensor_msgs/msg/Imu"), capsys)


# ---------------------------------------------------------------- outputs and keys


def test_keygen_leaves_no_orphan_private_key(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The public key's folder is a file: refused before the private key is written."""
    assert_refused(
        ws,
        ["bundle", "keygen", "--private", str(ws / "new.pem"), "--public", str(ws / "good.npz" / "k.pub")],
        ("--public",),
        capsys,
    )
    assert not (ws / "new.pem").exists()


def test_calibrate_success_is_atomic_and_records_the_sensor_baseline(
    ws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ws / "new" / "cal.json"  # a missing folder is created on success only
    rc, stdout, err = run(
        ["calibrate", "--input", str(ws / "good.npz"), "--out", str(out), "--window-s", "1"], capsys
    )
    assert rc == 0, err
    doc = json.loads(out.read_text())
    assert len(doc["extra"]["sensor"]["rms"]) == 3 and doc["threshold"] > 0
    assert [p.name for p in out.parent.iterdir()] == ["cal.json"]  # no temp left beside it
    assert json.loads(stdout)["out"] == str(out)


def test_evaluate_json_is_strict_json(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(["evaluate", "--data", str(ws / "ds"), "--json"], capsys)
    assert rc == 0, err

    def refuse(const: str) -> None:
        raise AssertionError(f"bare {const} in --json output")

    res = json.loads(out, parse_constant=refuse)
    assert 0.0 <= res["auroc"] <= 1.0
    assert res["setup"]["window_s"] == {"a": pytest.approx(0.256)}  # the automatic window at 1 kHz


# ---------------------------------------------------------------- error convention, through a real process


def _proc(*argv: str, timeout: float = 60, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vibration_anomaly", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )  # type: ignore[call-overload]


def test_fifo_input_is_refused_at_once_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "rec.npz"
    os.mkfifo(fifo)
    p = _proc("calibrate", "--input", str(fifo), "--out", str(tmp_path / "c.json"), timeout=30)
    assert p.returncode == 2 and "FIFO" in p.stderr and "Traceback" not in p.stderr
    p = _proc("bundle", "verify", str(fifo), "--trust", str(EXAMPLE / "trust"), timeout=30)
    assert p.returncode == 2 and "FIFO" in p.stderr and "Traceback" not in p.stderr
    p = _proc(
        "bundle",
        "verify",
        str(EXAMPLE / "dev_bundle.yaml"),
        "--trust",
        str(EXAMPLE / "trust"),
        "--model",
        str(fifo),
        timeout=30,
    )
    assert p.returncode == 2 and "FIFO" in p.stderr and "Traceback" not in p.stderr
    p = _proc(
        "bundle",
        "sign",
        str(fifo),
        "--key",
        str(EXAMPLE / "DEV_KEY_DO_NOT_USE_ON_ROBOTS.pem"),
        "--out",
        str(tmp_path / "b.yaml"),
        timeout=30,
    )
    assert p.returncode == 2 and "FIFO" in p.stderr and "Traceback" not in p.stderr
    p = _proc("engine", "info", str(fifo), timeout=30)
    assert p.returncode == 2 and "FIFO" in p.stderr and "Traceback" not in p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["rec.npz"]


def test_refusal_exit_code_and_one_line_through_a_process(tmp_path: Path) -> None:
    p = _proc(
        "calibrate",
        "--input",
        str(tmp_path / "x.npz"),
        "--out",
        str(tmp_path / "c.json"),
        "--target-far",
        "nan",
    )
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "--target-far" in p.stderr and not p.stdout


def test_bundle_show_into_a_closed_pipe_is_quiet() -> None:
    """``bundle show | head -1``: no BrokenPipeError, no "Exception ignored" noise."""
    cmd = (
        f"{sys.executable} -m vibration_anomaly bundle show {EXAMPLE / 'dev_bundle.yaml'} | head -c 1 >/dev/null;"
        " echo rc=${PIPESTATUS[0]}"
    )
    p = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60)
    assert (
        "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr and "Exception ignored" not in p.stderr
    )
    assert "rc=0" in p.stdout


def test_internal_error_is_one_line_and_traceback_only_with_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from vibration_anomaly.power import cli as power_cli

    def boom(_args: object) -> int:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(power_cli, "run", boom)
    rc, _out, err = run(["power", "--count", "1"], capsys)
    assert rc == 1 and "internal error: ZeroDivisionError: a bug" in err and "Traceback" not in err
    assert "--debug" in err and len(err.strip().splitlines()) == 1
    rc, _out, err = run(["--debug", "power", "--count", "1"], capsys)
    assert rc == 1 and "Traceback" in err


def test_every_option_help_shows_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["calibrate"], ["evaluate"], ["demo"], ["power"], ["engine", "build"], ["train"]):
        assert cli.main([*argv, "--help"]) == 0
        text = capsys.readouterr().out
        assert "default" in text
    assert cli.main(["evaluate", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for needle in (
        "--cal-frac CAL_FRAC share of each machine's healthy windows to calibrate on, the rest held out "
        "(default: 0.5)",
        "--target-far TARGET_FAR per-window false-alarm rate of the threshold (default: 0.01)",
    ):
        assert needle in text
