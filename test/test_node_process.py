"""The process as ``ros2 launch vibration_anomaly vibration_anomaly.launch.py`` starts it, on the real rclpy.

launch_ros runs the ``vibration_anomaly_node`` entry point with ``--params-file <params_file>`` and then
its argument dict written as a wildcard (``/**:``) file, with ``autostart: true``. These tests do the same
(the packaged config/params.yaml, a wildcard override file, a site file for paths) and assert what a
robot engineer sees: the lifecycle state reached, the parameter values, the levels on /diagnostics, the
log free of ERROR lines, and the exit status and the absence of a traceback after Ctrl-C (SIGINT).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from bundle_testkit import write_test_bundle
from runtime_testkit import shipped_model_calibration

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "config" / "params.yaml"
NO_ROS = (
    ""
    if importlib.util.find_spec("rclpy")
    else "needs the real rclpy (ros-jazzy-* wheels or a ROS 2 install)"
)
pytestmark = [pytest.mark.ros, pytest.mark.slow, pytest.mark.skipif(bool(NO_ROS), reason=NO_ROS or "-")]
WIRE_LEVELS = {b"\x00", b"\x01", b"\x02", b"\x03"}
TASKS = {"duty cycle", "power", "backlog", "model", "bundle"}


def entry_point() -> list[str]:
    """The console script setup.py installs (what ``ros2 run`` / launch execute), else the same function."""
    exe = Path(sys.executable).with_name("vibration_anomaly_node")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("vibration_anomaly_node")
    if found:
        return [found]
    return [
        sys.executable,
        "-c",
        "import sys; from vibration_anomaly.nodes.main import main; sys.exit(main())",
    ]


@pytest.fixture(scope="module")
def calibration(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A calibration of the shipped model on the simulated robot's healthy frames (what commissioning writes)."""
    return shipped_model_calibration(tmp_path_factory.mktemp("cal") / "calibration.json", windows=8)


class NodeProcess:
    """One started process: its output collected on a thread, its exit status after a signal."""

    def __init__(self, tmp: Path, launch_args: dict[str, Any], site: dict[str, Any]) -> None:
        over = tmp / "launch_params_overrides.yaml"  # launch_ros's temp file for the Node's dict
        over.write_text(yaml.safe_dump({"/**": {"ros__parameters": {**launch_args, "autostart": True}}}))
        site_file = tmp / "site_params.yaml"
        site_file.write_text(yaml.safe_dump({"detector": {"ros__parameters": site}}))
        cmd = [
            *entry_point(),
            "--ros-args",
            "--params-file",
            str(PARAMS),
            "--params-file",
            str(over),
            "--params-file",
            str(site_file),
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "RCUTILS_COLORIZED_OUTPUT": "0"}
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in ln for ln in self.lines):
            assert self.proc.poll() is None, (
                f"process exited ({self.proc.returncode}) before {text!r}:\n{self.output}"
            )
            assert time.monotonic() < deadline, f"no {text!r} within {timeout} s:\n{self.output}"
            time.sleep(0.05)

    def interrupt(self, timeout: float = 30.0) -> int:
        """Ctrl-C as a terminal (or ros2 launch) sends it; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"no exit within {timeout} s of SIGINT:\n{self.output}") from None
        self._reader.join(5)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class Probe:
    """A test-side node: lifecycle state, parameters and /diagnostics of the process, over the real middleware."""

    def __init__(self) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        self.rclpy = rclpy
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = Node("launch_probe", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.diagnostics: list[Any] = []
        self._clients: dict[str, Any] = {}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 50)

    def spin_until(self, cond: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            self.executor.spin_once(timeout_sec=0.05)

    def call(self, srv: Any, name: str, request: Any, timeout: float = 60.0) -> Any:
        """One client per service, kept; a request sent before the server matched the new client's
        reader can be lost (the future then never completes), so each try waits 10 s and is resent."""
        cli = self._clients.get(name)
        if cli is None:
            cli = self._clients[name] = self.node.create_client(srv, name)
        deadline = time.monotonic() + timeout
        assert cli.wait_for_service(timeout_sec=timeout), f"{name} never appeared"
        while True:
            fut = cli.call_async(request)
            try_until = min(deadline, time.monotonic() + 10.0)
            while not fut.done() and time.monotonic() < try_until:
                self.executor.spin_once(timeout_sec=0.05)
            if fut.done():
                return fut.result()
            cli.remove_pending_request(fut)
            assert time.monotonic() < deadline, f"no answer from {name} within {timeout} s"

    def state(self) -> str:
        from lifecycle_msgs.srv import GetState

        return str(self.call(GetState, "/detector/get_state", GetState.Request()).current_state.label)

    def wait_state(self, label: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while last != label:
            assert time.monotonic() < deadline, f"detector stayed {last!r}, expected {label!r}"
            last = self.state()
            time.sleep(0.1)

    def param(self, name: str) -> Any:
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        res = self.call(GetParameters, "/detector/get_parameters", GetParameters.Request(names=[name]))
        return parameter_value_to_python(res.values[0])

    def full_diagnostics(self, timeout: float = 30.0) -> dict[str, bytes]:
        """The levels of the latest /diagnostics array that carries every task."""

        def complete() -> bool:
            return any({s.name.split(": ", 1)[-1] for s in a.status} >= TASKS for a in self.diagnostics)

        self.spin_until(complete, timeout, "/diagnostics with every task")
        arr = next(
            a for a in reversed(self.diagnostics) if {s.name.split(": ", 1)[-1] for s in a.status} >= TASKS
        )
        return {s.name.split(": ", 1)[-1]: s.level for s in arr.status}

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy.shutdown(context=self.context)


@pytest.fixture
def probe() -> Iterator[Probe]:
    p = Probe()
    try:
        yield p
    finally:
        p.close()


def deployment(tmp: Path, calibration: Path, **bundle_changes: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    files = write_test_bundle(tmp / "deploy", **bundle_changes)
    launch_args = {
        "robot_id": "r042",
        "bundle": str(files.bundle),
        "trust_dir": str(files.trust_dir),
        "firmware": str(files.firmware),
        "model": "",
        "engine": "",
        "calibration": str(calibration),
        "backend": "onnx",
        "use_sim_time": False,
    }
    site = {"rollback_state": str(tmp / "state" / "bundle_state.json"), "power_source": "modelled"}
    return launch_args, site


def assert_clean(p: NodeProcess) -> None:
    assert "Traceback" not in p.output, p.output
    errors = [ln for ln in p.lines if "[ERROR]" in ln]
    assert not errors, "\n".join(errors)


def test_supervisor_mode_comes_up_active_with_true_levels_and_ctrl_c_exits_0(
    tmp_path: Path, calibration: Path, probe: Probe
) -> None:
    launch_args, site = deployment(tmp_path, calibration)
    p = NodeProcess(tmp_path, {**launch_args, "use_duty_cycle_driver": False}, site)
    try:
        probe.wait_state("active")
        assert probe.param("use_duty_cycle_driver") is False  # the launch argument won over params.yaml
        assert probe.param("backend") == "onnx"
        levels = probe.full_diagnostics()
        assert set(levels.values()) <= WIRE_LEVELS, levels
        assert levels["model"] == b"\x00" and levels["bundle"] == b"\x00", levels
        p.wait_for_line("autostart: configured and active", 10.0)
        rc = p.interrupt()
    finally:
        p.kill()
    assert rc == 0, p.output
    assert_clean(p)


def test_driver_mode_configures_itself_and_ctrl_c_exits_0(
    tmp_path: Path, calibration: Path, probe: Probe
) -> None:
    launch_args, site = deployment(tmp_path, calibration)
    p = NodeProcess(tmp_path, {**launch_args, "use_duty_cycle_driver": True}, site)
    try:
        probe.wait_state("inactive")  # configured; the built-in driver activates once per period
        assert probe.param("use_duty_cycle_driver") is True
        levels = probe.full_diagnostics()
        assert set(levels.values()) <= WIRE_LEVELS and levels["model"] == b"\x00", levels
        rc = p.interrupt()
    finally:
        p.kill()
    assert rc == 0, p.output
    assert_clean(p)


def test_a_refused_bundle_stays_unconfigured_says_why_and_exits_1(
    tmp_path: Path, calibration: Path, probe: Probe
) -> None:
    launch_args, site = deployment(tmp_path, calibration)
    other = write_test_bundle(tmp_path / "other")  # a trust store that does not hold the bundle's key
    p = NodeProcess(tmp_path, {**launch_args, "trust_dir": str(other.trust_dir)}, site)
    try:
        p.wait_for_line("autostart: configure failed", 90.0)
        assert probe.state() == "unconfigured"
        levels = probe.full_diagnostics()
        assert levels["bundle"] == b"\x02", levels  # ERROR, with the refusal's reason
        rc = p.interrupt()
    finally:
        p.kill()
    assert rc == 1, p.output
    assert "Traceback" not in p.output and "unknown_key" in p.output, p.output


def _mapped(pid: int, fragment: str) -> bool:
    """True once the process has loaded a shared library whose path contains ``fragment``."""
    try:
        return fragment in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.parametrize("moment", ["importing rclpy", "loading the model", "spinning"])
def test_ctrl_c_at_any_moment_of_start_up_is_quiet(tmp_path: Path, calibration: Path, moment: str) -> None:
    """During the imports, during configure, while spinning: never a traceback, always a clean exit.

    The moments are observed, not guessed from delays: the interpreter's own start (before any of our
    code runs, where no program can catch a Ctrl-C) takes longer than any fixed delay under load.
    """
    launch_args, site = deployment(tmp_path, calibration)
    p = NodeProcess(tmp_path, {**launch_args, "use_duty_cycle_driver": False}, site)
    pid = p.proc.pid
    try:
        if moment == "importing rclpy":
            deadline = time.monotonic() + 60.0
            while not _mapped(pid, "rclpy") and time.monotonic() < deadline:
                time.sleep(0.002)
        elif moment == "loading the model":
            deadline = time.monotonic() + 60.0
            while not _mapped(pid, "onnxruntime") and time.monotonic() < deadline:
                time.sleep(0.002)
        else:
            p.wait_for_line("autostart: configured and active", 90.0)
        rc = p.interrupt()
    finally:
        p.kill()
    assert rc == 0, p.output
    assert "Traceback" not in p.output and "context is not valid" not in p.output, p.output


def test_the_speed_topic_from_the_site_file_reaches_the_process_and_ctrl_c_exits_0(
    tmp_path: Path, calibration: Path, probe: Probe
) -> None:
    """speed_topic / speed_joint in the robot's own parameter file (a ``detector:`` section: they are not
    launch arguments): the started process subscribes while active, takes a JointState with velocity and
    position (the shaft's angle for order tracking) without an error, logs the speed it now knows, and
    exits 0 on Ctrl-C."""
    import math

    from sensor_msgs.msg import JointState

    launch_args, site = deployment(tmp_path, calibration)
    site = {**site, "speed_topic": "wheel_states", "speed_joint": "wheel"}
    p = NodeProcess(tmp_path, {**launch_args, "use_duty_cycle_driver": False}, site)
    try:
        probe.wait_state("active")
        assert probe.param("speed_topic") == "wheel_states" and probe.param("speed_joint") == "wheel"
        pub = probe.node.create_publisher(JointState, "wheel_states", 10)
        probe.spin_until(lambda: pub.get_subscription_count() >= 1, 30.0, "the process's speed subscription")
        msg = JointState()
        msg.name = ["left", "wheel"]
        msg.velocity = [0.0, 2 * math.pi * 24.0]
        msg.position = [0.0, 2 * math.pi * 1000.25]
        deadline = time.monotonic() + 30.0
        while not any("speed on wheel_states: 24.00 Hz" in ln for ln in p.lines):
            assert time.monotonic() < deadline, f"no speed log line:\n{p.output}"
            pub.publish(msg)  # best effort: resent until the process says it has it
            probe.executor.spin_once(timeout_sec=0.2)
        rc = p.interrupt()
    finally:
        p.kill()
    assert rc == 0, p.output
    assert_clean(p)


def test_a_calibration_made_at_one_speed_guards_the_started_process(
    tmp_path: Path, calibration: Path, probe: Probe
) -> None:
    """A calibration that records the speeds it was made at (``calibrate --shaft-hz``) and the robot's
    ``shaft_hz`` in its site file: the process started through its entry point turns the speed guard on
    (docs/MODEL.md "Speeds the calibration never saw"), says so, stays OK and exits 0 on Ctrl-C."""
    made = json.loads(calibration.read_text())
    made["extra"]["speed_hz"] = [24.0, 24.0]
    guarded = tmp_path / "calibration_24hz.json"
    guarded.write_text(json.dumps(made))
    launch_args, site = deployment(tmp_path, guarded)
    p = NodeProcess(tmp_path, {**launch_args, "use_duty_cycle_driver": False}, {**site, "shaft_hz": 24.0})
    try:
        probe.wait_state("active")
        assert probe.param("shaft_hz") == 24.0
        p.wait_for_line("speed guard on: windows at a shaft speed outside 24-24 Hz (+-3%", 10.0)
        assert probe.full_diagnostics()["model"] == b"\x00"
        rc = p.interrupt()
    finally:
        p.kill()
    assert rc == 0, p.output
    assert_clean(p)
