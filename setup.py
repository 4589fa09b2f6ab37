"""ament_python package: installable with colcon on a robot and with pip anywhere."""

from glob import glob

from setuptools import find_packages, setup

package_name = "vibration_anomaly"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "bench", "tools"]),
    package_data={
        "vibration_anomaly": ["model/default/*", "bundle/example/*", "bundle/example/trust/*"],
    },
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.json")),
        ("share/" + package_name + "/config/prometheus", glob("config/prometheus/*")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.21",
        "onnxruntime>=1.16",
        "PyYAML>=5.4",
        "cryptography>=3.4",
        "prometheus_client>=0.14",
    ],
    extras_require={
        # Off-robot evaluation: baselines, reports, reading rosbag2 files.
        "eval": ["scipy>=1.8", "scikit-learn>=1.1", "matplotlib>=3.5", "rosbags>=0.9.20"],
        # Training and export; install torch first (see README) to get the CPU build.
        "train": ["torch>=2.1", "onnx>=1.14", "scipy>=1.8"],
        "gpu": ["pycuda>=2022.1", "nvidia-ml-py>=12.0"],
        "test": ["pytest>=7", "ruff>=0.5", "mypy>=1.8", "onnx>=1.14", "types-PyYAML", "hypothesis>=6"],
    },
    zip_safe=True,
    maintainer="vibration_anomaly maintainers",
    maintainer_email="robotics@example.com",
    description="On-device vibration anomaly detection for ROS 2 robots under a power contract",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "vibration-anomaly = vibration_anomaly.cli:main",
            # ros2 run vibration_anomaly vibration_anomaly_node: the one process (detector, its in-process
            # imu_subscriber and diagnostics); imu_subscriber alone checks a sensor without a model.
            "vibration_anomaly_node = vibration_anomaly.nodes.main:main",
            "imu_subscriber = vibration_anomaly.nodes.imu_subscriber:main",
        ],
    },
)
