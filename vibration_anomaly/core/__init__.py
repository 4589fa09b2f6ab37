"""ROS-free core: windows, duty cycle, latest-batch queue, scoring, health, event log, the alarm's diagnosis."""
