"""Launch the detector process (detector + in-process imu_subscriber + diagnostics) on a robot.

    ros2 launch vibration_anomaly vibration_anomaly.launch.py robot_id:=r042 bundle:=/etc/va/bundle.yaml \
        trust_dir:=/etc/va/trust firmware:=/run/firmware/duty_cycle.json calibration:=/var/lib/va/cal.json

With use_duty_cycle_driver:=true (default) the process configures itself at
start and the built-in driver runs activate -> infer once -> deactivate every
period. With false, the process configures and activates itself at start
(autostart) and the supervisor drives the lifecycle from there
(``ros2 lifecycle set /<namespace>/detector deactivate`` ...).

Precedence: launch_ros hands the arguments below to the process as a wildcard (``/**:``) parameter
file after ``params_file``. A node section (``detector:``) of ``params_file`` beats that file, so
every key in ``LAUNCH_OVERRIDES`` must stay out of the node sections of ``params_file`` (the packaged
one keeps them under ``/**:``; test/test_params_precedence.py checks it); otherwise the argument
would be silently ignored.
"""

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

ARGS = {
    "robot_id": ("robot", "robot id: diagnostics hardware id and Pushgateway grouping key"),
    "namespace": ("", "namespace of the three nodes"),
    "bundle": ("", "signed duty-cycle bundle file"),
    "trust_dir": ("", "directory of trusted public keys"),
    "firmware": ("", "firmware duty-cycle statement (JSON/YAML) the bundle must agree with"),
    "model": ("", "model directory (model.onnx + model.json); empty = the shipped model"),
    "engine": ("", "TensorRT engine file (backend tensorrt or auto)"),
    "calibration": ("", "per-machine calibration JSON"),
    "backend": ("auto", "auto, tensorrt or onnx"),
    "imu_topic": ("imu/data", "sensor_msgs/Imu topic"),
    "use_duty_cycle_driver": ("true", "true: built-in duty-cycle driver; false: the supervisor drives"),
    "use_sim_time": ("false", "true: run on /clock (rosbag replay)"),
    "params_file": ([FindPackageShare("vibration_anomaly"), "/config/params.yaml"], "ROS parameters file"),
}

# Node parameters set from launch arguments (strings passed through as they are).
STRING_OVERRIDES = (
    "robot_id",
    "bundle",
    "trust_dir",
    "firmware",
    "model",
    "engine",
    "calibration",
    "backend",
)
# Node parameters set from true/false launch arguments.
BOOL_OVERRIDES = ("use_duty_cycle_driver", "use_sim_time")
# Every parameter this file sets: none may appear in a node section of params_file.
LAUNCH_OVERRIDES = (*STRING_OVERRIDES, *BOOL_OVERRIDES, "autostart")


def _is_true(value: LaunchConfiguration) -> PythonExpression:
    return PythonExpression(["'", value, "'.strip().lower() in ('true', '1', 'yes')"])


def generate_launch_description() -> LaunchDescription:
    cfg = {name: LaunchConfiguration(name) for name in ARGS}
    overrides: dict = {name: cfg[name] for name in STRING_OVERRIDES}
    overrides.update({name: _is_true(cfg[name]) for name in BOOL_OVERRIDES})
    overrides["autostart"] = True
    return LaunchDescription(
        [
            *[
                DeclareLaunchArgument(name, default_value=default, description=doc)
                for name, (default, doc) in ARGS.items()
            ],
            Node(
                package="vibration_anomaly",
                executable="vibration_anomaly_node",
                namespace=cfg["namespace"],
                output="screen",
                parameters=[cfg["params_file"], overrides],
                remappings=[("imu/data", cfg["imu_topic"])],
            ),
        ]
    )
