"""CPU of the IMU subscriber at 1 kHz, duty-cycled vs always subscribed, on the real rclpy.

A publisher process sends sensor_msgs/Imu at ``--rate`` (stamp = wall time,
linear_acceleration.x = sequence number). Subscriber processes run the
package's ``ImuSubscriberNode`` in one of these modes, each for whole duty
periods, measured one after the other in the same run:

* ``duty_drain``: the package default. Subscribed only for the sample window
  of each period (plus the lead-in and tail), messages taken in bulk from the
  reader history on a 20 Hz drain and decoded per batch with numpy.
* ``duty_callback``: same windows, one executor callback per message (raw bytes).
* ``always_callback``: the baseline: always subscribed, one executor callback
  per message, ``executor.spin()``; what a plain subscriber does.
* ``always_drain``: always subscribed with the package's drain.

Printed JSON: per mode the subscriber process's CPU (user + system, all its
threads, DDS included) as a share of one core averaged over whole duty
periods; frames received inside the sample windows vs published in them; and
ratios against the always-subscribed baseline. The duty period is accelerated
(default 6 s with a 0.5 s window: the 5/60 ratio of the contract).

    .venv/bin/python bench/bench_imu_subscriber.py [--periods 4] [--period 6] [--rate 1000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time

PY = sys.executable


def publisher(rate: float, seconds: float) -> int:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Imu

    rclpy.init()
    node = rclpy.create_node("bench_imu_publisher")
    pub = node.create_publisher(
        Imu, "imu/data", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    )
    msg = Imu()
    msg.header.frame_id = "imu_link"
    msg.linear_acceleration.z = 9.80665
    t0 = time.monotonic()
    k = 0
    log = []
    while True:
        now = time.monotonic()
        if now - t0 > seconds:
            break
        due = int((now - t0) * rate)
        while k < due:
            tw = time.time()
            msg.header.stamp.sec = int(tw)
            msg.header.stamp.nanosec = int((tw % 1.0) * 1e9)
            msg.linear_acceleration.x = float(k)
            pub.publish(msg)
            log.append(tw)
            k += 1
        time.sleep(0.0005)
    node.destroy_node()
    rclpy.shutdown()
    sys.stdout.write(
        json.dumps({"published": k, "stamps_first_last": [log[0], log[-1]] if log else []}) + "\n"
    )
    # The stamps go to a file so the parent can count what was published inside each window.
    with open(os.environ["BENCH_STAMPS"], "w") as fh:
        fh.write("\n".join(f"{t:.6f}" for t in log))
    return 0


def subscriber(mode: str, sample_s: float, period_s: float, periods: int, rate: float) -> int:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from vibration_anomaly.core import imu_buffer
    from vibration_anomaly.core.queue import LatestBatchQueue
    from vibration_anomaly.core.scheduler import DutyCycleScheduler
    from vibration_anomaly.nodes.imu_subscriber import ImuSubscriberNode

    rclpy.init()
    take = "drain" if mode.endswith("drain") else "callback"
    node = ImuSubscriberNode(
        parameter_overrides=[
            rclpy.parameter.Parameter("take_mode", value=take),
            rclpy.parameter.Parameter("imu_rate_hz", value=rate),
            rclpy.parameter.Parameter("frame_id", value="imu_link"),
        ]
    )
    queue = LatestBatchQueue(3)
    node.attach(queue, sample_s)
    assert node.sampler is not None
    seen: list[float] = []
    real_decode = imu_buffer.decode_imu_cdr

    def recording_decode(*args: object, **kw: object) -> imu_buffer.DecodedFrames:
        d = real_decode(*args, **kw)  # type: ignore[arg-type]
        seen.extend(d.t.tolist())
        return d

    imu_buffer.decode_imu_cdr = recording_decode  # type: ignore[assignment]
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    clock = time.time
    sched = DutyCycleScheduler(sample_s, period_s, clock=clock, epoch=0.0)
    lead, tail = 0.1, 0.05
    duty = mode.startswith("duty")
    # Warm up: let discovery match the publisher once (a robot runs for days; we measure steady state).
    node.start_sampling(clock())
    t_end = clock() + 3.0
    while clock() < t_end and node.sampler.stats.received < 10:
        ex.spin_once(timeout_sec=0.05)
    node.stop_sampling()
    first = sched.next_window(clock() + lead + 0.5)
    start_t = first.start
    stop_t = first.start + periods * period_s
    while clock() < start_t - lead:
        ex.spin_once(timeout_sec=max(0.0, min(0.2, start_t - lead - clock())))
    c0, w0 = os.times(), time.monotonic()
    k = first.period
    windows = [(sched.window(i).start, sched.window(i).end) for i in range(k, k + periods)]
    if not duty:
        node.start_sampling(start_t, continuous=True)
        while clock() < stop_t:
            ex.spin_once(timeout_sec=min(0.2, max(0.0, stop_t - clock())))
        node.stop_sampling()
    else:
        for i in range(k, k + periods):
            w = sched.window(i)
            while clock() < w.start - lead:
                ex.spin_once(timeout_sec=max(0.0, min(0.5, w.start - lead - clock())))
            node.start_sampling(w.start)
            while clock() < w.end + tail:
                ex.spin_once(timeout_sec=max(0.0, min(0.05, w.end + tail - clock())))
            node.stop_sampling()
        while clock() < stop_t:
            ex.spin_once(timeout_sec=max(0.0, min(0.5, stop_t - clock())))
    c1, w1 = os.times(), time.monotonic()
    cpu = (c1.user + c1.system - c0.user - c0.system) / (w1 - w0)
    s = node.sampler
    import bisect

    seen.sort()
    in_windows = sum(bisect.bisect_left(seen, e) - bisect.bisect_left(seen, b) for b, e in windows)
    out = {
        "received_in_windows": in_windows,
        "mode": mode,
        "cpu_share_of_one_core": cpu,
        "wall_s": w1 - w0,
        "periods": periods,
        "windows": windows,
        "batches": s.stats.batches,
        "received": s.stats.received,
        "decoded": s.stats.decoded,
        "rejected": dict(s.windower.rejected) | dict(s.rejected),
        "discarded": dict(s.windower.discarded),
        "subscriptions_created": node.subscriptions_created,
        "depth": node.depth,
    }
    ex.shutdown()
    node.destroy_node()
    rclpy.shutdown()
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    ap.add_argument("--rate", type=float, default=1000.0, help="IMU rate in Hz (default 1000)")
    ap.add_argument("--period", type=float, default=6.0, help="accelerated duty period in s (default 6)")
    ap.add_argument("--periods", type=int, default=4, help="whole periods measured per mode (default 4)")
    ap.add_argument("--modes", default="always_callback,duty_drain,duty_callback,always_drain")
    ap.add_argument("--_role", default="", help=argparse.SUPPRESS)
    ap.add_argument("--_mode", default="", help=argparse.SUPPRESS)
    ap.add_argument("--_seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    sample = a.period * 5.0 / 60.0
    if a._role == "pub":
        return publisher(a.rate, a._seconds)
    if a._role == "sub":
        return subscriber(a._mode, sample, a.period, a.periods, a.rate)

    env = dict(os.environ)
    env.setdefault("ROS_DOMAIN_ID", str(110 + random.randrange(100)))  # noqa: S311 - not crypto
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    stamps_file = f"/tmp/bench_imu_stamps_{os.getpid()}.txt"
    env["BENCH_STAMPS"] = stamps_file
    modes = a.modes.split(",")
    per_mode_s = (a.periods + 2) * a.period + 6.0
    total = per_mode_s * len(modes) + 5.0
    pub = subprocess.Popen(
        [PY, __file__, "--_role", "pub", "--rate", str(a.rate), "--_seconds", str(total)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    results = []
    try:
        time.sleep(2.0)
        for m in modes:
            print(f"measuring {m} ({a.periods} periods of {a.period:g} s) ...", file=sys.stderr)
            r = subprocess.run(
                [
                    PY,
                    __file__,
                    "--_role",
                    "sub",
                    "--_mode",
                    m,
                    "--rate",
                    str(a.rate),
                    "--period",
                    str(a.period),
                    "--periods",
                    str(a.periods),
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=per_mode_s + 60,
            )
            if r.returncode != 0:
                print(r.stderr[-3000:], file=sys.stderr)
                return 1
            results.append(json.loads(r.stdout.strip().splitlines()[-1]))
    finally:
        pub.wait(timeout=total + 30)
    with open(stamps_file) as fh:
        pub_stamps = [float(x) for x in fh.read().split()]
    os.unlink(stamps_file)
    import bisect

    for r in results:
        in_win = sum(
            bisect.bisect_left(pub_stamps, e) - bisect.bisect_left(pub_stamps, s) for s, e in r["windows"]
        )
        r["published_in_windows"] = in_win
        r.pop("windows")
    base = next((r for r in results if r["mode"] == "always_callback"), None)
    summary = {
        "rate_hz": a.rate,
        "period_s": a.period,
        "sample_s": sample,
        "window_to_period": sample / a.period,
        "periods_per_mode": a.periods,
        "cpu_count": os.cpu_count(),
        "results": {r["mode"]: r for r in results},
    }
    if base is not None:
        summary["ratio_vs_always_callback"] = {
            r["mode"]: round(r["cpu_share_of_one_core"] / base["cpu_share_of_one_core"], 4) for r in results
        }
    dd = summary["results"].get("duty_drain")
    if dd is not None:
        summary["target"] = {
            "cpu_share_max": 0.03,
            "duty_drain_cpu_share": round(dd["cpu_share_of_one_core"], 4),
            "met": dd["cpu_share_of_one_core"] <= 0.03,
            "window_frames_received": dd["received_in_windows"],
            "window_frames_published": dd["published_in_windows"],
            "every_frame": dd["received_in_windows"] >= dd["published_in_windows"],
        }
    print(
        json.dumps(
            summary,
            separators=(",", ":"),
            default=lambda o: None if isinstance(o, float) and math.isnan(o) else o,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
