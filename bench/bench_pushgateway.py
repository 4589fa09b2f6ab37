"""How much one push costs, and how many robots one Pushgateway takes at a 60 s interval.

Starts a real Pushgateway (Debian ``prometheus-pushgateway``) on loopback and
pushes real ``RobotMetrics`` registries (a robot after 15 healthy duty
cycles) through the same ``push_registry`` the pusher thread uses.

Measured in one run:

* baseline: serialising one robot's registry (``generate_latest``), the part
  of a push that is pure client work;
* one push, to an empty gateway and to one already holding each fleet size;
* sustained pushes/s with ``--clients`` threads while the gateway holds N
  robots, and the gateway's own ``/metrics`` render time (what every
  Prometheus scrape pays);
* robots supported at ``--interval`` seconds: the largest N whose sustained
  rate covers N / interval pushes per second.

The Pushgateway checks each push against every group it holds (consistency
check), so a push costs more as the fleet grows; ``--no-consistency-check``
measures the gateway with that check off, for comparison. The client threads
run on the same machine as the gateway, so the figures are a lower bound for a
gateway on its own host. Progress goes to stderr, the JSON result to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest

from vibration_anomaly.telemetry import fleetsim
from vibration_anomaly.telemetry.localservers import PUSHGATEWAY_BINARIES, Pushgateway, find_binary, http_get
from vibration_anomaly.telemetry.metrics import RobotMetrics
from vibration_anomaly.telemetry.push_http import push_registry


def robot_registry(robot_id: str) -> CollectorRegistry:
    m = RobotMetrics(CollectorRegistry())
    fleetsim.drive(m, fleetsim.RobotPlan(robot_id))
    m.set_push_interval(60.0)
    return m.registry


def timings(fn: Callable[[], object], n: int) -> dict[str, float]:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    samples.sort()
    return {
        "n": n,
        "mean_s": statistics.fmean(samples),
        "p50_s": samples[len(samples) // 2],
        "p99_s": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
    }


def sustained(url: str, registry: CollectorRegistry, n_robots: int, clients: int, seconds: float) -> float:
    """Pushes/s by ``clients`` threads cycling through the ``n_robots`` groups already held."""
    stop = time.monotonic() + seconds
    counts = [0] * clients
    errors = [0] * clients

    def worker(k: int) -> None:
        i = k
        while time.monotonic() < stop:
            try:
                push_registry(
                    registry, url=url, job="bench", robot_id=f"robot-{i % n_robots:05d}", timeout_s=30
                )
                counts[k] += 1
            except OSError:
                errors[k] += 1
            i += clients

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if sum(errors):
        print(f"  {sum(errors)} pushes failed", file=sys.stderr)
    return sum(counts) / (time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100,400,800", help="fleet sizes held by the gateway (comma list)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent pushing threads")
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each sustained measurement")
    parser.add_argument("--repeats", type=int, default=200, help="samples for the per-push timings")
    parser.add_argument("--interval", type=float, default=60.0, help="push interval the fleet uses, seconds")
    parser.add_argument(
        "--no-consistency-check",
        action="store_true",
        help="run the gateway with --push.disable-consistency-check",
    )
    parser.add_argument(
        "--no-created",
        action="store_true",
        help="leave out the counters' _created series (prometheus_client.disable_created_metrics)",
    )
    args = parser.parse_args(argv)
    if args.no_created:
        disable_created_metrics()
    if not find_binary(PUSHGATEWAY_BINARIES):
        print("prometheus-pushgateway not found: apt-get install prometheus-pushgateway", file=sys.stderr)
        return 2
    sizes = sorted(int(s) for s in args.sizes.split(","))
    registry = robot_registry("robot-bench")
    body = generate_latest(registry)

    gw = Pushgateway(extra_args=("--push.disable-consistency-check",) if args.no_consistency_check else ())
    gw.start()
    try:
        print("baseline: generate_latest", file=sys.stderr)
        baseline = timings(lambda: generate_latest(registry), args.repeats)
        print("one push to an empty gateway", file=sys.stderr)
        empty = timings(
            lambda: push_registry(registry, url=gw.url, job="bench", robot_id="robot-solo"), args.repeats
        )
        gw.wipe()

        per_size = []
        held = 0
        for n in sizes:
            print(f"filling the gateway to {n} robots", file=sys.stderr)
            fill_start = time.perf_counter()
            while held < n:
                push_registry(registry, url=gw.url, job="bench", robot_id=f"robot-{held:05d}", timeout_s=30)
                held += 1
            fill_s = time.perf_counter() - fill_start
            middle = f"robot-{n // 2:05d}"
            one = timings(
                lambda: push_registry(registry, url=gw.url, job="bench", robot_id=middle),  # noqa: B023 - used at once
                max(20, args.repeats // 4),
            )
            render = timings(lambda: http_get(gw.url + "/metrics", timeout=60), 5)
            print(f"  sustained pushes with {args.clients} clients for {args.seconds}s", file=sys.stderr)
            rate = sustained(gw.url, registry, n, args.clients, args.seconds)
            capacity = rate * args.interval
            per_size.append(
                {
                    "robots_held": n,
                    "push": one,
                    "push_over_baseline_p50": one["p50_s"] / baseline["p50_s"],
                    "sustained_pushes_per_s": rate,
                    "robots_at_interval": capacity,
                    "covers_fleet": capacity >= n,
                    "gateway_render_metrics": render,
                    "fill_s": fill_s,
                }
            )
            print(
                f"  {n} robots: push p50 {one['p50_s'] * 1e3:.1f} ms, {rate:.0f} pushes/s, "
                f"render {render['p50_s'] * 1e3:.0f} ms",
                file=sys.stderr,
            )
    finally:
        gw.stop()

    # Largest measured N that keeps up, then where the capacity line crosses N between measurements.
    supported = 0.0
    for prev, cur in zip([None, *per_size[:-1]], per_size, strict=True):
        if cur["covers_fleet"]:
            supported = float(cur["robots_held"])
        elif prev is not None and prev["covers_fleet"]:
            # capacity(N) falls roughly linearly with N: interpolate the crossing capacity(N) = N.
            n0, c0, n1, c1 = (
                prev["robots_held"],
                prev["robots_at_interval"],
                cur["robots_held"],
                cur["robots_at_interval"],
            )
            slope = (c1 - c0) / (n1 - n0)
            supported = n0 + (c0 - n0) / (1 - slope) if slope != 1 else float(n0)
            break
        else:
            break
    result = {
        "bench": "pushgateway",
        "machine": {"cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]},
        "gateway_consistency_check": not args.no_consistency_check,
        "created_series": not args.no_created,
        "series_per_robot": sum(
            1 for line in body.decode().splitlines() if line and not line.startswith("#")
        ),
        "payload_bytes_per_robot": len(body),
        "baseline_generate_latest": baseline,
        "push_empty_gateway": empty,
        "push_over_baseline_p50": empty["p50_s"] / baseline["p50_s"],
        "interval_s": args.interval,
        "clients": args.clients,
        "sizes": per_size,
        "robots_supported_at_interval": supported,
        "robots_supported_note": (
            "lower bound: largest fleet (measured, or interpolated between measured sizes) whose sustained "
            "push rate covers one push per robot per interval, with the pushing clients on the same cores; "
            "if the largest size still covers, the true limit is above it"
        ),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
