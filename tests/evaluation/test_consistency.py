from __future__ import annotations

import numpy as np
import pytest

from cardiosynth.evaluation.consistency import (
    adjacent_slice_dice,
    area_smoothness,
    components_per_class,
    consistency_figures,
)


def _disc(radius: int, centre: tuple[int, int] = (16, 16), size: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def test_identical_slices_are_perfectly_consistent() -> None:
    stack = np.zeros((5, 32, 32), np.uint8)
    stack[:, _disc(6)] = 3
    assert adjacent_slice_dice(stack) == 1.0
    assert area_smoothness(stack) == 0.0
    assert components_per_class(stack) == {1: 0, 2: 0, 3: 1}


def test_known_answers_for_shifted_and_split_stacks() -> None:
    stack = np.zeros((2, 4, 4), np.uint8)
    stack[0, :2] = 3  # 8 pixels
    stack[1, 1:3] = 3  # 8 pixels, 4 shared
    assert adjacent_slice_dice(stack) == pytest.approx(0.5)
    split = np.zeros((4, 32, 32), np.uint8)
    split[0, _disc(4)] = 3
    split[3, _disc(4)] = 3  # two LV pieces with empty slices between
    assert components_per_class(split)[3] == 2


def test_area_smoothness_of_linear_and_jagged_profiles() -> None:
    linear = np.zeros((5, 32, 32), np.uint8)
    for k in range(5):
        linear[k, : 4 + k, :10] = 3  # area 10 * (4 + k): linear, second difference 0
    assert area_smoothness(linear) == 0.0
    jagged = linear.copy()
    jagged[2] = 0
    jagged[2, :4, :10] = 3  # area 40 instead of 60
    mean_area = (40 + 50 + 40 + 70 + 80) / 5
    assert area_smoothness(jagged) == pytest.approx((20 + 40 + 20) / 3 / mean_area)
    assert np.isnan(area_smoothness(linear[:2]))


def test_figures_and_errors() -> None:
    stack = np.zeros((3, 32, 32), np.uint8)
    stack[:, _disc(5)] = 3
    figures = consistency_figures([stack, stack])
    assert figures["adjacent_slice_dice"] == 1.0
    assert figures["single_component_share"] == 1.0
    with pytest.raises(ValueError, match="no stacks"):
        consistency_figures([])
    with pytest.raises(ValueError, match=r"\(Z, H, W\)"):
        adjacent_slice_dice(np.zeros((4, 4)))
