"""tegrastats as a fallback power source, for Jetsons whose sysfs we cannot read.

A rail appears in a tegrastats line as ``NAME cur/avg`` in mW: with units on
JetPack 5/6 (``VDD_IN 4979mW/4979mW``, newer releases add a third figure,
``VDD_IN 9761mW/9761mW/9761mW``) and without on JetPack 4
(``POM_5V_IN 1016/1016``). The first figure is the instantaneous one. RAM,
SWAP and IRAM also use ``x/y`` but end in ``MB``/``kB`` and are not rails.
Line formats and their sources: test/fixtures/power/README.md.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence

from vibration_anomaly.power.base import PowerReadError, PowerReading, PowerSourceUnavailable, monotonic
from vibration_anomaly.power.hwmon import INPUT_RAILS

log = logging.getLogger(__name__)

_RAIL_RE = re.compile(r"(?<![\w@])([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?:/(\d+)(?:mW)?)?(?=\s|$)")
_NOT_RAILS = frozenset({"RAM", "SWAP", "IRAM"})


def parse_tegrastats_line(line: str) -> dict[str, float]:
    """Rails of one tegrastats line, in watts (instantaneous figure). Empty if the line has none."""
    rails: dict[str, float] = {}
    for m in _RAIL_RE.finditer(line):
        name = m.group(1)
        if name in _NOT_RAILS:
            continue
        rails[name] = int(m.group(2)) / 1000.0
    return rails


def reading_from_line(line: str, t: float, source: str = "tegrastats") -> PowerReading:
    """Turn one line into a reading; PowerReadError when it carries no rails at all."""
    rails = parse_tegrastats_line(line)
    if not rails:
        raise PowerReadError(source, "line", f"no power rails in {line.strip()[:80]!r}")
    total_rail = next((r for r in INPUT_RAILS if r in rails), None)
    if total_rail is not None:
        return PowerReading(rails[total_rail], rails, source, False, t, (), total_rail)
    return PowerReading(sum(rails.values()), rails, source, False, t, (), "sum of rails")


class TegrastatsSource:
    """Runs ``tegrastats --interval MS`` and answers with its latest line.

    One long-running child instead of one per read: tegrastats' own first line
    comes only after an interval, and starting it per sample would cost more CPU
    than the sampling it measures.
    """

    name = "tegrastats"
    modelled = False

    def __init__(
        self,
        interval_ms: int = 500,
        command: Sequence[str] | None = None,
        clock: Callable[[], float] = monotonic,
        first_line_timeout_s: float = 5.0,
    ) -> None:
        self._clock = clock
        if command is None:
            exe = shutil.which("tegrastats")
            if exe is None:
                raise PowerSourceUnavailable(
                    "tegrastats not found on PATH (not a Jetson, or L4T tools missing)"
                )
            command = [exe, "--interval", str(int(interval_ms))]
        self.source = "tegrastats"
        self._latest: tuple[str, float] | None = None
        self._cond = threading.Condition()
        try:
            self._proc = subprocess.Popen(
                list(command), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1
            )
        except OSError as exc:
            raise PowerSourceUnavailable(f"tegrastats could not start: {exc}") from exc
        self._reader = threading.Thread(target=self._pump, name="tegrastats-reader", daemon=True)
        self._reader.start()
        with self._cond:
            if not self._cond.wait_for(
                lambda: self._latest is not None or self._proc.poll() is not None, first_line_timeout_s
            ):
                self.close()
                raise PowerSourceUnavailable(f"tegrastats printed nothing in {first_line_timeout_s:.0f} s")
        if self._latest is None:
            self.close()
            raise PowerSourceUnavailable(
                f"tegrastats exited with status {self._proc.returncode} before a line"
            )

    def _pump(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            with self._cond:
                self._latest = (line, self._clock())
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def read(self) -> PowerReading:
        with self._cond:
            latest = self._latest
        if latest is None:
            raise PowerReadError(self.source, "line", "no line read yet")
        if self._proc.poll() is not None:
            raise PowerReadError(
                self.source, "process", f"tegrastats exited with status {self._proc.returncode}"
            )
        line, t = latest
        return reading_from_line(line, t, self.source)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        # The reader sees EOF once the child is gone; join it before closing the pipe under it.
        if self._reader.is_alive() and self._reader is not threading.current_thread():
            self._reader.join(timeout=2.0)
        if self._proc.stdout is not None and not self._reader.is_alive():
            self._proc.stdout.close()
