"""Correlation matrices for the sampler: Kendall tau, its Pearson equivalent, and a repair to the
nearest positive-definite correlation matrix so that a Cholesky factor exists.

Kendall's tau is robust to the non-Gaussian marginals of latent codes; for a bivariate normal,
``rho = sin(pi * tau / 2)`` (Greiner's relation) turns it into the Pearson correlation a Gaussian
copula needs. The elementwise map does not preserve positive semi-definiteness, hence the repair.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def kendall_matrix(observations: npt.NDArray[np.floating[Any]]) -> FloatArray:
    """Kendall tau-b between the columns of ``observations`` ``(n_obs, n_vars)`` -> ``(n_vars, n_vars)``.

    Vectorised over all observation pairs: with ``S[p, i] = sign(x[a, i] - x[b, i])`` for pairs
    ``p = (a, b)``, tau-b is ``S_i . S_j / sqrt(n_i n_j)`` where ``n_i`` counts the pairs untied in
    column ``i``. A constant column has no rank order: its correlations are 0 (its diagonal 1).
    """
    x = np.asarray(observations, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need observations (n_obs >= 2, n_vars), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("observations contain non-finite values")
    n_obs, n_vars = x.shape
    a, b = np.triu_indices(n_obs, k=1)
    tau = np.zeros((n_vars, n_vars))
    untied = np.zeros(n_vars)
    # Chunk the pairs so that memory stays bounded for many observations.
    chunk = max(1, 4_000_000 // max(n_vars, 1))
    for start in range(0, len(a), chunk):
        signs = np.sign(x[a[start : start + chunk]] - x[b[start : start + chunk]])
        tau += signs.T @ signs
        untied += np.count_nonzero(signs, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = tau / np.sqrt(np.outer(untied, untied))
    tau[~np.isfinite(tau)] = 0.0
    np.fill_diagonal(tau, 1.0)
    out: FloatArray = np.clip(tau, -1.0, 1.0)
    return out


def pearson_from_kendall(tau: FloatArray) -> FloatArray:
    """``sin(pi * tau / 2)`` elementwise (the Pearson correlation of a Gaussian copula)."""
    out: FloatArray = np.sin(np.pi * np.asarray(tau, dtype=np.float64) / 2.0)
    np.fill_diagonal(out, 1.0)
    return out


def nearest_correlation(
    matrix: FloatArray, *, min_eigenvalue: float = 1e-6, max_iterations: int = 100, tol: float = 1e-10
) -> FloatArray:
    """Nearest correlation matrix (Higham 2002, alternating projections with Dykstra's correction),
    then eigenvalues floored at ``min_eigenvalue`` and the diagonal put back to 1: the result is
    symmetric, unit-diagonal and positive definite."""
    a = np.asarray(matrix, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"need a square matrix, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("matrix has non-finite entries")
    a = (a + a.T) / 2.0
    y = a.copy()
    correction = np.zeros_like(a)
    for _ in range(max_iterations):
        r = y - correction
        w, v = np.linalg.eigh(r)
        x = (v * np.maximum(w, 0.0)) @ v.T
        correction = x - r
        y_next = x.copy()
        np.fill_diagonal(y_next, 1.0)
        scale = max(1.0, float(np.linalg.norm(y, "fro")))
        if float(np.linalg.norm(y_next - y, "fro")) <= tol * scale:
            y = y_next
            break
        y = y_next
    w, v = np.linalg.eigh((y + y.T) / 2.0)
    y = (v * np.maximum(w, min_eigenvalue)) @ v.T
    d = np.sqrt(np.diag(y))
    y = y / np.outer(d, d)
    out: FloatArray = (y + y.T) / 2.0
    return out


def cholesky_factor(correlation: FloatArray) -> FloatArray:
    """Lower Cholesky factor of ``correlation`` after :func:`nearest_correlation` (never fails on a
    finite square input: a singular or indefinite matrix is repaired first)."""
    repaired = nearest_correlation(correlation)
    for jitter in (0.0, 1e-8, 1e-6, 1e-4):
        try:
            factor: FloatArray = np.linalg.cholesky(repaired + jitter * np.eye(len(repaired))).astype(
                np.float64
            )
            return factor
        except np.linalg.LinAlgError:
            continue
    raise ValueError("correlation matrix could not be made positive definite")  # pragma: no cover


def correlation_factor(observations: npt.NDArray[np.floating[Any]]) -> FloatArray:
    """Kendall -> Pearson -> repair -> Cholesky, for the columns of ``observations``."""
    return cholesky_factor(pearson_from_kendall(kendall_matrix(observations)))
