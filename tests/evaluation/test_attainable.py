"""What a perfect generator scores: known answers on Gaussian pools."""

from __future__ import annotations

import numpy as np
import pytest

from cardiosynth.evaluation.attainable import perfect_sampler
from cardiosynth.evaluation.distribution import BIOMARKERS


def _pool(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, len(BIOMARKERS)))


def test_the_split_floor_does_not_tighten_with_more_subjects_the_bootstrap_floor_does() -> None:
    pool = _pool(1200)
    large = perfect_sampler(pool, n_train=300, n_held=300, n_synth=300, draws=40, seed=1)
    small = perfect_sampler(pool, n_train=12, n_held=8, n_synth=10, draws=200, seed=1)
    for figures in (large, small):
        split = figures["floors"]["split"]
        # Two samples of one distribution: W1 to the held-out set is the floor's, give or take noise.
        for value in split["w1_normalised_median"].values():
            assert 0.7 < value < 1.4
        # Each ratio is within 1.5 most of the time, the maximum of seven far less often, at any size:
        # numerator and denominator are alike noisy, so their ratio's spread does not shrink with n.
        for share in split["w1_met_share"].values():
            assert 0.6 < share < 1.0
        assert split["w1_max_met_share"] < 0.7
        assert split["all_met_share"] <= min(split["w1_max_met_share"], figures["precision_met_share"])
    # The bootstrap floor is an expectation: only the numerator's noise is left, which shrinks with n.
    for figures in (large, small):
        boot, split = figures["floors"]["bootstrap"], figures["floors"]["split"]
        assert boot["w1_max_met_share"] > split["w1_max_met_share"] + 0.2
    assert large["floors"]["bootstrap"]["w1_max_met_share"] >= 0.8
    assert large["precision_median"] >= 0.8
    assert large["recall_median"] >= 0.8
    assert large["range_share_median"] > small["range_share_median"]


def test_a_collapsing_sampler_fails_where_a_perfect_one_passes() -> None:
    pool = _pool(400)
    shrunk = pool.mean(axis=0) + 0.3 * (pool - pool.mean(axis=0))
    perfect = perfect_sampler(pool, n_train=40, n_held=60, n_synth=60, draws=60, seed=2)
    flawed = perfect_sampler(pool, n_train=40, n_held=60, n_synth=60, draws=60, seed=2, synthetic_pool=shrunk)
    assert perfect["floors"]["bootstrap"]["w1_max_met_share"] > 0.6
    assert flawed["floors"]["bootstrap"]["w1_max_met_share"] < 0.1
    assert flawed["recall_median"] < perfect["recall_median"]
    with pytest.raises(ValueError, match="differs"):
        perfect_sampler(pool, n_train=4, n_held=4, n_synth=4, draws=1, synthetic_pool=shrunk[:10])


def test_seeded_and_leaves_out_non_finite_rows() -> None:
    pool = _pool(60)
    a = perfect_sampler(pool, n_train=12, n_held=8, n_synth=10, draws=20, seed=3)
    b = perfect_sampler(pool, n_train=12, n_held=8, n_synth=10, draws=20, seed=3)
    assert a == b
    holed = np.vstack([pool, np.full((5, len(BIOMARKERS)), np.nan)])
    assert perfect_sampler(holed, n_train=12, n_held=8, n_synth=10, draws=20, seed=3) == a


@pytest.mark.parametrize(
    ("pool", "sizes", "match"),
    [
        (_pool(20), (12, 8, 10), "needs 30"),
        (_pool(40), (0, 8, 10), "positive"),
        (_pool(40)[:, :3], (12, 8, 10), "columns"),
        (_pool(40)[0], (12, 8, 10), "columns"),
    ],
)
def test_bad_input(pool: np.ndarray, sizes: tuple[int, int, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        perfect_sampler(pool, n_train=sizes[0], n_held=sizes[1], n_synth=sizes[2], draws=5)
