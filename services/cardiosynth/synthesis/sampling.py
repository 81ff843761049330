"""Pseudo-pathological samples as a Gaussian copula, and the two interpolation families.

Given class statistics (``mean``, ``std``, ``min``, ``max``, each ``(ns, nz)``, and the Cholesky
factors ``Lz`` of the latent and ``Ls`` of the slice correlation, see :mod:`.stats`):

1. Gaussian scores ``g ~ N(0, I)`` ``(ns, nz)``;
2. correlate them, per mode: ``none`` ``v = g``; ``latent`` ``v = g Lz^T``; ``slices`` ``v = Ls g``;
   ``both`` ``v = Ls g Lz^T``; ``paper`` ``v = Lp g Lz^T`` with ``Lp`` the paper's slice factor
   (Kendall between the base subject's slices over its own latent values, :func:`paper_slice_factor`);
   ``population`` ``v[:, d] = B_d h_d`` (``h_d ~ N(0, I_k)``, the class's low-rank slice basis),
   normalised to unit variance per entry. ``Ls`` and ``Lz`` factor correlation matrices, so every
   entry of ``v`` is standard normal in every mode;
3. map each entry through the truncated normal's inverse CDF,
   ``x = mean + std * F^-1(Phi(v))`` with ``F`` the standard normal truncated to
   ``[(min - mean) / std, (max - mean) / std]``: each entry's marginal is exactly the class's
   ``TN(mean, std, min, max)``, ``x`` lies in ``[min, max]`` by construction, and the rank
   correlation of ``v`` is kept (Kendall's tau is invariant under monotone maps, so a target tau
   turned into ``rho = sin(pi tau / 2)`` comes back as tau). Zero-std entries give the mean.

This replaces truncate -> correlate -> clip, whose clipping piled mass on the bounds and moved the
mean. The reference code multiplies the raw, un-centred samples by the Cholesky factors, which moves
the class mean further (each output mixes the means of other slices and dimensions):
:func:`reference_mixing` reproduces that mistake, as a wrong baseline for the tests only.

Interpolation, severity ``a`` in [0, 1], base NOR latents ``z_N`` ``(ns, nz)``:

- ``sample`` (the paper's): ``z(a) = (1 - a) z_N + a x`` towards a fresh copula sample ``x``; at
  ``a = 1`` nothing of the base is left but its slice count.
- ``shift`` (identity-preserving): ``z(a) = (1 - a) z_N + a T(z_N)`` where ``T`` moves the base into
  the pathology's distribution entry by entry, keeping its standardised position: with the base's
  NOR residual ``r = (z_N - mu_N) / s_N`` taken as its Gaussian score,
  ``T(z_N) = mu_P + s_P * F_P^-1(Phi(w))``, ``w = (r + lam * v) / sqrt(1 + lam^2)``, ``F_P`` the
  pathology's truncated normal, ``v`` a copula score of the request's correlation mode and ``lam``
  = ``residual`` (0 by default: a deterministic transport of each base). Away from the bounds
  ``F_P^-1(Phi(w)) ~ w``, so ``z(a) ~ z_N + a [(mu_P - mu_N) + (s_P / s_N - 1)(z_N - mu_N)]``: the
  class shift plus the base's own residual rescaled to the pathology's spread. The score is mapped
  through the copula's bounds, not clipped: ``T`` is strictly monotone in the base's residual (the
  subjects' order in every entry survives) and ``a = 1`` lies inside ``[min_P, max_P]``. ``r`` is not
  pushed through NOR's own truncated CDF first: NOR's bounds are its sample extremes, so that would
  send each entry's most extreme NOR subject to an infinite score, onto the pathology's bound.
  ``a = 0`` is the base exactly.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from cardiosynth.synthesis.correlation import correlation_factor
from cardiosynth.synthesis.modes import CORRELATION_MODES, CorrelationMode, check_mode
from cardiosynth.synthesis.stats import MIN_STD, ClassStats, standardise

FloatArray = npt.NDArray[np.float64]

__all__ = [
    "CORRELATION_MODES",
    "CorrelationMode",
    "check_mode",
    "copula_transform",
    "gaussian_scores",
    "interpolate",
    "paper_slice_factor",
    "reference_mixing",
    "sample_pathology",
    "shift_target",
    "truncated_normal",
]


def paper_slice_factor(base_latents: FloatArray) -> FloatArray:
    """The paper's slice factor ``(ns, ns)``: Kendall tau between the slices of one subject's equalised
    latents ``(ns, nz)``, its ``nz`` latent values as observations (mode ``paper`` only)."""
    return correlation_factor(np.asarray(base_latents, dtype=np.float64).T)


def _bounds(stats: ClassStats) -> tuple[npt.NDArray[np.bool_], FloatArray, FloatArray]:
    """Live entries and the standardised truncation bounds ``a <= 0 <= b`` ``(ns, nz)``."""
    live = stats.std > MIN_STD
    safe = np.where(live, stats.std, 1.0)
    a = np.where(live, (stats.min - stats.mean) / safe, -1.0)
    b = np.where(live, (stats.max - stats.mean) / safe, 1.0)
    # Guard degenerate bounds (min == max == mean where std is tiny but positive).
    return live, a, np.maximum(b, a + 1e-12)


def _slice_factor(stats: ClassStats, mode: CorrelationMode, slice_factor: FloatArray | None) -> FloatArray:
    if mode == "paper" and slice_factor is None:
        raise ValueError("mode 'paper' needs the base subject's slice factor (paper_slice_factor)")
    factor = stats.slice_factor if slice_factor is None else np.asarray(slice_factor, dtype=np.float64)
    if factor.shape != (stats.ns, stats.ns):
        raise ValueError(f"mode {mode!r} needs a slice factor ({stats.ns}, {stats.ns}), got {factor.shape}")
    return factor


def gaussian_scores(
    stats: ClassStats,
    mode: CorrelationMode,
    slice_factor: FloatArray | None,
    rng: np.random.Generator,
    draws: int | None = None,
) -> FloatArray:
    """Correlated standard normal scores ``v``: ``(ns, nz)``, or ``(draws, ns, nz)`` when ``draws`` is given.

    ``slice_factor`` ``(ns, ns)``: ``Ls`` for modes ``slices`` and ``both`` (``None``: the class's
    ``stats.slice_factor``); required for ``paper`` (the base subject's, :func:`paper_slice_factor`);
    ignored otherwise.
    """
    check_mode(mode)
    if draws is not None and draws < 1:
        raise ValueError(f"draws must be positive, got {draws}")
    lead = () if draws is None else (draws,)
    if mode == "population":
        basis = stats.population_basis  # (nz, ns, k)
        h = rng.standard_normal((*lead, basis.shape[0], basis.shape[2]))
        v = np.einsum("dsk,...dk->...sd", basis, h)
        # The rank-k basis keeps only part of each entry's unit variance: rescale to N(0, 1) scores.
        norm = np.sqrt(np.einsum("dsk,dsk->sd", basis, basis))
        out: FloatArray = np.where(norm > 1e-12, v / np.where(norm > 1e-12, norm, 1.0), 0.0)
        return out
    g = rng.standard_normal((*lead, stats.ns, stats.nz))
    if mode in ("latent", "both", "paper"):
        g = g @ stats.latent_factor.T
    if mode in ("slices", "both", "paper"):
        g = _slice_factor(stats, mode, slice_factor) @ g
    return g


def copula_transform(scores: FloatArray, stats: ClassStats) -> FloatArray:
    """``mean + std * F^-1(Phi(v))`` for scores ``(..., ns, nz)``: each entry's marginal is the class's
    ``TN(mean, std, min, max)``; zero-std entries give the mean."""
    v = np.asarray(scores, dtype=np.float64)
    if v.shape[-2:] != stats.mean.shape:
        raise ValueError(f"scores {v.shape} do not end in the statistics' shape {stats.mean.shape}")
    live, a, b = _bounds(stats)
    t = sps.truncnorm.ppf(sps.norm.cdf(v), a, b)
    x = np.where(live, stats.mean + stats.std * t, stats.mean)
    # F^-1 lies in [a, b]; the clip only absorbs the rounding of mean + std * b (an ulp past max).
    out: FloatArray = np.clip(x, stats.min, stats.max)
    return out


def sample_pathology(
    stats: ClassStats,
    mode: CorrelationMode,
    slice_factor: FloatArray | None,
    rng: np.random.Generator,
    draws: int | None = None,
) -> FloatArray:
    """Correlated pseudo-pathological latents ``(ns, nz)`` (or ``(draws, ns, nz)``): a Gaussian copula
    with the class's truncated-normal marginals. Arguments as :func:`gaussian_scores`."""
    return copula_transform(gaussian_scores(stats, mode, slice_factor, rng, draws), stats)


def truncated_normal(stats: ClassStats, rng: np.random.Generator) -> FloatArray:
    """Independent elementwise ``TN(mean, std, min, max)`` draw ``(ns, nz)`` (mode ``none``)."""
    return sample_pathology(stats, "none", None, rng)


def shift_target(
    base: FloatArray,
    source: ClassStats,
    target: ClassStats,
    scores: FloatArray | None = None,
    residual: float = 0.0,
) -> FloatArray:
    """``T(base)`` of the ``shift`` family (module docstring): the base's latents ``(ns, nz)``, its
    residual standardised by the ``source`` (NOR) class, mapped through the ``target`` class's copula,
    with an optional share ``residual`` (lam) of copula ``scores`` ``(ns, nz)`` mixed into its score."""
    z = np.asarray(base, dtype=np.float64)
    if z.shape != source.mean.shape or z.shape != target.mean.shape:
        raise ValueError(f"base {z.shape}, source {source.mean.shape}, target {target.mean.shape} differ")
    if not 0.0 <= residual <= 1.0:
        raise ValueError(f"residual must be in [0, 1], got {residual}")
    w = standardise(z, source.mean, source.std)  # 0 where NOR does not vary: the target's centre
    if residual > 0.0:
        if scores is None or np.shape(scores) != z.shape:
            raise ValueError(f"a residual of {residual} needs scores of shape {z.shape}")
        w = (w + residual * np.asarray(scores, dtype=np.float64)) / np.sqrt(1.0 + residual**2)
    return copula_transform(w, target)


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
