from __future__ import annotations

import numpy as np
import pytest

from cardiosynth.evaluation.metrics import dice, dice_per_class, mean_dice_over_volumes, named


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
