"""Optional local ``/metrics`` endpoint, for robots that Prometheus can scrape directly.

Off by default: most robots sleep behind NAT and push instead. It serves the
same registry the pusher pushes, so a robot can do both during a migration.
Binds to loopback unless told otherwise: an open port on a robot is a choice.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from vibration_anomaly.errors import InputError


class MetricsExporter:
    """Serves ``registry`` over HTTP from a daemon thread; ``port=0`` picks a free port."""

    def __init__(self, registry: CollectorRegistry, *, port: int = 0, addr: str = "127.0.0.1") -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise InputError("metrics exporter", "port", f"expected an integer port 0..65535, got {port!r}")
        self.registry = registry
        self.addr = addr
        self._requested_port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Start serving; returns the bound port."""
        if self._server is not None:
            raise RuntimeError("metrics exporter already started")
        self._server, self._thread = start_http_server(
            self._requested_port, addr=self.addr, registry=self.registry
        )
        return self.port

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("metrics exporter not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.addr}:{self.port}/metrics"

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5.0)
        self._server = None
        self._thread = None

    def __enter__(self) -> MetricsExporter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
