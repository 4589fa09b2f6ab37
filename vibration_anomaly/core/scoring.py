"""Scoring and the alarm vote (numpy only; runs on the robot).

* ``Scorer``: window -> frontend -> normalise (the machine's ``Calibration``) ->
  engine -> score; the engine must already be awake (the detector owns the duty
  cycle, not the scorer).
* ``AlarmVoter``: the k-of-n rule that turns per-window verdicts into an alarm;
  ``false_alarms_per_month`` gives the expected false-alarm rate of a vote.

The per-machine calibration (``Calibration``, ``calibrate`` and its steps) lives
in ``core.calibration``; its names are re-exported here for older imports.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vibration_anomaly.core.calibration import (
    CALIBRATION_VERSION,
    MAX_CALIBRATION_BYTES,
    MAX_FS_HZ,
    MAX_WINDOW_S,
    Z_CLIP,
    Calibration,
    calibrate,
    calibrate_features,
    fit_normalisation,
    threshold_from_scores,
)
from vibration_anomaly.core.calibration.fit import _Frontend, _Infer
from vibration_anomaly.core.calibration.segments import reduce_segments, split_segments
from vibration_anomaly.errors import InputError

__all__ = [
    # the scorer and the vote
    "AlarmVoter",
    "Scorer",
    "WindowScore",
    "alarm_onset_probability",
    "false_alarms_per_month",
    # re-exported from core.calibration (import them from there)
    "CALIBRATION_VERSION",
    "MAX_CALIBRATION_BYTES",
    "MAX_FS_HZ",
    "MAX_WINDOW_S",
    "Z_CLIP",
    "Calibration",
    "calibrate",
    "calibrate_features",
    "fit_normalisation",
    "threshold_from_scores",
]


@dataclass(frozen=True)
class WindowScore:
    """One scored window (not the detector's voted ``core.detector.Verdict``): its score, the machine's threshold and whether it crossed it."""

    score: float
    threshold: float
    above: bool
    channel_scores: tuple[float, ...] = ()
    knocked_axes: tuple[int, ...] = ()  # axes a knock was cut out of before scoring (core.knock_gate)
    not_scored: str = ""  # why it was not scored (a knock left in: knock_gate.uncut_knock); score NaN

    @property
    def ratio(self) -> float:
        """Score relative to the threshold (> 1 means above); comparable across machines."""
        return self.score / self.threshold if self.threshold > 0 else float("inf")


MAX_FRONTEND_CHANNELS = 16
"""``model.frontend_config.validate_window``'s limit on channels per call."""


class Scorer:
    """Window -> features -> per-machine normalisation -> engine -> score.

    The engine must already be awake: waking and sleeping belong to the duty
    cycle, and a scorer that woke engines itself would hide their cost.
    """

    def __init__(self, engine: _Infer, frontend: _Frontend, calibration: Calibration) -> None:
        self.engine = engine
        self.frontend = frontend
        self.calibration = calibration

    def _segment_z(
        self, window: np.ndarray, fs_hz: float, source: str
    ) -> tuple[np.ndarray, tuple[int, ...], str]:
        """(segments, channels, T, F) normalised features of one window (``core.calibration.segments``),
        the axes the frontend cut a knock out of (``core.knock_gate``), and why the window is not to be
        scored ("" when it is): a whole window with a knock left in (``knock_gate.uncut_knock``). Scored
        as segments, the segments' quantile already keeps one knock out of the score."""
        self.calibration.check_window(int(np.asarray(window).shape[0]), fs_hz, source)
        k = self.calibration.segments
        segs = split_segments(np.asarray(window)[None], k)  # (k, n // k, C)
        # One frontend call with the segments side by side as channels (features are per channel): the
        # same features as k calls, at 4.2 instead of 7.2 ms for a 5 s 3-axis 1 kHz window.
        c = segs.shape[2]
        per_call = max(1, MAX_FRONTEND_CHANNELS // c)  # the frontend takes up to 16 channels a call
        parts: list[np.ndarray] = []
        knocked: set[int] = set()
        for i in range(0, k, per_call):
            parts.append(self.frontend(np.concatenate(list(segs[i : i + per_call]), axis=1), fs_hz, source))
            knocked.update(j % c for j in getattr(self.frontend, "knocked_channels", ()))
        left = getattr(self.frontend, "uncut_knock", None) if k == 1 else None
        feats = np.concatenate(parts)
        z = self.calibration.normalise(feats.reshape(k, c, *feats.shape[1:]), source)
        return z, tuple(sorted(knocked)), "" if left is None else left.describe(fs_hz)

    def _segment_scores(
        self, window: np.ndarray, fs_hz: float, source: str
    ) -> tuple[np.ndarray, tuple[int, ...], str]:
        z, knocked, skip = self._segment_z(window, fs_hz, source)
        k, c = z.shape[:2]
        if skip:
            return np.full((k, c), np.nan), knocked, skip
        out = np.asarray(
            self.engine.infer(np.ascontiguousarray(z.reshape(k * c, *z.shape[2:]))), dtype=np.float64
        ).reshape(-1)
        if out.shape[0] != k * c:
            raise InputError(source, "engine output", f"expected {k * c} scores, got shape {out.shape}")
        return out.reshape(k, c), knocked, ""

    def segment_scores(self, window: np.ndarray, fs_hz: float, source: str = "window") -> np.ndarray:
        """(segments, channels) scores of one window (``core.calibration.segments``; 1 segment: the whole);
        NaN for a window not to be scored (``WindowScore.not_scored``)."""
        return self._segment_scores(window, fs_hz, source)[0]

    def channel_scores(self, window: np.ndarray, fs_hz: float, source: str = "window") -> np.ndarray:
        """(channels,) each channel's score over the segments (for naming the worst axis)."""
        seg = self.segment_scores(window, fs_hz, source)
        return np.asarray(reduce_segments(seg, self.calibration.segments)).reshape(-1)

    def score(self, window: np.ndarray, fs_hz: float, source: str = "window") -> float:
        """Model score of one window (n_samples, n_channels): the segments' quantile of their worst channel
        (NaN: not to be scored, ``WindowScore.not_scored``)."""
        s = self.segment_scores(window, fs_hz, source)
        return float(reduce_segments(s.max(axis=1), self.calibration.segments)[0])

    def score_batch(self, windows: Sequence[np.ndarray] | np.ndarray, fs_hz: float) -> np.ndarray:
        """Scores of several windows in one engine call."""
        if len(windows) == 0:
            return np.zeros(0)
        k = self.calibration.segments
        zz = np.concatenate([self._segment_z(w, fs_hz, f"window {i}")[0] for i, w in enumerate(windows)])
        # every window scored, a knock left in or not: for tools that compare whole sets (not the robot)
        n, c = zz.shape[:2]
        out = np.asarray(self.engine.infer(np.ascontiguousarray(zz.reshape(n * c, *zz.shape[2:]))))
        return np.asarray(reduce_segments(out.astype(np.float64).reshape(n, c).max(axis=1), k))

    def score_window(self, window: np.ndarray, fs_hz: float, source: str = "window") -> WindowScore:
        seg, knocked, skip = self._segment_scores(window, fs_hz, source)
        k = self.calibration.segments
        s = float(reduce_segments(seg.max(axis=1), k)[0])
        cs = np.asarray(reduce_segments(seg, k)).reshape(-1)
        thr = self.calibration.threshold
        return WindowScore(
            score=s,
            threshold=thr,
            above=s > thr,
            channel_scores=tuple(float(v) for v in cs),
            knocked_axes=knocked,
            not_scored=skip,
        )


class AlarmVoter:
    """k-of-n vote over consecutive window verdicts, latched.

    Rule: the alarm is raised when at least ``k`` of the last ``n`` verdicts
    were above threshold, and stays raised (latched) until ``reset()``, so an
    operator sees it even if the fault is intermittent. Knocks and bumps give
    isolated exceedances and do not raise it; a bearing defect repeats in every
    window and does. With independent healthy windows each above threshold
    with probability p, ``false_alarms_per_month`` gives the expected rate.
    """

    def __init__(self, k: int = 4, n: int = 6) -> None:
        if not (isinstance(k, int) and isinstance(n, int)) or not 1 <= k <= n:
            raise InputError("AlarmVoter", "k/n", f"expected integers with 1 <= k <= n, got k={k!r} n={n!r}")
        self.k = k
        self.n = n
        self._recent: deque[bool] = deque(maxlen=n)
        self._latched = False
        self.raised_at: int | None = None
        self.updates = 0

    @property
    def latched(self) -> bool:
        return self._latched

    @property
    def votes(self) -> int:
        """How many of the last n verdicts were above threshold."""
        return sum(self._recent)

    def update(self, score_above_threshold: bool) -> bool:
        """Add one verdict; return whether the alarm is (now or still) raised."""
        self._recent.append(bool(score_above_threshold))
        self.updates += 1
        if not self._latched and sum(self._recent) >= self.k:
            self._latched = True
            self.raised_at = self.updates
        return self._latched

    def restore(self) -> None:
        """Start latched: a durable latch (``core.latch``) said the alarm was raised before a restart."""
        self._latched = True

    def reset(self) -> None:
        """Clear the latch and the history (an operator acknowledged, or the bearing was replaced)."""
        self._recent.clear()
        self._latched = False
        self.raised_at = None


def alarm_onset_probability(p: float, k: int, n: int) -> float:
    """Probability per step that a k-of-n vote over independent Bernoulli(p) verdicts goes from off to on.

    Exact, in closed form: of the n + 1 verdicts that decide the count now and
    one step before, the oldest must be below, the newest above and the n - 1
    shared ones hold exactly k - 1 above: ``C(n-1, k-1) p^k (1-p)^(n-k+1)``
    (enumerating the 2^(n+1) patterns gives the same and would not finish for
    a bundle's n of a few dozen).
    """
    if not (isinstance(k, int) and isinstance(n, int)) or not 1 <= k <= n:
        raise InputError(
            "alarm_onset_probability", "k/n", f"expected integers with 1 <= k <= n, got k={k!r} n={n!r}"
        )
    return math.comb(n - 1, k - 1) * p**k * (1 - p) ** (n - k + 1)


def false_alarms_per_month(p: float, k: int, n: int, inferences_per_hour: float = 60.0) -> float:
    """Expected alarm onsets per 30-day month for a per-window false-alarm probability p (windows independent)."""
    return alarm_onset_probability(p, k, n) * inferences_per_hour * 24 * 30
