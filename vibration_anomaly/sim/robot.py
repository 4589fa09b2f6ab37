"""A simulated warehouse robot: a 3-axis IMU that the demo, the soak and the tests can run for hours.

The signal (linear acceleration in m/s^2, like sensor_msgs/Imu) is the sum of

* gravity on z and the robot's own motion: a few low-frequency components
  (< 20 Hz) whose amplitudes wander as the robot drives and stops;
* wheel-motor hum at the shaft frequency and its harmonics;
* broadband sensor noise;
* occasional knocks (floor joints): short broadband transients on all axes,
  which a good detector must NOT call a bearing fault;
* optionally, from ``fault_start_s``, a bearing defect: one impact per ball
  pass at the defect frequency (with slip jitter), each ringing a structural
  resonance that decays; the impact amplitude grows with time.

Frames are generated in 1 s blocks from a generator seeded by (seed, block),
so any interval is reproducible whatever order it is asked in.

The firmware side is modelled too: during a connectivity hiccup it buffers
frames and releases them in one burst when the link comes back, and the
middleware's keep-last queue keeps only the newest ``depth`` of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class FaultSpec:
    start_s: float
    defect_hz: float = 86.0  # outer-race ball pass at a 24 Hz shaft (BPFO ~ 3.58 x shaft)
    resonance_hz: float = 310.0  # structural resonance the impacts excite (below the 500 Hz Nyquist)
    damping: float = 0.06  # damping ratio of that resonance
    slip: float = 0.015  # random jitter of the ball-pass interval (fraction)
    initial_peak: float = 1.0  # impact peak at onset, as a multiple of the healthy RMS on that axis
    final_peak: float = 6.0  # impact peak once fully grown
    growth_s: float = 1800.0  # time from onset to full size


@dataclass(frozen=True)
class RobotConfig:
    rate_hz: float = 1000.0
    seed: int = 0
    noise: float = 0.05  # m/s^2 rms sensor noise per axis
    shaft_hz: float = 24.0
    speed_swing: float = 0.0  # the shaft's speed swings by +-this fraction of shaft_hz (0: steady) ...
    speed_swing_s: float = 20.0  # ... over this period (s): a robot speeding up and slowing down
    knock_rate_hz: float = 0.05  # mean knocks per second
    fault: FaultSpec | None = None
    hiccups: tuple[tuple[float, float], ...] = ()  # (start_s, end_s) when the link is down


@dataclass
class Delivery:
    """What reaches a subscriber over one interval: chunks in arrival order and what was lost."""

    chunks: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    lost_keep_last: int = 0  # buffered frames the keep-last queue discarded during a burst
    burst_frames: int = 0  # frames that arrived late, in a firmware burst


_BLOCK_S = 1.0
_G = 9.80665


class SimulatedRobot:
    def __init__(self, config: RobotConfig) -> None:
        self.cfg = config
        self.n_block = int(round(config.rate_hz * _BLOCK_S))
        rng = np.random.default_rng([config.seed, 0xB0B])
        # Fixed per-robot character: motion frequencies and axis mixing.
        self._motion_hz = rng.uniform(0.3, 15.0, size=(3, 4))
        self._motion_phase = rng.uniform(0, 2 * np.pi, size=(3, 4))
        self._motion_amp = rng.uniform(0.05, 0.4, size=(3, 4))
        self._hum_amp = rng.uniform(0.02, 0.06, size=(3, 3))
        self._fault_axis_gain = np.array([1.0, 0.6, 0.3])
        self._healthy_rms = None

    @property
    def dt(self) -> float:
        return 1.0 / self.cfg.rate_hz

    # -- signal ------------------------------------------------------------------
    def _block(self, b: int) -> np.ndarray:
        cfg = self.cfg
        n = self.n_block
        rng = np.random.default_rng([cfg.seed, b])
        t = (b * n + np.arange(n)) / cfg.rate_hz
        x = np.empty((n, 3), dtype=np.float64)
        # Motion: amplitude wanders slowly (driving / stopping) per 1 s block.
        drive = 0.5 + 0.5 * math.sin(2 * math.pi * b / 97.0 + cfg.seed)
        for ax in range(3):
            comp = self._motion_amp[ax] * drive
            x[:, ax] = (
                np.sin(2 * np.pi * self._motion_hz[ax][:, None] * t + self._motion_phase[ax][:, None])
                * comp[:, None]
            ).sum(0)
            for h in range(3):
                if cfg.speed_swing:
                    x[:, ax] += self._hum_amp[ax, h] * np.sin(2 * np.pi * (h + 1) * self.shaft_turns(t) + h)
                else:
                    x[:, ax] += self._hum_amp[ax, h] * np.sin(2 * np.pi * cfg.shaft_hz * (h + 1) * t + h)
        x += rng.normal(0.0, cfg.noise, size=(n, 3))
        x[:, 2] += _G
        # Knocks: short decaying broadband transients.
        n_knocks = rng.poisson(cfg.knock_rate_hz * _BLOCK_S)
        for _ in range(n_knocks):
            i0 = int(rng.integers(0, n))
            L = min(n - i0, int(0.03 * cfg.rate_hz))
            k = np.arange(L)
            shape = np.exp(-k / (0.006 * cfg.rate_hz)) * rng.normal(0, 1.0, size=L)
            x[i0 : i0 + L] += np.outer(shape, rng.uniform(0.3, 1.0, size=3))
        if cfg.fault is not None:
            x += self._fault(b, t, rng)
        return x

    def shaft_hz_at(self, t: float | np.ndarray) -> float | np.ndarray:
        """The shaft's speed (Hz) at ``t``: what a JointState on the wheel joint would report."""
        cfg = self.cfg
        return cfg.shaft_hz * (1.0 + cfg.speed_swing * np.sin(2 * np.pi * np.asarray(t) / cfg.speed_swing_s))

    def shaft_turns(self, t: np.ndarray) -> np.ndarray:
        """The shaft's angle at ``t``, in turns from 0 at t = 0 (the integral of :meth:`shaft_hz_at`)."""
        cfg = self.cfg
        w = 2 * np.pi / cfg.speed_swing_s
        return cfg.shaft_hz * (t + cfg.speed_swing * (1.0 - np.cos(w * t)) / w)

    def healthy_rms(self) -> np.ndarray:
        """Per-axis RMS of the healthy vibration (gravity and mean removed), from the first minute."""
        rms = self._healthy_rms
        if rms is None:
            healthy = SimulatedRobot(RobotConfig(**{**self.cfg.__dict__, "fault": None}))
            blocks = np.concatenate([healthy._block(b) for b in range(60)])
            rms = self._healthy_rms = blocks.std(axis=0)
        return rms

    def fault_peak(self, t: float) -> float:
        """Impact peak at time ``t`` as a multiple of the healthy RMS (0 before onset)."""
        f = self.cfg.fault
        if f is None or t < f.start_s:
            return 0.0
        frac = min(1.0, (t - f.start_s) / f.growth_s)
        return f.initial_peak + (f.final_peak - f.initial_peak) * frac

    def _fault(self, b: int, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        f = self.cfg.fault
        assert f is not None
        out = np.zeros((t.size, 3))
        t_start, t_end = float(t[0]), float(t[-1]) + self.dt
        if t_end <= f.start_s:
            return out
        fs = self.cfg.rate_hz
        # Ball passes in this block, with slip jitter; extend back to let earlier rings decay in.
        ring_s = 5.0 / (f.damping * 2 * np.pi * f.resonance_hz)
        period = 1.0 / f.defect_hz
        first = math.ceil(max(f.start_s, t_start - ring_s) / period)
        last = math.floor(t_end / period)
        nominal = [k * period for k in range(first, last + 1)]
        if self.cfg.speed_swing:  # ball passes at equal steps of shaft angle: closer as the shaft speeds up
            grid = np.linspace(max(f.start_s, t_start - ring_s), t_end, 64 + int((t_end - t_start) * fs))
            passes = self.shaft_turns(grid) * (f.defect_hz / self.cfg.shaft_hz)
            k = np.arange(math.ceil(passes[0]), math.floor(passes[-1]) + 1)
            nominal = np.interp(k, passes, grid).tolist()
        jrng = np.random.default_rng([self.cfg.seed, 0xFA17, b])
        rms = self.healthy_rms()
        wd = 2 * np.pi * f.resonance_hz * math.sqrt(1 - f.damping**2)
        decay = f.damping * 2 * np.pi * f.resonance_hz
        for t_nom in nominal:
            t_imp = t_nom + jrng.normal(0.0, f.slip * period)
            if t_imp < f.start_s:
                continue
            i0 = max(0, int(math.ceil((t_imp - t_start) * fs)))
            i1 = min(t.size, int((t_imp + ring_s - t_start) * fs) + 1)
            if i0 >= i1:
                continue
            tau = t[i0:i1] - t_imp
            ring = np.exp(-decay * tau) * np.sin(wd * tau + np.pi / 2)
            out[i0:i1] += np.outer(ring * self.fault_peak(t_imp), rms * self._fault_axis_gain)
        return out

    def frames(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
        """Frames with stamps in [t0, t1): (stamps (n,), accel (n, 3) float32)."""
        rate = self.cfg.rate_hz
        i0 = max(1, math.ceil(t0 * rate - 1e-9))
        i1 = math.ceil(t1 * rate - 1e-9)
        if i1 <= i0:
            return np.empty(0), np.empty((0, 3), dtype=np.float32)
        n = self.n_block
        parts = []
        for b in range(i0 // n, (i1 - 1) // n + 1):
            blk = self._block(b)
            lo = max(i0, b * n) - b * n
            hi = min(i1, (b + 1) * n) - b * n
            parts.append(blk[lo:hi])
        x = np.concatenate(parts).astype(np.float32)
        t = np.arange(i0, i1) / rate
        return t, x

    # -- firmware + middleware ----------------------------------------------------
    def link_down(self, t: float) -> bool:
        return any(a <= t < b for a, b in self.cfg.hiccups)

    def deliver(self, t0: float, t1: float, depth: int) -> Delivery:
        """Frames a subscriber that exists only during [t0, t1) receives.

        Live frames arrive as they are sampled while the link is up. When a
        hiccup ends inside [t0, t1), the firmware releases everything it
        buffered in one burst; the keep-last queue of ``depth`` keeps only the
        newest of those frames.
        """
        out = Delivery()
        cursor = t0
        for a, b in sorted(self.cfg.hiccups):
            if b <= t0 or a >= t1:
                continue
            if a > cursor:
                out.chunks.append(self.frames(cursor, a))
            if b < t1:
                bt, bx = self.frames(a, b)
                if bt.size > depth:
                    out.lost_keep_last += int(bt.size - depth)
                    bt, bx = bt[-depth:], bx[-depth:]
                out.burst_frames += int(bt.size)
                out.chunks.append((bt, bx))
            cursor = max(cursor, b)
        if cursor < t1:
            out.chunks.append(self.frames(cursor, t1))
        return out
