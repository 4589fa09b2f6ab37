"""Run real Pushgateways, Prometheus, VictoriaMetrics and vmalert on loopback, for tests, benchmarks, trials.

The fleet test and the push benchmarks must exercise the real servers (the
Debian packages ``prometheus``, ``prometheus-pushgateway`` and
``victoria-metrics``, which ships ``vmalert``), not a fake:
this module starts them on free 127.0.0.1 ports with throw-away storage, waits
until they answer, and stops them. Nothing here is used on a robot.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import yaml

PUSHGATEWAY_BINARIES = ("prometheus-pushgateway", "pushgateway")
PROMETHEUS_BINARIES = ("prometheus",)
VICTORIAMETRICS_BINARIES = ("victoria-metrics", "victoria-metrics-prod")
VMALERT_BINARIES = ("vmalert", "vmalert-prod")


def find_binary(names: tuple[str, ...]) -> str | None:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port that was free a moment ago (bind to port 0, read it, release it), never one this process
    was already given: servers built before any starts (three gateway shards) once got the same port
    twice, and the bundle refused the duplicate shard URL."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise OSError("no free loopback port that this process was not already given")


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback URLs we built
        return resp.read()


class _Server:
    name = "server"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.workdir = Path(tempfile.mkdtemp(prefix=f"va-{self.name}-"))
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, argv: list[str], ready_path: str | None, timeout_s: float) -> None:
        """Start ``argv`` and wait until ``ready_path`` answers (or, when None, the port accepts)."""
        self._log = open(self.workdir / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.workdir)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if ready_path is None:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                else:
                    http_get(self.url + ready_path, timeout=1.0)
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready on {self.url} within {timeout_s}s")

    def usage(self) -> tuple[float, int]:
        """(CPU seconds used so far, resident bytes now) of the server process, from /proc (Linux).

        What the benchmark reports per 1,000 robots: read before and after a
        run, the difference is the server's own cost, not the clients'.
        """
        if self.proc is None:
            return 0.0, 0
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            ticks = os.sysconf("SC_CLK_TCK")
            cpu = (int(fields[11]) + int(fields[12])) / ticks
            rss = 0
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
            return cpu, rss
        except (OSError, ValueError, IndexError):
            return 0.0, 0

    def log_tail(self, n: int = 2000) -> str:
        path = self.workdir / "server.log"
        return path.read_bytes()[-n:].decode(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> _Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Pushgateway(_Server):
    """A real Pushgateway on 127.0.0.1, in-memory only (no persistence file)."""

    name = "pushgateway"

    def __init__(
        self,
        binary: str | None = None,
        web_config: str | Path | None = None,
        scheme: str = "http",
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        super().__init__(port)
        self.extra_args = tuple(extra_args)
        self.binary = binary or find_binary(PUSHGATEWAY_BINARIES)
        self.web_config = web_config
        self.scheme = scheme

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20.0) -> Pushgateway:
        if not self.binary:
            raise FileNotFoundError(
                "prometheus-pushgateway not found (apt-get install prometheus-pushgateway)"
            )
        argv = [
            self.binary,
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--persistence.file=",
            "--log.level=warn",
            "--web.enable-admin-api",
            *self.extra_args,
        ]
        if self.web_config:
            argv.append(f"--web.config.file={self.web_config}")
        # With TLS or auth the HTTP probe would need credentials: wait for the port instead.
        self._spawn(argv, None if self.web_config else "/-/ready", timeout_s)
        return self

    def metrics_text(self) -> str:
        return http_get(self.url + "/metrics", timeout=30).decode()

    def groups(self) -> list[dict[str, Any]]:
        return json.loads(http_get(self.url + "/api/v1/metrics", timeout=30))["data"]

    def wipe(self) -> None:
        req = urllib.request.Request(self.url + "/api/v1/admin/wipe", method="PUT")
        urllib.request.urlopen(req, timeout=30).close()  # noqa: S310 - loopback


class Prometheus(_Server):
    """A real Prometheus on 127.0.0.1 scraping Pushgateways (honor_labels) and evaluating ``rule_files``.

    Give one URL for the single-gateway design, or a list for shards: each
    target then gets a ``shard`` label (its address, by the same relabelling
    as config/prometheus/prometheus.yml), which the shard-down alert and the
    robot-silence rule use.
    """

    name = "prometheus"

    def __init__(
        self,
        pushgateway_url: str | Sequence[str],
        rule_files: list[str | Path],
        *,
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        scrape_timeout: str | None = None,
        binary: str | None = None,
    ) -> None:
        super().__init__()
        self.binary = binary or find_binary(PROMETHEUS_BINARIES)
        urls = [pushgateway_url] if isinstance(pushgateway_url, str) else list(pushgateway_url)
        targets = [urllib.parse.urlparse(u).netloc for u in urls]
        scrape: dict[str, Any] = {
            "job_name": "pushgateway",
            "honor_labels": True,
            "scrape_timeout": scrape_timeout or scrape_interval,
            "static_configs": [{"targets": targets}],
        }
        if not isinstance(pushgateway_url, str):
            scrape["relabel_configs"] = [{"source_labels": ["__address__"], "target_label": "shard"}]
        config = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
            "rule_files": [str(Path(f).resolve()) for f in rule_files],
            "scrape_configs": [scrape],
        }
        self.config_path = self.workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))

    def start(self, timeout_s: float = 30.0) -> Prometheus:
        if not self.binary:
            raise FileNotFoundError("prometheus not found (apt-get install prometheus)")
        argv = [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        self._spawn(argv, "/-/ready", timeout_s)
        return self

    def api(self, path: str, **params: str) -> Any:
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        body = json.loads(http_get(f"{self.url}/api/v1/{path}{query}", timeout=30))
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus API {path}: {body}")
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        return self.api("query", query=promql)["result"]

    def alerts(self) -> list[dict[str, Any]]:
        return self.api("alerts")["alerts"]


class VictoriaMetrics(_Server):
    """A real single-node VictoriaMetrics on 127.0.0.1 with throw-away storage.

    ``latency_offset`` is how old a sample must be before queries see it
    (VictoriaMetrics' ``-search.latencyOffset``, 30 s by default); loopback
    tests use 1 s, and the benchmark reports which value it ran with.
    """

    name = "victoriametrics"

    def __init__(
        self, *, latency_offset: str = "1s", binary: str | None = None, extra_args: tuple[str, ...] = ()
    ) -> None:
        super().__init__()
        self.binary = binary or find_binary(VICTORIAMETRICS_BINARIES)
        self.latency_offset = latency_offset
        self.extra_args = tuple(extra_args)

    def start(self, timeout_s: float = 30.0) -> VictoriaMetrics:
        if not self.binary:
            raise FileNotFoundError("victoria-metrics not found (apt-get install victoria-metrics)")
        argv = [
            self.binary,
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.workdir / 'data'}",
            f"-search.latencyOffset={self.latency_offset}",
            "-loggerLevel=WARN",
            *self.extra_args,
        ]
        self._spawn(argv, "/health", timeout_s)
        return self

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        body = json.loads(http_get(url, timeout=60))
        if body.get("status") != "success":
            raise RuntimeError(f"victoriametrics query {promql!r}: {body}")
        return body["data"]["result"]


class VmAlert(_Server):
    """A real vmalert on 127.0.0.1 evaluating ``rule_files`` against a VictoriaMetrics.

    Recording rules are written back to the store (``-remoteWrite.url``) so the
    alerts that read them work, as in production. Notifications go to
    ``notifier_url`` (by default a closed loopback port: tests read
    ``/api/v1/alerts`` instead).
    """

    name = "vmalert"

    def __init__(
        self,
        datasource_url: str,
        rule_files: list[str | Path],
        *,
        evaluation_interval: str = "1s",
        notifier_url: str | None = None,
        binary: str | None = None,
    ) -> None:
        super().__init__()
        self.binary = binary or find_binary(VMALERT_BINARIES)
        self.datasource_url = datasource_url
        self.rule_files = [str(Path(f).resolve()) for f in rule_files]
        self.evaluation_interval = evaluation_interval
        self.notifier_url = notifier_url or f"http://127.0.0.1:{free_port()}"

    def start(self, timeout_s: float = 30.0) -> VmAlert:
        if not self.binary:
            raise FileNotFoundError("vmalert not found (apt-get install victoria-metrics)")
        argv = [
            self.binary,
            *[f"-rule={f}" for f in self.rule_files],
            f"-datasource.url={self.datasource_url}",
            f"-remoteWrite.url={self.datasource_url}",
            f"-notifier.url={self.notifier_url}",
            f"-evaluationInterval={self.evaluation_interval}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-loggerLevel=ERROR",
        ]
        self._spawn(argv, "/health", timeout_s)
        return self

    def alerts(self) -> list[dict[str, Any]]:
        body = json.loads(http_get(f"{self.url}/api/v1/alerts", timeout=30))
        return body["data"]["alerts"] or []


def compress_for_durations(rules_path: str | Path, out_path: str | Path, for_duration: str = "1s") -> Path:
    """Copy a rules file with every alert's ``for:`` shortened: the fleet test's only change to the real rules.

    Expressions and thresholds stay exactly as shipped; only the wait before
    an alert fires shrinks, so a test can see firing alerts in seconds.
    """
    doc = yaml.safe_load(Path(rules_path).read_text())
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            if "alert" in rule and "for" in rule:
                rule["for"] = for_duration
    out = Path(out_path)
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out
