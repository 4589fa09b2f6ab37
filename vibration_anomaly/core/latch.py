"""The alarm latch, durable: a raised alarm survives restarts and reconfigures until someone resets it.

The voter (``core.scoring.AlarmVoter``) latches in memory; a process restart or a reconfigure built a
new voter and the next healthy-looking window published ``alarm: False``, so the fleet alert resolved
while the bearing was still failing. This file-backed latch is read at every configure and written
(atomically, fsync'd) the moment the alarm is raised, before it is published. Only :meth:`reset`
clears it, with who and why recorded: the ``reset_alarm`` service of the detector node, or
``vibration-anomaly alarm reset`` while the node is stopped.

An unreadable latch file counts as latched (the failure is reported): forgetting an alarm is the
fault this exists to prevent, so doubt keeps it raised.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from vibration_anomaly.fileio import write_bytes_atomic

MAX_STATE_BYTES = 64 * 1024


class AlarmLatch:
    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self.state: dict[str, Any] = {"latched": False}
        self.load_error: str | None = None
        self.write_error: str | None = None
        self.load()

    @property
    def latched(self) -> bool:
        return bool(self.state.get("latched"))

    def load(self) -> None:
        self.load_error = None
        if self.path is None or not self.path.exists():
            return
        try:
            if not self.path.is_file() or self.path.stat().st_size > MAX_STATE_BYTES:
                raise ValueError("not a regular file of at most 64 KiB")
            state = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(state, dict) or not isinstance(state.get("latched"), bool):
                raise ValueError("expected an object with a boolean 'latched'")
            self.state = state
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            self.load_error = f"{self.path}: {exc}"
            self.state = {"latched": True, "why": f"latch file unreadable ({exc}): kept raised until reset"}

    def _write(self) -> None:
        if self.path is None:
            return
        try:
            write_bytes_atomic(self.path, (json.dumps(self.state, sort_keys=True) + "\n").encode("utf-8"))
            self.write_error = None
        except OSError as exc:
            self.write_error = f"{self.path}: {exc}"
            raise

    def raise_(self, t: float, score: float, threshold: float) -> None:
        """Record a raised alarm; raises OSError when it could not be made durable (memory stays latched)."""
        self.state = {
            "latched": True,
            "raised_t": t,
            "score": _num(score),
            "threshold": _num(threshold),
            "resets": int(self.state.get("resets", 0)),
        }
        self._write()

    def reset(self, t: float, who: str, why: str) -> bool:
        """Clear the latch; returns whether it was raised. Raises OSError when the reset could not be stored."""
        was = self.latched
        self.state = {
            "latched": False,
            "reset_t": t,
            "reset_by": who,
            "reset_why": why,
            "resets": int(self.state.get("resets", 0)) + 1,
        }
        self.load_error = None
        self._write()
        return was


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None
