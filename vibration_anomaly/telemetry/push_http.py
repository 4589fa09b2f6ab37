"""The wire of one push: a registry to a Pushgateway group or to a store's Prometheus import endpoint.

Each function here is one synchronous request that raises on failure; retrying,
backoff and the thread that keeps inference from ever waiting on the network
are ``pusher.PushgatewayPusher``'s. Basic auth and TLS (a private CA, a client
certificate) go through prometheus_client's handler shape, so a Pushgateway PUT
and an import POST authenticate alike.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote
from urllib.request import HTTPSHandler, Request, build_opener

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import (
    basic_auth_handler,
    default_handler,
    push_to_gateway,
    tls_auth_handler,
)

from vibration_anomaly.errors import InputError

Handler = Callable[..., Callable[[], None]]


@dataclass(frozen=True)
class TlsSettings:
    """TLS to the gateway, as prometheus_client supports it.

    ``cafile`` trusts a private CA; ``certfile``/``keyfile`` present a client
    certificate (mutual TLS); ``insecure_skip_verify`` is for lab gateways only.
    """

    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class BasicAuth:
    username: str
    password: str = field(repr=False)


def _auth_header(auth: BasicAuth) -> tuple[str, str]:
    token = base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode("ascii")
    return ("Authorization", f"Basic {token}")


def make_handler(auth: BasicAuth | None = None, tls: TlsSettings | None = None) -> Handler:
    """A push handler for prometheus_client's ``push_to_gateway``.

    Uses prometheus_client's own handlers where they fit (``basic_auth_handler``,
    ``tls_auth_handler`` for client certificates); a private CA without a
    client certificate, which prometheus_client has no handler for, gets a
    small HTTPS handler of the same shape.
    """
    if tls is None:
        if auth is None:
            return default_handler

        def _basic(
            url: str, method: str, timeout: float | None, headers: list, data: bytes
        ) -> Callable[[], None]:
            return basic_auth_handler(url, method, timeout, headers, data, auth.username, auth.password)

        return _basic
    if bool(tls.certfile) != bool(tls.keyfile):
        raise InputError(
            "telemetry tls", "certfile/keyfile", "give both a client certificate and its key, or neither"
        )

    def _tls(url: str, method: str, timeout: float | None, headers: list, data: bytes) -> Callable[[], None]:
        headers = list(headers)
        if auth is not None:
            headers.append(_auth_header(auth))
        if tls.certfile and tls.keyfile:
            return tls_auth_handler(
                url,
                method,
                timeout,
                headers,
                data,
                tls.certfile,
                tls.keyfile,
                cafile=tls.cafile,
                insecure_skip_verify=tls.insecure_skip_verify,
            )
        context = ssl.create_default_context(cafile=tls.cafile)
        if tls.insecure_skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE

        def handle() -> None:
            request = Request(url, data=data, method=method)
            for k, v in headers:
                request.add_header(k, v)
            resp = build_opener(HTTPSHandler(context=context)).open(request, timeout=timeout)
            if resp.code >= 400:
                raise OSError(f"error talking to pushgateway: {resp.code} {resp.msg}")

        return handle

    return _tls


def push_registry(
    registry: CollectorRegistry,
    *,
    url: str,
    job: str,
    robot_id: str,
    timeout_s: float = 5.0,
    handler: Handler = default_handler,
) -> None:
    """One synchronous push (PUT: the group becomes exactly this registry). Raises on failure."""
    push_to_gateway(
        url,
        job=job,
        registry=registry,
        grouping_key={"robot_id": robot_id},
        timeout=timeout_s,
        handler=handler,
    )


IMPORT_PATH = "/api/v1/import/prometheus"


def import_url_for(base_url: str, job: str, robot_id: str) -> str:
    """The store's import URL with ``job`` and ``robot_id`` as extra labels (the Pushgateway's grouping key)."""
    base = base_url.rstrip("/")
    if not base.endswith(IMPORT_PATH):
        base += IMPORT_PATH
    return (
        f"{base}?extra_label={quote(f'job={job}', safe='')}"
        f"&extra_label={quote(f'robot_id={robot_id}', safe='')}"
    )


def import_body(registry: CollectorRegistry, push_unix: float) -> bytes:
    """The registry's exposition text plus the ``push_time_seconds`` a Pushgateway would have added.

    The rules' silence check reads ``push_time_seconds``; a store has no
    gateway to stamp it, so the robot does (its own clock, NTP-synchronised on
    the fleet: the check's margin is five push intervals, minutes, not seconds).
    """
    stamp = f"# TYPE push_time_seconds gauge\npush_time_seconds {push_unix!r}\n"
    return generate_latest(registry) + stamp.encode()


def import_registry(
    registry: CollectorRegistry,
    *,
    url: str,
    job: str,
    robot_id: str,
    push_unix: float,
    timeout_s: float = 5.0,
    handler: Handler = default_handler,
) -> None:
    """One synchronous POST to a Prometheus import endpoint (VictoriaMetrics). Raises on failure.

    Same handler shape as ``push_to_gateway``, so basic auth and TLS work alike.
    Latest state only, like a gateway group: the store keeps history, but the
    robot never resends old samples.
    """
    headers = [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")]
    handler(
        import_url_for(url, job, robot_id), "POST", timeout_s, headers, import_body(registry, push_unix)
    )()
