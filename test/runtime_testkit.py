"""What the runtime tests build again and again: a commissioned calibration and a small scoring model.

Not a test module (no ``test_`` prefix); imported by the node, process, pipeline, bundle and field-fault
tests so that "a real calibration of the shipped model" means the same thing everywhere.
"""

from __future__ import annotations

from pathlib import Path


class Clock:
    """A settable clock for ``DetectorRuntime(clock, ...)``: the test moves ``t``."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Log:
    """A logger that keeps its lines (info, warning and error alike) for the test to read."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, m: str) -> None:
        self.lines.append(m)

    warning = error = info


def shipped_model_calibration(path: Path, windows: int = 10, seed: int = 5) -> Path:
    """Commission the shipped model on the simulated robot's healthy 5 s batches; save the calibration at ``path``."""
    from vibration_anomaly.core.window import batch_samples
    from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
    from vibration_anomaly.model import load_default_model
    from vibration_anomaly.sim.robot import RobotConfig, SimulatedRobot

    model = load_default_model()
    robot = SimulatedRobot(RobotConfig(seed=seed))
    n = batch_samples(1000.0, 5.0)
    frames = [robot.frames(20 + 60 * k, 20 + 60 * k + n / 1000)[1] for k in range(windows)]
    engine = OnnxRuntimeEngine()
    engine.load(model.onnx)
    engine.wake()
    cal = model.calibrate(engine, frames, 1000.0)
    engine.unload()
    path.parent.mkdir(parents=True, exist_ok=True)
    cal.save(path)
    return path


def score_model(path: Path) -> Path:
    """features (batch, T, F) -> mean of z^2: large when any band's features leave the healthy range."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", "T", "F"])
    y = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])
    nodes = [
        helper.make_node("Mul", ["features", "features"], ["sq"]),
        helper.make_node("ReduceMean", ["sq"], ["score"], axes=[1, 2], keepdims=0),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "zsq", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    onnx.save(model, path)
    return path
