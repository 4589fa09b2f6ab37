"""The envelope spectra the diagnosis and the order score read (numpy only, ROS-free).

* :func:`tone_free_spectrum`: one FFT of a channel with its discrete tones clipped;
* :func:`band_envelope_spectrum`: the squared-envelope spectrum of one band of it, formed at base band on
  just enough points for the bins asked for (the same bins as the full-length computation, tested).
"""

from __future__ import annotations

import functools
import math

import numpy as np

TONE_FACTOR = 5.0
TONE_BLOCK = 64


def tone_free_spectrum(x: np.ndarray, factor: float | None = None, block: int = TONE_BLOCK) -> np.ndarray:
    """The rfft of ``x`` (1-D, mean removed; 2-D: each row) with every spectral line above ``factor`` x the
    local median magnitude (medians of ``block`` bins) clipped to it; :func:`remove_tones` is its inverse.

    Shaft, gear and electrical tones are discrete lines; two of them in one band beat, and the beat is a
    line in the envelope that can sit near a defect order. Impacts ringing a kHz resonance are spread
    over many bins by slip and keep their energy; at a resonance of a few hundred Hz their own comb of
    lines is clipped too, which costs some namings at robot rates (docs/MODEL.md "Diagnosis"). (Full cepstral pre-whitening, every magnitude set to 1, also flattens the
    resonance the impacts ring; tried here, it left most CWRU windows at 1 and 3.2 kHz unnamed.)
    """
    x = np.asarray(x, dtype=np.float64)
    return clip_tones(np.fft.rfft(x - x.mean(axis=-1, keepdims=True), axis=-1), factor, block)


def clip_tones(spec: np.ndarray, factor: float | None = None, block: int = TONE_BLOCK) -> np.ndarray:
    """A one-sided spectrum with every line above ``factor`` x the local median magnitude (medians of
    ``block`` bins) clipped to it: :func:`tone_free_spectrum`'s rule, for a caller that has the spectrum.

    Along the last axis: a 2-D ``spec`` is one spectrum per row, each clipped as on its own.
    """
    factor = TONE_FACTOR if factor is None else factor
    n = spec.shape[-1]
    nb = n // block
    if nb < 2 or not math.isfinite(factor):
        return spec
    mag = np.abs(spec)
    med = np.median(mag[..., : nb * block].reshape(*mag.shape[:-1], nb, block), axis=-1)
    at, centres = np.arange(n), np.arange(nb) * block + block / 2
    floor = np.stack([np.interp(at, centres, row) for row in med.reshape(-1, nb)]).reshape(mag.shape)
    return spec * np.minimum(1.0, factor * floor / np.maximum(mag, 1e-300))


def remove_tones(x: np.ndarray, factor: float | None = None, block: int = TONE_BLOCK) -> np.ndarray:
    """``x`` (1-D) with its tones clipped (:func:`tone_free_spectrum`), mean removed."""
    return np.fft.irfft(tone_free_spectrum(x, factor, block), n=len(np.asarray(x)))


def _analytic_band(spec: np.ndarray, freqs: np.ndarray, band: tuple[float, float], n: int) -> np.ndarray:
    mask = (freqs >= band[0]) & (freqs < band[1])
    full = np.zeros(n, dtype=complex)
    full[: len(spec)][mask] = 2 * spec[mask]
    return np.fft.ifft(full)


@functools.lru_cache(maxsize=64)
def _fast_len(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= ``n`` (pocketfft is quickest there)."""
    best = 1 << max(int(n) - 1, 0).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


@functools.lru_cache(maxsize=32)
def _hann(m: int) -> np.ndarray:
    """Periodic Hann window of ``m`` points (exactly band-limited: 3 DFT bins); cached, read-only."""
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(m) / m)
    w.flags.writeable = False
    return w


def _median_rows(x: np.ndarray) -> np.ndarray:
    """np.median of each row of a 2-D array without its wrapper's overhead (every harmonic of every band)."""
    k = x.shape[1] // 2
    if x.shape[1] % 2:
        return np.partition(x, k, axis=1)[:, k]
    part = np.partition(x, (k - 1, k), axis=1)
    return 0.5 * (part[:, k - 1] + part[:, k])


def band_envelope_spectrum(
    spec: np.ndarray, n: int, fs_hz: float, band: tuple[float, float], max_hz: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies and power of the squared envelope of the band ``[band[0], band[1])`` of a signal of
    ``n`` samples whose rfft is ``spec`` (along the last axis: one spectrum per row of a 2-D ``spec``), up
    to ``max_hz`` (default: fs / 2).

    The analytic band signal is formed at base band, on just enough points that the squared envelope
    (as wide as the band) times the periodic Hann window (3 bins) does not fold onto any bin up to
    ``max_hz``: the bins returned are those of the full-length computation (scaled to it), at a
    fraction of its cost for a narrow band or a low ``max_hz``.
    """
    df = fs_hz / n
    freqs = np.fft.rfftfreq(n, 1 / fs_hz)  # as the full-length mask had them (a band's edges: same bins)
    i0, i1 = (int(i) for i in np.searchsorted(freqs, band, side="left"))
    nf = spec.shape[-1]
    kmax = nf - 1 if max_hz is None else min(nf - 1, int(math.ceil(max_hz / df)) + 1)
    m = _fast_len(max(i1 - i0 + kmax + 3, 2 * kmax + 2))
    if i1 > i0:
        z = np.fft.ifft(2 * spec[..., i0:i1], m, axis=-1) * (m / n)
    else:
        z = np.zeros((*spec.shape[:-1], m), dtype=complex)
    env = z.real**2 + z.imag**2
    env = (env - env.mean(axis=-1, keepdims=True)) * _hann(m)
    power = np.abs(np.fft.rfft(env, axis=-1)[..., : kmax + 1]) ** 2 * (n / m) ** 2
    return freqs[: kmax + 1], power


def envelope_spectrum(
    x: np.ndarray, fs_hz: float, band: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies and power of the squared envelope of ``x`` (1-D) band-passed to ``band``."""
    x = np.asarray(x, dtype=np.float64)
    return band_envelope_spectrum(np.fft.rfft(x - x.mean()), len(x), fs_hz, band)
