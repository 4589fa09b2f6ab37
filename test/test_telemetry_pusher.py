"""PushgatewayPusher against a real Pushgateway: pushes, retries, never blocks, pushes on shutdown, TLS + auth."""

from __future__ import annotations

import datetime as dt
import ipaddress
import random
import socket
import threading
import time
import types
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from vibration_anomaly.errors import InputError
from vibration_anomaly.telemetry.localservers import PUSHGATEWAY_BINARIES, Pushgateway, find_binary, free_port
from vibration_anomaly.telemetry.metrics import RobotMetrics
from vibration_anomaly.telemetry.push_http import BasicAuth, TlsSettings
from vibration_anomaly.telemetry.pusher import PushgatewayPusher, pusher_from_settings

needs_gateway = pytest.mark.skipif(
    not find_binary(PUSHGATEWAY_BINARIES), reason="needs the Debian package prometheus-pushgateway"
)


def gateway_value(gw: Pushgateway, name: str, robot_id: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(gw.metrics_text()):
        for s in family.samples:
            if (
                s.name == name
                and s.labels.get("robot_id") == robot_id
                and all(s.labels.get(k) == v for k, v in labels.items())
            ):
                return s.value
    return None


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture(scope="module")
def gateway():
    if not find_binary(PUSHGATEWAY_BINARIES):
        pytest.skip("needs the Debian package prometheus-pushgateway")
    gw = Pushgateway().start()
    yield gw
    gw.stop()


class HangingServer:
    """Accepts connections and never answers: a gateway that is up but stuck."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
                self.conns.append(conn)
            except OSError:
                continue

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        for c in self.conns:
            c.close()
        self.sock.close()


@needs_gateway
def test_push_now_puts_the_registry_under_the_robot_grouping_key(gateway: Pushgateway) -> None:
    m = RobotMetrics(CollectorRegistry())
    m.observe_event({"t": 1.0, "event": "infer", "score": 0.3})
    p = PushgatewayPusher(m, url=gateway.url, job="va-test", robot_id="robot-a", interval_s=60)
    assert p.push_now()
    assert gateway_value(gateway, "vibration_anomaly_inferences_total", "robot-a", job="va-test") == 1
    assert gateway_value(gateway, "vibration_anomaly_push_interval_seconds", "robot-a") == 60
    pushed_at = gateway_value(gateway, "vibration_anomaly_last_push_timestamp_seconds", "robot-a")
    assert pushed_at is not None and abs(pushed_at - time.time()) < 60
    assert gateway_value(gateway, "push_time_seconds", "robot-a") is not None
    assert p.stats.successes == 1 and p.stats.failures == 0


@needs_gateway
def test_background_thread_pushes_every_interval_and_on_request(gateway: Pushgateway) -> None:
    m = RobotMetrics(CollectorRegistry())
    p = PushgatewayPusher(
        m, url=gateway.url, job="va-test", robot_id="robot-b", interval_s=0.2, first_delay_s=0.0
    )
    p.start()
    try:
        assert wait_for(lambda: p.stats.successes >= 3)
        m.observe_event({"t": 1.0, "event": "alarm", "score": 0.9})
        p.request_push()
        assert wait_for(lambda: gateway_value(gateway, "vibration_anomaly_alarms_total", "robot-b") == 1)
    finally:
        assert p.stop(final_push=True, timeout_s=5.0)
    assert not p.running


@needs_gateway
def test_final_push_on_stop_carries_the_last_state(gateway: Pushgateway) -> None:
    m = RobotMetrics(CollectorRegistry())
    p = PushgatewayPusher(m, url=gateway.url, job="va-test", robot_id="robot-c", interval_s=3600)
    p.start()  # first push waits up to an hour: only the shutdown push can deliver
    for k in range(7):
        m.observe_event({"t": float(k), "event": "infer", "score": 0.1})
    assert gateway_value(gateway, "vibration_anomaly_inferences_total", "robot-c") is None
    assert p.stop(final_push=True, timeout_s=5.0)
    assert gateway_value(gateway, "vibration_anomaly_inferences_total", "robot-c") == 7
    assert p.stop() is True  # a second stop does nothing


def test_dead_gateway_backs_off_and_never_raises() -> None:
    m = RobotMetrics(CollectorRegistry())
    port = free_port()  # nothing listens there
    p = PushgatewayPusher(
        m,
        url=f"http://127.0.0.1:{port}",
        job="va",
        robot_id="r",
        interval_s=0.05,
        first_delay_s=0.0,
        backoff_initial_s=0.02,
        backoff_max_s=0.1,
        timeout_s=1.0,
    )
    p.start()
    try:
        assert wait_for(lambda: p.stats.failures >= 5)
        # The pipeline keeps going while pushes fail.
        for k in range(100):
            m.observe_event({"t": float(k), "event": "infer", "score": 0.1})
    finally:
        assert p.stop(final_push=True, timeout_s=1.0) is False
    assert p.stats.successes == 0
    assert p.stats.consecutive_failures == p.stats.failures
    assert "Connection" in p.stats.last_error or "refused" in p.stats.last_error.lower()
    assert m.registry.get_sample_value("vibration_anomaly_push_failures_total") == p.stats.failures
    assert m.registry.get_sample_value("vibration_anomaly_inferences_total") == 100


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    m = RobotMetrics(CollectorRegistry())
    p = PushgatewayPusher(
        m,
        url="http://127.0.0.1:9",
        job="va",
        robot_id="r",
        interval_s=60,
        backoff_initial_s=1.0,
        backoff_max_s=300.0,
        rng=random.Random(7),
    )
    assert p.next_delay() == 60
    for n, base in [(1, 1.0), (2, 2.0), (5, 16.0), (9, 256.0), (10, 300.0), (60, 300.0)]:
        p.stats.consecutive_failures = n
        delays = [p.next_delay() for _ in range(50)]
        assert all(base / 2 <= d <= base for d in delays), (n, min(delays), max(delays))
        assert max(delays) - min(delays) > 0  # jittered: 400 robots do not retry in lock-step


def test_hanging_gateway_cannot_hold_shutdown() -> None:
    server = HangingServer()
    try:
        m = RobotMetrics(CollectorRegistry())
        p = PushgatewayPusher(
            m,
            url=f"http://127.0.0.1:{server.port}",
            job="va",
            robot_id="r",
            interval_s=60,
            first_delay_s=0.0,
            timeout_s=30.0,
        )
        p.start()
        assert wait_for(lambda: p.stats.attempts >= 1)  # the thread is now stuck in a 30 s read
        p.request_push()  # returns at once
        m.observe_event({"t": 1.0, "event": "infer", "score": 0.1})
        started = time.monotonic()
        assert p.stop(final_push=True, timeout_s=1.0) is False
        # Bounded by the 1 s budget, not by the 30 s socket timeout (slack for a loaded machine).
        assert time.monotonic() - started < 10.0
    finally:
        server.close()


@needs_gateway
def test_recovers_when_the_gateway_comes_back() -> None:
    port = free_port()
    m = RobotMetrics(CollectorRegistry())
    p = PushgatewayPusher(
        m,
        url=f"http://127.0.0.1:{port}",
        job="va",
        robot_id="r-back",
        interval_s=0.1,
        first_delay_s=0.0,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
        timeout_s=2.0,
    )
    p.start()
    try:
        assert wait_for(lambda: p.stats.failures >= 2)
        with Pushgateway(port=port).start() as gw:
            assert wait_for(lambda: p.stats.successes >= 1)
            assert wait_for(
                lambda: (gateway_value(gw, "vibration_anomaly_push_failures_total", "r-back") or 0) >= 2
            )
            assert p.stats.consecutive_failures == 0
    finally:
        p.stop(final_push=False)


def test_settings_are_checked_and_named() -> None:
    m = RobotMetrics(CollectorRegistry())
    for kwargs, field in [
        ({"url": "ftp://gw:21", "job": "va", "robot_id": "r", "interval_s": 60}, "pushgateway_url"),
        ({"url": "http://gw:9091", "job": "", "robot_id": "r", "interval_s": 60}, "job"),
        ({"url": "http://gw:9091", "job": "va", "robot_id": " ", "interval_s": 60}, "robot_id"),
        ({"url": "http://gw:9091", "job": "va", "robot_id": "r", "interval_s": 0}, "push_interval_s"),
    ]:
        with pytest.raises(InputError) as err:
            PushgatewayPusher(m, **kwargs)
        assert err.value.field == field
    with pytest.raises(InputError):
        PushgatewayPusher(
            m,
            url="http://gw:9091",
            job="va",
            robot_id="r",
            interval_s=60,
            tls=TlsSettings(certfile="client.crt"),
        )
    section = types.SimpleNamespace(pushgateway_url="http://gw:9091", job="va", push_interval_s=30)
    p = pusher_from_settings(m, section, "robot-9")
    assert (p.url, p.job, p.interval_s, p.robot_id) == ("http://gw:9091", "va", 30.0, "robot-9")
    with pytest.raises(InputError):
        pusher_from_settings(m, object(), "robot-9")


# --------------------------------------------------------------------- TLS + basic auth
def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    crt, pem = tmp / "gw.crt", tmp / "gw.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    # A client certificate signed by the same key, for mutual TLS.
    ckey = ec.generate_private_key(ec.SECP256R1())
    client = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "robot")]))
        .issuer_name(name)
        .public_key(ckey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp / "client.crt").write_bytes(client.public_bytes(serialization.Encoding.PEM))
    (tmp / "client.key").write_bytes(
        ckey.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return crt, pem


def _bcrypt(password: str) -> str | None:
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # Python < 3.13; bcrypt through the system's libcrypt
        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
        return hashed if hashed and hashed.startswith("$2") else None
    except Exception:
        return None


@needs_gateway
def test_tls_and_basic_auth_against_a_real_gateway(tmp_path: Path) -> None:
    hashed = _bcrypt("s3cret")
    if hashed is None:
        pytest.skip(
            "no bcrypt hasher here (Python's crypt module with blowfish) to configure the gateway's users"
        )
    crt, key = _self_signed(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {crt}\n  key_file: {key}\nbasic_auth_users:\n  robot: '{hashed}'\n"
    )
    with Pushgateway(web_config=web, scheme="https").start() as gw:
        m = RobotMetrics(CollectorRegistry())
        m.observe_event({"t": 1.0, "event": "infer", "score": 0.4})
        good = PushgatewayPusher(
            m,
            url=gw.url,
            job="va",
            robot_id="tls-1",
            interval_s=60,
            auth=BasicAuth("robot", "s3cret"),
            tls=TlsSettings(cafile=str(crt)),
        )
        assert good.push_now(), good.stats.last_error
        no_auth = PushgatewayPusher(
            m, url=gw.url, job="va", robot_id="tls-2", interval_s=60, tls=TlsSettings(cafile=str(crt))
        )
        assert not no_auth.push_now()
        assert "401" in no_auth.stats.last_error
        untrusted = PushgatewayPusher(
            m, url=gw.url, job="va", robot_id="tls-3", interval_s=60, auth=BasicAuth("robot", "s3cret")
        )
        assert not untrusted.push_now()
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stats.last_error
        # Only the authenticated, verified push landed.
        import base64
        import ssl

        ctx = ssl.create_default_context(cafile=str(crt))
        req = urllib.request.Request(gw.url + "/metrics")
        req.add_header("Authorization", "Basic " + base64.b64encode(b"robot:s3cret").decode())
        text = urllib.request.urlopen(req, context=ctx, timeout=10).read().decode()
        assert (
            'robot_id="tls-1"' in text and 'robot_id="tls-2"' not in text and 'robot_id="tls-3"' not in text
        )
        assert "s3cret" not in repr(BasicAuth("robot", "s3cret"))


@needs_gateway
def test_mutual_tls_with_a_client_certificate(tmp_path: Path) -> None:
    crt, key = _self_signed(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {crt}\n  key_file: {key}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {crt}\n"
    )
    with Pushgateway(web_config=web, scheme="https").start() as gw:
        m = RobotMetrics(CollectorRegistry())
        tls = TlsSettings(
            cafile=str(crt), certfile=str(tmp_path / "client.crt"), keyfile=str(tmp_path / "client.key")
        )
        with_cert = PushgatewayPusher(m, url=gw.url, job="va", robot_id="mtls-1", interval_s=60, tls=tls)
        assert with_cert.push_now(), with_cert.stats.last_error
        without = PushgatewayPusher(
            m, url=gw.url, job="va", robot_id="mtls-2", interval_s=60, tls=TlsSettings(cafile=str(crt))
        )
        assert not without.push_now()
