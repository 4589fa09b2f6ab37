"""launch_testing: ``vibration_anomaly.launch.py`` started as ``ros2 launch`` starts it, in supervisor mode.

Runs where launch, launch_ros and launch_testing exist and the package is installed in a sourced
colcon workspace (a full ROS 2 install): the process comes up active with autostart, the launch
argument ``use_duty_cycle_driver:=false`` wins over the packaged params.yaml, a supervisor drives
deactivate / activate through the lifecycle services, every level on /diagnostics is one of the
message's four bytes, and the process exits 0 when launch shuts it down (SIGINT). Elsewhere (PyPI's
wheels have no launch) one test skips with the reason. No module-level skip: launch_testing's plugin
imports every test module at collection (test/test_suite_collects.py).
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
import unittest
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _why_not() -> str:
    gone = [
        m
        for m in ("launch", "launch_ros", "launch_testing", "ament_index_python", "rclpy")
        if importlib.util.find_spec(m) is None
    ]
    if gone:
        return f"{', '.join(gone)} not installed (not on PyPI; a full ROS 2 install has them)"
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        get_package_share_directory("vibration_anomaly")
    except PackageNotFoundError:
        return "vibration_anomaly is not installed in a sourced colcon workspace (colcon build; source install/setup.bash)"
    return ""


WHY_NOT = _why_not()


def _deployment(tmp: Path) -> dict[str, str]:
    """A signed bundle, its trust store and firmware statement, and a calibration of the shipped model."""
    from bundle_testkit import write_test_bundle
    from runtime_testkit import shipped_model_calibration

    files = write_test_bundle(tmp / "deploy")
    shipped_model_calibration(tmp / "calibration.json", windows=8)
    return {
        "robot_id": "r042",
        "bundle": str(files.bundle),
        "trust_dir": str(files.trust_dir),
        "firmware": str(files.firmware),
        "calibration": str(tmp / "calibration.json"),
        "backend": "onnx",
        "use_duty_cycle_driver": "false",
    }


if not WHY_NOT:
    import launch_testing
    import launch_testing.actions
    import launch_testing.asserts
    import rclpy
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    from launch import LaunchDescription

    @pytest.mark.launch_test
    def generate_test_description() -> Any:
        tmp = Path(tempfile.mkdtemp(prefix="va_launch_"))
        args = _deployment(tmp)
        # rollback_state is a detector parameter the launch file does not expose: a params_file of our own
        # (the packaged one plus this path), keeping launch-controlled keys out of its node section.
        params = tmp / "params.yaml"
        params.write_text(
            (ROOT / "config" / "params.yaml")
            .read_text()
            .replace("/var/lib/vibration_anomaly/bundle_state.json", str(tmp / "bundle_state.json"))
        )
        main = IncludeLaunchDescription(
            PythonLaunchDescriptionSource(str(ROOT / "launch" / "vibration_anomaly.launch.py")),
            launch_arguments={**args, "params_file": str(params)}.items(),
        )
        return LaunchDescription([main, launch_testing.actions.ReadyToTest()]), {}

    class DetectorComesUp(unittest.TestCase):
        __test__ = False  # launch_testing runs it; plain pytest must not

        @classmethod
        def setUpClass(cls) -> None:
            rclpy.init()
            cls.node = rclpy.create_node("launch_test_supervisor")

        @classmethod
        def tearDownClass(cls) -> None:
            cls.node.destroy_node()
            rclpy.shutdown()

        def _call(self, srv: Any, name: str, req: Any, timeout: float = 60.0) -> Any:
            cli = self.node.create_client(srv, name)
            self.assertTrue(cli.wait_for_service(timeout_sec=timeout), f"{name} never appeared")
            fut = cli.call_async(req)
            rclpy.spin_until_future_complete(self.node, fut, timeout_sec=timeout)
            self.assertTrue(fut.done(), f"{name} timed out")
            return fut.result()

        def _state(self) -> str:
            return str(self._call(GetState, "/detector/get_state", GetState.Request()).current_state.label)

        def _wait_state(self, label: str, timeout: float = 90.0) -> None:
            deadline = time.monotonic() + timeout
            while self._state() != label:
                self.assertLess(time.monotonic(), deadline, f"detector never reached {label}")
                time.sleep(0.2)

        def test_active_then_driven_by_a_supervisor_with_true_diagnostic_levels(
            self, proc_output: Any
        ) -> None:
            from diagnostic_msgs.msg import DiagnosticArray
            from rcl_interfaces.srv import GetParameters
            from rclpy.parameter import parameter_value_to_python

            self._wait_state("active")  # autostart in supervisor mode: configure + activate
            res = self._call(
                GetParameters,
                "/detector/get_parameters",
                GetParameters.Request(names=["use_duty_cycle_driver"]),
            )
            self.assertIs(parameter_value_to_python(res.values[0]), False)
            for tid, label in (
                (Transition.TRANSITION_DEACTIVATE, "inactive"),
                (Transition.TRANSITION_ACTIVATE, "active"),
            ):
                ok = self._call(
                    ChangeState, "/detector/change_state", ChangeState.Request(transition=Transition(id=tid))
                ).success
                self.assertTrue(ok)
                self.assertEqual(self._state(), label)
            got: list[Any] = []
            self.node.create_subscription(DiagnosticArray, "/diagnostics", got.append, 20)
            deadline = time.monotonic() + 30.0
            while len(got) < 3 and time.monotonic() < deadline:
                rclpy.spin_once(self.node, timeout_sec=0.1)
            levels = {s.level for a in got for s in a.status}
            self.assertTrue(got, "no /diagnostics")
            self.assertLessEqual(levels, {b"\x00", b"\x01", b"\x02", b"\x03"})
            proc_output.assertWaitFor("autostart: configured and active", timeout=10)

    @launch_testing.post_shutdown_test()
    class DetectorShutsDownCleanly(unittest.TestCase):
        __test__ = False

        def test_exit_code_is_zero(self, proc_info: Any) -> None:
            launch_testing.asserts.assertExitCodes(proc_info)

        def test_no_error_lines_and_no_traceback(self, proc_output: Any) -> None:
            for out in proc_output:
                self.assertNotIn("Traceback", out.text)
                self.assertNotIn("[ERROR]", out.text)

else:

    def test_launch_file_under_launch_testing() -> None:
        pytest.skip(WHY_NOT)
