"""Replay a rosbag2 of sensor_msgs/Imu through the nodes (off the robot).

    ros2 launch vibration_anomaly replay_rosbag.launch.py bag:=/data/run1 bundle:=... calibration:=...

Plays the bag with /clock (``--clock``) and runs the nodes on sim time, so the
duty cycle and the stamps follow the recording. ``rate`` speeds the replay up.
A bench has no firmware statement: pass the bundle's own (``bundle show``) as ``firmware``.

Without ``bag`` (the default is empty) the nodes start on sim time and wait for
a clock: play a bag yourself (``ros2 bag play BAG --clock``); the duty cycle
starts with the first /clock message, not at time 0.
"""

from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, LogInfo
from launch.conditions import IfCondition, UnlessCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PASS_THROUGH = (
    "robot_id",
    "namespace",
    "bundle",
    "trust_dir",
    "firmware",
    "model",
    "engine",
    "calibration",
    "backend",
    "imu_topic",
    "use_duty_cycle_driver",
)
DEFAULTS = {
    "bag": "",
    "rate": "1.0",
    "robot_id": "replay",
    "namespace": "",
    "bundle": "",
    "trust_dir": "",
    "firmware": "",
    "model": "",
    "engine": "",
    "calibration": "",
    "backend": "onnx",
    "imu_topic": "imu/data",
    "use_duty_cycle_driver": "true",
}


def generate_launch_description() -> LaunchDescription:
    bag, rate = LaunchConfiguration("bag"), LaunchConfiguration("rate")
    have_bag = PythonExpression(["'", bag, "' != ''"])
    main = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            [FindPackageShare("vibration_anomaly"), "/launch/vibration_anomaly.launch.py"]
        ),
        launch_arguments={
            **{k: LaunchConfiguration(k) for k in PASS_THROUGH},
            "params_file": LaunchConfiguration("params_file"),
            "use_sim_time": "true",
        }.items(),
    )
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "bag",
                default_value=DEFAULTS["bag"],
                description="rosbag2 directory or file with sensor_msgs/Imu; empty: play one yourself",
            ),
            DeclareLaunchArgument("rate", default_value=DEFAULTS["rate"], description="replay speed factor"),
            DeclareLaunchArgument(
                "params_file", default_value=[FindPackageShare("vibration_anomaly"), "/config/params.yaml"]
            ),
            *[DeclareLaunchArgument(k, default_value=DEFAULTS[k]) for k in PASS_THROUGH],
            main,
            ExecuteProcess(
                cmd=["ros2", "bag", "play", bag, "--clock", "--rate", rate],
                output="screen",
                condition=IfCondition(have_bag),
            ),
            LogInfo(
                msg="replay: no bag:= given; the nodes wait on sim time for /clock (ros2 bag play BAG --clock)",
                condition=UnlessCondition(have_bag),
            ),
        ]
    )
