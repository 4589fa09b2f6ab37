"""Pipeline events, their vocabulary, and the durable event log.

Every step of the pipeline reports what it did as one flat dict with a time
``t`` (seconds on the pipeline's clock) and an ``event`` name. The same dicts
feed the demo's ``--trace`` file, the metrics and the diagnostics, so what an
operator sees and what the tests check come from one stream.

This module owns the vocabulary: the event names (:data:`EVENT_NAMES`) and the
reasons a ``drop`` (:data:`DROP_REASONS`) or ``reject`` (:data:`REJECT_REASONS`)
carries. The core, the nodes, the demo and the metrics use these names, so one
cause is never counted under two names.

``wake`` (``period``, ``what``), ``infer`` (``score``, ``threshold``, ``batch_t0``,
``batch_t1``, ``above``, ``alarm``), ``skip`` (``reason``: no fresh batch; ``sensor``, the sensor looks
broken; ``knock``, a knock the gate could not cut; ``speed``, a shaft speed the calibration never saw),
``sleep`` (``awake_s``, ``held``), ``drop`` (``frames``, ``reason``: frames that
never reached the engine), ``reject`` (``count``, ``reason``: frames refused as
bad input), ``alarm`` (``score``, ``threshold``, and the diagnosis of ``core.diagnosis``: ``location``
(one of :data:`LOCATIONS`), ``frequency_hz``, ``shaft_hz``, ``trend_slope_per_h``, ... see its
``Diagnosis.fields``), ``error`` (``message``), ``sensor`` (``level``,
``kinds``, ``message``: the sensor itself looks wrong; never a bearing alarm), ``alarm_reset`` (``who``,
``why``, ``was_latched``), ``clock_jump`` (``delta_s``, ``state``: the clock moved backwards, or forwards
by more than a period; the duty cycle re-armed), ``storage`` (``ok``, ``what``, ``message``: a write to
the event log or a state file started or stopped failing).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

Event = dict[str, Any]
EventSink = Callable[[Event], None]

WAKE, INFER, SKIP, SLEEP, DROP, REJECT, ALARM, ERROR, SENSOR = (
    "wake",
    "infer",
    "skip",
    "sleep",
    "drop",
    "reject",
    "alarm",
    "error",
    "sensor",
)
ALARM_RESET, CLOCK_JUMP, STORAGE = "alarm_reset", "clock_jump", "storage"
EVENT_NAMES = frozenset(
    (WAKE, INFER, SKIP, SLEEP, DROP, REJECT, ALARM, ERROR, SENSOR, ALARM_RESET, CLOCK_JUMP, STORAGE)
)

# Why frames never reached the engine (``drop`` events), one name per cause wherever it is counted.
DROP_KEEP_LAST = "keep_last"  # the middleware's keep-last queue overwrote them (a firmware burst)
DROP_BEFORE_WINDOW = "before_window"  # stamped before the sample window opened (stale, never inferred)
DROP_INCOMPLETE_WINDOW = "incomplete_window"  # the window closed before they filled a batch
DROP_OVERFLOW = "overflow"  # the latest-batch queue held more than its bound
DROP_STALE = "stale"  # a batch of an earlier duty period, refused at inference
DROP_SUPERSEDED = "superseded"  # an older batch of this period, a newer one was inferred
DROP_CLEARED = "cleared"  # still queued at cleanup
DROP_REASONS = frozenset(
    (
        DROP_KEEP_LAST,
        DROP_BEFORE_WINDOW,
        DROP_INCOMPLETE_WINDOW,
        DROP_OVERFLOW,
        DROP_STALE,
        DROP_SUPERSEDED,
        DROP_CLEARED,
    )
)

# Where the alarm's diagnosis places the fault (``alarm`` events, the alarm diagnostic, the metric label).
LOCATION_OUTER = "outer_race"
LOCATION_INNER = "inner_race"
LOCATION_BALL = "ball"
LOCATION_CAGE = "cage"
LOCATION_UNKNOWN = "unknown"  # no speed, no bearing stated, or no defect order stands out
LOCATIONS = (LOCATION_OUTER, LOCATION_INNER, LOCATION_BALL, LOCATION_CAGE, LOCATION_UNKNOWN)

# Frames refused as bad input (``reject`` events): the windower's and the IMU decoder's counters.
REJECT_NONFINITE = "nonfinite"  # NaN or inf in a sample
REJECT_OUT_OF_ORDER = "out_of_order"  # stamped before the previous frame
REJECT_DUPLICATE = "duplicate"  # the previous frame's stamp again
REJECT_BAD_STAMP = "bad_stamp"  # zero, negative or non-finite stamp
REJECT_SHAPE = "shape"  # not three axes
REJECT_FRAME_ID = "frame_id"  # another sensor's header.frame_id
REJECT_UNDECODABLE = "undecodable"  # bytes that are no sensor_msgs/Imu
REJECT_REASONS = frozenset(
    (
        REJECT_NONFINITE,
        REJECT_OUT_OF_ORDER,
        REJECT_DUPLICATE,
        REJECT_BAD_STAMP,
        REJECT_SHAPE,
        REJECT_FRAME_ID,
        REJECT_UNDECODABLE,
    )
)


class EventBus:
    """Fan one event out to several sinks; a failing sink never breaks the pipeline."""

    def __init__(self, *sinks: EventSink) -> None:
        self._sinks: list[EventSink] = list(sinks)
        self.sink_errors = 0

    def add(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    def emit(self, t: float, event: str, **fields: Any) -> Event:
        ev: Event = {"t": round(float(t), 6), "event": event, **fields}
        for sink in self._sinks:
            try:
                sink(ev)
            except Exception:  # a broken sink (full disk, closed socket) must not stop inference
                self.sink_errors += 1
        return ev


class RejectReporter:
    """Per-frame refusal counters -> events, with the counts since the last report.

    The windower and the IMU decoder count refusals per frame (cheap); whoever closes a window calls
    :meth:`report`, so a robot and the demo emit the same events and metrics move on both: one
    ``reject`` event per bad-input reason, and frames stamped before the window (stale data, not bad
    input) as a ``drop`` of reason ``before_window``.
    """

    def __init__(self, counters: Callable[[], dict[str, int]], emit: Callable[..., Any]) -> None:
        self.counters = counters
        self.emit = emit
        self._seen: dict[str, int] = {}

    def report(self, t: float) -> dict[str, int]:
        """Emit what was counted since the last report; returns those counts by reason."""
        now = {k: int(v) for k, v in self.counters().items()}
        new: dict[str, int] = {}
        for reason, count in sorted(now.items()):
            n = count - self._seen.get(reason, 0)
            if n <= 0:
                continue
            new[reason] = n
            if reason == DROP_BEFORE_WINDOW:
                self.emit(t, DROP, frames=n, reason=reason)
            else:
                self.emit(t, REJECT, count=n, reason=reason)
        self._seen = now
        return new


class JsonlEventLog:
    """Append-only JSON-lines log that survives a crash, a full disk and a read-only mount.

    One flushed line per event; ``fsync_every`` bounds how many events a power loss can take (each
    alarm is fsync'd at once). A write that fails (ENOSPC, EROFS, a folder that vanished) never
    raises into the pipeline: the line is kept in a bounded in-memory backlog (``pending_max``; the
    oldest are dropped and counted) and written first once writing works again, so an alarm raised
    while the disk was full still reaches the log. ``on_state(ok, message)`` is called on each change
    between working and failing, outside the lock, so the owner can report it (a ``storage`` event,
    an ERROR diagnostic, a metric). The file is rotated at ``max_bytes`` keeping ``keep`` old files
    (``events.jsonl.1`` newest), so the log stays bounded on a robot that runs for months.
    """

    def __init__(
        self,
        path: str | Path,
        fsync_every: int = 50,
        *,
        max_bytes: int = 8 * 1024 * 1024,
        keep: int = 3,
        pending_max: int = 1000,
        on_state: Callable[[bool, str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self._fh: IO[str] | None = None
        self._lock = threading.Lock()
        self._since_sync = 0
        self._fsync_every = max(1, int(fsync_every))
        self.max_bytes = int(max_bytes)
        self.keep = max(0, int(keep))
        self._pending: deque[str] = deque(maxlen=max(1, int(pending_max)))
        self.on_state = on_state
        self.failures = 0
        self.dropped = 0
        self.last_error: str | None = None
        self.failing = False
        self._closed = False
        with self._lock:
            change = self._try(self._open)
        self._report(change)

    # -- internals (called with the lock held) ------------------------------------------------
    def _open(self) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def _rotate(self) -> None:
        assert self._fh is not None
        if self.max_bytes <= 0 or self._fh.tell() < self.max_bytes:
            return
        self._fh.close()
        self._fh = None
        for i in range(self.keep, 0, -1):
            src = self.path if i == 1 else self.path.with_name(f"{self.path.name}.{i - 1}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i}"))
        if self.keep == 0:
            self.path.unlink(missing_ok=True)
        self._open()

    def _try(self, step: Callable[[], None]) -> tuple[bool, str] | None:
        """Run a write step; returns a state change to report (ok, message) or None."""
        try:
            step()
        except OSError as exc:
            self.failures += 1
            self.last_error = f"{self.path}: {exc.strerror or exc}"
            if self._fh is not None:
                with contextlib.suppress(OSError):
                    self._fh.close()
                self._fh = None
            if not self.failing:
                self.failing = True
                return (False, f"event log not written: {self.last_error}")
            return None
        if self.failing:
            self.failing = False
            return (True, f"event log written again: {self.path}")
        return None

    def _report(self, change: tuple[bool, str] | None) -> None:
        if change is not None and self.on_state is not None:
            with contextlib.suppress(Exception):
                self.on_state(*change)

    def __call__(self, event: Event) -> None:
        line = json.dumps(event, separators=(",", ":"), sort_keys=False, default=str)
        urgent = event.get("event") == ALARM
        with self._lock:
            if self._closed:
                return
            if len(self._pending) == self._pending.maxlen:
                self.dropped += 1
            self._pending.append(line)

            def write() -> None:
                self._open()
                assert self._fh is not None
                # Lines leave the backlog only once flushed: a write that fails mid-way keeps them all
                # (a retry may then repeat a line that did reach the disk; read_events tolerates that).
                n = len(self._pending)
                self._fh.write("".join(line + "\n" for line in self._pending))
                self._fh.flush()
                for _ in range(n):
                    self._pending.popleft()
                self._since_sync += n
                if urgent or self._since_sync >= self._fsync_every:
                    os.fsync(self._fh.fileno())
                    self._since_sync = 0
                self._rotate()

            change = self._try(write)
        self._report(change)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._fh is not None and not self._fh.closed:
                with contextlib.suppress(OSError):
                    self._fh.flush()
                    os.fsync(self._fh.fileno())
                self._fh.close()
            self._fh = None

    def __enter__(self) -> JsonlEventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_events(path: str | Path) -> list[Event]:
    """Read a JSON-lines log, skipping a torn last line left by a crash."""
    out: list[Event] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out
