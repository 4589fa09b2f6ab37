"""``imu_subscriber``: sensor_msgs/Imu -> the core's sampler, subscribed only during a sample window.

An adapter: the window grid comes from the duty-cycle driver (detector node),
decoding and windowing from ``core.imu_buffer``. What is ROS-specific and lives here:

* The subscription exists only between ``start_sampling`` and ``stop_sampling``:
  destroyed while asleep, so the middleware delivers nothing to us (a
  publisher sees zero matched subscriptions). Re-creating it costs 1-5 ms of
  discovery (measured), cheaper than any "paused" subscription that the
  middleware would still feed.
* Keep-last QoS of depth ``qos_depth(rate, sample_s)``; best effort
  (sensor data) by default, ``reliability`` to change it.
* ``take_mode: drain`` (default): the subscription is in a callback group no
  executor runs; a ``drain_hz`` timer takes the serialized messages from the
  reader history in a loop and stores them (one list store each). That cut the
  subscriber from 21-26 % to 2-3 % of a core at 1 kHz. ``take_mode: callback``
  uses a normal raw-bytes callback (the fallback where ``take_message`` is not there).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import rclpy
from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rclpy.subscription import Subscription
from rclpy.timer import Timer
from sensor_msgs.msg import Imu

from vibration_anomaly.core.imu_buffer import ImuSampler, qos_depth
from vibration_anomaly.core.queue import LatestBatchQueue
from vibration_anomaly.core.window import Batch, Windower, batch_samples

TOPIC = "imu/data"
RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}


class _DrainedGroup(CallbackGroup):
    """Executors only wait on entities whose group can execute: this one never can, we take() ourselves."""

    def can_execute(self, entity: Any) -> bool:
        return False

    def beginning_execution(self, entity: Any) -> bool:
        return False

    def ending_execution(self, entity: Any) -> None:
        return None


def decode_one(raw: bytes) -> tuple[float, str, tuple[float, float, float]]:
    """Slow path for messages the bulk decoder does not read (another CDR flavour)."""
    m = deserialize_message(raw, Imu)
    a = m.linear_acceleration
    return m.header.stamp.sec + m.header.stamp.nanosec * 1e-9, m.header.frame_id, (a.x, a.y, a.z)


class ImuSubscriberNode(Node):
    def __init__(self, node_name: str = "imu_subscriber", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.rate_hz = float(self.declare_parameter("imu_rate_hz", 1000.0).value)
        self.frame_id = str(self.declare_parameter("frame_id", "").value)
        self.reliability = str(self.declare_parameter("reliability", "best_effort").value)
        self.depth_override = int(self.declare_parameter("qos_depth", 0).value)
        self.drain_hz = float(self.declare_parameter("drain_hz", 20.0).value)
        self.take_mode = str(self.declare_parameter("take_mode", "drain").value)
        if self.reliability not in RELIABILITY:
            raise ValueError(
                f"imu_subscriber: reliability: expected best_effort or reliable, got {self.reliability!r}"
            )
        if self.take_mode not in ("drain", "callback"):
            raise ValueError(f"imu_subscriber: take_mode: expected drain or callback, got {self.take_mode!r}")
        if not (math.isfinite(self.rate_hz) and self.rate_hz > 0 and self.drain_hz > 0):
            raise ValueError("imu_subscriber: imu_rate_hz and drain_hz must be > 0")
        self.sampler: ImuSampler | None = None
        self.depth = 1
        self._sub: Subscription | None = None
        self._timer: Timer | None = None
        self._continuous = False
        self._group = _DrainedGroup()
        self.subscriptions_created = 0

    # -- wiring -------------------------------------------------------------------------------
    def attach(
        self, queue: LatestBatchQueue, sample_s: float, on_batch: Callable[[Batch], None] | None = None
    ) -> ImuSampler:
        """Build the sampler for batches of one sample window; called by the detector at configure."""
        self.stop_sampling()
        self.depth = self.depth_override or qos_depth(self.rate_hz, sample_s)
        length = batch_samples(self.rate_hz, sample_s)
        windower = Windower(length, channels=3, fs_hz=self.rate_hz, source=self.resolve_topic_name(TOPIC))
        self.sampler = ImuSampler(
            windower,
            queue,
            expected_frame_id=self.frame_id,
            capacity=2 * self.depth + 1024,
            fallback=decode_one,
            on_batch=on_batch,
        )
        return self.sampler

    def qos(self) -> QoSProfile:
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=self.depth,
            reliability=RELIABILITY[self.reliability],
            durability=DurabilityPolicy.VOLATILE,
        )

    # -- sampling -------------------------------------------------------------------------------
    @property
    def sampling(self) -> bool:
        return self._sub is not None

    def start_sampling(self, window_start: float, continuous: bool = False) -> None:
        """Subscribe; frames stamped before ``window_start`` are refused. ``continuous`` flushes on each drain."""
        if self.sampler is None:
            raise RuntimeError("imu_subscriber: start_sampling before attach (configure the detector first)")
        if self._sub is not None:
            return
        self.sampler.open_window(window_start)
        self._continuous = continuous
        drained = self.take_mode == "drain"
        self._sub = self.create_subscription(
            Imu,
            TOPIC,
            self.sampler.append,
            self.qos(),
            raw=True,
            callback_group=self._group if drained else None,
        )
        self.subscriptions_created += 1
        if drained or continuous:
            self._timer = self.create_timer(1.0 / self.drain_hz, self._drain)

    def stop_sampling(self) -> list[Batch]:
        """Take what is left, unsubscribe, and close the window; returns the batches it completed."""
        if self._sub is None:
            return []
        self._drain(flush=False)
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        self.destroy_subscription(self._sub)
        self._sub = None
        assert self.sampler is not None
        return self.sampler.close_window()

    def _drain(self, flush: bool | None = None) -> None:
        sub, sampler = self._sub, self.sampler
        if sub is None or sampler is None:
            return
        if self.take_mode == "drain":
            append = sampler.append
            handle = sub.handle
            with handle:
                take = handle.take_message
                while True:
                    got = take(Imu, True)
                    if got is None:
                        break
                    append(got[0])
        if self._continuous if flush is None else flush:
            sampler.flush()

    def destroy_node(self) -> None:
        self.stop_sampling()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Standalone: sample continuously and log a line per batch (checks a sensor's rate, stamps and frame id).

    Ends like the main process (``nodes.main.teardown``): exit 0 on Ctrl-C or SIGTERM at any moment after
    the imports, quietly."""
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    from vibration_anomaly.nodes.main import teardown

    try:
        rclpy.init(args=args)
    except KeyboardInterrupt:
        return 0
    ex = SingleThreadedExecutor()
    nodes: tuple[ImuSubscriberNode, ...] = ()
    try:
        node = ImuSubscriberNode()
        nodes = (node,)
        window_s = float(node.declare_parameter("window_s", 5.0).value)
        queue = LatestBatchQueue(3)

        def report(b: Batch) -> None:
            s = node.sampler
            assert s is not None
            node.get_logger().info(
                f"batch {b.t0:.3f}-{b.t1:.3f} ({b.n_samples} frames); received {s.stats.received}, "
                f"refused {dict(s.rejected) | dict(s.windower.rejected)}; dropped by queue {queue.stats.dropped_frames}"
            )

        node.attach(queue, window_s, on_batch=report)
        node.start_sampling(node.get_clock().now().nanoseconds * 1e-9 - 1.0, continuous=True)
        ex.add_node(node)
        ex.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        teardown(rclpy, ex, nodes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
