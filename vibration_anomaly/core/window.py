"""IMU samples -> fixed-length windows (batches).

Two entry points with one behaviour: ``push`` takes one sample at a time (as a
ROS callback would) and ``push_many`` takes arrays (a rosbag, a burst, a
per-batch message conversion). Bad samples never raise: they are counted by
reason, the last reason is kept for logs, and nothing already accepted is lost.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vibration_anomaly.core.events import (  # noqa: F401 - the vocabulary lives in core.events; re-exported here
    DROP_BEFORE_WINDOW,
    REJECT_BAD_STAMP,
    REJECT_DUPLICATE,
    REJECT_NONFINITE,
    REJECT_OUT_OF_ORDER,
    REJECT_SHAPE,
)
from vibration_anomaly.errors import InputError


@dataclass(frozen=True, eq=False)
class Batch:
    """One window of samples: ``data`` is (n_samples, n_channels) float32, stamps in seconds."""

    t0: float
    t1: float
    data: np.ndarray
    fs_hz: float

    @property
    def n_samples(self) -> int:
        return int(self.data.shape[0])


REJECT_BEFORE_WINDOW = DROP_BEFORE_WINDOW  # counted by the windower, reported as a drop (stale, not bad)
DISCARD_GAP = "gap"
DISCARD_PARTIAL = "partial"


class Windower:
    """Cuts a stream of stamped samples into batches of ``length`` samples.

    A gap longer than ``max_gap_s`` (a lost stretch, or the sleep between two
    sample windows) discards the partial batch instead of stitching two
    moments together. ``open_window(start)`` starts a fresh batch at a sample
    window's start; samples stamped before it are refused as stale, so a
    firmware burst of buffered frames never becomes a batch.
    """

    def __init__(
        self,
        length: int,
        channels: int = 3,
        fs_hz: float = 1000.0,
        source: str = "imu",
        max_gap_s: float | None = None,
    ) -> None:
        if length < 2:
            raise ValueError(f"windower: length must be >= 2 samples, got {length}")
        if channels < 1:
            raise ValueError(f"windower: channels must be >= 1, got {channels}")
        self.length = int(length)
        self.channels = int(channels)
        self.fs_hz = float(fs_hz)
        self.source = source
        self.max_gap_s = float(max_gap_s) if max_gap_s is not None else 10.0 / self.fs_hz
        self._buf = np.empty((self.length, self.channels), dtype=np.float32)
        self._t = np.empty(self.length, dtype=np.float64)
        self._n = 0
        self._last_t = -math.inf
        self._window_start = -math.inf
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self.discarded: Counter[str] = Counter()  # accepted samples dropped in partial batches, by reason
        self.last_rejection: str | None = None

    # -- control -------------------------------------------------------------
    def open_window(self, start: float) -> None:
        """Begin a new sample window at ``start``: drop any partial batch."""
        self._discard(DISCARD_PARTIAL)
        self._window_start = float(start)
        self._last_t = -math.inf

    def close_window(self) -> None:
        """End the window: a partial batch can never complete, so drop it (counted)."""
        self._discard(DISCARD_PARTIAL)

    @property
    def pending(self) -> int:
        return self._n

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def _discard(self, reason: str) -> None:
        if self._n:
            self.discarded[reason] += self._n
            self._n = 0

    def _reject(self, reason: str, field: str, problem: str) -> None:
        self.rejected[reason] += 1
        self.last_rejection = str(InputError(self.source, field, problem))

    # -- one sample at a time (a ROS callback) ---------------------------------
    def push(self, t: float, sample: Sequence[float]) -> Batch | None:
        """Add one sample; return a completed batch, else None. Never raises on bad data."""
        if len(sample) != self.channels:
            self._reject(REJECT_SHAPE, "sample", f"expected {self.channels} values, got {len(sample)}")
            return None
        if not (t > 0.0 and math.isfinite(t)):
            self._reject(REJECT_BAD_STAMP, "stamp", f"expected a finite positive time, got {t!r}")
            return None
        for v in sample:
            if not math.isfinite(v):
                self._reject(REJECT_NONFINITE, "sample", f"non-finite value at t={t:.6f}")
                return None
        last = self._last_t
        if t <= last:
            if t == last:
                self._reject(REJECT_DUPLICATE, "stamp", f"duplicate stamp t={t:.6f}")
            else:
                self._reject(REJECT_OUT_OF_ORDER, "stamp", f"t={t:.6f} is before the previous t={last:.6f}")
            return None
        if t < self._window_start:
            self._reject(REJECT_BEFORE_WINDOW, "stamp", f"t={t:.6f} is before the window start")
            return None
        if t - last > self.max_gap_s and self._n:
            self._discard(DISCARD_GAP)
        self._last_t = t
        n = self._n
        self._buf[n] = sample
        self._t[n] = t
        self.accepted += 1
        n += 1
        if n < self.length:
            self._n = n
            return None
        self._n = 0
        return Batch(float(self._t[0]), t, self._buf.copy(), self.fs_hz)

    # -- arrays ------------------------------------------------------------------
    def push_many(self, t: np.ndarray, x: np.ndarray) -> list[Batch]:
        """Add many samples at once (same rules as ``push``, vectorised)."""
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 1 and self.channels == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self.channels or x.shape[0] != t.shape[0]:
            self.rejected[REJECT_SHAPE] += int(t.shape[0]) or 1
            self.last_rejection = str(
                InputError(self.source, "samples", f"expected ({t.shape[0]}, {self.channels}), got {x.shape}")
            )
            return []
        if t.size == 0:
            return []
        ok = np.isfinite(t) & (t > 0)
        self._count_mask(~ok, REJECT_BAD_STAMP, "stamp", "expected a finite positive time")
        fin = ok & np.isfinite(x).all(axis=1)
        self._count_mask(ok & ~fin, REJECT_NONFINITE, "sample", "non-finite value")
        # Monotonic filter: a stamp is kept only if it beats every kept stamp before it.
        keep = fin.copy()
        idx = np.flatnonzero(fin)
        if idx.size:
            ts = t[idx]
            prev_max = np.maximum.accumulate(np.concatenate(([self._last_t], ts[:-1])))
            good = ts > prev_max
            dup = ts == prev_max
            keep[idx[~good]] = False
            bad_order = idx[~good & ~dup]
            self._count_mask_idx(idx[dup], REJECT_DUPLICATE, "stamp", "duplicate stamp")
            self._count_mask_idx(bad_order, REJECT_OUT_OF_ORDER, "stamp", "stamp before the previous one")
        before = keep & (t < self._window_start)
        self._count_mask(before, REJECT_BEFORE_WINDOW, "stamp", "before the window start")
        keep &= ~before
        kt, kx = t[keep], x[keep]
        out: list[Batch] = []
        if kt.size == 0:
            return out
        self.accepted += int(kt.size)
        # Split at gaps (including a gap from the pending partial batch).
        gaps = np.flatnonzero(np.diff(kt) > self.max_gap_s) + 1
        if self._n and kt[0] - self._last_t > self.max_gap_s:
            self._discard(DISCARD_GAP)
        start = 0
        for stop in [*gaps.tolist(), int(kt.size)]:
            out.extend(self._fill(kt[start:stop], kx[start:stop]))
            if stop != kt.size:
                self._discard(DISCARD_GAP)
            start = stop
        self._last_t = float(kt[-1])
        return out

    def _fill(self, t: np.ndarray, x: np.ndarray) -> list[Batch]:
        out: list[Batch] = []
        i = 0
        while i < t.size:
            take = min(self.length - self._n, t.size - i)
            self._buf[self._n : self._n + take] = x[i : i + take]
            self._t[self._n : self._n + take] = t[i : i + take]
            self._n += take
            i += take
            if self._n == self.length:
                out.append(Batch(float(self._t[0]), float(self._t[-1]), self._buf.copy(), self.fs_hz))
                self._n = 0
        return out

    def _count_mask(self, mask: np.ndarray, reason: str, field: str, problem: str) -> None:
        n = int(np.count_nonzero(mask))
        if n:
            self.rejected[reason] += n
            self.last_rejection = str(InputError(self.source, field, f"{problem} ({n} samples)"))

    def _count_mask_idx(self, idx: np.ndarray, reason: str, field: str, problem: str) -> None:
        if idx.size:
            self.rejected[reason] += int(idx.size)
            self.last_rejection = str(InputError(self.source, field, f"{problem} ({idx.size} samples)"))


BATCH_SLACK = 0.02
"""Share of a sample window's nominal frame count a batch may miss.

A real IMU's clock drifts (999.8 Hz is "1 kHz"), the first frame falls
anywhere after the window opens, and a zero stamp at boot is refused, so a
window rarely holds exactly rate x sample_s frames. A batch therefore takes
the first 98 % of them; the tail of the window is left unused (counted as
``partial`` in ``Windower.discarded``).
"""


def batch_samples(rate_hz: float, sample_s: float) -> int:
    """Samples per batch for a sample window of ``sample_s`` at ``rate_hz`` (see ``BATCH_SLACK``)."""
    # A rate measured from stamps (999.9999999 Hz) must give the same length as the nominal one.
    n = int(rate_hz * sample_s * (1.0 - BATCH_SLACK) + 1e-6)
    if n < 2:
        raise ValueError(f"batch: rate_hz {rate_hz} x sample_s {sample_s} gives fewer than 2 samples")
    return n
