"""`colcon build` of the package, as in a ROS 2 workspace (PyPI's colcon + ament_package stand in for a ROS install)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _colcon() -> str:
    exe = shutil.which("colcon") or str(Path(sys.executable).with_name("colcon"))
    if not Path(exe).exists():
        pytest.skip("colcon is not installed (pip install colcon-common-extensions ros-jazzy-ament-package)")
    return exe


def _copy_sources(dst: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for rel in files:
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)


def test_colcon_build_installs_nodes_launch_and_config(tmp_path: Path) -> None:
    colcon = _colcon()
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: cannot list the package's files")
    src = tmp_path / "ws" / "src" / "vibration_anomaly"
    _copy_sources(src)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(
        [colcon, "build", "--packages-select", "vibration_anomaly", "--event-handlers", "console_direct+"],
        cwd=tmp_path / "ws",
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    inst = tmp_path / "ws" / "install" / "vibration_anomaly"
    for exe in ("imu_subscriber", "vibration_anomaly_node", "vibration-anomaly"):
        assert (inst / "lib" / "vibration_anomaly" / exe).is_file(), f"ros2 run would not find {exe}"
    share = inst / "share" / "vibration_anomaly"
    assert (share / "package.xml").is_file()
    assert (share / "launch" / "vibration_anomaly.launch.py").is_file()
    assert (share / "launch" / "replay_rosbag.launch.py").is_file()
    assert (share / "config" / "params.yaml").is_file()
    assert (share / "config" / "diagnostic_aggregator.yaml").is_file()
    assert (share / "config" / "prometheus" / "vibration_anomaly_rules.yml").is_file()
    assert (inst / "share" / "ament_index" / "resource_index" / "packages" / "vibration_anomaly").is_file()
    site = next((inst / "lib").glob("python3*/site-packages"))
    assert (site / "vibration_anomaly" / "model" / "default" / "model.onnx").is_file()
    assert (site / "vibration_anomaly" / "bundle" / "example" / "dev_bundle.yaml").is_file()
    # The installed copy imports and runs its CLI without the source tree.
    run = subprocess.run(
        [sys.executable, "-c", "import vibration_anomaly, sys; print(vibration_anomaly.__file__)"],
        env={**env, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 0 and str(site) in run.stdout, run.stderr
