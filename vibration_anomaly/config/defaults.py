"""The documented defaults of the duty-cycle contract.

This is the only place in the package where these numbers are written down.
They are what ``bundle sign`` fills in when a payload leaves a field out and
what the simulator uses when no bundle is given; at run time every component
takes its numbers from a verified bundle (``vibration_anomaly.config.bundle``).
"""

from __future__ import annotations

SAMPLE_S: float = 5.0
"""Seconds of IMU sampling at the start of each duty period."""

PERIOD_S: float = 60.0
"""Seconds from one wake to the next."""

MAX_QUEUED_BATCHES: int = 3
"""Backlog bound: more batches than this queued and the older ones are dropped."""
