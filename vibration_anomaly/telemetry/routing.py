"""Where one robot's telemetry goes: a single Pushgateway, one shard of several, or a metrics store.

The signed bundle is the only source of the destination (one source of truth,
as for the duty cycle): ``route_for(bundle.telemetry, robot_id)`` turns its
telemetry section into a :class:`Route`. Three kinds:

* ``pushgateway``: one gateway (``pushgateway_url``), the seed's design;
* ``pushgateway`` with shards (``pushgateway_shards``): the robot picks one
  shard by rendezvous (highest-random-weight) hashing of its id. Every robot
  computes the same answer with no coordination, and when a shard is added
  only the robots whose new highest weight is the new shard move (about
  ``1/(k+1)`` of the fleet); removing a shard moves only its own robots.
  A modulo hash would move almost every robot and leave each one's stale
  group behind on its old gateway;
* ``import``: POST the same exposition text to a store's Prometheus import
  endpoint (VictoriaMetrics ``/api/v1/import/prometheus``), with ``job`` and
  ``robot_id`` as extra labels, the way the Pushgateway's grouping key adds them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from vibration_anomaly.errors import InputError

Kind = Literal["pushgateway", "import"]


def shard_weight(robot_id: str, shard: str) -> int:
    """The robot's weight for one shard: 64 bits of sha256, stable across Python versions and hosts.

    ``hash()`` is salted per process, so it cannot be used: every robot and
    every tool must agree on a robot's shard.
    """
    digest = hashlib.sha256(f"{shard}\x00{robot_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def pick_shard(robot_id: str, shards: Sequence[str]) -> str:
    """The shard with the highest weight for ``robot_id`` (ties, practically impossible, go to the first listed)."""
    if not shards:
        raise InputError("telemetry", "pushgateway_shards", "expected at least one shard URL")
    best, best_w = shards[0], -1
    for shard in shards:
        w = shard_weight(robot_id, shard)
        if w > best_w:
            best, best_w = shard, w
    return best


@dataclass(frozen=True)
class Route:
    """One robot's destination: ``kind`` of endpoint, its base ``url``, and the ``job`` label."""

    kind: Kind
    url: str
    job: str
    shard_index: int | None = None
    shard_count: int = 1


def route_for(telemetry: Any, robot_id: str) -> Route | None:
    """The destination the bundle's telemetry section gives this robot; None when it says not to push.

    Accepts any object with the bundle's telemetry attributes; the newer
    ``pushgateway_shards`` and ``import_url`` are optional so older settings
    objects still route.
    """
    try:
        job = telemetry.job
        single = telemetry.pushgateway_url
    except AttributeError as exc:
        raise InputError("bundle", "telemetry", f"expected pushgateway_url and job: {exc}") from None
    shards = tuple(getattr(telemetry, "pushgateway_shards", None) or ())
    import_url = getattr(telemetry, "import_url", None)
    given = [
        name
        for name, v in (
            ("pushgateway_url", single),
            ("pushgateway_shards", shards),
            ("import_url", import_url),
        )
        if v
    ]
    if len(given) > 1:
        raise InputError("telemetry", given[1], f"expected one destination, got {' and '.join(given)}")
    if shards:
        url = pick_shard(robot_id, shards)
        return Route("pushgateway", url, job, shards.index(url), len(shards))
    if import_url:
        return Route("import", str(import_url), job)
    if single:
        return Route("pushgateway", str(single), job)
    return None
