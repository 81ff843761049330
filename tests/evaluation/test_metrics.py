from __future__ import annotations

import numpy as np
import pytest

from cardiosynth.evaluation.metrics import dice, dice_ceiling, dice_per_class, mean_dice_over_volumes, named


def test_dice_known_answers() -> None:
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True  # 8 pixels
    b[1:3] = True  # 8 pixels, 4 shared
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(a, a) == 1.0
    assert dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
    assert dice(a, ~a) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        dice(a, b[:2])


def test_dice_per_class_and_over_volumes() -> None:
    ref = np.array([[0, 1, 2, 3], [0, 1, 2, 3]])
    pred = np.array([[0, 1, 2, 2], [0, 1, 2, 3]])
    scores = dice_per_class(pred, ref)
    assert scores[1] == 1.0
    assert scores[2] == pytest.approx(2 * 2 / 5)
    assert scores[3] == pytest.approx(2 * 1 / 3)
    assert named(scores)["LV cavity"] == scores[3]
    mean = mean_dice_over_volumes([pred, ref], [ref, ref])
    assert mean[3] == pytest.approx((2 / 3 + 1) / 2)
    with pytest.raises(ValueError, match="class 7"):
        dice_per_class(pred, ref, classes=(7,))
    with pytest.raises(ValueError, match="equally many"):
        mean_dice_over_volumes([pred], [])


def test_dice_ceiling_is_the_volume_bound_and_reached_by_nested_shapes() -> None:
    ref = np.zeros((1, 20, 20), np.uint8)
    ref[0, 5:10, 5:10] = 3  # 25 voxels
    big = np.zeros_like(ref)
    big[0, 5:15, 5:10] = 3  # 50 voxels containing ref: Dice = 2 * 25 / 75, the ceiling itself
    assert dice_ceiling(big, ref)[3] == pytest.approx(2 / 3)
    assert dice_per_class(big, ref)[3] == pytest.approx(dice_ceiling(big, ref)[3])
    moved = np.zeros_like(ref)
    moved[0, 12:17, 12:17] = 3  # same volume, no overlap: the ceiling is 1, the Dice 0
    assert dice_ceiling(moved, ref)[3] == 1.0
    assert dice_per_class(moved, ref)[3] == 0.0
    assert dice_ceiling(ref, ref)[1] == 1.0  # both empty
    with pytest.raises(ValueError, match="shapes differ"):
        dice_ceiling(ref, ref[:, :10])
