from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from cardiosynth.data.acdc import read_subject
from cardiosynth.data.biomarkers import wall_thickness_by_sector
from cardiosynth.data.preprocess import (
    CROP_SIZE,
    Geometry,
    apex_first,
    apply_image,
    apply_labels,
    one_hot,
    plan_geometry,
    preprocess_subject,
    restore_image,
    restore_labels,
    restore_probabilities,
)


def cone_heart(shape: tuple[int, int, int], centre: tuple[float, float], base_radius: float) -> np.ndarray:
    """A stack of shrinking rings, base (large) at slice 0, in pixels."""
    x, y = np.meshgrid(np.arange(shape[0]) - centre[0], np.arange(shape[1]) - centre[1], indexing="ij")
    r = np.hypot(x, y)
    out = np.zeros(shape, np.uint8)
    for k in range(shape[2]):
        rk = base_radius * (1 - k / (shape[2] + 1))
        out[r < rk * 1.5, k] = 1
        out[r < rk * 1.2, k] = 2
        out[r < rk, k] = 3
    return out


def affine_for(spacing: float, slice_spacing: float = 8.0) -> np.ndarray:
    a = np.diag([spacing, spacing, slice_spacing, 1.0])
    a[:3, 3] = [-100.0, 50.0, 10.0]
    return a


def dice(a: np.ndarray, b: np.ndarray, c: int) -> float:
    return float(2 * np.sum((a == c) & (b == c)) / (np.sum(a == c) + np.sum(b == c)))


@pytest.mark.parametrize("spacing", [1.5, 1.62, 1.9])
def test_label_round_trip_is_exact_when_native_pixels_are_at_least_target(spacing: float) -> None:
    labels = cone_heart((150, 140, 9), (70.3, 66.8), 14.0)
    g = plan_geometry([labels], affine_for(spacing))
    stack = apply_labels(labels, g)
    assert stack.shape == (9, CROP_SIZE, CROP_SIZE)
    np.testing.assert_array_equal(restore_labels(stack, g), labels)


def test_finer_native_grid_round_trip_is_close() -> None:
    labels = cone_heart((200, 200, 8), (100.0, 97.0), 20.0)
    g = plan_geometry([labels], affine_for(1.3))
    back = restore_labels(apply_labels(labels, g), g)
    # thin apical rings lose most to the coarser grid
    assert min(dice(back, labels, c) for c in (1, 2, 3)) > 0.9


def test_crop_is_centred_on_the_heart_and_pads_at_the_edge() -> None:
    labels = cone_heart((60, 60, 6), (12.0, 45.0), 8.0)  # heart near a corner of a small image
    image = np.random.default_rng(0).normal(100, 10, labels.shape)
    g = plan_geometry([labels], affine_for(1.5))
    stack = apply_labels(labels, g)
    com = np.argwhere(stack > 0)[:, 1:].mean(axis=0)
    np.testing.assert_allclose(com, (CROP_SIZE / 2, CROP_SIZE / 2), atol=1.5)
    img, _ = apply_image(image, g)
    assert img.shape == stack.shape
    assert np.all(img[:, 0, :] == img[0, 0, 0])  # padded rows hold one constant
    np.testing.assert_array_equal(restore_labels(stack, g), labels)


def test_image_is_normalised_to_minus_one_one_by_percentiles() -> None:
    labels = cone_heart((150, 150, 6), (75.0, 75.0), 14.0)
    image = np.random.default_rng(1).gamma(2.0, 100.0, labels.shape)
    g = plan_geometry([labels], affine_for(1.5))
    img, (lo, hi) = apply_image(image, g)
    assert img.dtype == np.float32
    assert img.min() == -1.0
    assert img.max() == 1.0
    assert (lo, hi) == pytest.approx(tuple(np.percentile(image, (1, 99))))


def test_image_inverse_recovers_the_native_intensities() -> None:
    labels = cone_heart((140, 140, 5), (70.0, 70.0), 14.0)
    x = np.linspace(0, 1, 140)
    image = np.broadcast_to((200.0 + 300.0 * x[:, None] * x[None, :])[..., None], labels.shape).copy()
    g = plan_geometry([labels], affine_for(1.5))
    stack, window = apply_image(image, g)
    back = restore_image(stack, g, window)
    inside = restore_labels(apply_labels(np.ones_like(labels), g), g) == 1
    unclipped = inside & (image >= window[0]) & (image <= window[1])  # percentiles clip the tails
    assert unclipped.mean() > 0.5
    np.testing.assert_allclose(back[unclipped], image[unclipped], rtol=1e-4)


def test_apex_first_stacks_are_reordered_base_first_and_restored() -> None:
    base_first = cone_heart((150, 150, 8), (75.0, 75.0), 15.0)
    apex_first_labels = base_first[:, :, ::-1].copy()
    assert not apex_first(base_first)
    assert apex_first(apex_first_labels)
    g = plan_geometry([apex_first_labels], affine_for(1.5))
    assert g.reversed_slices
    stack = apply_labels(apex_first_labels, g)
    areas = (stack > 0).sum(axis=(1, 2))
    assert areas[0] > areas[-1]  # base first after preprocessing
    np.testing.assert_array_equal(restore_labels(stack, g), apex_first_labels)


def test_slice_order_can_be_stated() -> None:
    labels = cone_heart((150, 150, 8), (75.0, 75.0), 15.0)
    assert plan_geometry([labels], affine_for(1.5), slice_order="apex_first").reversed_slices
    with pytest.raises(ValueError, match="slice_order"):
        plan_geometry([labels], affine_for(1.5), slice_order="sideways")  # type: ignore[arg-type]


def test_processed_affine_points_at_the_same_world_position() -> None:
    labels = cone_heart((150, 140, 9), (70.0, 66.0), 14.0)
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([1.8, 1.8, 7.0])
    affine[:3, 3] = [5.0, 6.0, 7.0]
    g = plan_geometry([labels], affine, slice_order="apex_first")
    a, b, k = 10, 20, 2
    sx, sy = g.scale
    native_index = np.array(
        [
            (a + g.crop_start[0] + 0.5) * sx - 0.5,
            (b + g.crop_start[1] + 0.5) * sy - 0.5,
            labels.shape[2] - 1 - k,
            1,
        ]
    )
    np.testing.assert_allclose(g.processed_affine() @ [a, b, k, 1], affine @ native_index)


def test_geometry_serialises() -> None:
    labels = cone_heart((150, 140, 9), (70.0, 66.0), 14.0)
    g = plan_geometry([labels], affine_for(1.7))
    assert Geometry.from_dict(g.to_dict()) == g


def test_errors_are_value_errors() -> None:
    labels = cone_heart((150, 140, 9), (70.0, 66.0), 14.0)
    with pytest.raises(ValueError, match="no heart"):
        plan_geometry([np.zeros_like(labels)], affine_for(1.5))
    with pytest.raises(ValueError, match="one shape"):
        plan_geometry([labels, labels[:, :, :3]], affine_for(1.5))
    g = plan_geometry([labels], affine_for(1.5))
    with pytest.raises(ValueError, match="differs from the geometry"):
        apply_labels(labels[:, :, :3], g)
    with pytest.raises(ValueError, match="expected a stack"):
        restore_labels(np.zeros((9, 64, 64), np.uint8), g)


def test_one_hot_layout() -> None:
    stack = np.array([[[0, 1], [2, 3]]], dtype=np.uint8)
    oh = one_hot(stack)
    assert oh.shape == (1, 4, 2, 2)
    np.testing.assert_array_equal(oh.argmax(axis=1), stack)


def test_phantom_subject_preprocesses_and_inverts(phantom_root: Path) -> None:
    for path in sorted((phantom_root / "training").iterdir()):
        subject = read_subject(path)
        p = preprocess_subject(subject)
        assert p.ed_image.shape == p.ed_label.shape == (subject.ed_label.shape[2], CROP_SIZE, CROP_SIZE)
        assert not p.geometry.reversed_slices  # the phantom writes base first
        back = restore_labels(p.es_label, p.geometry)
        if min(p.geometry.native_spacing) >= 1.5:
            np.testing.assert_array_equal(back, subject.es_label)
        else:
            assert min(dice(back, subject.es_label, c) for c in (1, 2, 3)) > 0.95


def test_phases_are_keyed_by_name_with_one_geometry(phantom_root: Path) -> None:
    from cardiosynth.data.preprocess import PhaseStacks, PreprocessedSubject

    subject = read_subject(sorted((phantom_root / "training").iterdir())[0])
    p = preprocess_subject(subject)
    assert list(p.phases) == ["ED", "ES"]
    for name, image, label in (
        ("ED", subject.ed_image, subject.ed_label),
        ("ES", subject.es_image, subject.es_label),
    ):
        stacks = p.phase(name)
        expected_image, window = apply_image(image, p.geometry)
        np.testing.assert_array_equal(stacks.image, expected_image)
        np.testing.assert_array_equal(stacks.label, apply_labels(label, p.geometry))
        assert stacks.window == window
    assert p.es_label is p.phases["ES"].label  # the old names read the mapping
    assert p.ed_window == p.phases["ED"].window
    with pytest.raises(ValueError, match="'MID'"):
        p.phase("MID")
    with pytest.raises(ValueError, match=r"phases must be \('ED', 'ES'\)"):
        PreprocessedSubject("x", p.geometry, {"ED": PhaseStacks(p.ed_image, p.ed_label, p.ed_window)})


def textured_subject(
    shape: tuple[int, int, int] = (180, 170, 6),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, a noisy body-like image and the affine of a subject whose field of view exceeds the crop."""
    labels = cone_heart(shape, (88.0, 80.0), 14.0)
    rng = np.random.default_rng(3)
    x, y = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    body = 300.0 * np.exp(-(x**2 + y**2) / 0.8)
    image = body[..., None] + 40.0 * labels + rng.normal(0.0, 12.0, shape)
    return labels, image, affine_for(1.5)


def seam_jump(volume: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
    """Mean |difference| between x-neighbours in the worst band of the seam (pairs of equal weight
    level across the crop border and its ramp) and between neighbours deep inside the crop."""
    dx = np.abs(np.diff(volume, axis=0))
    lo, hi = weight[:-1], weight[1:]
    seam = lo != hi
    level = np.round(np.minimum(lo, hi), 3)
    worst = max(float(dx[seam & (level == v)].mean()) for v in np.unique(level[seam]))
    return worst, float(dx[(lo == 1) & (hi == 1)].mean())


def test_composite_has_the_base_grid_no_constant_fill_and_no_visible_seam() -> None:
    from cardiosynth.data.preprocess import FEATHER_MM, composite_image, crop_weight

    labels, image, affine = textured_subject()
    g = plan_geometry([labels], affine)
    stack, window = apply_image(image, g)
    synthetic = np.clip(stack + 0.2, -1.0, 1.0)  # a translation brighter than the base by ~50 units
    out = composite_image(synthetic, g, image, window)
    assert out.shape == image.shape
    assert out.dtype == np.float32
    # the old paste: two thirds of the volume is one value; the composite has no constant region
    pasted = restore_image(synthetic, g, window)
    _, counts = np.unique(pasted, return_counts=True)
    assert counts.max() / pasted.size > 0.2
    _, counts = np.unique(out, return_counts=True)
    assert counts.max() / out.size < 0.05  # the percentile clipping alone puts ~1-2 % at the window ends
    weight = crop_weight(g)
    # outside the crop: the base's own voxels; deep inside: the synthetic image
    np.testing.assert_array_equal(out[weight == 0], image[weight == 0].astype(np.float32))
    np.testing.assert_allclose(out[weight == 1], pasted[weight == 1], rtol=1e-5)
    # the ramp: FEATHER_MM wide, monotone, from 0 to 1
    row = weight[:, int(np.argmax(weight.max(axis=0)))]
    start, full = int(np.flatnonzero(row > 0)[0]), int(np.flatnonzero(row == 1)[0])
    assert (full - start + 1) * 1.5 == pytest.approx(FEATHER_MM, abs=1.5)  # 1.5 mm native pixels
    assert np.all(np.diff(row[: full + 1]) > -1e-12)
    # seam continuity: across the crop border and its ramp the image steps about as much as between
    # neighbours inside the crop (noise); a hard paste (no feather) steps far more there
    jump, inside = seam_jump(out[:, :, 2], weight)
    assert jump <= 1.35 * inside
    hard = composite_image(synthetic, g, image, window, feather_mm=0.0)
    hard_jump, hard_inside = seam_jump(hard[:, :, 2], crop_weight(g, 0.0))
    assert hard_jump > 2.5 * hard_inside


def test_composite_keeps_every_voxel_at_its_world_position() -> None:
    from cardiosynth.data.preprocess import composite_image

    labels, image, affine = textured_subject((170, 160, 5))
    g = plan_geometry([labels], affine)
    stack, window = apply_image(image, g)
    out = composite_image(stack, g, image, window)
    # the synthetic crop is the base's own image here: where the weight is 1 the composite equals
    # the round trip, so a feature of the base (its heart) lands on the voxels it came from
    lv = labels == 3
    back = restore_image(stack, g, window)
    np.testing.assert_allclose(out[lv], back[lv], rtol=1e-5)
    unclipped = lv & (image >= window[0]) & (image <= window[1])
    np.testing.assert_allclose(out[unclipped], image[unclipped], rtol=1e-4)


def test_labels_outside_the_crop_are_background_in_the_base_too(phantom_root: Path) -> None:
    from cardiosynth.data.preprocess import crop_weight

    for path in sorted((phantom_root / "training").iterdir()):
        subject = read_subject(path)
        p = preprocess_subject(subject)
        weight = crop_weight(p.geometry)
        for native, stack in ((subject.ed_label, p.ed_label), (subject.es_label, p.es_label)):
            # the base has no heart where the image is (partly) the base's own: outside the crop and
            # in the seam ramp; so restore_labels (background there) agrees with the base's labels
            assert not np.any(native[weight < 1])
            restored = restore_labels(stack, p.geometry)
            assert not np.any(restored[weight < 1])


def test_heart_weight_keeps_the_heart_and_ramps_to_zero_by_distance_in_mm() -> None:
    from cardiosynth.data.preprocess import heart_weight

    region = np.zeros((90, 90, 3), dtype=bool)
    x, y = np.meshgrid(np.arange(90), np.arange(90), indexing="ij")
    region[:, :, 1] = (x - 45) ** 2 + (y - 45) ** 2 <= 10**2
    w = heart_weight(region, (1.0, 1.0), margin_mm=6.0, feather_mm=12.0)
    assert w.shape == region.shape
    assert not w[:, :, 0].any()
    assert not w[:, :, 2].any()
    assert np.all(w[region] == 1.0)
    ray = w[45, 45:, 1]  # outwards from the centre, 1 mm per pixel; the border is 10 mm out
    np.testing.assert_array_equal(ray[: 10 + 6 + 1], 1.0)
    np.testing.assert_array_equal(ray[10 + 6 + 12 :], 0.0)
    ramp = ray[10 + 6 : 10 + 6 + 13]
    assert np.all(np.diff(ramp) < 0)
    assert 0 < ramp[6] < 1
    assert ramp[6] == pytest.approx(0.5, abs=1e-9)  # the smoothstep's midpoint, 6 mm into the ramp
    # distances are in mm: with 2 mm pixels along Y the ramp ends after half as many pixels
    wide = heart_weight(region, (1.0, 2.0), margin_mm=6.0, feather_mm=12.0)[:, :, 1]
    assert wide[45 + 10 + 9, 45] > 0.5
    assert wide[45, 45 + 10 + 9] == 0
    hard = heart_weight(region, (1.0, 1.0), margin_mm=6.0, feather_mm=0.0)[:, :, 1]
    assert set(np.unique(hard)) == {0.0, 1.0}
    assert hard[45, 45 + 16] == 1
    assert hard[45, 45 + 17] == 0
    # the same as distances over the whole slice (the weight is computed near the region only)
    rng = np.random.default_rng(0)
    blobs = ndimage.binary_dilation(rng.random((120, 100, 4)) > 0.9995, iterations=3)
    blobs[:, :, 2] = False
    for shapes, sampling in ((blobs, (1.0, 1.0)), (blobs, (1.3, 0.7)), (region, (1.3, 0.7))):
        got = heart_weight(shapes, sampling, margin_mm=4.0, feather_mm=9.0)
        for k in range(shapes.shape[2]):
            if not shapes[:, :, k].any():
                assert not got[:, :, k].any()
                continue
            d = ndimage.distance_transform_edt(~shapes[:, :, k], sampling=sampling)
            t = np.clip(1.0 - (d - 4.0) / 9.0, 0.0, 1.0)
            np.testing.assert_allclose(got[:, :, k], t * t * (3.0 - 2.0 * t), atol=1e-12)
    for bad, match in (
        ({"region": region[:, :, 0]}, "region"),
        ({"spacing": (0.0, 1.0)}, "spacing"),
        ({"margin_mm": -1.0}, "margin_mm"),
        ({"feather_mm": -1.0}, "feather_mm"),
    ):
        kwargs = {"region": region, "spacing": (1.0, 1.0), **bad}
        with pytest.raises(ValueError, match=match):
            heart_weight(**kwargs)  # type: ignore[arg-type]


def test_composite_around_the_heart_keeps_the_base_image_elsewhere_in_the_crop() -> None:
    from cardiosynth.data.preprocess import composite_image, crop_weight, heart_weight

    labels, image, affine = textured_subject()
    g = plan_geometry([labels], affine)
    stack, window = apply_image(image, g)
    synthetic = np.clip(stack + 0.2, -1.0, 1.0)  # a translation brighter than the base by ~50 units
    region = labels > 0
    region[:, :, 0] = False  # a slice without heart (past the apex or the base)
    out = composite_image(synthetic, g, image, window, region=region)
    pasted = restore_image(synthetic, g, window)
    inside = crop_weight(g)[:, :, None] == 1
    weight = heart_weight(region, g.native_spacing)
    # on the heart: the synthetic image; away from it, inside the crop too: the base's own voxels
    np.testing.assert_allclose(out[region & inside], pasted[region & inside], rtol=1e-5)
    away = weight == 0
    np.testing.assert_array_equal(out[away], image[away].astype(np.float32))
    assert (away & inside).sum() > 0.5 * inside.sum()  # most of the crop is no longer synthetic
    # the crop-sized composite replaces the whole crop
    whole = composite_image(synthetic, g, image, window)
    assert np.all(whole[inside & away] != image[inside & away].astype(np.float32))
    # a slice without heart is the base's own image throughout
    np.testing.assert_array_equal(out[:, :, 0], image[:, :, 0].astype(np.float32))
    # the ramp around the heart steps about as much as the noise; a hard edge far more
    k = int(np.argmax(region.sum(axis=(0, 1))))
    ramp = (weight[:-1, :, k] != weight[1:, :, k]) & (np.minimum(weight[:-1, :, k], weight[1:, :, k]) < 1)
    noise = float(np.abs(np.diff(image[:, :, k], axis=0))[~ramp].mean())
    step = float(np.abs(np.diff(out[:, :, k], axis=0))[ramp].mean())
    hard_out = composite_image(synthetic, g, image, window, region=region, feather_mm=0.0)
    hard_w = heart_weight(region, g.native_spacing, feather_mm=0.0)[:, :, k]
    edge = hard_w[:-1] != hard_w[1:]
    hard_step = float(np.abs(np.diff(hard_out[:, :, k], axis=0))[edge].mean())
    assert step <= 1.35 * noise < hard_step
    with pytest.raises(ValueError, match="region shape"):
        composite_image(synthetic, g, image, window, region=region[:, :, :3])


def test_composite_rejects_a_mismatched_base() -> None:
    from cardiosynth.data.preprocess import composite_image, crop_weight

    labels, image, affine = textured_subject((170, 160, 5))
    g = plan_geometry([labels], affine)
    stack, window = apply_image(image, g)
    with pytest.raises(ValueError, match="base image shape"):
        composite_image(stack, g, image[:, :, :3], window)
    with pytest.raises(ValueError, match="feather_mm"):
        crop_weight(g, -1.0)


# --- label resampling: nearest neighbour against linear shares ---------------------------------------


def ring_volume(spacing: float, thickness_mm: float, slices: int = 3) -> np.ndarray:
    """A short-axis LV ring (cavity radius 22 mm, uniform wall ``thickness_mm``) with an RV beside it,
    drawn on a grid of ``spacing`` mm from its analytic outline (pixel centres)."""
    size = int(np.ceil(150 / spacing))
    x, y = (np.mgrid[0:size, 0:size] + 0.5) * spacing
    r = np.hypot(x - 73.3, y - 76.1)
    out = np.zeros((size, size, slices), np.uint8)
    out[np.hypot(x - 73.3, y - 118.0) < 22.0] = 1
    out[r < 22.0 + thickness_mm] = 2
    out[r < 22.0] = 3
    return out


def max_wall(labels: np.ndarray, spacing: float) -> float:
    return float(
        max(
            np.nanmax(wall_thickness_by_sector(labels[:, :, k], (spacing, spacing)))
            for k in range(labels.shape[2])
        )
    )


@pytest.mark.parametrize("spacing", [1.3, 1.62, 1.8])
def test_linear_label_resampling_keeps_the_wall_and_class_areas(spacing: float) -> None:
    labels = ring_volume(spacing, 8.0)
    g = plan_geometry([labels], affine_for(spacing))
    native_wall = max_wall(labels, spacing)
    linear = apply_labels(labels, g, "linear")
    back = restore_labels(linear, g, "linear")
    for c in (1, 2, 3):  # areas kept to a few boundary pixels, forward and back
        area = np.sum(labels == c) * spacing**2
        assert np.sum(linear == c) * 1.5**2 == pytest.approx(area, rel=0.03)
        assert np.sum(back == c) * spacing**2 == pytest.approx(area, rel=0.03)
        assert dice(back, labels, c) > 0.95
    # forward and back the maximal wall moves no more than nearest neighbour's, which repeats or drops
    # whole pixel rows where the pitch changes (and a maximum finds them): on a finer native grid
    # (1.3 mm) nearest moves it by 0.8 mm, linear by 0.1; on coarser ones both give the native back
    nearest_back = restore_labels(apply_labels(labels, g), g)
    assert (
        abs(max_wall(back, spacing) - native_wall)
        <= abs(max_wall(nearest_back, spacing) - native_wall) + 1e-9
    )
    if spacing < 1.5:
        assert (
            abs(max_wall(back, spacing) - native_wall)
            < 0.3
            < abs(max_wall(nearest_back, spacing) - native_wall)
        )


def test_label_interpolation_is_checked() -> None:
    labels = cone_heart((60, 60, 4), (30.0, 30.0), 10.0)
    g = plan_geometry([labels], affine_for(1.5))
    for call in (
        lambda: apply_labels(labels, g, "cubic"),
        lambda: restore_labels(apply_labels(labels, g), g, "cubic"),
    ):
        with pytest.raises(ValueError, match="'cubic'"):
            call()


def test_nearest_is_the_default_and_linear_is_recorded(phantom_root: Path) -> None:
    subject = read_subject(next(p for p in sorted((phantom_root / "training").iterdir()) if p.is_dir()))
    nearest = preprocess_subject(subject)
    linear = preprocess_subject(subject, label_interpolation="linear")
    assert nearest.label_interpolation == "nearest"
    assert linear.label_interpolation == "linear"
    np.testing.assert_array_equal(nearest.ed_label, apply_labels(subject.ed_label, nearest.geometry))
    np.testing.assert_array_equal(linear.ed_label, apply_labels(subject.ed_label, linear.geometry, "linear"))
    assert not np.array_equal(nearest.ed_label, linear.ed_label)  # the phantom's grid is not 1.5 mm
    with pytest.raises(ValueError, match="'bicubic'"):
        preprocess_subject(subject, label_interpolation="bicubic")


# --- restoring decoded stacks from their probabilities -------------------------------------------------


def ring_shares(g: Geometry, thickness_mm: float, slices: int = 3, softness_mm: float = 0.5) -> np.ndarray:
    """Class shares ``(Z, C, S, S)`` of :func:`ring_volume`'s analytic ring on ``g``'s crop grid, as a
    decoder's softmax would give them: a logistic of each pixel centre's signed distance to every
    outline, so the boundary lies between pixels where the outline does."""
    a = (np.arange(g.crop_size) + g.crop_start[0] + 0.5) * g.target_spacing  # crop pixel centres, mm
    b = (np.arange(g.crop_size) + g.crop_start[1] + 0.5) * g.target_spacing
    x, y = np.meshgrid(a, b, indexing="ij")
    r = np.hypot(x - 73.3, y - 76.1)

    def inside(distance: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-distance / softness_mm))

    cavity, epicardium = inside(22.0 - r), inside(22.0 + thickness_mm - r)
    rv = inside(22.0 - np.hypot(x - 73.3, y - 118.0)) * (1.0 - epicardium)
    shares = np.stack([1.0 - epicardium - rv, rv, epicardium - cavity, cavity])
    return np.repeat(shares[None], slices, axis=0)


@pytest.mark.parametrize("spacing", [1.3, 1.62, 1.8])
def test_restoring_from_probabilities_keeps_the_boundary_between_pixels(spacing: float) -> None:
    """A decoded crop put back from its labels is drawn twice (argmax on the 1.5 mm grid, then nearest
    neighbour on the native one) and a wall maximum finds the repeated pixel rows; from the
    probabilities it is drawn once, on the native grid, where the analytic outline is."""
    errors = []
    for thickness in (6.0, 8.0, 10.3):
        native = ring_volume(spacing, thickness)
        g = plan_geometry([native], affine_for(spacing))
        shares = ring_shares(g, thickness)
        quantised = np.round(shares * 255).astype(np.uint8)
        soft = restore_probabilities(quantised, g)
        hard = restore_labels(np.argmax(shares, axis=1).astype(np.uint8), g)
        wall = max_wall(native, spacing)
        # a few boundary voxels where the outline passes within a hair of a pixel centre, not rows
        assert np.sum(soft != native) < 0.25 * np.sum(hard != native)
        assert abs(max_wall(soft, spacing) - wall) <= 0.2
        errors.append(abs(max_wall(hard, spacing) - wall))
        # float probabilities give the uint8 ones' labels, but for near-ties that the rounding broke
        assert np.sum(restore_probabilities(shares, g) != soft) <= 1e-3 * soft.size
    assert max(errors) > 0.3  # the labels' way moves the wall maximum on every grid tried


@pytest.mark.parametrize(("shape", "centre", "spacing"), [((60, 60, 5), (30.0, 30.0), 1.62),
                                                            ((230, 200, 3), (150.0, 60.0), 1.3)])  # fmt: skip
def test_one_hot_probabilities_restore_as_linear_label_resampling(
    shape: tuple[int, int, int], centre: tuple[float, float], spacing: float
) -> None:
    """Exactly linear label resampling, also where the native field of view is wider than the crop
    (only the crop's part of the native grid is interpolated; the rest is background)."""
    labels = cone_heart(shape, centre, 12.0)
    g = plan_geometry([labels], affine_for(spacing))
    stack = apply_labels(labels, g)
    expected = restore_labels(stack, g, "linear")
    np.testing.assert_array_equal(restore_probabilities(one_hot(stack), g), expected)
    np.testing.assert_array_equal(restore_probabilities((one_hot(stack) * 255).astype(np.uint8), g), expected)
    # labels up to the crop's border: the part of the native grid that is interpolated reaches it
    noise = np.random.default_rng(0).integers(0, 4, stack.shape).astype(np.uint8)
    restored, reference = restore_probabilities(one_hot(noise), g), restore_labels(noise, g, "linear")
    # the same extent to the voxel; inside, random labels tie often and float rounding breaks a few ties
    # the other way (the part is interpolated with a shifted offset)
    for axes in ((1, 2), (0, 2)):
        np.testing.assert_array_equal(
            np.flatnonzero(restored.any(axis=axes)), np.flatnonzero(reference.any(axis=axes))
        )
    assert np.mean(restored != reference) < 1e-3
    assert 0 < np.mean(restored > 0) < 1  # the heart's crop and, on the wide grid, background around it


def test_corrected_labels_win_over_their_probabilities() -> None:
    """A clean-up that removed an island or filled a hole changed labels, not probabilities: the
    native labels follow the corrected labels, never bring the island back."""
    native = ring_volume(1.62, 8.0)
    g = plan_geometry([native], affine_for(1.62))
    shares = ring_shares(g, 8.0)
    decoded = np.argmax(shares, axis=1).astype(np.uint8)
    island = shares.copy()
    island[:, :, 30:33, 20:23] = 0.0
    island[:, 1, 30:33, 20:23] = 1.0  # an RV speck in the background, inside the native field of view
    assert np.sum(restore_probabilities(island, g) == 1) > np.sum(restore_probabilities(shares, g) == 1)
    # the clean-up's labels (the speck gone) put back: exactly what the speck-free shares give
    np.testing.assert_array_equal(restore_probabilities(island, g, decoded), restore_probabilities(shares, g))
    # where labels and probabilities agree, the labels change nothing
    np.testing.assert_array_equal(restore_probabilities(shares, g, decoded), restore_probabilities(shares, g))


def test_restore_probabilities_checks_its_input() -> None:
    native = ring_volume(1.62, 8.0)
    g = plan_geometry([native], affine_for(1.62))
    shares = ring_shares(g, 8.0)
    with pytest.raises(ValueError, match=r"\(3, 4, 64, 64\)"):
        restore_probabilities(shares[:, :, :64, :64], g)
    with pytest.raises(ValueError, match=r"\(3, 3, 128, 128\)"):
        restore_probabilities(shares[:, :3], g)
    with pytest.raises(ValueError, match="dtype bool"):
        restore_probabilities(shares > 0.5, g)
    with pytest.raises(ValueError, match=r"labels of shape \(2, 128, 128\)"):
        restore_probabilities(shares, g, np.zeros((2, 128, 128), np.uint8))
