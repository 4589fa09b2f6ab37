"""The architecture's promises, checked: the core is ROS-free and the runtime is torch-free."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "vibration_anomaly"
ROS_MODULES = {
    "rclpy",
    "sensor_msgs",
    "std_msgs",
    "diagnostic_msgs",
    "diagnostic_updater",
    "lifecycle_msgs",
    "rosgraph_msgs",
    "launch",
    "launch_ros",
    "builtin_interfaces",
}


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


# Floors of the house, lowest first. A module imports only from its own floor or below (function-level
# imports included), so nothing runs back up and the subpackages form no circle.
FLOORS = ("base", "low", "core", "mid", "runtime", "top")
BASE = {"errors", "fileio", "clikit"}
LOW = {"engine", "bundle", "power"}
MID = {"model", "telemetry"}


def _floor(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in BASE:
        return "base"
    if parts[-1] in ("cli", "soak_cli") or parts[1] in ("cli", "__main__", "sim", "nodes"):
        return "top"  # the adapters: subcommands, simulations, ROS nodes
    if parts[1] in LOW:
        return "low"
    if parts[1] in MID:
        return "mid"
    return parts[1]  # core, runtime


def _package_imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m == "vibration_anomaly" or m.startswith("vibration_anomaly.")}


def _module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def test_no_import_runs_back_up_the_house() -> None:
    upward = []
    for p in PKG.rglob("*.py"):
        mod = _module_name(p)
        for target in _package_imports(p):
            if FLOORS.index(_floor(target)) > FLOORS.index(_floor(mod)):
                upward.append(f"{mod} ({_floor(mod)}) imports {target} ({_floor(target)})")
    assert not upward, "\n".join(sorted(upward))


def test_module_level_imports_form_no_circle() -> None:
    graph: dict[str, set[str]] = {}
    for p in PKG.rglob("*.py"):
        mod = _module_name(p)
        deps: set[str] = set()
        for node in ast.parse(p.read_text(), str(p)).body:  # module level only: what runs at import
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("vibration_anomaly")
            ):
                # ``from pkg import submodule`` depends on the submodule (the package is imported first anyway)
                subs = {f"{node.module}.{a.name}" for a in node.names}
                subs &= {_module_name(q) for q in PKG.rglob("*.py")}
                deps.update(subs or {node.module})
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("vibration_anomaly"))
        graph[mod] = deps
    seen: dict[str, int] = {}
    cycle: list[str] = []

    def visit(m: str, stack: list[str]) -> bool:
        seen[m] = 1
        for d in graph.get(m, ()):
            if d not in graph:
                continue
            if seen.get(d) == 1:
                cycle.extend([*stack[stack.index(d) :], d] if d in stack else [m, d])
                return True
            if d not in seen and visit(d, [*stack, d]):
                return True
        seen[m] = 2
        return False

    for m in sorted(graph):
        if m not in seen and visit(m, [m]):
            break
    assert not cycle, " -> ".join(cycle)


def test_no_package_module_over_400_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400
    }
    assert not long, long
