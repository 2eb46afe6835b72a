"""Physical signal models of the simulated beamline (pure numpy, no I/O).

Each function draws from the ``numpy.random.Generator`` it is given, so a source
that calls them in a fixed order is deterministic for a given seed. Counts follow
Poisson statistics; positions are exact linear grids.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "MCA_CHANNELS",
    "MCA_KEV_PER_CHANNEL",
    "linear_positions",
    "mesh_positions",
    "elapsed_times",
    "gaussian",
    "peak_counts",
    "monitor_counts",
    "mca_points",
    "detector_frames",
]

Array = np.ndarray[Any, Any]

MCA_CHANNELS = 4096
MCA_KEV_PER_CHANNEL = 0.01
_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
# Fluorescence lines (keV, relative weight) of an iron/copper sample excited at 17 keV.
_MCA_LINES = ((6.404, 1.0), (7.058, 0.14), (8.048, 0.6), (8.905, 0.09), (17.0, 0.3))
_MCA_DEAD_TIME_PER_COUNT = 1.5e-6


def linear_positions(start: float, stop: float, npoints: int, first: int, last: int) -> Array:
    """Positions ``first..last-1`` of ``npoints`` equally spaced from ``start`` to ``stop``."""
    index = np.arange(first, last, dtype=np.float64)
    if npoints <= 1:
        return np.full(index.shape, float(start))
    return start + (stop - start) * index / (npoints - 1)


def mesh_positions(fast: tuple[float, float, int], slow: tuple[float, float, int],
                   first: int, last: int) -> tuple[Array, Array]:
    """Fast and slow motor positions of points ``first..last-1`` of a 2D grid.

    ``fast``/``slow`` are ``(start, stop, npoints)``; the fast motor moves at every
    point, the slow one after each line (point ``i`` is at ``(i % n1, i // n1)``).
    """
    n1 = fast[2]
    index = np.arange(first, last)
    fast_pos = linear_positions(fast[0], fast[1], n1, 0, n1)[index % n1]
    slow_pos = linear_positions(slow[0], slow[1], slow[2], 0, slow[2])[index // n1]
    return fast_pos, slow_pos


def elapsed_times(rng: np.random.Generator, first: int, last: int, period: float) -> Array:
    """Time since the scan started at each point: ``i * period`` plus up to 1% jitter."""
    index = np.arange(first, last, dtype=np.float64)
    return index * period + rng.uniform(0.0, 0.01 * period, size=index.shape)


def gaussian(x: Array, center: float, fwhm: float) -> Array:
    """A unit-height Gaussian of full width at half maximum ``fwhm``."""
    sigma = fwhm * _FWHM_TO_SIGMA
    return np.exp(-0.5 * ((np.asarray(x) - center) / sigma) ** 2)


def peak_counts(rng: np.random.Generator, profile: Array, *, height: float,
                background: float) -> Array:
    """Poisson counts (as float64, like a diode counter) of ``background + height * profile``."""
    expected = background + height * np.asarray(profile, dtype=np.float64)
    return rng.poisson(expected).astype(np.float64)


def monitor_counts(rng: np.random.Generator, npoints: int, rate: float,
                   exposure: float) -> Array:
    """Incident-beam monitor counts (uint32) at ``rate`` counts/s during ``exposure``."""
    return rng.poisson(rate * exposure, size=npoints).astype(np.uint32)


def _mca_profile() -> Array:
    energy = np.arange(MCA_CHANNELS) * MCA_KEV_PER_CHANNEL
    profile = 0.02 * np.exp(-energy / 8.0)
    for line, weight in _MCA_LINES:
        fwhm = 0.12 + 0.01 * line
        profile = profile + weight * gaussian(energy, line, fwhm)
    result: Array = profile / profile.sum()
    return result


def mca_points(rng: np.random.Generator, strength: Array, exposure: float,
               rate: float = 40000.0) -> dict[str, Array]:
    """Spectra and statistics of an MCA counting for ``exposure`` s at each point.

    ``strength`` (one value per point, around 1) scales the fluorescence rate.
    Returns ``spectrum`` (uint32, 4096 channels), ``icr``/``ocr`` (counts/s),
    ``livetime``/``realtime`` (s) and ``deadtime`` (fraction).
    """
    strength = np.asarray(strength, dtype=np.float64)
    input_rate = rate * strength
    realtime = exposure * (1.0 + rng.uniform(0.0, 1e-4, size=strength.shape))
    deadtime = 1.0 - np.exp(-input_rate * _MCA_DEAD_TIME_PER_COUNT)
    livetime = realtime * (1.0 - deadtime)
    expected = np.outer(input_rate * livetime, _mca_profile())
    spectrum = rng.poisson(expected).astype(np.uint32)
    counts = spectrum.sum(axis=1, dtype=np.float64)
    return {
        "spectrum": spectrum,
        "icr": counts / livetime,
        "ocr": counts / realtime,
        "livetime": livetime,
        "realtime": realtime,
        "deadtime": deadtime,
    }


def detector_frames(rng: np.random.Generator, shape: tuple[int, int], centers: Array,
                    *, amplitude: float = 800.0, width: float = 4.0,
                    background: float = 3.0) -> Array:
    """uint16 frames of a Gaussian beam spot at ``centers`` (``(n, 2)`` as row, column)."""
    rows, cols = np.indices(shape, dtype=np.float64)
    centers = np.asarray(centers, dtype=np.float64).reshape(-1, 2)
    dr = rows[None] - centers[:, 0, None, None]
    dc = cols[None] - centers[:, 1, None, None]
    expected = background + amplitude * np.exp(-(dr ** 2 + dc ** 2) / (2.0 * width ** 2))
    return np.minimum(rng.poisson(expected), np.iinfo(np.uint16).max).astype(np.uint16)
