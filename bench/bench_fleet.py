"""N simulated robots at the bundle's push interval against real servers on loopback, design against design.

Designs, each measured in the same run on the same machine (``--designs``):

* ``single``: one default Pushgateway scraped by Prometheus (the seed's design; the baseline);
* ``sharded``: ``--shards`` Pushgateways, each robot on the shard its id hashes to (rendezvous
  hashing, ``telemetry.routing``), Prometheus scraping every shard with ``honor_labels``;
* ``vm``: every robot POSTs the same exposition text to VictoriaMetrics'
  ``/api/v1/import/prometheus``; vmalert evaluates the same rules file.

Each robot learns its destination the way a robot does: the bench signs a bundle naming the
servers (a throwaway key), verifies it with ``load_verified_bundle`` and routes every robot
through ``routing.route_for`` on the verified settings. The robots' metrics are real
``RobotMetrics`` driven by ``fleetsim`` (5 of each fault kind by default, the rest healthy),
serialised at every push (latest state only), pushed by the pusher's own functions
(``push_registry`` / ``import_registry``) from ``--procs`` client processes with a few threads each.
Robot ``i`` pushes at ``i/N`` of the interval, for ``--rounds`` intervals; a silent robot pushes
once with a 1 s interval in its registry, then stops (its silence shows after 5 s, as in the fleet
test). The rules are the shipped ones with every ``for:`` shortened to 1 s, nothing else changed.

Per design, the one JSON line reports: robots sustained (every push succeeded and completed
within one interval of its schedule), push latency p50/p99 (request time) and lateness p99
(schedule to completion, what a queue at the server costs), seconds from the last push until
every robot's latest state is queryable, whether exactly the faulty robots fire their alerts
(and no healthy robot has even a pending one), and each server's CPU (cores) over the last round
(steady state: every robot's series exist) and resident memory, also per 1,000 robots. Clients
share the 2 cores with the servers here, so every figure is a lower bound for servers on their
own hosts. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from vibration_anomaly.bundle import load_example_bundle, load_verified_bundle
from vibration_anomaly.bundle.dev import sign_dev_bundle
from vibration_anomaly.telemetry import fleetsim
from vibration_anomaly.telemetry.localservers import (
    PROMETHEUS_BINARIES,
    PUSHGATEWAY_BINARIES,
    VICTORIAMETRICS_BINARIES,
    VMALERT_BINARIES,
    Prometheus,
    Pushgateway,
    VictoriaMetrics,
    VmAlert,
    compress_for_durations,
    find_binary,
)
from vibration_anomaly.telemetry.metrics import RobotMetrics
from vibration_anomaly.telemetry.push_http import import_registry, push_registry
from vibration_anomaly.telemetry.routing import route_for

RULES = Path(__file__).resolve().parents[1] / "config" / "prometheus" / "vibration_anomaly_rules.yml"
JOB = "vibration_anomaly"
SILENT_INTERVAL_S = 1.0


# ------------------------------------------------------------------------------------------ clients
def _worker(args: dict[str, Any], out: Any) -> None:
    """One client process: its share of the robots, each pushing at its slot of every interval."""
    interval, rounds, start, deadline = args["interval"], args["rounds"], args["start"], args["deadline"]
    robots = []
    for idx, plan, route in args["robots"]:
        m = RobotMetrics(CollectorRegistry())
        fleetsim.drive(m, plan)
        silent = plan.fault == fleetsim.SILENT
        m.set_push_interval(SILENT_INTERVAL_S if silent else interval)
        robots.append((idx, plan.robot_id, m, route, silent))
    n_total = args["n_total"]
    schedule: list[tuple[float, int, int]] = []  # (due time, round, position in robots)
    for pos, (idx, _, _, _, silent) in enumerate(robots):
        for r in range(1 if silent else rounds):
            offset = 0.0 if silent else interval * idx / n_total
            schedule.append((start + r * interval + offset, r, pos))
    schedule.sort()
    results: list[tuple[int, int, bool, float, float, float]] = []  # pos, round, ok, due, t0, t1
    lock = threading.Lock()

    def push(due: float, rnd: int, pos: int) -> None:
        _, rid, m, route, _ = robots[pos]
        t0 = time.time()
        ok = t0 < deadline  # queued past the run's deadline: given up, counted as failed
        try:
            if not ok:
                raise TimeoutError("past the run's deadline")
            timeout = max(1.0, min(interval, deadline - t0))
            if route.kind == "import":
                import_registry(
                    m.registry, url=route.url, job=route.job, robot_id=rid, push_unix=t0, timeout_s=timeout
                )
            else:
                push_registry(m.registry, url=route.url, job=route.job, robot_id=rid, timeout_s=timeout)
        except Exception:  # noqa: BLE001 - a failed push is a result, not a crash
            ok = False
        with lock:
            results.append((pos, rnd, ok, due, t0, time.time()))

    with ThreadPoolExecutor(max_workers=args["threads"]) as pool:
        for due, rnd, pos in schedule:
            now = time.time()
            if now >= deadline:
                break
            if due > now:
                time.sleep(due - now)
            pool.submit(push, due, rnd, pos)
        # Bounded: pushes still queued at the deadline give up at once (see push()).
    per_robot: dict[int, list[tuple[int, bool, float, float, float]]] = {}
    for pos, rnd, ok, due, t0, t1 in results:
        per_robot.setdefault(pos, []).append((rnd, ok, due, t0, t1))
    summary = []
    for pos, (idx, _, _, _, silent) in enumerate(robots):
        pushes = per_robot.get(pos, [])
        expected = 1 if silent else rounds
        sustained = len(pushes) == expected and all(
            ok and t1 - due <= interval for _, ok, due, _, t1 in pushes
        )
        summary.append(
            {
                "idx": idx,
                "silent": silent,
                "sustained": sustained,
                "latency": [t1 - t0 for _, ok, _, t0, t1 in pushes if ok],
                "lateness": [t1 - due for _, ok, due, _, t1 in pushes if ok],
                "failures": sum(1 for _, ok, *_ in pushes if not ok),
                "last_end": max((t1 for *_, t1 in pushes), default=math.nan),
            }
        )
    out.put(summary)


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * q))], 4)


# ------------------------------------------------------------------------------------------ servers
class Stack:
    """The servers of one design, started on loopback, and how to ask them what they hold."""

    def __init__(
        self,
        design: str,
        shards: int,
        scrape: str,
        evaluation: str,
        rules: Path,
        workdir: Path,
        consistency: bool,
    ) -> None:
        self.design = design
        self.gateways: list[Pushgateway] = []
        self.prom: Prometheus | None = None
        self.vm: VictoriaMetrics | None = None
        self.vmalert: VmAlert | None = None
        extra = () if consistency else ("--push.disable-consistency-check",)
        if design == "vm":
            self.vm = VictoriaMetrics().start()
            self.vmalert = VmAlert(self.vm.url, [rules], evaluation_interval=evaluation).start()
            telemetry: dict[str, Any] = {"import_url": self.vm.url}
        else:
            k = 1 if design == "single" else shards
            self.gateways = [
                Pushgateway(extra_args=extra if design == "sharded" else ()).start() for _ in range(k)
            ]
            urls = [g.url for g in self.gateways]
            self.prom = Prometheus(
                urls[0] if design == "single" else urls,
                [rules],
                scrape_interval=scrape,
                evaluation_interval=evaluation,
            ).start()
            telemetry = {"pushgateway_url": urls[0]} if design == "single" else {"pushgateway_shards": urls}
        # The robots' destination comes from a signed, verified bundle, as on a robot.
        files = sign_dev_bundle(workdir / design, telemetry=telemetry)
        self.bundle = load_verified_bundle(files.bundle, files.trust_dir, firmware_path=files.firmware)

    def servers(self) -> dict[str, Any]:
        named: dict[str, Any] = {f"pushgateway_{i}": g for i, g in enumerate(self.gateways)}
        for name in ("prom", "vm", "vmalert"):
            if getattr(self, name) is not None:
                named[{"prom": "prometheus", "vm": "victoriametrics", "vmalert": "vmalert"}[name]] = getattr(
                    self, name
                )
        return named

    def usage(self) -> dict[str, tuple[float, int]]:
        return {name: s.usage() for name, s in self.servers().items()}

    def query(self, promql: str) -> list[dict[str, Any]]:
        if self.prom is not None:
            return self.prom.query(promql)
        assert self.vm is not None
        return self.vm.query(promql)

    def alerts(self) -> list[dict[str, Any]]:
        if self.prom is not None:
            return self.prom.alerts()
        assert self.vmalert is not None
        return self.vmalert.alerts()

    def stop(self) -> None:
        for s in self.servers().values():
            s.stop()


def _count(stack: Stack, promql: str) -> int:
    try:
        res = stack.query(promql)
    except Exception:  # noqa: BLE001 - a server that cannot answer counts nothing
        return -1
    return int(float(res[0]["value"][1])) if res else 0


def _value(stack: Stack, promql: str) -> float | None:
    try:
        res = stack.query(promql)
    except Exception:  # noqa: BLE001
        return None
    return round(float(res[0]["value"][1]), 3) if res else None


# ------------------------------------------------------------------------------------------ one design
def run_design(
    design: str, args: argparse.Namespace, plans: list[fleetsim.RobotPlan], rules: Path, workdir: Path
) -> dict[str, Any]:
    n = len(plans)
    interval = args.interval
    print(f"[{design}] starting servers", file=sys.stderr)
    stack = Stack(
        design,
        args.shards,
        args.scrape_interval,
        args.evaluation_interval,
        rules,
        workdir,
        not args.no_consistency_check,
    )
    try:
        routes = [route_for(stack.bundle.telemetry, p.robot_id) for p in plans]
        per_proc: list[list[tuple[int, fleetsim.RobotPlan, Any]]] = [[] for _ in range(args.procs)]
        for i, (plan, route) in enumerate(zip(plans, routes, strict=True)):
            per_proc[i % args.procs].append((i, plan, route))
        start = time.time() + 3.0 + n / 4000.0  # time for the workers to build their registries
        deadline = start + (args.rounds + 1) * interval
        ctx = mp.get_context("fork")
        out = ctx.Queue()
        procs = [
            ctx.Process(
                target=_worker,
                args=(
                    {
                        "robots": share,
                        "interval": interval,
                        "rounds": args.rounds,
                        "start": start,
                        "deadline": deadline,
                        "n_total": n,
                        "threads": args.threads,
                    },
                    out,
                ),
            )
            for share in per_proc
        ]
        for p in procs:
            p.start()
        print(f"[{design}] {n} robots pushing for {args.rounds} x {interval:g}s", file=sys.stderr)
        # CPU is measured over the last round: the servers then hold every robot's series (steady state),
        # not creating them as in the first round.
        measure_from = start + (args.rounds - 1) * interval
        time.sleep(max(0.0, measure_from - time.time()))
        usage_start = stack.usage()
        summaries: list[dict[str, Any]] = []
        for _ in procs:
            summaries.extend(out.get(timeout=max(60.0, deadline - time.time() + 120.0)))
        for p in procs:
            p.join(30)
        t_pushed = time.time()
        usage_end = stack.usage()
        measured_s = max(1e-9, t_pushed - measure_from)
        last_round_start = start + (args.rounds - 1) * interval

        # Time until every robot's latest state is queryable (bounded by one more interval).
        live = sum(1 for s in summaries if not s["silent"])
        last_push = max((s["last_end"] for s in summaries if not math.isnan(s["last_end"])), default=t_pushed)
        q = f'count(push_time_seconds{{job="{JOB}", robot_id!=""}} >= {last_round_start:.3f})'
        seen = -1
        queryable_after: float | None = None
        limit = time.time() + interval
        while time.time() < limit:
            seen = _count(stack, q)
            if seen >= live:
                queryable_after = time.time() - last_push
                break
            time.sleep(0.5)
        print(f"[{design}] latest state of {seen}/{live} live robots queryable", file=sys.stderr)

        # Alerts: exactly the faulty robots, each with its own alert; no healthy robot even pending.
        expected = {(p.robot_id, a) for p in plans for a in fleetsim.EXPECTED_ALERTS[p.fault]}
        faulty = {p.robot_id for p in plans if p.fault != fleetsim.HEALTHY}
        firing: set[tuple[str, str]] = set()
        touched: set[str] = set()
        limit = time.time() + max(60.0, interval)
        while time.time() < limit:
            try:
                alerts = stack.alerts()
            except Exception:  # noqa: BLE001
                alerts = []
            firing = {
                (a["labels"].get("robot_id", ""), a["labels"]["alertname"])
                for a in alerts
                if a.get("state") == "firing" and a["labels"].get("robot_id")
            }
            touched = {a["labels"].get("robot_id", "") for a in alerts if a["labels"].get("robot_id")}
            if firing == expected:
                break
            time.sleep(1.0)
        usage_final = stack.usage()
        scrapes: dict[str, Any] = {}
        if stack.prom is not None:
            # Failed scrapes of the gateways over the run: a shard that Prometheus cannot scrape in time
            # looks down, and the silence rule holds back its robots' alerts (docs/FLEET.md).
            window = f"{int(time.time() - start) + 10}s"
            scrapes = {
                "gateway_scrapes_failed": _count(
                    stack,
                    f'sum(count_over_time(up{{job="pushgateway"}}[{window}])) '
                    f'- sum(sum_over_time(up{{job="pushgateway"}}[{window}]))',
                ),
                "gateway_scrape_max_s": _value(
                    stack, f'max(max_over_time(scrape_duration_seconds{{job="pushgateway"}}[{window}]))'
                ),
            }

        latency = [x for s in summaries for x in s["latency"]]
        lateness = [x for s in summaries for x in s["lateness"]]
        per_k = n / 1000.0
        servers = {}
        for name, (cpu1, _) in usage_end.items():
            cores = (cpu1 - usage_start[name][0]) / measured_s
            rss_mib = usage_final[name][1] / 2**20
            servers[name] = {
                "cpu_cores": round(cores, 3),
                "rss_mib": round(rss_mib, 1),
                "cpu_cores_per_1000_robots": round(cores / per_k, 4),
                "rss_mib_per_1000_robots": round(rss_mib / per_k, 1),
            }
        totals = {
            "cpu_cores": round(sum(s["cpu_cores"] for s in servers.values()), 3),
            "rss_mib": round(sum(s["rss_mib"] for s in servers.values()), 1),
            "cpu_cores_per_1000_robots": round(
                sum(s["cpu_cores_per_1000_robots"] for s in servers.values()), 4
            ),
            "rss_mib_per_1000_robots": round(sum(s["rss_mib_per_1000_robots"] for s in servers.values()), 1),
        }
        return {
            "robots": n,
            "servers_n": len(servers),
            "sustained": sum(1 for s in summaries if s["sustained"]),
            "push_failures": sum(s["failures"] for s in summaries),
            "push_p50_s": _quantile(latency, 0.5),
            "push_p99_s": _quantile(latency, 0.99),
            "lateness_p99_s": _quantile(lateness, 0.99),
            "queryable_s": None if queryable_after is None else round(queryable_after, 2),
            "queryable_robots": max(seen, 0),
            "alerts_exact": firing == expected and not (touched - faulty),
            "alerts_missing": len(expected - firing),
            "alerts_missing_by_name": dict(Counter(a for _, a in expected - firing)),
            "alerts_extra": len(firing - expected),
            "healthy_touched": len(touched - faulty),
            **scrapes,
            "servers": servers,
            "total": totals,
        }
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--robots", type=int, default=1000, help="simulated robots")
    parser.add_argument(
        "--interval",
        type=float,
        default=None,
        help="push interval, seconds (default: the example bundle's telemetry.push_interval_s)",
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="intervals pushed (the last one is the latest state)"
    )
    parser.add_argument("--designs", default="single,sharded,vm", help="comma list of single, sharded, vm")
    parser.add_argument(
        "--shards", type=int, default=0, help="Pushgateway shards (default: one per 1,000 robots)"
    )
    parser.add_argument(
        "--no-consistency-check",
        action="store_true",
        help="shards run with --push.disable-consistency-check (the baseline never does)",
    )
    parser.add_argument("--procs", type=int, default=4, help="client processes")
    parser.add_argument(
        "--threads",
        type=int,
        default=64,
        help="push threads per client process (pushes in flight: enough that a slow server, not the clients, limits)",
    )
    parser.add_argument("--scrape-interval", default="5s", help="Prometheus scrape interval of the gateways")
    parser.add_argument(
        "--evaluation-interval",
        default="5s",
        help="rule evaluation interval of Prometheus and vmalert (production: 30s-1m)",
    )
    parser.add_argument("--faulty-per-kind", type=int, default=5, help="robots of each fault kind")
    args = parser.parse_args(argv)
    if args.interval is None:
        args.interval = float(load_example_bundle(require_firmware=False).telemetry.push_interval_s)
    if args.shards <= 0:
        args.shards = max(2, math.ceil(args.robots / 1000))
    designs = [d.strip() for d in args.designs.split(",") if d.strip()]
    need = {
        "single": (PUSHGATEWAY_BINARIES, PROMETHEUS_BINARIES),
        "sharded": (PUSHGATEWAY_BINARIES, PROMETHEUS_BINARIES),
        "vm": (VICTORIAMETRICS_BINARIES, VMALERT_BINARIES),
    }
    for d in designs:
        if d not in need:
            parser.error(f"--designs: unknown design {d!r} (expected single, sharded, vm)")
        missing = [names[0] for names in need[d] if not find_binary(names)]
        if missing:
            print(
                f"{d}: missing {', '.join(missing)} (apt-get install prometheus prometheus-pushgateway "
                "victoria-metrics)",
                file=sys.stderr,
            )
            return 2
    plans = fleetsim.fleet_plans(args.robots, args.faulty_per_kind)
    result: dict[str, Any] = {
        "bench": "fleet",
        "robots": args.robots,
        "interval_s": args.interval,
        "rounds": args.rounds,
        "shards": args.shards,
        "shard_consistency_check": not args.no_consistency_check,
        "scrape_interval": args.scrape_interval,
        "evaluation_interval": args.evaluation_interval,
        "vm_latency_offset": "1s",
        "procs": args.procs,
        "cpus": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory(prefix="va-bench-fleet-") as tmp:
        rules = compress_for_durations(RULES, Path(tmp) / "rules.yml", "1s")
        for d in designs:
            result[d] = run_design(d, args, plans, rules, Path(tmp))
    base = result.get("single")
    if base:
        for d in designs:
            if d != "single":
                result[d]["sustained_over_single"] = round(
                    result[d]["sustained"] / max(1, base["sustained"]), 2
                )
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
