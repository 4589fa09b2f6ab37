"""The fleet soak: N simulated robots for H hours through the shared ``DetectorRuntime``, faults injected.

Every robot is the runtime the node builds (``runtime.DetectorRuntime``: signed bundle verified against a
trust dir and a firmware statement, rollback state, durable alarm latch, event log, ONNX Runtime on the
shipped model, modelled power, telemetry to a real Pushgateway when one is given), driven by its own
``DutyCycleDriver`` (the one ``configure`` builds from the soak's hooks) on its own simulated clock.
The fleet advances in lock step, one duty period of fleet time at a time, so a fleet-wide fault (the
Pushgateway down for an hour) hits every robot at the same simulated moment.

What is injected, per robot on a schedule drawn from ``--seed`` (docs/SOAK.md lists it): connectivity
hiccups whose firmware burst hands the keep-last queue thousands of buffered frames; a wake whose
deactivate never comes; bundle / firmware disagreement at boot and after a firmware update; a tampered
bundle and a signed-but-unusable bundle after a good one; backward and forward clock jumps of up to an
hour (while asleep and while sampling); IMU dropouts and rate changes; NaN / inf bursts; duplicate and
out-of-order stamps; a corrupt model file; a hung engine call; a full disk under the event log; process
restarts mid-cycle with an alarm latched before them. A "before" robot runs the story's broken loop
(always awake, an unbounded FIFO replayed in order) on the same engine and frames, for comparison.

The soak measures; it never corrects. Where the runtime mishandles a fault the figures say so
(``mishandled``), so the same command proves the fixes as they land.

Speed (50 robots x 24 h in a few minutes on two cores) comes from the simulation only, never from the
runtime's logic: frames are stamped per window onto a small pool of pre-generated windows per machine
model; the frontend's features are memoised by the batch's bytes (identical windows give identical
features); ONNX Runtime sessions are pooled (a robot's ``wake`` takes a session from the pool, its
``sleep`` gives it back: its residency, and so its power, stays its own); calibration is commissioned
once per machine model and shared. The engine still runs every inference.

The package, along its seams: ``options`` (the run's options, constants and a robot's clock), ``faults``
(the fault kinds and what one injection recorded), ``schedule`` (the faults dealt to robots and placed in
their runs), ``accel`` (the simulation's accelerations), ``fleet`` (what robots share), ``robot`` (one
robot driving its ``DetectorRuntime``), ``frames`` (its driver hooks and the frames it receives, data
faults applied), ``injections`` (the fault actions it is scheduled), ``before`` (the "before" robot),
``gateway`` (where the fleet pushes), ``run`` (``run_soak`` and the command's ``main``), ``report`` and
``findings`` (the JSON report).
"""

from __future__ import annotations

from dataclasses import replace

from vibration_anomaly.sim.soak.faults import DATA_FAULTS, FAULT_KINDS, FLEET_FAULTS, STRUCTURAL_FAULTS
from vibration_anomaly.sim.soak.options import SoakOptions
from vibration_anomaly.sim.soak.report import format_summary
from vibration_anomaly.sim.soak.run import main, run_soak

__all__ = [
    "DATA_FAULTS",
    "FAULT_KINDS",
    "FLEET_FAULTS",
    "STRUCTURAL_FAULTS",
    "SoakOptions",
    "format_summary",
    "main",
    "replace",
    "run_soak",
]
