"""The documented defaults of the optional bundle payload fields.

``vibration_anomaly.bundle.payload`` fills these in for the fields a payload
leaves out; the tables in docs/BUNDLE.md state the same numbers for people.
A test (``test_no_second_hard_coded_copy_of_the_contract_numbers``) keeps other
package modules from assigning a literal to a contract name, so code that needs
a default imports it from here. The duty cycle itself (``SAMPLE_S``/``PERIOD_S``)
is never defaulted by the loader: a bundle must state it, because it is the
number that firmware and container have to agree on; those two are here for
tools that run with no bundle at all (what-if simulations, payload templates).
On the robot every component takes its numbers from a verified bundle.
"""

from __future__ import annotations

SAMPLE_S: float = 5.0
"""Seconds of IMU sampling at the start of each duty period."""

PERIOD_S: float = 60.0
"""Seconds from one wake to the next."""

MAX_QUEUED_BATCHES: int = 3
"""Backlog bound: more batches than this queued and the older ones are dropped."""

VOTES_REQUIRED: int = 4
"""Alarm when at least this many of the last ``VOTES_WINDOW`` scores are over the threshold (k of n)."""

VOTES_WINDOW: int = 6
"""The n of the k-of-n alarm vote."""

TELEMETRY_JOB: str = "vibration_anomaly"
"""Pushgateway ``job`` label; the robot id grouping key comes from the node, not the bundle."""

PUSH_INTERVAL_S: float = 60.0
"""Seconds between Pushgateway pushes (one per duty period by default)."""

PERIOD_TOLERANCE_S: float = 1.0
"""Diagnostics WARN when a measured period deviates from ``period_s`` by more than this."""

AWAKE_FRACTION_MARGIN: float = 1.5
"""Default ``awake_fraction_max`` is ``sample_s / period_s * AWAKE_FRACTION_MARGIN`` (capped at 1)."""
