"""Pipeline events and the durable event log.

Every step of the pipeline reports what it did as one flat dict with a time
``t`` (seconds on the pipeline's clock) and an ``event`` name. The same dicts
feed the demo's ``--trace`` file, the metrics and the diagnostics, so what an
operator sees and what the tests check come from one stream.

Event names: ``wake``, ``infer`` (``score``, ``batch_t0``, ``batch_t1``,
``above``, ``alarm``), ``sleep`` (``awake_s``), ``drop`` (``frames``,
``reason``), ``alarm`` (``score``), ``reject`` (``reason``, ``count``),
``error`` (``message``).
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
