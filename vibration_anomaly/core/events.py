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
``batch_t1``, ``above``, ``alarm``), ``skip`` (``reason``: no fresh batch),
``sleep`` (``awake_s``, ``held``), ``drop`` (``frames``, ``reason``: frames that
never reached the engine), ``reject`` (``count``, ``reason``: frames refused as
bad input), ``alarm`` (``score``, ``threshold``), ``error`` (``message``), ``sensor`` (``level``,
``kinds``, ``message``: the sensor itself looks wrong; never a bearing alarm).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

Event = dict[str, Any]
EventSink = Callable[[Event], None]

WAKE, INFER, SKIP, SLEEP, DROP, REJECT, ALARM, ERROR, SENSOR = (
    "wake", "infer", "skip", "sleep", "drop", "reject", "alarm", "error", "sensor")
EVENT_NAMES = frozenset((WAKE, INFER, SKIP, SLEEP, DROP, REJECT, ALARM, ERROR, SENSOR))

# Why frames never reached the engine (``drop`` events), one name per cause wherever it is counted.
DROP_KEEP_LAST = "keep_last"  # the middleware's keep-last queue overwrote them (a firmware burst)
DROP_BEFORE_WINDOW = "before_window"  # stamped before the sample window opened (stale, never inferred)
DROP_INCOMPLETE_WINDOW = "incomplete_window"  # the window closed before they filled a batch
DROP_OVERFLOW = "overflow"  # the latest-batch queue held more than its bound
DROP_STALE = "stale"  # a batch of an earlier duty period, refused at inference
DROP_SUPERSEDED = "superseded"  # an older batch of this period, a newer one was inferred
DROP_CLEARED = "cleared"  # still queued at cleanup
DROP_REASONS = frozenset((DROP_KEEP_LAST, DROP_BEFORE_WINDOW, DROP_INCOMPLETE_WINDOW, DROP_OVERFLOW, DROP_STALE,
                          DROP_SUPERSEDED, DROP_CLEARED))

# Frames refused as bad input (``reject`` events): the windower's and the IMU decoder's counters.
REJECT_NONFINITE = "nonfinite"  # NaN or inf in a sample
REJECT_OUT_OF_ORDER = "out_of_order"  # stamped before the previous frame
REJECT_DUPLICATE = "duplicate"  # the previous frame's stamp again
REJECT_BAD_STAMP = "bad_stamp"  # zero, negative or non-finite stamp
REJECT_SHAPE = "shape"  # not three axes
REJECT_FRAME_ID = "frame_id"  # another sensor's header.frame_id
REJECT_UNDECODABLE = "undecodable"  # bytes that are no sensor_msgs/Imu
REJECT_REASONS = frozenset((REJECT_NONFINITE, REJECT_OUT_OF_ORDER, REJECT_DUPLICATE, REJECT_BAD_STAMP, REJECT_SHAPE,
                            REJECT_FRAME_ID, REJECT_UNDECODABLE))


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
    """Bad-frame counters -> ``reject`` events: one per reason, with the count since the last report.

    The windower and the IMU decoder count refusals per frame (cheap); whoever closes a window calls
    :meth:`report`, so a robot and the demo emit the same events and metrics move on both.
    Frames stamped before the window are a ``drop`` (stale data), not a rejection, and are left out.
    """

    def __init__(self, counters: Callable[[], dict[str, int]], emit: Callable[..., Any]) -> None:
        self.counters = counters
        self.emit = emit
        self._seen: dict[str, int] = {}

    def report(self, t: float) -> int:
        now = {k: int(v) for k, v in self.counters().items() if k != DROP_BEFORE_WINDOW}
        total = 0
        for reason, count in sorted(now.items()):
            new = count - self._seen.get(reason, 0)
            if new > 0:
                self.emit(t, REJECT, count=new, reason=reason)
                total += new
        self._seen = now
        return total


class JsonlEventLog:
    """Append-only JSON-lines log that survives a crash: one flushed line per event.

    ``fsync_every`` bounds how many events can be lost on power loss; on a
    robot the default fsyncs each alarm and every 50th other event.
    """

    def __init__(self, path: str | Path, fsync_every: int = 50) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._lock = threading.Lock()
        self._since_sync = 0
        self._fsync_every = max(1, int(fsync_every))

    def __call__(self, event: Event) -> None:
        line = json.dumps(event, separators=(",", ":"), sort_keys=False)
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()
            self._since_sync += 1
            if event.get("event") == "alarm" or self._since_sync >= self._fsync_every:
                os.fsync(self._fh.fileno())
                self._since_sync = 0

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._fh.close()

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
