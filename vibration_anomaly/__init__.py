"""On-device vibration anomaly detection for ROS 2 robots under a power contract.

The package is split so that everything except ``vibration_anomaly.nodes`` runs
without ROS 2: the nodes are thin rclpy adapters over a ROS-free core.
"""

__version__ = "0.1.0"
