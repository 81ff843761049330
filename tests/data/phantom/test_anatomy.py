from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from cardiosynth.data.phantom.anatomy import HeartShape, Infarct, fit_heart, slice_areas, volumes_ml, window

SHAPE = HeartShape(
    lv_length=85.0, profile_exponent=2.2, ellipticity=0.03, ellipse_angle=0.4, wall_thickness=9.0,
    apex_cap=7.0,
    septal_angle=math.pi, septal_extra=0.0, septal_width=math.radians(100), rv_width=math.radians(170),
    rv_length_ratio=0.8,
)  # fmt: skip
DEPTHS = 4.0 + 8.0 * np.arange(12)


def test_fit_reaches_the_target_volumes() -> None:
    fitted = fit_heart(SHAPE, DEPTHS, 8.0, lv_edv=150.0, lv_esv=60.0, rv_edv=160.0, rv_esv=75.0)
    ed = volumes_ml(fitted, DEPTHS, 8.0, "ED")
    es = volumes_ml(fitted, DEPTHS, 8.0, "ES")
    assert ed["lv"] == pytest.approx(150.0, rel=1e-6)
    assert es["lv"] == pytest.approx(60.0, rel=1e-6)
    assert ed["rv"] == pytest.approx(160.0, rel=1e-6)
    assert es["rv"] == pytest.approx(75.0, rel=1e-6)


def test_myocardial_mass_is_preserved_in_systole() -> None:
    shape = replace(SHAPE, infarct=Infarct(0.3, 1.8, 0.1, 1.0, 0.6, 0.0))
    fitted = fit_heart(shape, DEPTHS, 8.0, lv_edv=180.0, lv_esv=120.0, rv_edv=150.0, rv_esv=80.0)
    ed = slice_areas(fitted, DEPTHS, "ED").myo
    es = slice_areas(fitted, DEPTHS, "ES").myo
    np.testing.assert_allclose(es, ed, rtol=1e-9)


def test_infarct_territory_does_not_contract() -> None:
    infarct = Infarct(
        angle=0.0, width=math.radians(120), depth_start=0.1, depth_end=1.0, wall_kept=0.6, contractility=0.0
    )
    fitted = fit_heart(
        replace(SHAPE, infarct=infarct), DEPTHS, 8.0, lv_edv=180.0, lv_esv=120.0, rv_edv=150.0, rv_esv=80.0
    )
    theta = np.array([0.0, math.pi / 2 + 0.5])
    c = fitted.contraction(theta, 0.5 * fitted.lv_length)
    assert c[0] == pytest.approx(1.0)
    assert c[1] < 0.95


def test_unreachable_targets_raise_value_error() -> None:
    with pytest.raises(ValueError, match="end-systolic"):
        fit_heart(SHAPE, DEPTHS, 8.0, lv_edv=150.0, lv_esv=0.05, rv_edv=160.0, rv_esv=75.0)
    with pytest.raises(ValueError, match="ESV must be below EDV"):
        fit_heart(SHAPE, DEPTHS, 8.0, lv_edv=150.0, lv_esv=160.0, rv_edv=160.0, rv_esv=75.0)
    with pytest.raises(ValueError, match="positive"):
        fit_heart(SHAPE, DEPTHS, 8.0, lv_edv=-1.0, lv_esv=60.0, rv_edv=160.0, rv_esv=75.0)


def test_window_is_one_inside_zero_outside() -> None:
    w = window(np.array([0.0, 0.5, 0.95, 1.0, 2.0]), half_width=1.0, edge=0.2)
    assert w[0] == w[1] == 1.0
    assert 0.0 < w[2] < 1.0
    assert w[3] == w[4] == 0.0
