"""Synthetic vibration, numpy only: healthy machines, defect impacts and knocks.

Used to (1) widen training beyond one test rig (other sampling rates, window
lengths, channel counts and spectra), (2) inject incipient faults for the
sensitivity test, (3) generate small datasets for tests.

Physics of an injected bearing defect (McFadden & Smith 1984; Randall &
Antoni 2011, "Rolling element bearing diagnostics - a tutorial"): every time a
rolling element passes the defect, an impact excites a structural resonance
that rings down, ``a * exp(-2 pi zeta f_r t) * sin(2 pi f_r sqrt(1 - zeta^2) t)``.
Impacts repeat at the defect frequency (e.g. BPFO) with a random slip of 1-2 %
of the period (rolling elements do not roll perfectly), and with a small
random amplitude spread. The amplitude ladder is defined as the impact *peak*
over the healthy broadband RMS of the record.

A knock (a robot wheel on a floor joint) is one broadband transient: a short
impulse of a few hundred microseconds exciting several resonances at once,
once per window at most.

``impact_train``, ``defect_impacts`` and ``knock`` place their resonances
relative to the sampling rate (training and the older tests use them).
The sensitivity ladder uses ``physical_defect`` and ``physical_knock``
instead: frequencies in Hz of the structure (``ImpactPhysics``, ``KNOCK_HZ``),
injected at the recording's rate, so a sensor model applied afterwards
removes what a real sensor at that rate would not see (issue 16).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MachineSpec:
    """A random healthy machine: spectral shape, tones, motion and gain."""

    fs_hz: float
    channels: int
    resonances: tuple[tuple[float, float, float], ...]  # (f_hz, q, gain)
    floor: float
    tilt: float
    tones: tuple[tuple[float, float], ...]  # (f_hz, amplitude relative to rms)
    motion: float
    gain: float
    sporadic_rate_hz: float


def random_machine(rng: np.random.Generator, fs_hz: float, channels: int = 1) -> MachineSpec:
    nyq = fs_hz / 2
    nres = int(rng.integers(1, 6))
    res = tuple(
        (float(rng.uniform(0.05, 0.9) * nyq), float(rng.uniform(3, 40)), float(10 ** rng.uniform(-0.5, 1.0)))
        for _ in range(nres)
    )
    shaft = float(rng.uniform(5, 60))
    tones = tuple(
        (shaft * h, float(10 ** rng.uniform(-1.5, -0.3))) for h in range(1, int(rng.integers(1, 5)) + 1)
    )
    return MachineSpec(
        fs_hz=fs_hz,
        channels=channels,
        resonances=res,
        floor=float(10 ** rng.uniform(-1.0, 0.0)),
        tilt=float(rng.uniform(-1.0, 0.5)),
        tones=tones,
        motion=float(rng.choice([0.0, 0.0, rng.uniform(0.5, 5.0)])),
        gain=float(10 ** rng.uniform(-2, 1)),
        sporadic_rate_hz=float(rng.choice([0.0, 0.0, 0.0, rng.uniform(0.2, 3.0)])),
    )


def _shape(spec: MachineSpec, f: np.ndarray) -> np.ndarray:
    nyq = spec.fs_hz / 2
    fr = np.maximum(f, 1e-3) / nyq
    h = spec.floor * fr**spec.tilt
    for f0, q, g in spec.resonances:
        h = h + g / (1 + ((f - f0) / (f0 / (2 * q))) ** 2)
    return h


def healthy_signal(
    rng: np.random.Generator, spec: MachineSpec, n_samples: int, drift: float = 0.1
) -> np.ndarray:
    """One healthy stretch (n_samples, channels), unit-ish broadband RMS times the machine gain."""
    fs = spec.fs_hz
    f = np.fft.rfftfreq(n_samples, 1 / fs)
    h = _shape(spec, f)
    t = np.arange(n_samples) / fs
    out = np.empty((n_samples, spec.channels))
    for c in range(spec.channels):
        w = rng.standard_normal(len(f)) + 1j * rng.standard_normal(len(f))
        x = np.fft.irfft(w * h * rng.uniform(0.8, 1.25, size=len(f)) ** 0.5, n=n_samples)
        x /= x.std() + 1e-12
        for f0, a in spec.tones:
            if f0 < fs / 2:
                x += a * np.sqrt(2) * np.sin(2 * np.pi * f0 * t + rng.uniform(0, 2 * np.pi))
        if spec.sporadic_rate_hz > 0:
            k = rng.poisson(spec.sporadic_rate_hz * n_samples / fs)
            for _ in range(k):
                x += impact_train(
                    rng,
                    fs,
                    n_samples,
                    [float(rng.uniform(0, n_samples / fs))],
                    float(rng.uniform(0.1, 0.4) * fs),
                    float(rng.uniform(1.5, 4.0)),
                )
        if spec.motion > 0:
            for _ in range(3):
                fm = rng.uniform(0.2, min(15.0, fs / 20))
                x += spec.motion * rng.uniform(0.2, 1) * np.sin(2 * np.pi * fm * t + rng.uniform(0, 6.3))
        out[:, c] = x * spec.gain * (1 + drift * rng.standard_normal() * 0.5)
    return out


def impact_train(
    rng: np.random.Generator,
    fs_hz: float,
    n_samples: int,
    times_s: list[float] | np.ndarray,
    f_res_hz: float,
    peak: float,
    zeta: float = 0.05,
    amp_spread: float = 0.1,
) -> np.ndarray:
    """Sum of decaying resonance ring-downs starting at ``times_s``, each with the given peak amplitude."""
    x = np.zeros(n_samples)
    tau = 1.0 / (2 * np.pi * zeta * f_res_hz)
    ln = min(n_samples, int(8 * tau * fs_hz) + 2)
    tt = np.arange(ln) / fs_hz
    wd = 2 * np.pi * f_res_hz * np.sqrt(1 - zeta**2)
    ring = np.exp(-tt / tau) * np.sin(wd * tt)
    ring /= np.abs(ring).max() + 1e-12
    for t0 in times_s:
        i0 = int(round(t0 * fs_hz))
        if i0 >= n_samples or i0 < 0:
            continue
        m = min(ln, n_samples - i0)
        x[i0 : i0 + m] += peak * (1 + amp_spread * rng.standard_normal()) * ring[:m]
    return x


def defect_impacts(
    rng: np.random.Generator,
    fs_hz: float,
    n_samples: int,
    defect_hz: float,
    f_res_hz: float,
    peak: float,
    slip: float = 0.015,
    zeta: float = 0.05,
) -> np.ndarray:
    """Periodic impacts at ``defect_hz`` with slip jitter, ringing a resonance at ``f_res_hz`` (1-D)."""
    period = 1.0 / defect_hz
    t = rng.uniform(0, period)
    times = []
    dur = n_samples / fs_hz
    while t < dur:
        times.append(t)
        t += period * (1 + slip * rng.standard_normal())
    return impact_train(rng, fs_hz, n_samples, times, f_res_hz, peak, zeta=zeta)


def knock(rng: np.random.Generator, fs_hz: float, n_samples: int, peak: float) -> np.ndarray:
    """One broadband transient at a random time: several resonances excited at once, fast decay."""
    t0 = float(rng.uniform(0, n_samples / fs_hz))
    x = np.zeros(n_samples)
    for _ in range(3):
        fr = float(rng.uniform(0.05, 0.8) * fs_hz / 2)
        x += impact_train(
            rng, fs_hz, n_samples, [t0], fr, 1.0, zeta=float(rng.uniform(0.05, 0.2)), amp_spread=0
        )
    return x * peak / (np.abs(x).max() + 1e-12)


@dataclass(frozen=True)
class ImpactPhysics:
    """Where an injected defect rings, in Hz of the real structure (not relative to any sampling rate).

    * ``resonance_hz``: the structural resonance a rolling-element impact
      rings (bearing housing / sensor mount); 2.5-4.5 kHz is the range issue
      16 measured for the injected impacts. Drawn uniformly per window,
      damping ``zeta_resonance``; its peak is the ladder amplitude.
    * ``mode_hz``: a low-frequency structural mode (frame, motor mount) the
      same impacts excite, drawn log-uniformly per window, damping
      ``zeta_mode``. Its peak follows from the physics of an impulse on a
      single-degree-of-freedom system: the acceleration peak is ``omega_n``
      x impulse / modal mass, so at equal modal mass the mode's peak is
      ``f_mode / f_resonance`` of the resonance's (e.g. 0.07 for 250 Hz
      against 3.5 kHz). Real low modes have larger modal masses, so this
      errs towards a *larger* low-frequency signature (an assumption, stated).
    * Each ring is the mode's *acceleration* impulse response
      (``accel_ring``), not the textbook ``exp * sin`` (a displacement
      response, flat below the mode: a 3.5 kHz ``exp * sin`` train leaks
      enough at BPFO harmonics to be "detected" through a 1 kHz sensor, which
      an accelerometer on a real structure would not show).
    * A resonance the recording cannot carry (above ``MAX_NYQUIST_FRAC`` of
      the recording's Nyquist) is not injected: the recording's own sensor
      would have filtered it out. Only the low mode remains then.
    """

    resonance_hz: tuple[float, float] = (2500.0, 4500.0)
    zeta_resonance: float = 0.05
    mode_hz: tuple[float, float] = (100.0, 400.0)
    zeta_mode: float = 0.03


MAX_NYQUIST_FRAC = 0.9
DEFAULT_PHYSICS = ImpactPhysics()
CONTACT_BANDWIDTH = 2.5
"""The force pulse exciting a mode has a Gaussian spectrum to this multiple of the mode's frequency."""


def accel_ring(fs_hz: float, f_res_hz: float, zeta: float) -> tuple[np.ndarray, int]:
    """(ring, onset index): acceleration of a damped mode hit by a short force pulse, peak |ring| = 1.

    ``H(f) = -(f/f0)^2 / (1 - (f/f0)^2 + 2 i zeta f/f0)`` times the pulse's
    spectrum ``exp(-(f / (CONTACT_BANDWIDTH f0))^2)``: rings at ``f0`` and
    decays like ``exp * sin``, but has no DC and falls as f^2 below the mode,
    as an accelerometer on a mass-spring structure sees it. Computed by FFT on
    a buffer long enough for the ring-down (8 time constants); the Gaussian
    pulse is centred ``onset`` samples into the ring.
    """
    tau = 1.0 / (2 * np.pi * zeta * f_res_hz)
    sigma_t = 1.0 / (np.sqrt(2) * np.pi * CONTACT_BANDWIDTH * f_res_hz)
    onset = int(np.ceil(5 * sigma_t * fs_hz)) + 1
    length = int(8 * tau * fs_hz) + 2 + onset
    nfft = 1 << int(np.ceil(np.log2(2 * length)))
    f = np.fft.rfftfreq(nfft, 1 / fs_hz)
    r = f / f_res_hz
    h = -(r**2) / (1 - r**2 + 2j * zeta * r) * np.exp(-((r / CONTACT_BANDWIDTH) ** 2))
    ring = np.fft.irfft(h * np.exp(-2j * np.pi * f * onset / fs_hz), n=nfft)[:length]
    return ring / (np.abs(ring).max() + 1e-300), onset


def ring_train(
    rng: np.random.Generator,
    fs_hz: float,
    n_samples: int,
    times_s: list[float] | np.ndarray,
    f_res_hz: float,
    peak: float,
    zeta: float,
    amp_spread: float = 0.1,
) -> np.ndarray:
    """``impact_train`` with ``accel_ring``: each impact's force pulse centred at its time."""
    ring, onset = accel_ring(fs_hz, f_res_hz, zeta)
    x = np.zeros(n_samples)
    for t0 in times_s:
        i0 = int(round(t0 * fs_hz)) - onset
        a = peak * (1 + amp_spread * rng.standard_normal())
        lo, hi = max(i0, 0), min(i0 + len(ring), n_samples)
        if hi > lo:
            x[lo:hi] += a * ring[lo - i0 : hi - i0]
    return x


def _in_band(rng: np.random.Generator, lo_hi: tuple[float, float], fs_hz: float, log: bool) -> float | None:
    """A frequency drawn from ``lo_hi`` restricted to what ``fs_hz`` can carry; None when nothing is left.

    Always takes one draw from ``rng``, so what follows does not depend on whether a band was empty.
    """
    u = float(rng.uniform())
    lo, hi = lo_hi[0], min(lo_hi[1], MAX_NYQUIST_FRAC * fs_hz / 2)
    if hi <= lo:
        return None
    return float(np.exp(np.log(lo) + u * np.log(hi / lo)) if log else lo + u * (hi - lo))


def physical_defect(
    rng: np.random.Generator,
    fs_hz: float,
    n_samples: int,
    defect_hz: float,
    peak: float,
    physics: ImpactPhysics = DEFAULT_PHYSICS,
    slip: float = 0.015,
) -> tuple[np.ndarray, float | None, float | None]:
    """Periodic impacts at ``defect_hz`` ringing a resonance and a low mode given in Hz.

    Returns (signal, resonance Hz or None, mode Hz or None). The resonance's
    peak is ``peak``; the mode's is ``peak * f_mode / f_resonance`` (the
    middle of ``resonance_hz`` when the recording cannot carry the resonance).
    """
    period = 1.0 / defect_hz
    t = rng.uniform(0, period)
    times = []
    while t < n_samples / fs_hz:
        times.append(t)
        t += period * (1 + slip * rng.standard_normal())
    f_res = _in_band(rng, physics.resonance_hz, fs_hz, log=False)
    f_mode = _in_band(rng, physics.mode_hz, fs_hz, log=True)
    x = np.zeros(n_samples)
    if f_res is not None:
        x += ring_train(rng, fs_hz, n_samples, times, f_res, peak, physics.zeta_resonance)
    if f_mode is not None:
        ref = f_res if f_res is not None else 0.5 * sum(physics.resonance_hz)
        x += ring_train(rng, fs_hz, n_samples, times, f_mode, peak * f_mode / ref, physics.zeta_mode)
    return x, f_res, f_mode


KNOCK_HZ: tuple[float, float] = (20.0, 2000.0)
"""A knock (a wheel on a floor joint) rings frame modes: 20 Hz - 2 kHz, log-uniform (an assumption, stated)."""


def physical_knock(
    rng: np.random.Generator,
    fs_hz: float,
    n_samples: int,
    peak: float,
    modes_hz: tuple[float, float] = KNOCK_HZ,
) -> np.ndarray:
    """One knock at a random time: three modes drawn in Hz from ``modes_hz``, fast decay, peak ``peak``."""
    t0 = float(rng.uniform(0, n_samples / fs_hz))
    x = np.zeros(n_samples)
    for _ in range(3):
        fr = _in_band(rng, modes_hz, fs_hz, log=True)
        if fr is None:
            continue
        x += ring_train(rng, fs_hz, n_samples, [t0], fr, 1.0, float(rng.uniform(0.05, 0.2)), amp_spread=0)
    return x * peak / (np.abs(x).max() + 1e-12)
