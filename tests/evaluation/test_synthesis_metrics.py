from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from cardiosynth.data.labels import Group
from cardiosynth.evaluation.synthesis import fidelity, progression


def _subject(diagnosis: str, wall: list[float]) -> Any:
    severities = [0.2, 0.4, 0.6, 0.8, 1.0][: len(wall)]
    return SimpleNamespace(
        diagnosis={1.0: {"group": diagnosis}},
        biomarkers={a: SimpleNamespace(max_wall_thickness=w) for a, w in zip(severities, wall, strict=True)},
    )


def test_fidelity_counts_the_target_share() -> None:
    subjects = [
        _subject("HCM", [1.0]),
        _subject("NOR", [1.0]),
        _subject("HCM", [1.0]),
        _subject("borderline", [1.0]),
    ]
    assert fidelity(subjects, Group.HCM) == 0.5
    assert fidelity([], Group.HCM) != fidelity([], Group.HCM)  # NaN when there is nothing to judge


def test_progression_spearman_per_trajectory() -> None:
    monotone = _subject("HCM", [10, 12, 15, 16, 20])
    one_swap = _subject("HCM", [10, 15, 12, 16, 20])
    result = progression([monotone, one_swap], Group.HCM)
    assert result["trajectories"] == 2
    assert result["min_rho"] == pytest.approx(0.9)  # one adjacent swap in five: rho = 1 - 6*2/120
    assert result["mean_rho"] == pytest.approx(0.95)
