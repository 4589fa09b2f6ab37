"""Launch arguments win over the packaged parameter file, checked with rclpy's own ``--params-file`` handling.

ros2 launch hands a Node's parameter dict to the process as a wildcard (``/**:``) file after
``params_file``. A node-specific section of ``params_file`` beats that wildcard file (rcl merges all
wildcard sections into the place of the first one, and node sections apply after it), so a key that a
launch argument controls must never sit in a node section of the packaged file: that is how
``use_duty_cycle_driver:=false`` was silently ignored. The precedence is exercised here on the real
rclpy with the packaged file and an override file written exactly as launch_ros writes it.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "config" / "params.yaml"
LAUNCH = ROOT / "launch" / "vibration_anomaly.launch.py"
NO_RCLPY = (
    ""
    if importlib.util.find_spec("rclpy")
    else "needs the real rclpy (ros-jazzy-* wheels or a ROS 2 install)"
)


def launch_constant(name: str) -> tuple[str, ...]:
    """A tuple constant of the launch file, read without importing launch (absent from PyPI)."""
    tree = ast.parse(LAUNCH.read_text())
    consts: dict[str, tuple[str, ...]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            target = node.targets[0].id
            if isinstance(node.value, ast.Tuple):
                items: list[str] = []
                for elt in node.value.elts:
                    if isinstance(elt, ast.Starred) and isinstance(elt.value, ast.Name):
                        items.extend(consts[elt.value.id])
                    else:
                        items.append(ast.literal_eval(elt))
                consts[target] = tuple(items)
    return consts[name]


def test_no_launch_controlled_key_sits_in_a_node_section_of_the_packaged_file() -> None:
    controlled = set(launch_constant("LAUNCH_OVERRIDES"))
    assert {"backend", "use_duty_cycle_driver", "bundle", "autostart", "robot_id"} <= controlled
    doc = yaml.safe_load(PARAMS.read_text())
    for section, body in doc.items():
        if section == "/**":
            continue
        clash = controlled & set(body["ros__parameters"])
        assert not clash, (
            f"{PARAMS.name}: section {section!r} sets {sorted(clash)}, which launch arguments control"
        )


def _detector_params(tmp_path: Path, *files: Path) -> dict[str, Any]:
    import rclpy
    from rclpy.context import Context

    from vibration_anomaly.nodes.detector import DetectorNode

    ctx = Context()
    args = ["--ros-args", *[a for f in files for a in ("--params-file", str(f))]]
    rclpy.init(args=args, context=ctx)
    try:
        node = DetectorNode(context=ctx)
        try:
            return {
                name: node.get_parameter(name).value
                for name in ("use_duty_cycle_driver", "backend", "require_firmware", "bundle", "robot_id")
            }
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def _launch_overrides_file(tmp_path: Path, params: dict[str, Any]) -> Path:
    """What launch_ros writes for ``Node(parameters=[params_file, {...}])`` without a node name: a wildcard."""
    path = tmp_path / "launch_params_overrides.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
    return path


@pytest.mark.ros
@pytest.mark.skipif(bool(NO_RCLPY), reason=NO_RCLPY or "-")
def test_launch_overrides_beat_the_packaged_file_through_rclpy(tmp_path: Path) -> None:
    packaged = _detector_params(tmp_path, PARAMS)
    assert packaged["use_duty_cycle_driver"] is True and packaged["backend"] == "auto"
    over = _launch_overrides_file(
        tmp_path,
        {
            "use_duty_cycle_driver": False,
            "backend": "onnx",
            "bundle": "/etc/va/bundle.yaml",
            "robot_id": "r042",
        },
    )
    got = _detector_params(tmp_path, PARAMS, over)
    assert got["use_duty_cycle_driver"] is False
    assert got["backend"] == "onnx" and got["bundle"] == "/etc/va/bundle.yaml" and got["robot_id"] == "r042"
    assert got["require_firmware"] is True  # what the override does not name still comes from the file


@pytest.mark.ros
@pytest.mark.skipif(bool(NO_RCLPY), reason=NO_RCLPY or "-")
def test_a_node_section_in_a_users_file_beats_the_launch_argument_as_documented(tmp_path: Path) -> None:
    """The rule docs/ROS.md warns about, pinned on the real rclpy: a file shaped like the packaged one
    (a ``/**:`` section, then node sections) keeps its node section's value over a later wildcard file,
    because rcl merges every wildcard section into the place of the first one and node sections apply
    after it. Were this ever to change, the docs would need to change too."""
    mine = tmp_path / "my_params.yaml"
    mine.write_text(
        "/**:\n  ros__parameters:\n    robot_id: mine\ndetector:\n  ros__parameters:\n    backend: tensorrt\n"
    )
    over = _launch_overrides_file(tmp_path, {"backend": "onnx", "robot_id": "r042"})
    got = _detector_params(tmp_path, mine, over)
    assert got["backend"] == "tensorrt" and got["robot_id"] == "r042"


def test_the_packaged_file_keeps_the_event_log_on_and_names_every_node_parameter_it_sets() -> None:
    """Issue 14: the event log is on by default on a robot; a key the node does not declare is a typo."""
    from vibration_anomaly.runtime.params import DEFAULTS

    doc = yaml.safe_load(PARAMS.read_text())
    detector = doc["detector"]["ros__parameters"]
    assert detector["event_log"] == "auto"
    assert set(detector) <= set(DEFAULTS), sorted(set(detector) - set(DEFAULTS))
