"""Where the fleet pushes its metrics: a given Pushgateway, one started on loopback, or none (and why)."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

from vibration_anomaly.sim.soak.options import SoakOptions


class _Telemetry:
    """Where the fleet pushes: a given URL, a Pushgateway started on loopback, or nowhere (said why)."""

    def __init__(self, opts: SoakOptions) -> None:
        self.gateway: Any = None
        self.url: str | None = None
        self.mode = "off"
        self.why = ""
        self.outages: list[dict[str, Any]] = []
        if not opts.telemetry:
            self.why = "--no-telemetry"
            return
        if opts.pushgateway:
            self.url, self.mode, self.why = opts.pushgateway.rstrip("/"), "given", "--pushgateway"
            return
        from vibration_anomaly.telemetry.localservers import PUSHGATEWAY_BINARIES, Pushgateway, find_binary

        if find_binary(PUSHGATEWAY_BINARIES) is None:
            self.why = "prometheus-pushgateway is not installed (apt-get install prometheus-pushgateway); telemetry off"
            return
        try:
            self.gateway = Pushgateway().start()
        except Exception as exc:  # noqa: BLE001 - the soak runs without telemetry, and says so
            self.why = f"could not start a local Pushgateway ({type(exc).__name__}: {exc}); telemetry off"
            return
        self.url, self.mode, self.why = (
            self.gateway.url,
            "local",
            "started prometheus-pushgateway on 127.0.0.1",
        )

    @property
    def can_stop(self) -> bool:
        return self.gateway is not None

    def down(self, t_h: float) -> None:
        if self.gateway is not None:
            self.gateway.stop()
            self.outages.append({"down_at_h": round(t_h, 3)})

    def up(self, t_h: float) -> None:
        if self.gateway is not None:
            self.gateway.workdir = Path(tempfile.mkdtemp(prefix="va-pushgateway-"))
            self.gateway.start()
            if self.outages:
                self.outages[-1]["up_at_h"] = round(t_h, 3)

    def groups(self) -> dict[str, dict[str, float]]:
        """robot_id -> {metric name: value} as the gateway holds it now."""
        from vibration_anomaly.telemetry.localservers import http_get

        if self.url is None:
            return {}
        text = http_get(self.url + "/metrics", timeout=30).decode()
        out: dict[str, dict[str, float]] = {}
        for line in text.splitlines():
            if line.startswith("#") or 'robot_id="' not in line:
                continue
            name = line.split("{", 1)[0]
            rid = line.split('robot_id="', 1)[1].split('"', 1)[0]
            with contextlib.suppress(ValueError):
                value = float(line.rsplit(" ", 1)[1])
                if "{" in line and "reason=" in line:
                    reason = line.split('reason="', 1)[1].split('"', 1)[0]
                    name = f"{name}[{reason}]"
                out.setdefault(rid, {})[name] = out.get(rid, {}).get(name, 0.0) + value
        return out

    def stop(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
