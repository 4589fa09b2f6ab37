"""Knocks out of a window before its features are taken (numpy only; runs on the robot).

A knock (a wheel over a floor joint, a bump against a rack) is one broadband transient, often tens of
times the window's level at the robot's sensor rates. The frontend cuts each band out of the whole
window with an FFT mask, so a knock's energy leaks from its few milliseconds into every sub-frame of
the quiet bands and lifts the window's medians: before this gate, 39 % of generated-robot windows with
one knock each crossed a 1 % threshold at 3.2 kHz (``evaluate --sensitivity``, docs/MODEL.md).

What the gate does, per channel, on the analysis band only (content below the frontend's high-pass is
robot motion and is left alone):

1. **Find.** Frames of ``FRAME_S`` of the first difference (a cheap high-pass). A frame whose energy is
   over ``factor`` x the channel's 80th-percentile frame is a knock's seed. A bearing defect repeating
   at 10 Hz or faster lifts at least one frame in five, so the 80th percentile rises with it and its
   impacts are never seeds; one knock lifts a frame or two of a long window. Most windows stop here.
2. **Extent.** From each seed, the run of frames whose high-passed energy stays over ``HOLD`` x the
   median frame (the knock's ringing tail), widened by one frame each side. A run longer than
   ``MAX_FRACTION`` of the window is not a knock and is left as it is.
3. **Tones kept.** The channel's tones (shaft, gear, electrical lines, ``core.envelope``'s rule) are
   estimated from the frames outside the runs and carried through them unchanged: cutting a tone
   leaves a dip in its band's envelope that reads as impulsiveness.
4. **Replaced.** The tone-free remainder inside a run is replaced by the same length just before it
   (after it at the window's start), cross-faded over ``RAMP_S`` at both ends so the splice itself
   does not click. A defect's impacts in the copied stretch carry on; the knock is gone.

A window without seeds is returned unchanged (the same array), so healthy calibration windows and the
features the model was trained on are untouched. A calibration records the gate's factor
(``FrontendConfig.knock_gate``; 0 turns it off, and a calibration made before the gate existed is
scored without it).

**A knock the gate could not cut** (:func:`uncut_knock`). In a short window (the 0.2 s windows of a
laboratory recording) a knock rings over more than ``MAX_FRACTION`` of it and is left in, or is cut and
its ringing outside the cut still lifts the window; at 8x the healthy RMS it then decides the window's
score, and when every window is knocked the vote alarms (27 voted alarms at 3.2 kHz on FEMTO before this
check). Such a window is **not scored**: the detector reports it (a ``skip`` event, reason ``knock``) and
the vote does not count it. The test, per channel, on the window as it came, on frames of
``UNCUT_FRAME_S`` of the first difference:

* the loudest frame is over ``UNCUT_LEVEL`` x the median frame (energy), and
* it dominates the rest of the window: over ``UNCUT_DOMINANCE`` x every frame outside its own ringing
  (the run of frames over ``HOLD`` x the median around it, one quieter frame inside it bridged, widened
  by one frame each side), a run of at most half the window (longer is a change of level, such as two
  recordings spliced, not one event); where the first difference says no for a channel whose loudest
  frame is over the level, the same test is made above the analysis band's lower edge (a knock of low
  modes, which the difference weakens, stands out there), and
* the gate did not cut it: no replaced stretch of that channel holds its loudest frame while being at
  most two of the frontend's sub-frames long (``frontend.read_window``). The features are medians over
  eight sub-frames; such a stretch touches at most three of them, so the middle two values still come
  from sub-frames the knock never reached. In a robot's 5 s window the knocks the gate cuts pass (a stretch of
  up to 1.2 s); in a 0.2 s window the gate's shortest stretch (three 20 ms frames) is already too long.

One event over a quiet window is a knock; a bearing defect repeats, so its other impacts are about as
loud as its loudest and the second condition fails however impulsive the defect is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vibration_anomaly.core import envelope

FRAME_S = 0.02
SEED_QUANTILE = 0.8
HOLD = 2.0
MAX_FRACTION = 1 / 3
RAMP_S = 0.02
MIN_FRAMES = 8
TONE_FACTOR = envelope.TONE_FACTOR  # bound here: a tool that changes the diagnosis' factor leaves the gate's
UNCUT_FRAME_S = 0.01
UNCUT_MIN_FRAME = 8
UNCUT_LEVEL = 8.0
UNCUT_DOMINANCE = 10.0


@dataclass(frozen=True)
class GatedRun:
    """One stretch replaced: channel, first and last sample (exclusive)."""

    channel: int
    start: int
    stop: int


def _frame_energy(y: np.ndarray, frame: int, frames: int) -> np.ndarray:
    """(frames, channels) mean square of each whole frame (the tail shorter than a frame is not read)."""
    y3 = y[: frames * frame].reshape(frames, frame, -1)
    return np.einsum("ijk,ijk->ik", y3, y3) / frame  # a strided mean over axis 1 is 3x slower


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _tones(y: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The tones of each row of ``y`` (k, n), estimated where ``keep`` is 1 (the rest muted), over the whole length."""
    kept = keep.mean(axis=1)
    spec = np.fft.rfft(y * keep, axis=1)
    tones = np.fft.irfft(spec - envelope.clip_tones(spec, TONE_FACTOR), y.shape[1], axis=1)
    tones /= np.maximum(kept, 1e-12)[:, None]
    tones[kept <= 0.5] = 0.0  # too little left to tell a tone from the knock
    return tones


def _above(rows: np.ndarray, fs_hz: float, cut_hz: float) -> np.ndarray:
    """Each row of ``rows`` (k, n) less its content below ``cut_hz`` (the analysis band's lower edge)."""
    n = rows.shape[-1]
    spec = np.fft.rfft(rows, axis=-1)
    spec[..., int(np.searchsorted(np.fft.rfftfreq(n, 1.0 / fs_hz), cut_hz)) :] = 0  # bins >= cut_hz
    return rows - np.fft.irfft(spec, n, axis=-1)


def _quantile_rows(e: np.ndarray, q: float) -> np.ndarray:
    """Per column, the value at rank ``int(q * (rows - 1))`` (no interpolation: a partition, not a sort)."""
    k = int(q * (e.shape[0] - 1))
    return np.partition(e, k, axis=0)[k]


def knock_runs(
    x: np.ndarray, fs_hz: float, cut_hz: float, factor: float
) -> tuple[list[GatedRun], np.ndarray | None]:
    """The stretches a knock covers in ``x`` (n, channels), and the high-passed ``x`` (None when there are none)."""
    n, channels = x.shape
    frame = max(16, int(round(FRAME_S * fs_hz)))
    frames = n // frame
    if frames < MIN_FRAMES or factor <= 0:
        return [], None
    used = frames * frame
    diff = x[1 : used + 1] - x[:used] if used < n else np.diff(x, axis=0, append=x[-1:])
    e = _frame_energy(diff, frame, frames)
    seed = e > factor * _quantile_rows(e, SEED_QUANTILE)
    hit = np.flatnonzero(seed.any(axis=0))
    if not len(hit):
        return [], None
    high = np.zeros_like(x, dtype=np.float64)
    high[:, hit] = _above(np.ascontiguousarray(x[:, hit].T), fs_hz, cut_hz).T  # FFTs along contiguous rows
    eh = _frame_energy(high[:, hit], frame, frames)
    ringing = seed[:, hit] | (eh > HOLD * _quantile_rows(eh, 0.5))
    out: list[GatedRun] = []
    for j, c in enumerate(hit.tolist()):
        span = np.zeros(frames, dtype=bool)
        for a, b in _runs(ringing[:, j]):
            if seed[a:b, c].any():
                span[max(a - 1, 0) : b + 1] = True
        for a, b in _runs(span):
            start, stop = a * frame, (n if b == frames else b * frame)
            if stop - start <= MAX_FRACTION * n:
                out.append(GatedRun(c, start, stop))
    return out, high


def suppress_knocks(x: np.ndarray, fs_hz: float, cut_hz: float, factor: float) -> np.ndarray:
    """``x`` (n, channels) float with each knock's stretch replaced (module doc); ``x`` itself when none."""
    return gate_knocks(x, fs_hz, cut_hz, factor)[0]


def gate_knocks(
    x: np.ndarray, fs_hz: float, cut_hz: float, factor: float
) -> tuple[np.ndarray, list[GatedRun]]:
    """:func:`suppress_knocks`, and the stretches it replaced."""
    runs, high = knock_runs(x, fs_hz, cut_hz, factor)
    if not runs or high is None:
        return x, []
    n = x.shape[0]
    chans = sorted({r.channel for r in runs})
    col = {c: j for j, c in enumerate(chans)}
    keep = np.ones((len(chans), n))
    for r in runs:
        keep[col[r.channel], r.start : r.stop] = 0.0
    rest = high[:, chans]
    rest -= _tones(np.ascontiguousarray(rest.T), keep).T
    new = rest.copy()
    ramp_len = max(2, int(round(RAMP_S * fs_hz)))
    for r in runs:
        j, length = col[r.channel], r.stop - r.start
        src = r.start - length if r.start >= length else r.stop
        clear = src + length <= n and bool(keep[j, src : src + length].all())
        fill = rest[src : src + length, j] if clear else 0.0
        k = min(ramp_len, length // 2)
        w = np.zeros(length)  # weight of what was there
        if k:
            up = 0.5 - 0.5 * np.cos(np.pi * np.arange(k) / k)
            w[:k], w[length - k :] = 1.0 - up, up
        new[r.start : r.stop, j] = w * rest[r.start : r.stop, j] + (1.0 - w) * fill
    out = np.array(x, dtype=np.float64, copy=True)
    out[:, chans] += new - rest
    return out, runs


@dataclass(frozen=True)
class UncutKnock:
    """A knock left in a window (:func:`uncut_knock`): its channel, samples, and loudness over the median."""

    channel: int
    start: int
    stop: int
    level: float  # the loudest frame's mean square / the channel's median frame's

    def describe(self, fs_hz: float) -> str:
        """One line for the ``skip`` event and the diagnostic."""
        return (
            f"knock on axis {self.channel} not cut out ({self.level**0.5:.1f}x the window's median level, "
            f"{self.start / fs_hz:.3f}-{self.stop / fs_hz:.3f} s, one event dominating the window): not scored"
        )


def _one_event(ec: np.ndarray, med: float | None = None) -> tuple[int, int, int, float] | None:
    """(first frame, stop frame, loudest frame, its level over the median) of the one event that dominates
    the frame energies ``ec`` (module doc); None when none does. ``med``: their median, when known."""
    med = float(_quantile_rows(ec[:, None], 0.5)[0]) if med is None else med
    p = int(ec.argmax())
    if not (med > 0 and ec[p] > UNCUT_LEVEL * med):
        return None
    loud = ec > HOLD * med
    loud[1:-1] |= loud[:-2] & loud[2:]  # one quieter frame inside a ringing (its modes beat) stays in it
    a, b = p, p + 1
    while a > 0 and loud[a - 1]:
        a -= 1
    while b < len(ec) and loud[b]:
        b += 1
    if 2 * (b - a) > len(ec):
        return None  # loud for half the window: a change of level (bursts spliced), not one event
    rest = np.concatenate((ec[: max(a - 1, 0)], ec[b + 1 :]))
    if len(rest) and ec[p] <= UNCUT_DOMINANCE * rest.max():
        return None  # another event as loud: a repeating source (a defect), not one knock
    return a, b, p, float(ec[p] / med)


def uncut_knock(
    x: np.ndarray,
    fs_hz: float,
    cut: list[GatedRun] | tuple[GatedRun, ...] = (),
    max_cut: int = 0,
    band_hz: float = 0.0,
) -> UncutKnock | None:
    """The loudest single event that dominates its channel and was not cut (module doc); None when none.

    ``x`` (n, channels) is the window before :func:`gate_knocks`; ``cut`` the stretches it replaced, of
    which those at most ``max_cut`` samples long count as cut where they hold the event's loudest frame.
    ``band_hz`` > 0: a channel whose loudest frame is over the level but not dominant in the first
    difference (a knock of low modes, which the difference weakens) is looked at again above ``band_hz``
    (the analysis band). Costs well under 0.1 ms for a clean 5 s, 3-axis window at 1 kHz.
    """
    n, channels = x.shape
    frame = max(UNCUT_MIN_FRAME, int(round(UNCUT_FRAME_S * fs_hz)))
    frames = (n - 1) // frame
    if frames < MIN_FRAMES:
        return None
    used = frames * frame
    e = _frame_energy(x[1 : used + 1] - x[:used], frame, frames)
    mid = int(0.5 * (frames - 1))  # the median's rank, as _quantile_rows (no interpolation)
    part = np.partition(e, (mid, frames - 1), axis=0)  # the median and the loudest in one partition
    med, top = part[mid], part[-1]
    worst: UncutKnock | None = None
    for c in np.flatnonzero((med > 0) & (top > UNCUT_LEVEL * med)).tolist():
        ev = _one_event(e[:, c], float(med[c]))
        if ev is None and band_hz > 0:
            high = _above(np.ascontiguousarray(x[:, c])[None], fs_hz, band_hz)[0]
            ev = _one_event(_frame_energy(high[:used, None], frame, frames)[:, 0])
        if ev is None:
            continue
        a, b, p, level = ev
        if any(
            r.channel == c and r.start <= p * frame and (p + 1) * frame <= r.stop <= r.start + max_cut
            for r in cut
        ):
            continue  # the gate replaced its loudest frame, in a stretch short enough to trust
        if worst is None or level > worst.level:
            worst = UncutKnock(c, a * frame, b * frame, level)
    return worst
