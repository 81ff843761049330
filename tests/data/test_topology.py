from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cardiosynth.data.labels import BACKGROUND, LV_CAVITY, LV_MYOCARDIUM, RV_CAVITY
from cardiosynth.data.topology import clean_labels, topology_errors

SIZE = 64


def polar() -> tuple[np.ndarray, np.ndarray]:
    x, y = np.meshgrid(np.arange(SIZE) - 32.0, np.arange(SIZE) - 32.0, indexing="ij")
    return np.hypot(x, y), np.arctan2(y, x)


def heart(z: int = 6) -> np.ndarray:
    """A clean stack (Z, S, S): LV disc, closed myocardial ring, RV crescent against the septum."""
    r, _ = polar()
    x, y = np.meshgrid(np.arange(SIZE) - 32.0, np.arange(SIZE) - 32.0, indexing="ij")
    sl = np.zeros((SIZE, SIZE), np.uint8)
    sl[np.hypot(x + 16.0, y) < 11.0] = RV_CAVITY
    sl[r < 14.0] = LV_MYOCARDIUM
    sl[r < 10.0] = LV_CAVITY
    return np.repeat(sl[None], z, axis=0)


def test_a_clean_heart_is_unchanged_and_has_no_errors() -> None:
    h = heart()
    cleaned = clean_labels(h)
    np.testing.assert_array_equal(cleaned, h)
    errors = topology_errors(h)
    assert errors.components == {RV_CAVITY: 1, LV_MYOCARDIUM: 1, LV_CAVITY: 1}
    assert errors.total == 0
    assert errors.holes == 0
    assert errors.lv_contacts == 0


def test_islands_go_to_their_most_frequent_neighbour() -> None:
    h = heart()
    noisy = h.copy()
    noisy[2, 55:57, 5:7] = RV_CAVITY  # RV voxels floating in the background
    noisy[4, 30:32, 30:32] = LV_MYOCARDIUM  # myocardium inside the LV cavity, off the ring
    noisy[1, 33, 40] = RV_CAVITY  # one RV voxel inside the LV cavity (r = 8.1 px)
    before = topology_errors(noisy)
    assert before.islands[RV_CAVITY] == 2
    assert before.island_voxels[RV_CAVITY] == 5
    assert before.components[LV_MYOCARDIUM] == 2
    cleaned = clean_labels(noisy)
    np.testing.assert_array_equal(cleaned, h)
    after = topology_errors(cleaned)
    assert all(v == 0 for v in after.islands.values())
    assert noisy[2, 55, 5] == RV_CAVITY  # the input is not modified


def test_connectivity_26_keeps_a_diagonal_continuation_that_6_removes() -> None:
    h = heart(z=3)
    h[2] = BACKGROUND  # the heart ends after slice 1 ...
    rv = np.argwhere(h[1] == RV_CAVITY)
    a, b = rv[np.argmin(rv[:, 0])]  # ... but the RV's outermost voxel continues diagonally into slice 2
    h[2, a - 1, b] = RV_CAVITY
    assert topology_errors(h, connectivity=26).islands[RV_CAVITY] == 0
    assert topology_errors(h, connectivity=6).islands[RV_CAVITY] == 1
    assert clean_labels(h, connectivity=26)[2, a - 1, b] == RV_CAVITY
    assert clean_labels(h, connectivity=6)[2, a - 1, b] == BACKGROUND


def test_holes_are_filled_per_slice() -> None:
    h = heart()
    r, theta = polar()
    holed = h.copy()
    pocket = (r > 11.0) & (r < 13.0) & (np.abs(theta) < 0.15)  # background inside the wall
    holed[3][pocket] = BACKGROUND
    holed[2, 31:33, 31:33] = BACKGROUND  # background inside the cavity
    before = topology_errors(holed)
    assert before.holes == 2
    assert before.lv_contacts > 0  # the cavity pocket touches the LV
    cleaned = clean_labels(holed)
    np.testing.assert_array_equal(cleaned, h)
    assert topology_errors(cleaned).total == 0


def test_an_open_ring_is_closed_by_myocardium() -> None:
    h = heart()
    r, theta = polar()
    opened = h.copy()
    gap = (r >= 9.0) & (r < 14.0) & (np.abs(theta) < 0.3)  # a notch through the wall, away from the RV
    opened[3][gap] = BACKGROUND
    assert topology_errors(opened).lv_contacts > 0
    cleaned = clean_labels(opened)
    errors = topology_errors(cleaned)
    assert errors.lv_contacts == 0
    assert errors.total == 0
    sl = cleaned[3]
    # closed ring: every cavity pixel is enclosed by myocardium (filling the ring's hole covers it)
    enclosed = ndimage.binary_fill_holes(sl == LV_MYOCARDIUM)
    assert np.all(enclosed[sl == LV_CAVITY])
    # only the cavity pixels at the notch changed (to myocardium); the other slices are untouched
    changed = cleaned != opened
    assert np.all(opened[changed] == LV_CAVITY)
    assert np.all(cleaned[changed] == LV_MYOCARDIUM)
    assert changed[3].sum() > 0
    assert changed[[0, 1, 2, 4, 5]].sum() == 0


def test_cavity_touching_the_rv_is_separated_by_a_septum() -> None:
    h = heart()
    bridged = h.copy()
    bridged[1, 17:23, 30:34] = LV_CAVITY  # the cavity reaches through the septum into the RV
    bridged[1, 23:32, 30:34] = LV_CAVITY
    assert topology_errors(bridged).lv_contacts > 0
    cleaned = clean_labels(bridged)
    errors = topology_errors(cleaned)
    assert errors.lv_contacts == 0
    assert errors.total == 0
    assert np.all(ndimage.binary_fill_holes(cleaned[1] == LV_MYOCARDIUM)[cleaned[1] == LV_CAVITY])


def test_noisy_stacks_come_out_clean_and_cleaning_is_idempotent() -> None:
    rng = np.random.default_rng(0)
    for _ in range(3):
        noisy = heart(z=8)
        flip = rng.random(noisy.shape) < 0.03
        noisy[flip] = rng.integers(0, 4, int(flip.sum()))
        before = topology_errors(noisy)
        assert before.total > 10
        cleaned = clean_labels(noisy)
        after = topology_errors(cleaned)
        assert all(v == 0 for v in after.islands.values()), after
        assert after.holes == 0, after
        assert after.lv_contacts == 0, after
        assert all(after.components[c] == 1 for c in (RV_CAVITY, LV_MYOCARDIUM, LV_CAVITY))
        np.testing.assert_array_equal(clean_labels(cleaned), cleaned)
        # the anatomy survives: each class keeps most of its voxels
        for c in (RV_CAVITY, LV_MYOCARDIUM, LV_CAVITY):
            assert np.sum(cleaned == c) > 0.8 * np.sum(heart(z=8) == c)


def test_absent_classes_and_empty_stacks_are_fine() -> None:
    empty = np.zeros((3, 16, 16), np.uint8)
    np.testing.assert_array_equal(clean_labels(empty), empty)
    errors = topology_errors(empty)
    assert errors.components == {RV_CAVITY: 0, LV_MYOCARDIUM: 0, LV_CAVITY: 0}
    assert errors.total == 0
    assert errors.to_dict()["total"] == 0


def test_bad_input_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"\(Z, S, S\)"):
        clean_labels(np.zeros((16, 16), np.uint8))
    with pytest.raises(ValueError, match="7"):
        topology_errors(np.full((2, 4, 4), 7, np.uint8))
    with pytest.raises(ValueError, match="8"):
        clean_labels(np.zeros((2, 4, 4), np.uint8), connectivity=8)  # type: ignore[arg-type]


def test_the_apical_myocardial_cap_is_no_island() -> None:
    # below the last cavity slice, a disc of myocardium touches the wall only through the cavity
    # above it: a separate myocardial component, but part of the LV; a myocardial speck in the
    # background is an island
    h = heart(z=5)
    r, _ = polar()
    h[4] = BACKGROUND
    h[4][r < 6.0] = LV_MYOCARDIUM
    assert topology_errors(h).components[LV_MYOCARDIUM] == 2
    assert topology_errors(h).islands[LV_MYOCARDIUM] == 0
    np.testing.assert_array_equal(clean_labels(h), h)
    specked = h.copy()
    specked[4, 60:62, 60:62] = LV_MYOCARDIUM
    assert topology_errors(specked).islands[LV_MYOCARDIUM] == 1
    np.testing.assert_array_equal(clean_labels(specked), h)


def _fill_holes_slice_by_slice(labels: np.ndarray) -> np.ndarray:
    """The hole filling as first written, one slice at a time on the whole field (the reference)."""
    out = labels.copy()
    for k in range(out.shape[0]):
        sl = out[k]
        for value in (LV_CAVITY, RV_CAVITY):
            cavity = sl == value
            sl[ndimage.binary_fill_holes(cavity) & ~cavity] = value
        heart_mask = sl != BACKGROUND
        holes, count = ndimage.label(ndimage.binary_fill_holes(heart_mask) & ~heart_mask)
        for h in range(1, count + 1):
            hole = holes == h
            border = ndimage.binary_dilation(hole, structure=np.ones((3, 3), bool)) & ~hole
            counts = np.bincount(sl[border], minlength=4)
            counts[BACKGROUND] = 0
            sl[hole] = int(np.argmax(counts))
    return out


def test_the_fast_paths_equal_the_whole_field_slice_by_slice_reference() -> None:
    """Hole filling of all slices at once and cleaning within the heart's bounding box give exactly
    what slice-by-slice work on the whole field gives, hearts at the image edge included."""
    from cardiosynth.data import topology

    rng = np.random.default_rng(1)
    stacks = []
    for shift in (0, 20, -25):  # centred, and cut by the image's edges
        base = np.roll(heart(z=7), shift, axis=(1, 2))
        for rate in (0.0, 0.02, 0.08):
            noisy = base.copy()
            flip = rng.random(noisy.shape) < rate
            noisy[flip] = rng.integers(0, 4, int(flip.sum()))
            stacks.append(noisy)
    structure = ndimage.generate_binary_structure(3, 3)
    for stack in stacks:
        np.testing.assert_array_equal(topology._fill_holes(stack), _fill_holes_slice_by_slice(stack))
        whole = stack.copy()
        for _ in range(topology.MAX_PASSES):
            step = topology._close_ring(_fill_holes_slice_by_slice(topology._keep_largest(whole, structure)))
            if np.array_equal(step, whole):
                break
            whole = step
        np.testing.assert_array_equal(clean_labels(stack), whole)
