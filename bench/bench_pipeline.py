"""Throughput of the sampling path and latency of one inference on the ONNX Runtime backend.

Prints one JSON object. Every figure comes with a baseline measured in the same
run on the same data, and the ratio, so a reader can judge it on any machine:

* ``push_one``: samples/s through Windower.push + LatestBatchQueue.put fed one
  sample at a time, as a ROS callback would (target >= 200k/s on one core);
  baseline: appending the same samples to a Python list (the cheapest possible
  callback body).
* ``push_many``: the same path fed in arrays (target >= 5M samples/s);
  baseline: one numpy copy of the same arrays.
* ``infer``: per-window latency of the shipped model on the ONNX Runtime
  backend (frontend + normalisation + engine) for one 5 s sample window (4900 x 3 at 1 kHz);
  baseline: the engine call alone.
* ``awake_cycle``: what one duty period costs awake, the way the robot runs it: the shared
  ``DetectorRuntime`` doing wake -> sensor check -> frontend -> engine -> vote -> events -> sleep on a
  fresh batch, CPU seconds (``time.process_time``) per cycle, the first cycle and the median
  (target <= 10 ms on one core). Baselines in the same run, each in its own fresh process: ``before``,
  the full-rate frontend with the INT8 model (what v3 robots ran), and ``torch``, the shipped frontend
  with PyTorch eager on the same weights in place of ONNX Runtime (see ``AWAKE_VARIANTS``).

``infer`` and ``awake_cycle`` run in a fresh process each (``--fresh``), started before anything
else allocates, so they show what a robot's process pays, not what a warmed allocator pays.
``--rounds R`` runs every awake-cycle variant R times, interleaved (shipped, before, torch, ..., then
again), and reports each figure's median over the rounds: on a shared machine whose speed drifts
within a run, the ratios then compare variants measured side by side, not minutes apart.
The output is one line of compact JSON.

Run: ``.venv/bin/python bench/bench_pipeline.py [--repeats 30]`` (pin to one core
with ``taskset -c 0`` for the one-core figure).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np

from vibration_anomaly.core.queue import LatestBatchQueue
from vibration_anomaly.core.window import Windower, batch_samples


def _data(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    t = 1.0 + np.arange(n) / 1000.0
    x = rng.normal(size=(n, 3)).astype(np.float32)
    return t, x


def bench_push_one(n: int) -> dict[str, float]:
    t, x = _data(n)
    tl, xl = t.tolist(), x.tolist()
    sink: list[tuple[float, list[float]]] = []
    start = time.perf_counter()
    for ti, xi in zip(tl, xl, strict=True):
        sink.append((ti, xi))
    base = n / (time.perf_counter() - start)
    w, q = Windower(5000), LatestBatchQueue(3)
    push, put = w.push, q.put
    start = time.perf_counter()
    for ti, xi in zip(tl, xl, strict=True):
        b = push(ti, xi)
        if b is not None:
            put(b)
    ours = n / (time.perf_counter() - start)
    assert w.accepted == n
    return {
        "samples_per_s": round(ours),
        "baseline_list_append_per_s": round(base),
        "ratio_to_baseline": round(ours / base, 3),
        "target_per_s": 200_000,
        "meets_target": ours >= 200_000,
    }


def bench_push_many(n: int, chunk: int = 5000) -> dict[str, float]:
    t, x = _data(n)
    start = time.perf_counter()
    for i in range(0, n, chunk):
        np.array(x[i : i + chunk], copy=True)
    base = n / (time.perf_counter() - start)
    w, q = Windower(5000), LatestBatchQueue(3)
    start = time.perf_counter()
    for i in range(0, n, chunk):
        for b in w.push_many(t[i : i + chunk], x[i : i + chunk]):
            q.put(b)
    ours = n / (time.perf_counter() - start)
    assert w.accepted == n
    return {
        "samples_per_s": round(ours),
        "baseline_numpy_copy_per_s": round(base),
        "ratio_to_baseline": round(ours / base, 3),
        "target_per_s": 5_000_000,
        "meets_target": ours >= 5_000_000,
    }


def bench_infer(repeats: int) -> dict[str, object]:
    from vibration_anomaly.core.scoring import Scorer
    from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
    from vibration_anomaly.model import load_default_model
    from vibration_anomaly.sim.robot import RobotConfig, SimulatedRobot

    model = load_default_model()
    robot = SimulatedRobot(RobotConfig(seed=1))
    n = batch_samples(1000.0, 5.0)  # the detector's batch for a 5 s sample window
    windows = [robot.frames(10 + 60 * k, 10 + 60 * k + n / 1000)[1] for k in range(12)]
    engine = OnnxRuntimeEngine(intra_op_threads=1)
    engine.load(model.cpu_onnx)
    engine.wake()
    frontend = model.frontend()
    cal = model.calibrate(engine, windows[:10], 1000.0)
    scorer = Scorer(engine, frontend, cal)
    w = windows[-1]
    from vibration_anomaly.core.calibration.segments import split_segments

    # the engine's one call per window: every segment's channels (core.calibration.segments)
    feats = np.concatenate(
        [cal.normalise(frontend(s, 1000.0)) for s in split_segments(w[None], cal.segments)]
    )
    full, eng = [], []
    for _ in range(repeats):
        s = time.perf_counter()
        scorer.score(w, 1000.0)
        full.append(time.perf_counter() - s)
        s = time.perf_counter()
        engine.infer(feats)
        eng.append(time.perf_counter() - s)
    engine.unload()
    f, e = statistics.median(full) * 1000, statistics.median(eng) * 1000
    return {
        "window": f"{w.shape[0]} samples x {w.shape[1]} axes @ 1 kHz (one 5 s sample window)",
        "median_ms": round(f, 3),
        "p90_ms": round(float(np.percentile(full, 90)) * 1000, 3),
        "baseline_engine_only_median_ms": round(e, 3),
        "ratio_to_baseline": round(f / e, 2),
        "model": model.model_id,
    }


AWAKE_VARIANTS = ("shipped", "before", "torch", "speed_aware", "speed_tracked", "segments", "no_knock_gate")
"""``shipped``: banded frontend + the file ONNX Runtime runs (``ModelFiles.cpu_onnx``, the FP32 twin).
``speed_aware``: shipped, calibrated with the example bundle's bearing at the robot's 24 Hz shaft
(``calibrate(..., shaft_hz, orders)``) and run with ``shaft_hz``: the order score is added to every cycle.
``speed_tracked``: speed_aware with the speed from ``speed_topic`` on a robot whose shaft swings +-10 % over
23 s: each window is resampled to constant speed before the order score (``core.order_track``).
``segments``: shipped, calibrated with ``segments=None`` (``calibrate --segments auto``): each 5 s window
scored as 5 segments of 1 s (``core.calibration.segments``).
``no_knock_gate``: shipped with ``knock_gate`` 0 (``core.knock_gate`` off): what the gate costs.
``before``: what v3 robots ran, the full-rate frontend + the INT8 QDQ model, in the same run.
``torch``: the shipped frontend with PyTorch eager on the same weights (``weights.npz``) instead."""


class _TorchEngine:
    """PyTorch eager on the shipped weights behind the engine protocol (nothing to wake: the model stays resident)."""

    name = "torch-eager"

    def __init__(self, files: Any) -> None:
        import torch

        from vibration_anomaly.engine.base import EngineState
        from vibration_anomaly.model.transformer import load_trained

        torch.set_num_threads(1)
        self.torch, self.states = torch, EngineState
        self.model = load_trained(files)
        self.state = EngineState.LOADED

    def load(self, _path: object) -> None: ...

    def wake(self) -> None:
        self.state = self.states.AWAKE

    def infer(self, features: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.model(self.torch.from_numpy(np.ascontiguousarray(features, np.float32))).numpy()

    def sleep(self) -> None:
        self.state = self.states.LOADED

    def unload(self) -> None: ...

    def residency(self) -> object:
        from vibration_anomaly.engine.base import Residency

        return Residency(backend=self.name, state=self.state, held=("model",), host_bytes=0, details={})


def bench_awake_cycle(repeats: int, variant: str = "shipped") -> dict[str, object]:
    """The shared runtime's whole awake path per duty period, in CPU time."""
    from vibration_anomaly.bundle import load_example_bundle
    from vibration_anomaly.core.scoring import AlarmVoter, Scorer
    from vibration_anomaly.core.window import Batch
    from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
    from vibration_anomaly.model import load_default_model
    from vibration_anomaly.model.frontend_full import FullRateFrontend
    from vibration_anomaly.runtime import DetectorRuntime, Pipeline, RuntimeParams
    from vibration_anomaly.sim.robot import RobotConfig, SimulatedRobot

    model = load_default_model()
    if variant in ("before", "no_knock_gate"):  # v3 robots had no knock gate
        model.meta["frontend"] = {**model.meta["frontend"], "knock_gate": 0.0}
    bundle = load_example_bundle()
    assert bundle.bearing is not None
    orders = bundle.bearing.orders()
    robot = SimulatedRobot(RobotConfig(seed=1))
    n = batch_samples(1000.0, 5.0)
    windows = [robot.frames(10 + 60 * k, 10 + 60 * k + n / 1000)[1] for k in range(10)]  # calibration
    swinging = SimulatedRobot(RobotConfig(seed=1, speed_swing=0.1, speed_swing_s=23.0))
    source = swinging if variant == "speed_tracked" else robot
    windows += [source.frames(10 + 60 * k, 10 + 60 * k + n / 1000)[1] for k in range(10, 10 + repeats)]
    aware = variant in ("speed_aware", "speed_tracked")
    model_file = model.onnx_int8 if variant == "before" else model.cpu_onnx

    def factory(b: object, _p: dict[str, object]) -> Pipeline:
        engine = OnnxRuntimeEngine(intra_op_threads=1)
        engine.load(model_file)
        engine.wake()
        speed: dict[str, object] = {"shaft_hz": 24.0, "orders": orders} if aware else {}
        if variant == "segments":
            speed["segments"] = None
        cal = model.calibrate(engine, windows[:10], 1000.0, **speed)
        if variant == "speed_tracked":  # commissioned across the swing: no window is skipped for its speed
            cal.extra["speed_hz"] = [24.0 * 0.9, 24.0 * 1.1]  # (core.speed.SpeedGuard); the cost is scoring's
        engine.sleep()
        frontend = model.frontend_for(cal)
        if variant == "before":
            frontend = FullRateFrontend(frontend.config)
        frontend.prepare(cal.window_samples // cal.segments, cal.fs_hz)  # as runtime.build_pipeline does
        if variant == "torch":
            engine = _TorchEngine(model)  # type: ignore[assignment]
        voter = AlarmVoter(b.alarm.votes_required, b.alarm.votes_window)  # type: ignore[attr-defined]
        return Pipeline(engine, Scorer(engine, frontend, cal), voter, model.model_id, "bench")

    clock = [0.0]
    rt = DetectorRuntime(lambda: clock[0], pipeline_factory=factory, threaded=False)
    rt.configure(
        RuntimeParams(
            require_firmware=False,
            event_log="",
            power_source="modelled",
            shaft_hz=24.0 if variant == "speed_aware" else 0.0,
            speed_topic="/joint_states" if variant == "speed_tracked" else "",
            speed_joint="wheel" if variant == "speed_tracked" else "",
        ),
        bundle=bundle,
    )
    assert rt.detector is not None and (rt.detector.orders is not None) == aware
    assert rt.queue is not None
    cpu, wall = [], []
    for k in range(repeats):
        t0 = 1000.0 + 60.0 * k
        clock[0] = t0 + 5.0
        w = windows[10 + k].astype(np.float32)
        if variant == "speed_tracked":  # the JointState readings of the window (the node's callback)
            for s in np.arange(10 + 60 * (10 + k) - 0.05, 10 + 60 * (10 + k) + 5.0, 0.02):
                rt.speed.report(float(swinging.shaft_hz_at(s)), t0 + s - (10 + 60 * (10 + k)))
        rt.queue.put(Batch(t0, t0 + (n - 1) / 1000.0, w, 1000.0))
        c, s = time.process_time(), time.perf_counter()
        rt.activate()
        rt.infer_now(t0)
        rt.deactivate()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - s)
    rt.close()
    return {
        "first_cycle_cpu_ms": round(cpu[0] * 1000, 2),
        "median_cpu_ms": round(statistics.median(cpu) * 1000, 2),
        "p90_cpu_ms": round(float(np.percentile(cpu, 90)) * 1000, 2),
        "median_wall_ms": round(statistics.median(wall) * 1000, 2),
        "cycles": repeats,
        "frontend": "full-rate" if variant == "before" else "banded",
        "model": "PyTorch eager (weights.npz)" if variant == "torch" else model_file.name,
    }


def _fresh(what: str, repeats: int, variant: str = "shipped") -> dict[str, Any]:
    """Run one measurement in a new interpreter: nothing warmed, as on a robot's first wake."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, __file__, "--fresh", what, "--repeats", str(repeats), "--variant", variant],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median_of(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Each numeric figure's median over the rounds of one variant (the rest from the first round)."""
    out = dict(rounds[0])
    for k, v in out.items():
        if isinstance(v, (int, float)) and k != "cycles":
            out[k] = round(statistics.median(float(r[k]) for r in rounds), 2)
    if len(rounds) > 1:
        out["rounds"] = len(rounds)
    return out


def awake_cycle(repeats: int, rounds: int = 1) -> dict[str, object]:
    """The shipped awake cycle beside the v3 one and PyTorch eager, each in a fresh process, with ratios."""
    got: dict[str, list[dict[str, Any]]] = {v: [] for v in AWAKE_VARIANTS}
    for _ in range(rounds):  # interleaved: every variant once per round
        for v in AWAKE_VARIANTS:
            got[v].append(_fresh("awake_cycle", repeats, v))
    runs = {v: _median_of(r) for v, r in got.items()}
    ours = runs["shipped"]["median_cpu_ms"]
    out: dict[str, object] = dict(runs["shipped"])
    out["what"] = (
        "wake + sensor check + frontend + engine + vote + events + sleep, DetectorRuntime, one thread"
    )
    out["target_cpu_ms"] = 10.0
    out["meets_target"] = ours <= 10.0
    for v in ("before", "torch"):
        out[f"baseline_{v}"] = runs[v]
        out[f"ratio_to_{v}"] = round(ours / runs[v]["median_cpu_ms"], 3)
        if rounds > 1:  # side by side in each round: the machine's drift between rounds cancels
            out[f"ratio_to_{v}_per_round"] = [
                round(a["median_cpu_ms"] / b["median_cpu_ms"], 3)
                for a, b in zip(got["shipped"], got[v], strict=True)
            ]
    # Not baselines: what speed-aware scoring (calibrate --bearing --shaft-hz) and segments (--segments auto)
    # add, and what the shipped knock gate costs (shipped / no_knock_gate).
    for v in ("speed_aware", "speed_tracked", "segments", "no_knock_gate"):
        out[v] = runs[v]
        out[f"{v}_ratio_to_shipped"] = round(runs[v]["median_cpu_ms"] / ours, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=1_000_000, help="samples per throughput run (default 1e6)")
    ap.add_argument("--repeats", type=int, default=50, help="inference repeats (default 50)")
    ap.add_argument(
        "--rounds", type=int, default=1, help="awake-cycle rounds, variants interleaved (default 1)"
    )
    ap.add_argument("--fresh", choices=("infer", "awake_cycle"), help=argparse.SUPPRESS)
    ap.add_argument("--variant", choices=AWAKE_VARIANTS, default="shipped", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fresh:
        res = (
            bench_infer(args.repeats)
            if args.fresh == "infer"
            else bench_awake_cycle(args.repeats, args.variant)
        )
        print(json.dumps(res, separators=(",", ":")))
        return
    out = {
        "infer": _fresh("infer", args.repeats),
        "awake_cycle": awake_cycle(args.repeats, max(1, args.rounds)),
        "push_one": bench_push_one(args.samples // 2),
        "push_many": bench_push_many(args.samples * 5),
    }
    print(json.dumps(out, separators=(",", ":")))


if __name__ == "__main__":
    main()
