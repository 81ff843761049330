from __future__ import annotations

import io

import numpy as np
import pytest
from scipy import stats as sps

from cardiosynth.synthesis.correlation import cholesky_factor, correlation_factor
from cardiosynth.synthesis.modes import CORRELATION_MODES, check_interpolation
from cardiosynth.synthesis.sampling import (
    check_mode,
    copula_transform,
    gaussian_scores,
    interpolate,
    paper_slice_factor,
    reference_mixing,
    sample_pathology,
    transport_target,
    truncated_normal,
)
from cardiosynth.synthesis.stats import (
    STATS_FORMAT,
    ClassStats,
    compute_class_stats,
    population_basis,
    standardise,
    stats_key,
)

NS, NZ = 4, 3
# Target Kendall taus; the sampler's factors are of their Pearson equivalents sin(pi tau / 2).
TAU_Z = np.array([[1.0, 0.4, 0.0], [0.4, 1.0, -0.3], [0.0, -0.3, 1.0]])
TAU_S = 0.5 ** np.abs(np.arange(NS)[:, None] - np.arange(NS)[None, :])


def _factor(tau: np.ndarray) -> np.ndarray:
    return cholesky_factor(np.sin(np.pi * tau / 2))


def _stats(mean: float = 2.0, std: float = 0.5, low: float = 50.0, high: float = 50.0) -> ClassStats:
    """Hand-made statistics: bounds ``mean - low * std`` .. ``mean + high * std``, known correlations."""
    mean_a = np.full((NS, NZ), mean)
    std_a = np.full((NS, NZ), std)
    return ClassStats("HCM", "ED", 10, mean_a, std_a, mean_a - low * std_a, mean_a + high * std_a,
                      _factor(TAU_Z), _factor(TAU_S), np.zeros((NZ, NS, 2)),
                      np.zeros((10, NS, NZ)))  # fmt: skip


def _tau(x: np.ndarray, y: np.ndarray) -> float:
    return float(sps.kendalltau(x, y).statistic)


def test_class_stats_handle_constant_dimensions_and_round_trip() -> None:
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(7, NS, NZ))
    latents[:, :, 1] = 4.0  # a latent dimension that never varies in this class
    offsets = np.array([[0.1, 0.0], [0.0, 0.0], [0.2, -0.1], [0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [0.3, 0.0]])
    stats = compute_class_stats(latents, "DCM", "ES", extent_offsets=offsets)
    assert stats.extent_offset == pytest.approx([0.1, 0.0])  # the mean placement of the class's LV
    assert compute_class_stats(latents, "DCM", "ED").extent_offset == pytest.approx([0.0, 0.0])
    with pytest.raises(ValueError, match="extent offsets"):
        compute_class_stats(latents, "DCM", "ES", extent_offsets=offsets[:3])
    assert stats.mean.shape == stats.std.shape == (NS, NZ)
    assert np.all(stats.std[:, 1] == 0)
    assert np.all(stats.min <= stats.mean)
    assert np.all(stats.mean <= stats.max)
    assert stats.population_basis.shape == (NZ, NS, 4)
    assert stats.latent_factor.shape == (NZ, NZ)
    assert stats.slice_factor.shape == (NS, NS)
    for mode in CORRELATION_MODES:
        draw = sample_pathology(stats, check_mode(mode), paper_slice_factor(latents[0]), rng)
        assert np.isfinite(draw).all()
        assert np.all(draw[:, 1] == 4.0)
    again = ClassStats.from_bytes(stats.to_bytes())
    assert again.pathology == "DCM"
    assert again.phase == "ES"
    assert np.array_equal(again.latent_factor, stats.latent_factor)
    assert np.array_equal(again.slice_factor, stats.slice_factor)
    assert np.array_equal(again.extent_offset, stats.extent_offset)
    single = compute_class_stats(latents[:1], "HCM", "ED")  # one subject: zero std everywhere
    assert np.array_equal(sample_pathology(single, "both", None, rng), latents[0])
    with pytest.raises(ValueError, match="non-finite"):
        compute_class_stats(np.full((2, NS, NZ), np.nan), "DCM", "ED")
    assert stats_key("v1", "abc", "DCM", "ED", 32) == stats_key("v1", "abc", "DCM", "ED", 32)
    assert stats_key("v1", "abc", "DCM", "ED", 32) != stats_key("v1", "abd", "DCM", "ED", 32)
    assert f"v{STATS_FORMAT}-" in stats_key("v1", "abc", "DCM", "ED", 32)


def test_statistics_of_the_old_estimator_are_not_read_back() -> None:
    """An artefact of format 1 (no ``format``, no ``slice_factor``) must be recomputed, not reused."""
    stats = compute_class_stats(np.random.default_rng(0).normal(size=(5, NS, NZ)), "RV", "ED")
    buffer = io.BytesIO()
    np.savez(buffer, pathology=np.array("RV"), phase=np.array("ED"), n_subjects=np.array(5),
             mean=stats.mean, std=stats.std, min=stats.min, max=stats.max,
             latent_factor=stats.latent_factor, population_basis=stats.population_basis)  # fmt: skip
    with pytest.raises(ValueError, match="format 1"):
        ClassStats.from_bytes(buffer.getvalue())


def test_copula_known_answer_tau_bounds_and_means() -> None:
    """20,000 draws: Kendall taus within 0.03 of the targets, every entry in [min, max], and each
    entry's mean the truncated normal's (the correlation step moves no mean)."""
    stats = _stats(low=1.0, high=2.0)  # tight, asymmetric bounds: truncation matters
    n = 20_000
    draws = sample_pathology(stats, "both", None, np.random.default_rng(0), draws=n)
    assert draws.shape == (n, NS, NZ)
    assert np.all((draws >= stats.min) & (draws <= stats.max))
    for s in range(NS):  # latent taus within each slice
        for i in range(NZ):
            for j in range(i + 1, NZ):
                assert abs(_tau(draws[:, s, i], draws[:, s, j]) - TAU_Z[i, j]) < 0.03, (s, i, j)
    for d in range(NZ):  # slice taus within each latent dimension
        for i in range(NS):
            for j in range(i + 1, NS):
                assert abs(_tau(draws[:, i, d], draws[:, j, d]) - TAU_S[i, j]) < 0.03, (d, i, j)
    # Means: the truncated normal's, within 4 standard errors; truncation alone moves them by
    # std * E[TN(-1, 2)] (~0.23 std here), which the tolerance must be far below to mean anything.
    expected = stats.mean + stats.std * sps.truncnorm.mean(-1.0, 2.0)
    se = stats.std * sps.truncnorm.std(-1.0, 2.0) / np.sqrt(n)
    assert np.all(np.abs(draws.mean(0) - expected) < 4 * se)
    assert np.all(np.abs(expected - stats.mean) > 20 * se)
    # Each marginal is exactly TN (a KS distance at Monte-Carlo level), in every mode.
    for mode in ("none", "latent", "slices", "paper", "both"):
        x = sample_pathology(stats, check_mode(mode), _factor(TAU_S), np.random.default_rng(1), draws=4000)
        u = (x[:, 1, 2] - 2.0) / 0.5
        assert sps.kstest(u, sps.truncnorm(-1.0, 2.0).cdf).statistic < 0.03, mode
    # Symmetric bounds: the means do not move at all.
    wide = _stats(low=1.5, high=1.5)
    sym = sample_pathology(wide, "both", None, np.random.default_rng(2), draws=n)
    se = wide.std * sps.truncnorm.std(-1.5, 1.5) / np.sqrt(n)
    assert np.all(np.abs(sym.mean(0) - wide.mean) < 4 * se)


def test_copula_entries_are_the_mean_where_the_class_does_not_vary() -> None:
    stats = _stats(low=1.0, high=1.0)
    std = stats.std.copy()
    std[2, 1] = 0.0
    flat = ClassStats(**{**stats.__dict__, "std": std})
    x = copula_transform(np.full((NS, NZ), 5.0), flat)
    assert x[2, 1] == flat.mean[2, 1]
    assert np.allclose(np.delete(x.ravel(), 2 * NZ + 1), np.delete(flat.max.ravel(), 2 * NZ + 1))
    with pytest.raises(ValueError, match="shape"):
        copula_transform(np.zeros((NZ, NS)), flat)


def test_truncated_normal_stays_in_bounds_and_is_independent() -> None:
    stats = _stats(low=1.0, high=1.0)
    rng = np.random.default_rng(0)
    draws = np.stack([truncated_normal(stats, rng) for _ in range(500)])
    assert np.all((draws >= stats.min) & (draws <= stats.max))
    u = (draws - stats.mean) / stats.std
    assert np.abs(np.corrcoef(u[:, 1, :], rowvar=False) - np.eye(NZ)).max() < 0.15  # independent


def test_reference_style_uncentred_mixing_shifts_the_mean() -> None:
    stats = _stats(mean=2.0)
    ls = _factor(TAU_S)
    rng = np.random.default_rng(1)
    raw = np.stack(
        [reference_mixing(truncated_normal(stats, rng), stats.latent_factor, ls) for _ in range(1000)]
    )
    ours = sample_pathology(stats, "both", None, rng, draws=1000)
    shift_raw = np.abs(raw.mean(0) - stats.mean).mean()
    shift_ours = np.abs(ours.mean(0) - stats.mean).mean()
    assert shift_raw > 10 * shift_ours
    assert shift_raw > 0.2  # the mean moves by a large share of the class mean (2.0)


def test_residual_latent_correlation_recovers_a_planted_correlation() -> None:
    """Slice means that differ strongly (dims 0 and 1 move in opposite directions along the stack)
    make raw pooled rows look anti-correlated; the planted residual correlation is +0.6."""
    rng = np.random.default_rng(0)
    n, ns = 60, 8
    rho = np.array([[1.0, 0.6, 0.0], [0.6, 1.0, -0.4], [0.0, -0.4, 1.0]])
    residual = rng.standard_normal((n, ns, NZ)) @ np.linalg.cholesky(rho).T
    s = np.arange(ns)[:, None]
    means = np.hstack([10.0 * s, -10.0 * s, 3.0 * np.cos(s)])
    spread = 1.0 + 0.2 * s  # per-slice spread, too
    latents = means + spread * residual
    stats = compute_class_stats(latents, "HCM", "ED")
    estimate = stats.latent_factor @ stats.latent_factor.T
    assert np.abs(estimate - rho).max() < 0.12
    raw = correlation_factor(latents.reshape(n * ns, NZ))
    raw_estimate = raw @ raw.T
    assert raw_estimate[0, 1] < -0.5  # raw rows: the slice means' ordering, not the residuals'
    assert np.abs(raw_estimate - rho).max() > 0.5


def test_class_slice_correlation_recovers_a_planted_slice_correlation() -> None:
    """Subjects as observations recover the class's slice correlation; the paper's single-subject
    estimate (slices compared over one subject's latent values) sees the slice profiles instead."""
    rng = np.random.default_rng(1)
    n, ns, nz = 40, 6, 8
    idx = np.arange(ns)
    cs = 0.8 ** np.abs(idx[:, None] - idx[None, :])
    residual = np.einsum("st,ntd->nsd", np.linalg.cholesky(cs), rng.standard_normal((n, ns, nz)))
    profile = 5.0 * rng.standard_normal(nz)
    means = np.where(idx[:, None] % 2 == 0, profile, -profile)  # alternating slice profiles
    latents = means + 0.5 * residual
    stats = compute_class_stats(latents, "DCM", "ES")
    estimate = stats.slice_factor @ stats.slice_factor.T
    assert np.abs(estimate - cs).max() < 0.12
    paper = paper_slice_factor(latents[0])
    assert np.abs(paper @ paper.T - cs).max() > 0.5
    # The sampler reproduces the estimate: slices of one latent dimension co-vary as in the class.
    draws = sample_pathology(stats, "slices", None, np.random.default_rng(2), draws=5000)
    u = standardise(draws, stats.mean, stats.std)
    assert np.abs(np.corrcoef(u[:, :, 3], rowvar=False) - estimate).max() < 0.1


def test_population_mode_follows_the_basis() -> None:
    rng = np.random.default_rng(0)
    # A class whose slices all move together per dimension: rank one along the slices.
    common = rng.normal(size=(200, 1, NZ))
    latents = np.repeat(common, NS, axis=1) + 0.01 * rng.normal(size=(200, NS, NZ))
    stats = compute_class_stats(latents, "RV", "ED", population_rank=1)
    basis = population_basis((latents - stats.mean) / stats.std, rank=1)
    assert basis.shape == (NZ, NS, 1)
    scores = gaussian_scores(stats, "population", None, rng, draws=4000)
    assert np.allclose(scores.std(0), 1.0, atol=0.05)  # unit-variance scores, then the copula
    draws = sample_pathology(stats, "population", None, rng, draws=300)
    assert np.all((draws >= stats.min) & (draws <= stats.max))
    u = (draws - stats.mean) / stats.std
    c = np.corrcoef(u[:, :, 0], rowvar=False)
    assert c.min() > 0.9  # slices strongly correlated, as in the class


def _cross_coupled(n: int, seed: int = 0) -> np.ndarray:
    """Latents ``(n, NS, NZ)`` with one coupling across slices *and* dimensions: entry (slice 0,
    dim 0) equals (slice 2, dim 1) up to noise, which no separable model ``Cz (x) Cs`` can hold
    without also coupling every other pair (the other entries are independent)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, NS, NZ))
    x[:, 2, 1] = x[:, 0, 0] + 0.05 * rng.normal(size=n)
    return x


def test_joint_mode_recovers_every_correlation_of_the_class() -> None:
    latents = _cross_coupled(60)
    stats = compute_class_stats(latents, "DCM", "ED")
    assert stats.subject_residuals.shape == (60, NS, NZ)
    scores = gaussian_scores(stats, "joint", None, np.random.default_rng(1), draws=20000)
    flat = scores.reshape(len(scores), -1)
    assert np.allclose(flat.std(0), 1.0, atol=0.03)  # unit-variance scores for the copula
    target = np.corrcoef(standardise(latents, stats.mean, stats.std).reshape(60, -1), rowvar=False)
    assert np.abs(np.corrcoef(flat, rowvar=False) - target).max() < 0.05
    coupled = (0 * NZ + 0, 2 * NZ + 1)  # flat indices of (slice 0, dim 0) and (slice 2, dim 1)
    assert np.corrcoef(flat[:, coupled[0]], flat[:, coupled[1]])[0, 1] > 0.95
    # The separable mode cannot express the coupling: it is lost there.
    both = gaussian_scores(stats, "both", None, np.random.default_rng(1), draws=20000).reshape(20000, -1)
    assert abs(np.corrcoef(both[:, coupled[0]], both[:, coupled[1]])[0, 1]) < 0.5
    draws = sample_pathology(stats, "joint", None, np.random.default_rng(2), draws=500)
    assert np.all((draws >= stats.min) & (draws <= stats.max))


def test_joint_scores_lie_in_the_span_of_the_class_and_phases_share_their_weights() -> None:
    """Every score is a combination of the class's own residuals (rank n - 1); ED and ES statistics
    of the same subjects, drawn from the same seeded stream as the engine does, use the same weights:
    a subject drawn like training subject i at ED is like it at ES too."""
    ed = compute_class_stats(_cross_coupled(8, seed=1), "HCM", "ED")
    es = compute_class_stats(_cross_coupled(8, seed=2), "HCM", "ES")
    v_ed = gaussian_scores(ed, "joint", None, np.random.default_rng([7, 0]))
    v_es = gaussian_scores(es, "joint", None, np.random.default_rng([7, 0]))
    basis_ed = ed.subject_residuals.reshape(8, -1).T
    weights, _, rank, _ = np.linalg.lstsq(basis_ed, v_ed.ravel(), rcond=None)
    assert rank == 7  # centred: n - 1
    assert np.allclose(basis_ed @ weights, v_ed.ravel(), atol=1e-9)
    h = np.random.default_rng([7, 0]).standard_normal(8)
    assert np.allclose(v_ed, np.einsum("isd,i->sd", ed.subject_residuals, h))
    assert np.allclose(v_es, np.einsum("isd,i->sd", es.subject_residuals, h))
    single = compute_class_stats(_cross_coupled(1), "HCM", "ED")
    assert np.array_equal(
        gaussian_scores(single, "joint", None, np.random.default_rng(0)), np.zeros((NS, NZ))
    )


def _classes() -> tuple[ClassStats, ClassStats, np.ndarray]:
    """NOR and a pathology with another mean and twice the spread; the NOR subjects' latents."""
    rng = np.random.default_rng(3)
    nor = rng.normal(size=(30, NS, NZ)) + np.arange(NZ)
    path = 2.0 * rng.normal(size=(30, NS, NZ)) + 5.0
    return compute_class_stats(nor, "NOR", "ED"), compute_class_stats(path, "HCM", "ED"), nor


def test_transport_keeps_the_base_at_zero_and_its_ranks_at_one() -> None:
    # The first ``shift`` (full copula transport), kept as ``transport_target`` for comparison; the
    # current ``shift`` (discriminating dimensions only) is tested in test_shift.py.
    nor, hcm, bases = _classes()
    targets = np.stack([transport_target(b, nor, hcm) for b in bases])
    for b, t in zip(bases, targets, strict=True):
        assert np.array_equal(interpolate(b, t, 0.0), b)
    assert np.all((targets >= hcm.min) & (targets <= hcm.max))
    r_base = standardise(bases, nor.mean, nor.std)
    r_target = standardise(targets, hcm.mean, hcm.std)
    # Each entry's order over the subjects is kept exactly (a monotone transport) ...
    assert np.array_equal(np.argsort(r_base, axis=0), np.argsort(r_target, axis=0))
    assert sps.spearmanr(r_base.ravel(), r_target.ravel()).statistic > 0.97
    # ... and away from the bounds it is the class shift plus the rescaled residual.
    central = np.abs(r_base) < 1.0
    linear = hcm.mean + hcm.std * r_base
    assert np.abs(targets - linear)[central].max() < 0.25 * hcm.std.max()
    # A sampled residual adds variety but keeps most of the order.
    rng = np.random.default_rng(0)
    noisy = np.stack(
        [transport_target(b, nor, hcm, gaussian_scores(hcm, "both", None, rng), 0.3) for b in bases]
    )
    assert np.all((noisy >= hcm.min) & (noisy <= hcm.max))
    r_noisy = standardise(noisy, hcm.mean, hcm.std)
    assert 0.8 < sps.spearmanr(r_base.ravel(), r_noisy.ravel()).statistic < 0.99
    with pytest.raises(ValueError, match="needs scores"):
        transport_target(bases[0], nor, hcm, None, 0.3)
    with pytest.raises(ValueError, match="residual"):
        transport_target(bases[0], nor, hcm, None, 1.5)
    with pytest.raises(ValueError, match="differ"):
        transport_target(bases[0, :2], nor, hcm)


def test_interpolation_and_mode_errors() -> None:
    base, target = np.zeros((NS, NZ)), np.ones((NS, NZ))
    assert np.allclose(interpolate(base, target, 0.25), 0.25)
    assert np.array_equal(interpolate(base, target, 1.0), target)
    with pytest.raises(ValueError, match="severity"):
        interpolate(base, target, 1.5)
    with pytest.raises(ValueError, match="unknown correlation mode"):
        check_mode("diagonal")
    with pytest.raises(ValueError, match="unknown interpolation 'linear'"):
        check_interpolation("linear")
    assert "paper" in CORRELATION_MODES
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="paper"):
        gaussian_scores(_stats(), "paper", None, rng)
    with pytest.raises(ValueError, match="slice factor"):
        gaussian_scores(_stats(), "both", np.eye(NS + 1), rng)
    with pytest.raises(ValueError, match="draws"):
        gaussian_scores(_stats(), "none", None, rng, draws=0)
