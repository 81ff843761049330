from __future__ import annotations

import numpy as np
import pytest

from cardiosynth.synthesis.correlation import cholesky_factor
from cardiosynth.synthesis.sampling import (
    check_mode,
    correlate,
    interpolate,
    reference_mixing,
    sample_pathology,
    truncated_normal,
)
from cardiosynth.synthesis.stats import ClassStats, compute_class_stats, population_basis, stats_key

NS, NZ = 6, 3


def _stats(mean: float = 2.0, std: float = 0.5, wide: bool = True) -> ClassStats:
    """Hand-made statistics with known correlation targets."""
    lz = cholesky_factor(np.array([[1.0, 0.6, 0.0], [0.6, 1.0, -0.4], [0.0, -0.4, 1.0]]))
    mean_a = np.full((NS, NZ), mean)
    std_a = np.full((NS, NZ), std)
    half = 50.0 if wide else 1.0
    return ClassStats("HCM", "ED", 10, mean_a, std_a, mean_a - half * std_a, mean_a + half * std_a, lz,
                      np.zeros((NZ, NS, 2)))  # fmt: skip


def _slice_factor() -> np.ndarray:
    idx = np.arange(NS)
    return cholesky_factor(0.8 ** np.abs(idx[:, None] - idx[None, :]))


def test_class_stats_handle_constant_dimensions_and_round_trip() -> None:
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(7, NS, NZ))
    latents[:, :, 1] = 4.0  # a latent dimension that never varies in this class
    stats = compute_class_stats(latents, "DCM", "ES")
    assert stats.mean.shape == stats.std.shape == (NS, NZ)
    assert np.all(stats.std[:, 1] == 0)
    assert np.all(stats.min <= stats.mean)
    assert np.all(stats.mean <= stats.max)
    assert stats.population_basis.shape == (NZ, NS, 4)
    draw = sample_pathology(stats, "both", _slice_factor(), rng)
    assert np.isfinite(draw).all()
    assert np.all(draw[:, 1] == 4.0)
    again = ClassStats.from_bytes(stats.to_bytes())
    assert again.pathology == "DCM"
    assert again.phase == "ES"
    assert np.array_equal(again.latent_factor, stats.latent_factor)
    single = compute_class_stats(latents[:1], "HCM", "ED")  # one subject: zero std everywhere
    assert np.array_equal(sample_pathology(single, "both", _slice_factor(), rng), latents[0])
    with pytest.raises(ValueError, match="non-finite"):
        compute_class_stats(np.full((2, NS, NZ), np.nan), "DCM", "ED")
    assert stats_key("v1", "abc", "DCM", "ED", 32) == stats_key("v1", "abc", "DCM", "ED", 32)
    assert stats_key("v1", "abc", "DCM", "ED", 32) != stats_key("v1", "abd", "DCM", "ED", 32)


def test_truncated_normal_respects_bounds() -> None:
    stats = _stats(wide=False)
    rng = np.random.default_rng(0)
    draws = np.stack([truncated_normal(stats, rng) for _ in range(500)])
    assert draws.min() >= stats.min.min()
    assert draws.max() <= stats.max.max()
    for mode in ("none", "latent", "slices", "both", "population"):
        out = correlate(draws[0], stats, check_mode(mode), _slice_factor(), rng)
        assert out.shape == (NS, NZ)
        assert np.all((out >= stats.min) & (out <= stats.max))


def test_samples_have_the_target_correlations_and_keep_the_mean() -> None:
    stats = _stats()
    ls = _slice_factor()
    rng = np.random.default_rng(0)
    draws = np.stack([sample_pathology(stats, "both", ls, rng) for _ in range(4000)])
    assert np.abs(draws.mean(0) - stats.mean).max() < 0.1 * 0.5  # within 0.1 std
    u = (draws - stats.mean) / stats.std
    target_z = stats.latent_factor @ stats.latent_factor.T
    target_s = ls @ ls.T
    assert np.abs(np.corrcoef(u[:, 2, :], rowvar=False) - target_z).max() < 0.06
    assert np.abs(np.corrcoef(u[:, :, 0], rowvar=False) - target_s).max() < 0.06
    # Uncorrelated mode: off-diagonal correlations near zero.
    plain = np.stack([sample_pathology(stats, "none", None, rng) for _ in range(2000)])
    c = np.corrcoef(((plain - stats.mean) / stats.std)[:, 2, :], rowvar=False)
    assert np.abs(c - np.eye(NZ)).max() < 0.08


def test_reference_style_uncentred_mixing_shifts_the_mean() -> None:
    stats = _stats(mean=2.0)
    ls = _slice_factor()
    rng = np.random.default_rng(1)
    raw = np.stack(
        [reference_mixing(truncated_normal(stats, rng), stats.latent_factor, ls) for _ in range(1000)]
    )
    ours = np.stack([sample_pathology(stats, "both", ls, rng) for _ in range(1000)])
    shift_raw = np.abs(raw.mean(0) - stats.mean).mean()
    shift_ours = np.abs(ours.mean(0) - stats.mean).mean()
    assert shift_raw > 10 * shift_ours
    assert shift_raw > 0.2  # the mean moves by a large share of the class mean (2.0)


def test_population_mode_follows_the_basis() -> None:
    rng = np.random.default_rng(0)
    # A class whose slices all move together per dimension: rank one along the slices.
    common = rng.normal(size=(200, 1, NZ))
    latents = np.repeat(common, NS, axis=1) + 0.01 * rng.normal(size=(200, NS, NZ))
    stats = compute_class_stats(latents, "RV", "ED", population_rank=1)
    basis = population_basis((latents - stats.mean) / stats.std, rank=1)
    assert basis.shape == (NZ, NS, 1)
    draws = np.stack([sample_pathology(stats, "population", None, rng) for _ in range(300)])
    u = (draws - stats.mean) / stats.std
    c = np.corrcoef(u[:, :, 0], rowvar=False)
    assert c.min() > 0.9  # slices strongly correlated, as in the class


def test_interpolation_and_mode_errors() -> None:
    base, target = np.zeros((NS, NZ)), np.ones((NS, NZ))
    assert np.allclose(interpolate(base, target, 0.25), 0.25)
    assert np.array_equal(interpolate(base, target, 1.0), target)
    with pytest.raises(ValueError, match="severity"):
        interpolate(base, target, 1.5)
    with pytest.raises(ValueError, match="unknown correlation mode"):
        check_mode("diagonal")
    with pytest.raises(ValueError, match="slice factor"):
        correlate(base, _stats(), "both", None, np.random.default_rng(0))
