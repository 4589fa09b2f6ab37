"""Scoring a robot's long window as segments, robust to a knock (numpy only; runs on the robot).

A robot's sample window lasts seconds; a knock (a bump, a dropped tote) rings for a few hundred ms of it,
a bearing defect repeats through all of it. So a window of ``window_s`` seconds is cut into
:func:`segments_for` = round(window_s / :data:`SEGMENT_S`) equal segments, each scored by the model like
a window (its own features, the machine's normalisation, the engine), and the window's score is the
:data:`SEGMENT_QUANTILE` quantile of its segments' scores (with 5 segments: the second lowest), each
segment's score being its worst channel's. A knock lifts one or two segments and not that quantile; a
defect lifts them all. The threshold is fitted on the same quantile of held-out healthy windows
(``core.calibration.calibrate_features``), so it keeps its false-alarm target.

**Opt-in** (``vibration-anomaly calibrate --segments auto``; ``evaluate --segments auto`` measures it):
it costs about 3 ms more per awake cycle at 1 kHz (5 frontend segments and 15 engine rows instead of 3),
which would take the cycle over its 10 ms budget as the default. Measured in docs/MODEL.md ("Scoring
a long window as segments"). A window of about 1.5 s or less is one segment. A calibration records its
``extra.segments``; one without it is scored whole.
"""

from __future__ import annotations

import numpy as np

SEGMENT_S = 1.0
"""Seconds per segment (the model was trained on 0.1-0.2 s windows; a knock rings for a few hundred ms)."""
SEGMENT_QUANTILE = 0.25
"""The window's score: this quantile of its segments' scores (linear interpolation; 5 segments: the 2nd lowest)."""
MAX_SEGMENTS = 64


def segments_for(window_samples: int, fs_hz: float) -> int:
    """How many segments a window of ``window_samples`` at ``fs_hz`` is scored as (1: whole)."""
    return int(min(MAX_SEGMENTS, max(1, round(window_samples / fs_hz / SEGMENT_S))))


def split_segments(windows: np.ndarray, segments: int) -> np.ndarray:
    """(N, n, C) -> (N x segments, n // segments, C), window-major; the last n % segments samples dropped."""
    w = np.asarray(windows)
    if segments == 1:
        return w
    m = w.shape[1] // segments
    return w[:, : m * segments].reshape(w.shape[0] * segments, m, *w.shape[2:])


def reduce_segments(scores: np.ndarray, segments: int) -> np.ndarray:
    """(N x segments, ...) window-major segment scores -> (N, ...) window scores (:data:`SEGMENT_QUANTILE`)."""
    s = np.asarray(scores, dtype=np.float64)
    if segments == 1:
        return s
    return np.quantile(s.reshape(-1, segments, *s.shape[1:]), SEGMENT_QUANTILE, axis=1)
