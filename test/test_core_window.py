import numpy as np
import pytest

from vibration_anomaly.core.window import Windower


def stream(n: int, fs: float = 1000.0, t0: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    t = t0 + np.arange(n) / fs
    x = np.stack([np.sin(t), np.cos(t), t], axis=1).astype(np.float32)
    return t, x


def test_push_one_at_a_time_and_arrays_give_identical_batches() -> None:
    t, x = stream(2500)
    a = Windower(1000)
    one = [b for ti, xi in zip(t, x, strict=True) if (b := a.push(float(ti), xi.tolist())) is not None]
    many = Windower(1000).push_many(t, x)
    assert len(one) == len(many) == 2
    for p, q in zip(one, many, strict=True):
        assert p.t0 == q.t0 and p.t1 == q.t1
        np.testing.assert_array_equal(p.data, q.data)
    assert one[0].t0 == pytest.approx(1.0) and one[1].t1 == pytest.approx(1.0 + 1999 / 1000)
    assert a.pending == 500


@pytest.mark.parametrize("mode", ["push", "many"])
def test_bad_samples_are_counted_never_raised_and_nothing_accepted_is_lost(mode: str) -> None:
    t, x = stream(12)
    x[3, 1] = np.nan
    x[5, 0] = np.inf
    t = t.copy()
    t[7] = t[6]  # duplicate stamp
    t[9] = t[2]  # out of order
    w = Windower(4)
    if mode == "push":
        out = [b for ti, xi in zip(t, x, strict=True) if (b := w.push(float(ti), xi.tolist())) is not None]
        w.push(float("nan"), [0.0, 0.0, 0.0])
        w.push(2.0, [1.0, 2.0])
    else:
        out = w.push_many(t, x)
        w.push_many(np.array([float("nan")]), np.zeros((1, 3)))
        w.push_many(np.array([2.0]), np.zeros((1, 2)))
    assert w.rejected["nonfinite"] == 2
    assert w.rejected["duplicate"] == 1
    assert w.rejected["out_of_order"] == 1
    assert w.rejected["bad_stamp"] == 1
    assert w.rejected["shape"] == 1
    assert w.accepted == 8
    # 8 good samples -> two full batches, none of the bad values inside.
    assert len(out) == 2
    assert all(np.isfinite(b.data).all() for b in out)
    assert "imu: stamp" in (w.last_rejection or "") or "imu: sample" in (w.last_rejection or "")


def test_gap_discards_partial_batch_instead_of_stitching() -> None:
    t1, x1 = stream(600)
    t2, x2 = stream(1000, t0=10.0)
    w = Windower(1000)
    assert w.push_many(t1, x1) == []
    out = w.push_many(t2, x2)
    assert len(out) == 1 and out[0].t0 == pytest.approx(10.0)
    assert w.discarded["gap"] == 600


def test_open_window_refuses_frames_stamped_before_it() -> None:
    w = Windower(100)
    w.open_window(5.0)
    t, x = stream(300, t0=4.9)  # 100 frames before the window, then 200 inside
    out = w.push_many(t, x)
    assert w.rejected["before_window"] == 100
    assert [round(b.t0, 3) for b in out] == [5.0, 5.1]
    w.open_window(100.0)
    assert w.push(50.0, [0.0, 0.0, 0.0]) is None
    assert w.rejected["before_window"] == 101


def test_close_window_counts_the_partial_batch() -> None:
    w = Windower(100)
    t, x = stream(150)
    w.push_many(t, x)
    w.close_window()
    assert w.pending == 0 and w.discarded["partial"] == 50


def test_invalid_construction_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="length"):
        Windower(1)
    with pytest.raises(ValueError, match="channels"):
        Windower(10, channels=0)
    assert Windower(10, fs_hz=1000.0).max_gap_s == pytest.approx(0.01)


def test_batch_samples_leaves_slack_for_clock_drift() -> None:
    from vibration_anomaly.core.window import batch_samples

    assert batch_samples(1000.0, 5.0) == 4900
    assert batch_samples(999.9999999999991, 2.0) == batch_samples(1000.0, 2.0) == 1960
    # A 0.1 % slow IMU still fills a batch inside the window.
    assert batch_samples(1000.0, 5.0) <= 999.0 * 5.0
    with pytest.raises(ValueError, match="fewer than 2"):
        batch_samples(1.0, 1.0)
