"""The architecture's promises, checked: the core is ROS-free and the runtime is torch-free."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "vibration_anomaly"
ROS_MODULES = {"rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs", "diagnostic_updater", "lifecycle_msgs",
               "rosgraph_msgs", "launch", "launch_ros", "builtin_interfaces"}


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_only_the_node_modules_import_ros() -> None:
    offenders = {
        str(p.relative_to(ROOT)): sorted(_imports(p) & ROS_MODULES)
        for p in PKG.rglob("*.py")
        if "nodes" not in p.relative_to(PKG).parts and _imports(p) & ROS_MODULES
    }
    assert not offenders, offenders


def test_runtime_imports_pull_in_neither_torch_nor_rclpy() -> None:
    code = (
        "import sys\n"
        "import vibration_anomaly.cli, vibration_anomaly.core.detector, vibration_anomaly.runtime.pipeline,"
        " vibration_anomaly.core.scoring, vibration_anomaly.core.health, vibration_anomaly.core.imu_buffer,"
        " vibration_anomaly.engine.onnx_backend, vibration_anomaly.engine.select,"
        " vibration_anomaly.engine.tensorrt, vibration_anomaly.bundle, vibration_anomaly.model,"
        " vibration_anomaly.sim.demo, vibration_anomaly.telemetry.metrics, vibration_anomaly.telemetry.pusher,"
        " vibration_anomaly.power\n"
        "vibration_anomaly.cli.build_parser()\n"
        "print(sorted(m for m in ('torch', 'rclpy', 'tensorrt', 'pycuda', 'sklearn', 'matplotlib') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout
