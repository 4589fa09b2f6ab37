"""Background pusher: the robot's registry to a Pushgateway, never in inference's way.

Why a push and not a scrape: robots sit behind NAT and sleep; Prometheus
cannot reach them, so each robot PUTs its whole registry to a Pushgateway under
the grouping key ``{job, robot_id}`` and Prometheus scrapes the gateway.

Design points, each one a lesson from the battery-drain incident:

* The caller never waits on the network. Pushes run on a daemon thread with a
  per-request timeout; ``request_push()`` only sets an event.
* Memory is bounded by construction: a Pushgateway keeps only the last value
  of each group, so there is nothing to queue. A failed push is not buffered;
  the next attempt serialises the registry as it is *then*. Memory is one
  registry, whatever the outage length.
* A dead gateway costs little: retries back off exponentially (with jitter, so
  400 robots do not hammer a gateway that just came back in lock-step) up to a
  cap, and the first push of each robot is spread over one interval.
* ``stop(final_push=True)`` pushes the last state on shutdown, bounded in time
  even against a gateway that accepts the connection and then hangs.

One push on the wire (the PUT to a gateway group or the POST to an import
endpoint, with basic auth and TLS) is ``telemetry.push_http``; this module is
the thread, the retries and the backoff around it.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from vibration_anomaly.errors import InputError
from vibration_anomaly.telemetry.metrics import RobotMetrics
from vibration_anomaly.telemetry.push_http import (
    BasicAuth,
    TlsSettings,
    import_registry,
    make_handler,
    push_registry,
)

log = logging.getLogger(__name__)


@dataclass
class PushStats:
    """What the pusher has done; read it for diagnostics, never needed for correctness."""

    attempts: int = 0
    successes: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_error: str = ""
    last_success_unix: float = math.nan
    last_duration_s: float = math.nan
    next_delay_s: float = 0.0


def _check_settings(url: str, job: str, robot_id: str, interval_s: float) -> None:
    parsed = urlparse(url if "://" in url else f"http://{url}")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InputError("telemetry", "pushgateway_url", f"expected http(s)://host:port, got {url!r}")
    if not job or "/" in job:
        raise InputError("telemetry", "job", f"expected a non-empty job name without '/', got {job!r}")
    if not robot_id or not str(robot_id).strip():
        raise InputError("telemetry", "robot_id", "expected a non-empty robot id")
    if (
        isinstance(interval_s, bool)
        or not isinstance(interval_s, (int, float))
        or not (math.isfinite(interval_s) and interval_s > 0)
    ):
        raise InputError("telemetry", "push_interval_s", f"expected a number > 0, got {interval_s!r}")


class PushgatewayPusher:
    """Pushes one robot's metrics every ``interval_s`` from a daemon thread.

    ``url``, ``job`` and ``interval_s`` come from the verified bundle's
    ``telemetry`` section (through :func:`pusher_from_settings`, which also
    picks the robot's shard); ``robot_id`` from the node. ``protocol``
    ``"pushgateway"`` PUTs to a gateway group, ``"import"`` POSTs the same text
    to a store's Prometheus import endpoint. Use ``start()`` once,
    ``request_push()`` to push early (e.g. on an alarm), ``stop()`` at shutdown.
    ``first_delay_s=None`` waits a random part of one interval before the
    first push; give a number to push sooner (tests, a robot that just woke).
    """

    def __init__(
        self,
        metrics: RobotMetrics,
        *,
        url: str,
        job: str,
        robot_id: str,
        interval_s: float,
        timeout_s: float = 5.0,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 300.0,
        auth: BasicAuth | None = None,
        tls: TlsSettings | None = None,
        first_delay_s: float | None = None,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        protocol: str = "pushgateway",
    ) -> None:
        _check_settings(url, job, robot_id, interval_s)
        if protocol not in ("pushgateway", "import"):
            raise InputError("telemetry", "protocol", f"expected 'pushgateway' or 'import', got {protocol!r}")
        self.protocol = protocol
        if not (timeout_s > 0 and backoff_initial_s > 0 and backoff_max_s >= backoff_initial_s):
            raise InputError(
                "telemetry",
                "timeout_s/backoff",
                "expected timeout_s > 0 and 0 < backoff_initial_s <= backoff_max_s",
            )
        self.metrics = metrics
        self.url = url
        self.job = job
        self.robot_id = str(robot_id)
        self.interval_s = float(interval_s)
        self.timeout_s = float(timeout_s)
        self.backoff_initial_s = float(backoff_initial_s)
        self.backoff_max_s = float(backoff_max_s)
        self.handler = make_handler(auth, tls)
        self.stats = PushStats()
        self._first_delay = first_delay_s
        self._wall = wall_clock
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._wakeup = threading.Event()
        self._push_lock = threading.Lock()  # one push at a time: the final push never races the thread
        self._thread: threading.Thread | None = None
        self._stopped = False
        metrics.set_push_interval(self.interval_s)

    # ------------------------------------------------------------------ API
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("pusher already started")
        self._thread = threading.Thread(target=self._run, name=f"pushgateway-{self.robot_id}", daemon=True)
        self._thread.start()

    def request_push(self) -> None:
        """Ask for a push as soon as possible; returns at once."""
        self._wakeup.set()

    def push_now(self, timeout_s: float | None = None) -> bool:
        """One push attempt on the calling thread; True on success. Never raises for network errors."""
        with self._push_lock:
            return self._attempt(self.timeout_s if timeout_s is None else timeout_s)

    def stop(self, final_push: bool = True, timeout_s: float = 5.0) -> bool:
        """Stop the thread and (optionally) push the last state; returns within about ``timeout_s``.

        Returns True when the final push went through (or none was asked).
        The final push runs on its own daemon thread so a gateway that hangs
        after accepting the connection cannot hold shutdown past the budget.
        A second ``stop()`` does nothing: a robot stops once.
        """
        if self._stopped:
            return True
        self._stopped = True
        deadline = time.monotonic() + timeout_s
        self._stop.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        if not final_push:
            return True
        result: list[bool] = []

        def final() -> None:
            left = max(0.05, deadline - time.monotonic())
            result.append(self.push_now(timeout_s=left))

        worker = threading.Thread(target=final, name=f"pushgateway-final-{self.robot_id}", daemon=True)
        worker.start()
        worker.join(max(0.0, deadline - time.monotonic()))
        return bool(result and result[0])

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------- internals
    def _attempt(self, timeout_s: float) -> bool:
        self.stats.attempts += 1
        started = time.monotonic()
        now = self._wall()
        self.metrics.mark_push(now)
        try:
            if self.protocol == "import":
                import_registry(
                    self.metrics.registry,
                    url=self.url,
                    job=self.job,
                    robot_id=self.robot_id,
                    push_unix=now,
                    timeout_s=timeout_s,
                    handler=self.handler,
                )
            else:
                push_registry(
                    self.metrics.registry,
                    url=self.url,
                    job=self.job,
                    robot_id=self.robot_id,
                    timeout_s=timeout_s,
                    handler=self.handler,
                )
        except Exception as exc:  # any failure (DNS, refused, 5xx, TLS, timeout) is retried, never raised
            self.stats.failures += 1
            self.stats.consecutive_failures += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            self.metrics.count_push_failure()
            if self.stats.consecutive_failures in (1, 10) or self.stats.consecutive_failures % 100 == 0:
                log.warning(
                    "push to %s failed (%d in a row): %s",
                    self.url,
                    self.stats.consecutive_failures,
                    self.stats.last_error,
                )
            return False
        finally:
            self.stats.last_duration_s = time.monotonic() - started
        self.stats.successes += 1
        self.stats.consecutive_failures = 0
        self.stats.last_success_unix = self._wall()
        return True

    def next_delay(self) -> float:
        """Interval after a success; after n failures, ``initial * 2**(n-1)`` capped, with equal jitter."""
        n = self.stats.consecutive_failures
        if n == 0:
            return self.interval_s
        base = min(self.backoff_max_s, self.backoff_initial_s * (2.0 ** min(n - 1, 30)))
        return base / 2.0 + self._rng.uniform(0.0, base / 2.0)

    def _run(self) -> None:
        # Spread first pushes over one interval so a fleet that boots together does not push together.
        delay = self._rng.uniform(0.0, self.interval_s) if self._first_delay is None else self._first_delay
        while not self._stop.is_set():
            self.stats.next_delay_s = delay
            self._wakeup.wait(delay)
            self._wakeup.clear()
            if self._stop.is_set():
                break
            self.push_now()
            delay = self.next_delay()


def pusher_from_settings(
    metrics: RobotMetrics, telemetry: Any, robot_id: str, **kwargs: Any
) -> PushgatewayPusher:
    """Build a pusher from the bundle's telemetry section: one gateway, this robot's shard, or an import endpoint.

    The destination comes from the signed settings only (``routing.route_for``);
    raises ``InputError`` when they name no destination.
    """
    from vibration_anomaly.telemetry.routing import route_for

    try:
        interval = telemetry.push_interval_s
    except AttributeError as exc:
        raise InputError(
            "bundle", "telemetry", f"expected pushgateway_url, job, push_interval_s: {exc}"
        ) from None
    route = route_for(telemetry, robot_id)
    if route is None:
        raise InputError(
            "bundle",
            "telemetry",
            "no destination: pushgateway_url, pushgateway_shards and import_url are all null",
        )
    return PushgatewayPusher(
        metrics,
        url=route.url,
        job=route.job,
        robot_id=robot_id,
        interval_s=interval,
        protocol=route.kind,
        **kwargs,
    )
