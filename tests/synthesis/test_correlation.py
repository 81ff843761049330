from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from cardiosynth.synthesis.correlation import (
    cholesky_factor,
    correlation_factor,
    kendall_matrix,
    nearest_correlation,
    pearson_from_kendall,
)


def test_kendall_matches_scipy_tau_b_with_ties_and_constants() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5))
    x[:, 1] = x[:, 0] + 0.3 * x[:, 1]
    x[:, 2] = np.round(x[:, 2])  # ties
    x[:, 4] = 2.0  # constant
    tau = kendall_matrix(x)
    for i in range(5):
        for j in range(5):
            if i == j:
                assert tau[i, j] == 1.0
                continue
            ref = stats.kendalltau(x[:, i], x[:, j]).statistic
            assert tau[i, j] == pytest.approx(0.0 if not np.isfinite(ref) else ref, abs=1e-12)
    with pytest.raises(ValueError, match="n_obs >= 2"):
        kendall_matrix(x[:1])
    with pytest.raises(ValueError, match="non-finite"):
        kendall_matrix(np.full((3, 2), np.nan))


def test_greiner_mapping() -> None:
    tau = np.array([[1.0, 1 / 3], [1 / 3, 1.0]])
    rho = pearson_from_kendall(tau)
    assert rho[0, 1] == pytest.approx(np.sin(np.pi / 6))  # 0.5
    assert np.allclose(np.diag(rho), 1.0)


def test_cholesky_repairs_a_singular_indefinite_matrix() -> None:
    # Three variables that cannot be pairwise correlated like this: indefinite.
    bad = np.array([[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]])
    assert np.linalg.eigvalsh(bad).min() < 0
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(bad)
    repaired = nearest_correlation(bad)
    assert np.allclose(repaired, repaired.T)
    assert np.allclose(np.diag(repaired), 1.0)
    assert np.linalg.eigvalsh(repaired).min() > 0
    factor = cholesky_factor(bad)
    assert np.allclose(factor @ factor.T, repaired, atol=1e-6)
    # A rank-one (singular) matrix: all ones.
    ones = cholesky_factor(np.ones((4, 4)))
    assert np.isfinite(ones).all()
    assert np.allclose(np.diag(ones @ ones.T), 1.0, atol=1e-6)
    # A valid correlation matrix is left (nearly) as it is.
    good = np.array([[1.0, 0.3], [0.3, 1.0]])
    assert np.allclose(nearest_correlation(good), good, atol=1e-6)
    with pytest.raises(ValueError, match="square"):
        nearest_correlation(np.ones((2, 3)))


def test_correlation_factor_of_rank_deficient_observations() -> None:
    # 16 observations of 32 variables (the slice case): rank <= 15, still factorised.
    rng = np.random.default_rng(1)
    factor = correlation_factor(rng.normal(size=(16, 32)))
    assert factor.shape == (32, 32)
    assert np.allclose(np.triu(factor, 1), 0.0)
