"""The ``shift`` interpolation family: the base moved by the class shift in the discriminating latent
dimensions only (:func:`cardiosynth.synthesis.sampling.shift_target`)."""

from __future__ import annotations

import numpy as np
import pytest

from cardiosynth.data.labels import Group
from cardiosynth.synthesis.engine import SynthesisRequest, target_latents
from cardiosynth.synthesis.sampling import (
    SHIFT_DIMS,
    copula_transform,
    discriminant_dims,
    gaussian_scores,
    interpolate,
    sample_pathology,
    shift_amplitude,
    shift_target,
    standardised_difference,
)
from cardiosynth.synthesis.stats import ClassStats, compute_class_stats

NS, NZ = 6, 8


def _classes(seed: int = 0) -> tuple[ClassStats, ClassStats, np.ndarray]:
    """NOR and a pathology that differs strongly in dims 2 and 5, weakly in dim 0; NOR latents."""
    rng = np.random.default_rng(seed)
    nor = rng.normal(size=(40, NS, NZ))
    path = rng.normal(size=(40, NS, NZ))
    path[:, :, 2] += 3.0
    path[:, :, 5] -= 2.5
    path[:, :, 0] += 0.6
    return compute_class_stats(nor, "NOR", "ED"), compute_class_stats(path, "HCM", "ED"), nor


def test_only_the_discriminating_dimensions_move() -> None:
    nor, hcm, bases = _classes()
    mask = discriminant_dims(nor, hcm, 2)
    assert np.flatnonzero(mask).tolist() == [2, 5]
    for base in bases[:10]:
        target = shift_target(base, nor, hcm, k=2)
        assert np.array_equal(target[:, ~mask], base[:, ~mask])  # identity there is untouched, exactly
        for a in (0.3, 1.0):  # (1 - a) z + a z is z up to rounding
            assert np.allclose(interpolate(base, target, a)[:, ~mask], base[:, ~mask], rtol=0, atol=1e-12)
        assert np.array_equal(interpolate(base, target, 0.0), base)
        # The shifted columns move towards the pathology, by about its mean difference.
        step = (target - base)[:, mask].mean(axis=0)
        assert step[0] > 2.0
        assert step[1] < -1.5
    # k = nz moves every live dimension (no mask left), by the plain class shift (A = 1).
    assert shift_amplitude(nor, hcm, np.ones(NZ, dtype=bool)) == pytest.approx(1.0)
    full = shift_target(bases[0] * 0 + nor.mean, nor, hcm, k=NZ)
    assert np.allclose(full, hcm.mean)


def test_amplitude_moves_the_discriminant_score_as_the_class_shift_does() -> None:
    nor, hcm, _ = _classes()
    delta = hcm.mean - nor.mean
    w = standardised_difference(nor, hcm) / np.sqrt(0.5 * (nor.std**2 + hcm.std**2))  # Delta / s^2
    for k in (2, 3):
        mask = discriminant_dims(nor, hcm, k)
        amplitude = shift_amplitude(nor, hcm, mask)
        assert amplitude >= 1.0
        # From the NOR mean (far from every bound) the clip does nothing: exact Fisher score.
        moved = shift_target(nor.mean, nor, hcm, k=k) - nor.mean
        assert np.allclose(moved[:, mask], amplitude * delta[:, mask])
        assert float((w * moved).sum()) == pytest.approx(float((w * delta).sum()), rel=1e-9)
    # With one dimension, A = 1.65 would carry dim 2 past both classes' range: clipped there.
    one = shift_target(nor.mean, nor, hcm, k=1)
    assert np.allclose(one[:, 2], np.minimum(nor.mean[:, 2] + 1.65 * delta[:, 2], hcm.max[:, 2]), atol=0.05)
    assert np.all(one[:, 2] <= np.maximum(nor.max, hcm.max)[:, 2])
    # Leaving out the weak dimension 0 costs little amplitude; leaving out dim 5 costs a lot.
    assert shift_amplitude(nor, hcm, discriminant_dims(nor, hcm, 2)) < 1.05
    assert shift_amplitude(nor, hcm, discriminant_dims(nor, hcm, 1)) > 1.4


def test_bounds_residual_and_errors() -> None:
    nor, hcm, bases = _classes(1)
    low, high = np.minimum(nor.min, hcm.min), np.maximum(nor.max, hcm.max)
    extreme = bases[0] + 50.0  # far outside both classes in every entry
    assert np.all((shift_target(extreme, nor, hcm) >= low) & (shift_target(extreme, nor, hcm) <= high))
    target = shift_target(extreme, nor, hcm, k=2)
    mask = discriminant_dims(nor, hcm, 2)
    assert np.all((target[:, mask] >= low[:, mask]) & (target[:, mask] <= high[:, mask]))
    assert np.array_equal(target[:, ~mask], extreme[:, ~mask])
    # Deterministic without a residual; a residual varies only the shifted columns.
    assert np.array_equal(shift_target(bases[1], nor, hcm), shift_target(bases[1], nor, hcm))
    scores = gaussian_scores(hcm, "both", None, np.random.default_rng(0))
    noisy = shift_target(bases[1], nor, hcm, scores, 0.5, k=2)
    assert np.array_equal(noisy[:, ~mask], bases[1][:, ~mask])
    assert not np.allclose(noisy[:, mask], shift_target(bases[1], nor, hcm, k=2)[:, mask])
    with pytest.raises(ValueError, match="needs scores"):
        shift_target(bases[0], nor, hcm, None, 0.3)
    with pytest.raises(ValueError, match="residual"):
        shift_target(bases[0], nor, hcm, scores, 1.5)
    with pytest.raises(ValueError, match="differ"):
        shift_target(bases[0, :2], nor, hcm)
    with pytest.raises(ValueError, match="k must be"):
        discriminant_dims(nor, hcm, 0)
    same = compute_class_stats(bases + np.eye(NZ)[2], "HCM", "ED")  # differs from NOR in dim 2 only
    with pytest.raises(ValueError, match="only outside"):
        shift_amplitude(nor, same, np.eye(NZ, dtype=bool)[7])
    assert np.flatnonzero(discriminant_dims(nor, same, 1)).tolist() == [2]


def _disc(z: np.ndarray, size: int = 48) -> np.ndarray:
    """A toy decoder: per slice, a disc centred at (24 + 3 z0, 24 + 3 z1) with radius 10 + 2 z2."""
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((len(z), size, size), dtype=np.uint8)
    for i, (x, y, r) in enumerate(z[:, :3]):
        out[i][(xx - 24 - 3 * x) ** 2 + (yy - 24 - 3 * y) ** 2 <= (10 + 2 * r) ** 2] = 1
    return out


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))


def test_identity_dice_on_a_toy_decoder() -> None:
    """Position (dims 0, 1) is identity, radius (dim 2) is the pathology. The pathology's sample
    happens to sit off-centre in x (a chance class-mean difference, as with ~20 subjects): the
    plain class shift moves every base by it, the discriminating shift does not."""
    rng = np.random.default_rng(5)
    nor_lat = rng.normal(size=(30, 4, 3)) * [1.0, 1.0, 0.2]
    path_lat = rng.normal(size=(30, 4, 3)) * [1.0, 1.0, 0.2] + [2.0, 0.0, 1.5]
    nor, path = compute_class_stats(nor_lat, "NOR", "ED"), compute_class_stats(path_lat, "HCM", "ED")
    assert np.flatnonzero(discriminant_dims(nor, path, 1)).tolist() == [2]
    ours, plain, bound = [], [], []
    for base in nor_lat[:10]:
        b = _disc(base)
        mine = _disc(shift_target(base, nor, path, k=1))
        ours.append(_dice(mine, b))
        plain.append(_dice(_disc(shift_target(base, nor, path, k=3)), b))
        bound.append(2 * min(mine.sum(), b.sum()) / (mine.sum() + b.sum()))
        # The output is the pathology: a larger disc (radius up by ~2 * 1.5 * A pixels).
        assert mine.sum() > 1.5 * b.sum()
    # Concentric growth: identity Dice reaches the volume-ratio bound; the plain shift falls below.
    assert np.mean(ours) > np.mean(bound) - 0.01
    assert np.mean(ours) > np.mean(plain) + 0.05


def test_default_is_the_plain_class_shift_with_the_residual_at_nor_scale() -> None:
    """The shipped default moves every dimension by ``mu_P - mu_N``: the base's own residual is kept
    as it is (the first ``shift`` rescaled it by ``s_P / s_N``, which this test would catch)."""
    nor, hcm, bases = _classes()
    hcm = compute_class_stats(  # a pathology with twice NOR's spread, so a rescaling would show
        2.0 * (bases - nor.mean) + hcm.mean, "HCM", "ED"
    )
    assert SHIFT_DIMS is None
    assert discriminant_dims(nor, hcm).all()
    low, high = np.minimum(nor.min, hcm.min), np.maximum(nor.max, hcm.max)
    for base in bases[:10]:
        target = shift_target(base, nor, hcm)
        assert np.allclose(target, np.clip(base + hcm.mean - nor.mean, low, high))
        inside = (base + hcm.mean - nor.mean > low) & (base + hcm.mean - nor.mean < high)
        assert np.allclose((target - base)[inside], (hcm.mean - nor.mean)[inside])


def test_engine_shift_branch_uses_shift_target() -> None:
    nor, hcm, bases = _classes()
    request = SynthesisRequest(Group.HCM, interpolation="shift")
    rng = np.random.default_rng(0)
    target = target_latents(request, hcm, nor, bases[3], rng)
    assert np.array_equal(target, shift_target(bases[3], nor, hcm))
    assert not np.allclose(target, bases[3])
    with pytest.raises(ValueError, match="NOR class statistics"):
        target_latents(request, hcm, None, bases[3], rng)


@pytest.mark.parametrize("mode", ["joint", "both", "none"])
def test_negate_draws_the_antithetic_partner_and_leaves_the_plain_draw_as_it_was(mode: str) -> None:
    """``negate`` (the sampling calibration's pairs) negates the Gaussian scores the generator draws;
    without it the end point is the plain copula sample, bit for bit (synthesis is unchanged)."""
    nor, hcm, bases = _classes()
    request = SynthesisRequest(Group.HCM, correlation=mode)
    plain = target_latents(request, hcm, None, bases[0], np.random.default_rng(5))
    assert np.array_equal(plain, sample_pathology(hcm, mode, None, np.random.default_rng(5)))
    partner = target_latents(request, hcm, None, bases[0], np.random.default_rng(5), negate=True)
    scores = gaussian_scores(hcm, mode, None, np.random.default_rng(5))
    assert np.array_equal(partner, copula_transform(-scores, hcm))
    assert not np.allclose(partner, plain)
    # Each entry on the other side of its class median, as its partner's score is of 0.
    live = hcm.std > 0
    median = copula_transform(np.zeros_like(scores), hcm)
    assert np.all(((plain - median) * (partner - median))[live] <= 1e-12)
    # A shift with a residual negates the residual's scores; without one there is nothing to negate.
    mixed = SynthesisRequest(Group.HCM, correlation=mode, interpolation="shift", shift_residual=0.5)
    a = target_latents(mixed, hcm, nor, bases[0], np.random.default_rng(5))
    b = target_latents(mixed, hcm, nor, bases[0], np.random.default_rng(5), negate=True)
    assert np.array_equal(b, shift_target(bases[0], nor, hcm, -scores, 0.5))
    assert not np.allclose(a, b)
    fixed = SynthesisRequest(Group.HCM, interpolation="shift")
    assert np.array_equal(
        target_latents(fixed, hcm, nor, bases[0], np.random.default_rng(5), negate=True),
        shift_target(bases[0], nor, hcm),
    )
