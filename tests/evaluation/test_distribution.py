from __future__ import annotations

import math

import numpy as np
import pytest

from cardiosynth.evaluation.distribution import (
    BIOMARKERS,
    biomarker_matrix,
    bootstrap_w1,
    distribution_figures,
    knn_precision_recall,
    knn_radii,
    normalised_w1,
    range_share,
)


def _class(rng: np.random.Generator, n: int, mean: float = 0.0, d: int = len(BIOMARKERS)) -> np.ndarray:
    return rng.normal(mean, 1.0, size=(n, d))


def test_knn_radii_known_answer() -> None:
    points = np.array([[0.0], [1.0], [3.0], [7.0]])
    # 2nd nearest other point: 0 -> 3, 1 -> 2 (to 3), 3 -> 3 (to 0), 7 -> 6 (to 1)
    assert knn_radii(points, 2).tolist() == [3.0, 2.0, 3.0, 6.0]
    with pytest.raises(ValueError, match="more than k"):
        knn_radii(points, 4)


def test_identical_sets_score_one_and_disjoint_sets_zero() -> None:
    rng = np.random.default_rng(0)
    real = _class(rng, 30)
    assert knn_precision_recall(real, real.copy(), 3) == (1.0, 1.0)
    far = real + 100.0
    assert knn_precision_recall(real, far, 3) == (0.0, 0.0)


def test_class_mean_collapse_keeps_precision_but_loses_recall() -> None:
    rng = np.random.default_rng(1)
    real = _class(rng, 40)
    # A constant "sampler": every output the class mean, with a little decoder jitter.
    collapsed = real.mean(axis=0) + 0.01 * rng.standard_normal((40, real.shape[1]))
    precision, recall = knn_precision_recall(real, collapsed, 3)
    assert precision == 1.0
    assert recall < 0.2


def test_too_few_finite_rows_give_nan() -> None:
    real = np.ones((3, 2))
    precision, recall = knn_precision_recall(real, np.ones((10, 2)), 3)
    assert math.isnan(precision)
    assert math.isnan(recall)


def test_normalised_w1_is_one_at_the_floor_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(2)
    train, held = _class(rng, 200), _class(rng, 200)
    fresh = _class(rng, 200)
    at_floor = normalised_w1(fresh, held, train)
    assert all(0.3 < v < 3.0 for v in at_floor.values())
    shifted = normalised_w1(fresh + 2.0, held, train)
    assert all(v > 5.0 for v in shifted.values())
    assert normalised_w1(held, held, held)[BIOMARKERS[0]] == 0.0  # zero distance over a zero floor
    assert normalised_w1(held + 1, held, held)[BIOMARKERS[0]] == math.inf


def test_bootstrap_floor_matches_a_plain_bootstrap_and_is_seeded() -> None:
    from scipy import stats as sps

    rng = np.random.default_rng(4)
    train, held = rng.normal(size=12), rng.normal(0.3, 1.2, size=8)
    fast = bootstrap_w1(train, held, 10, 4000, np.random.default_rng(0))
    draws = np.random.default_rng(1).integers(0, 12, size=(4000, 10))
    plain = np.mean([sps.wasserstein_distance(train[d], held) for d in draws])
    assert fast == pytest.approx(plain, rel=0.02)
    # Repeated training values (a resample's ties) land on one grid point.
    assert bootstrap_w1(np.array([1.0, 1.0]), np.array([1.0]), 5, 10, rng) == 0.0
    assert bootstrap_w1(np.array([0.0, 0.0]), np.array([2.0]), 5, 10, rng) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="positive"):
        bootstrap_w1(train, held, 0, 10, rng)


def test_bootstrap_floor_in_normalised_w1() -> None:
    rng = np.random.default_rng(5)
    train, held, fresh = _class(rng, 40), _class(rng, 40), _class(rng, 40)
    a = normalised_w1(fresh, held, train, floor="bootstrap")
    assert a == normalised_w1(fresh, held, train, floor="bootstrap")  # seeded
    assert all(0.3 < v < 3.0 for v in a.values())
    assert all(v > 4.0 for v in normalised_w1(fresh + 2.0, held, train, floor="bootstrap").values())
    with pytest.raises(ValueError, match="unknown W1 floor"):
        normalised_w1(fresh, held, train, floor="median")  # type: ignore[arg-type]
    figures = distribution_figures(fresh, held, train)
    assert figures["w1_normalised"] == a
    assert figures["w1_normalised_split"] == normalised_w1(fresh, held, train)


def test_range_share_counts_rows_fully_inside() -> None:
    reference = np.array([[0.0, 10.0], [1.0, 20.0]])
    values = np.array([[0.5, 15.0], [0.5, 25.0], [np.nan, 15.0], [1.0, 10.0]])
    assert range_share(reference, values) == 0.5
    with pytest.raises(ValueError, match="one width"):
        range_share(reference, np.zeros((2, 3)))


def test_biomarker_matrix_marks_missing_as_nan() -> None:
    from types import SimpleNamespace

    b = SimpleNamespace(**{name: float(i) for i, name in enumerate(BIOMARKERS)})
    b.mass_index = None
    m = biomarker_matrix([b, None])  # type: ignore[list-item]
    assert m.shape == (2, len(BIOMARKERS))
    assert m[0, 0] == 0.0
    assert math.isnan(m[0, BIOMARKERS.index("mass_index")])
    assert np.isnan(m[1]).all()


def test_a_broken_sampler_fails_the_targets_and_a_good_one_passes() -> None:
    """The evaluation must be able to fail: constructed biomarker sets for one class."""
    from cardiosynth.evaluation.synthesis import distribution_verdict

    rng = np.random.default_rng(3)
    train, held = _class(rng, 60), _class(rng, 60)
    good = distribution_figures(_class(rng, 60), held, train)
    assert all(distribution_verdict(good).values()), good
    # Shuffled latents decode to shapes off the class manifold: far from every real subject.
    shuffled = distribution_figures(_class(rng, 60, mean=4.0), held, train)
    verdict = distribution_verdict(shuffled)
    assert not verdict["precision"]
    assert not verdict["recall"]
    assert not verdict["w1_normalised"]
    # A constant sampler (the class mean decoded) is realistic but covers nothing of the class.
    constant = distribution_figures(np.repeat(held.mean(axis=0, keepdims=True), 60, axis=0), held, train)
    verdict = distribution_verdict(constant)
    assert not verdict["recall"]
    assert not verdict["w1_normalised"]
