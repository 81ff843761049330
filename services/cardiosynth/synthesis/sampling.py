"""Pseudo-pathological samples: truncated normal draws, correlated in standardised space.

Given class statistics (mean, std, min, max, each ``(ns, nz)``):

1. ``x ~ TN(mean, std, min, max)`` elementwise;
2. ``u = (x - mean) / std`` (0 where std is 0);
3. ``v = Ls u Lz^T`` (mode ``both``; ``latent``: ``u Lz^T``; ``slices``: ``Ls u``; ``none``: ``u``);
   ``population``: ``v[:, d] = B_d g_d`` with the class's low-rank slice basis, no Cholesky;
4. ``x' = clip(mean + std * v, min, max)``.

The reference code multiplies the raw, un-centred samples by the Cholesky factors, which moves
the class mean (each output mixes the means of other slices and dimensions); standardising first
keeps it. :func:`reference_mixing` reproduces that mistake for the tests that show it.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from cardiosynth.synthesis.stats import MIN_STD, ClassStats

FloatArray = npt.NDArray[np.float64]
CorrelationMode = Literal["none", "latent", "slices", "both", "population"]
CORRELATION_MODES: tuple[str, ...] = get_args(CorrelationMode)


def check_mode(mode: str) -> CorrelationMode:
    if mode not in CORRELATION_MODES:
        raise ValueError(f"unknown correlation mode {mode!r}; expected one of {list(CORRELATION_MODES)}")
    return mode  # type: ignore[return-value]


def truncated_normal(stats: ClassStats, rng: np.random.Generator) -> FloatArray:
    """Elementwise ``TN(mean, std, min, max)`` draw ``(ns, nz)``; zero-std entries give the mean."""
    mean, std = stats.mean, stats.std
    live = std > MIN_STD
    safe = np.where(live, std, 1.0)
    a = np.where(live, (stats.min - mean) / safe, -1.0)
    b = np.where(live, (stats.max - mean) / safe, 1.0)
    # Guard degenerate bounds (min == max == mean where std is tiny but positive).
    b = np.maximum(b, a + 1e-12)
    u = sps.truncnorm.rvs(a, b, size=mean.shape, random_state=rng)
    return np.where(live, mean + std * u, mean)


def correlate(
    x: FloatArray,
    stats: ClassStats,
    mode: CorrelationMode,
    slice_factor: FloatArray | None,
    rng: np.random.Generator,
) -> FloatArray:
    """Steps 2-4 above for a draw ``x`` ``(ns, nz)``; ``slice_factor`` ``(ns, ns)`` is ``Ls``."""
    check_mode(mode)
    live = stats.std > MIN_STD
    safe = np.where(live, stats.std, 1.0)
    u = np.where(live, (x - stats.mean) / safe, 0.0)
    if mode in ("slices", "both"):
        if slice_factor is None or slice_factor.shape != (stats.ns, stats.ns):
            raise ValueError(f"mode {mode!r} needs a slice factor ({stats.ns}, {stats.ns})")
        v = slice_factor @ u if mode == "slices" else slice_factor @ u @ stats.latent_factor.T
    elif mode == "none":
        v = u
    elif mode == "latent":
        v = u @ stats.latent_factor.T
    else:  # population
        basis = stats.population_basis  # (nz, ns, k)
        g = rng.standard_normal((basis.shape[0], basis.shape[2]))
        v = np.einsum("dsk,dk->sd", basis, g)
    out: FloatArray = np.clip(stats.mean + stats.std * v, stats.min, stats.max)
    return out


def sample_pathology(
    stats: ClassStats,
    mode: CorrelationMode,
    slice_factor: FloatArray | None,
    rng: np.random.Generator,
) -> FloatArray:
    """One correlated pseudo-pathological latent stack ``(ns, nz)``."""
    return correlate(truncated_normal(stats, rng), stats, mode, slice_factor, rng)


def reference_mixing(x: FloatArray, latent_factor: FloatArray, slice_factor: FloatArray) -> FloatArray:
    """The reference code's correlation of raw samples, ``Ls x Lz^T`` (biased; tests only)."""
    out: FloatArray = slice_factor @ x @ latent_factor.T
    return out


def interpolate(base: FloatArray, target: FloatArray, severity: float) -> FloatArray:
    """``(1 - a) * base + a * target`` for severity ``a`` in [0, 1]."""
    if not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must be in [0, 1], got {severity}")
    if base.shape != target.shape:
        raise ValueError(f"base {base.shape} and target {target.shape} differ in shape")
    out: FloatArray = (1.0 - severity) * base + severity * target
    return out
