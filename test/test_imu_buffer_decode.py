"""The IMU sampling path without ROS: keep-last depth, bulk CDR decoding, sampler counters."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from vibration_anomaly.core.imu_buffer import ImuFrameBuffer, ImuSampler, decode_imu_cdr, qos_depth
from vibration_anomaly.core.queue import LatestBatchQueue
from vibration_anomaly.core.window import Windower
from vibration_anomaly.errors import InputError


def imu_cdr(
    stamp: float, acc: tuple[float, float, float], frame_id: str = "imu_link", xcdr2: bool = False
) -> bytes:
    """A sensor_msgs/Imu serialized by hand, following the CDR rules (little endian)."""
    sec = math.floor(stamp)
    name = frame_id.encode() + b"\0"
    body = struct.pack("<iI", sec, round((stamp - sec) * 1e9)) + struct.pack("<I", len(name)) + name
    align = 4 if xcdr2 else 8
    body += b"\0" * (-len(body) % align)
    body += struct.pack("<4d", 0, 0, 0, 1) + bytes(72) + struct.pack("<3d", 0.1, 0.2, 0.3) + bytes(72)
    body += struct.pack("<3d", *acc) + bytes(72)
    return (b"\x00\x07" if xcdr2 else b"\x00\x01") + b"\x00\x00" + body


def test_qos_depth_is_one_window_of_frames() -> None:
    assert qos_depth(1000.0, 5.0) == 5000
    assert qos_depth(400.0, 0.5) == 200
    assert qos_depth(1000.0, 0.0001) == 1
    with pytest.raises(InputError, match="rate_hz"):
        qos_depth(0.0, 5.0)
    with pytest.raises(InputError, match="sample_s"):
        qos_depth(1000.0, math.nan)


@pytest.mark.parametrize("xcdr2", [False, True])
def test_bulk_decode_reads_stamps_and_acceleration_and_counts_refusals(xcdr2: bool) -> None:
    raws = [imu_cdr(10.0 + i * 0.001, (float(i), -1.0, 9.8), xcdr2=xcdr2) for i in range(5)]
    raws.insert(2, imu_cdr(10.0015, (7.0, 7.0, 7.0), frame_id="base_link", xcdr2=xcdr2))
    raws.append(b"\x00\x01\x00\x00 not an imu")
    d = decode_imu_cdr(raws, "imu_link")
    assert d.wrong_frame_id == 1 and d.last_wrong_frame_id == "base_link"
    assert d.undecodable == 1
    np.testing.assert_allclose(d.t, 10.0 + np.arange(5) * 0.001, atol=1e-9)
    np.testing.assert_allclose(d.x[:, 0], np.arange(5))
    np.testing.assert_allclose(d.x[:, 2], 9.8, rtol=1e-6)
    everyone = decode_imu_cdr(raws, "")
    assert everyone.t.size == 6 and everyone.wrong_frame_id == 0


def test_fallback_decoder_takes_what_the_bulk_path_cannot() -> None:
    odd = b"\x00\x03\x00\x00" + bytes(400)  # another encapsulation
    d = decode_imu_cdr([odd], "imu_link", fallback=lambda raw: (5.0, "imu_link", (1.0, 2.0, 3.0)))
    assert d.t.tolist() == [5.0] and d.x.tolist() == [[1.0, 2.0, 3.0]]
    wrong = decode_imu_cdr([odd], "imu_link", fallback=lambda raw: (5.0, "cam", (1.0, 2.0, 3.0)))
    assert wrong.t.size == 0 and wrong.wrong_frame_id == 1


def test_decoder_matches_rclpy_serialization() -> None:
    serialization = pytest.importorskip("rclpy.serialization", reason="needs rclpy for its serializer")
    from sensor_msgs.msg import Imu

    raws = []
    for i, fid in enumerate(["imu_link", "imu", "imu_link_long_name"]):
        m = Imu()
        m.header.frame_id = fid
        m.header.stamp.sec, m.header.stamp.nanosec = 100 + i, 250_000_000
        m.linear_acceleration.x, m.linear_acceleration.y, m.linear_acceleration.z = 0.5 * i, -0.25, 9.81
        raws.append(serialization.serialize_message(m))
    d = decode_imu_cdr(raws, "")
    assert d.t.tolist() == [100.25, 101.25, 102.25]
    np.testing.assert_allclose(d.x, [[0, -0.25, 9.81], [0.5, -0.25, 9.81], [1.0, -0.25, 9.81]], rtol=1e-6)


def test_buffer_is_preallocated_and_reports_full() -> None:
    buf = ImuFrameBuffer(3)
    assert [buf.append(b"a"), buf.append(b"b"), buf.append(b"c")] == [False, False, True]
    assert buf.take() == [b"a", b"b", b"c"] and buf.n == 0
    with pytest.raises(ValueError):
        ImuFrameBuffer(0)


def _sampler(length: int = 100, capacity: int = 1000, bound: int = 3) -> tuple[ImuSampler, LatestBatchQueue]:
    q = LatestBatchQueue(bound)
    return ImuSampler(Windower(length, fs_hz=1000.0), q, expected_frame_id="imu_link", capacity=capacity), q


def test_sampler_refuses_frames_from_before_the_window_and_bad_frames() -> None:
    s, q = _sampler()
    s.open_window(20.0)
    for i in range(50):  # a firmware burst stamped before the window
        s.append(imu_cdr(19.5 + i * 0.001, (0.0, 0.0, 9.8)))
    s.append(imu_cdr(20.0005, (math.nan, 0.0, 9.8)))
    s.append(imu_cdr(20.0007, (0.0, 0.0, 9.8), frame_id="wrong"))
    for i in range(100):
        s.append(imu_cdr(20.001 + i * 0.001, (0.0, 0.0, 9.8)))
    batches = s.close_window()
    assert len(batches) == 1 and batches[0].t0 >= 20.0 and len(q) == 1
    assert s.windower.rejected["before_window"] == 50 and s.windower.rejected["nonfinite"] == 1
    assert s.rejected["frame_id"] == 1 and "wrong" in (s.last_rejection or "")
    assert s.rejected_total == 52


def test_a_burst_larger_than_the_buffer_is_flushed_not_lost_and_the_queue_keeps_its_bound() -> None:
    s, q = _sampler(length=100, capacity=150, bound=3)
    s.open_window(1.0)
    for i in range(1000):
        s.append(imu_cdr(1.0 + i * 0.001, (0.0, 0.0, 9.8)))
    s.close_window()
    assert s.stats.full_flushes == 6 and s.stats.batches == 10
    assert q.stats.max_depth == 3 and q.stats.dropped_overflow == 7
    newest = q.take_latest(fresh_after=1.0)
    assert newest is not None and newest.t1 == pytest.approx(1.999)
