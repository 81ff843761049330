"""The class's heart length and body (cardiosynth.synthesis.scale): known answers on constructed
subjects, the affine's centre kept, bad input refused."""

from __future__ import annotations

import numpy as np
import pytest

from cardiosynth.data.labels import LV_CAVITY, LV_MYOCARDIUM
from cardiosynth.synthesis.scale import IDENTITY, ClassScale, HeartBody, class_scale, lv_long_axis_mm


def stack(first: int, last: int, z: int = 12) -> np.ndarray:
    labels = np.zeros((8, 8, z), np.uint8)
    labels[2:6, 2:6, :] = LV_MYOCARDIUM  # myocardium alone is no LV extent
    labels[3:5, 3:5, first : last + 1] = LV_CAVITY
    return labels


def test_the_long_axis_counts_whole_slices_with_lv_cavity() -> None:
    assert lv_long_axis_mm(stack(2, 8), 10.0) == 70.0
    assert lv_long_axis_mm(stack(5, 5), 7.5) == 7.5
    with pytest.raises(ValueError, match="no LV cavity"):
        lv_long_axis_mm(np.zeros((4, 4, 3), np.uint8), 10.0)
    with pytest.raises(ValueError, match="positive"):
        lv_long_axis_mm(stack(2, 8), 0.0)
    with pytest.raises(ValueError, match=r"\(X, Y, Z\)"):
        lv_long_axis_mm(np.zeros((4, 4), np.uint8), 10.0)


def test_class_scale_is_the_class_mean_over_nor() -> None:
    nor = [HeartBody(80.0, 170.0, 70.0), HeartBody(100.0, 180.0, 80.0)]
    dcm = [HeartBody(100.0, 175.0, 90.0), HeartBody(116.0, 185.0, None)]  # a weight not recorded
    got = class_scale(dcm, nor)
    assert got.slice_spacing == pytest.approx(108.0 / 90.0)
    assert got.height == pytest.approx(180.0 / 175.0)
    assert got.weight == pytest.approx(90.0 / 75.0)  # over the subjects that record it
    assert class_scale(nor, nor) == IDENTITY  # NOR over itself: exactly the base's own


def test_a_body_recorded_for_nobody_keeps_the_base(caplog: pytest.LogCaptureFixture) -> None:
    nor = [HeartBody(80.0, None, None)]
    got = class_scale([HeartBody(96.0, 180.0, 90.0)], nor)
    assert (got.slice_spacing, got.height, got.weight) == (pytest.approx(1.2), 1.0, 1.0)
    assert "no height recorded" in caplog.text
    with pytest.raises(ValueError, match="both groups"):
        class_scale([], nor)


def test_severity_moves_each_factor_linearly() -> None:
    s = ClassScale(1.2, 1.1, 0.8)
    assert s.at(1.0) == s
    assert s.at(0.0) == IDENTITY
    half = s.at(0.5)
    assert (half.slice_spacing, half.height, half.weight) == pytest.approx((1.1, 1.05, 0.9))
    with pytest.raises(ValueError, match="severity"):
        s.at(1.5)


def test_spacing_and_body_scale_only_what_they_name() -> None:
    s = ClassScale(1.25, 1.1, 0.9)
    assert s.spacing((1.5, 1.6, 8.0)) == (1.5, 1.6, 10.0)
    assert s.body(170.0, 80.0) == (pytest.approx(187.0), pytest.approx(72.0))
    assert s.body(None, None) == (None, None)
    with pytest.raises(ValueError, match="spacing"):
        s.spacing((1.0, 1.0))


def test_the_affine_stretches_the_slice_axis_about_the_stack_centre() -> None:
    rng = np.random.default_rng(0)
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([1.4, 1.4, 9.0])  # an oblique stack, as scanners write them
    affine[:3, 3] = [-100.0, 20.0, 35.0]
    slices = 11
    scaled = ClassScale(slice_spacing=1.2).affine(affine, slices)
    centre = np.array([3.0, 5.0, (slices - 1) / 2.0, 1.0])
    np.testing.assert_allclose(scaled @ centre, affine @ centre, atol=1e-9)  # the centre stays put
    np.testing.assert_allclose(scaled[:3, :2], affine[:3, :2])  # the in-plane grid unchanged
    np.testing.assert_allclose(np.linalg.norm(scaled[:3, 2]), 10.8)  # 9 mm x 1.2, same direction
    np.testing.assert_allclose(scaled[:3, 2] / 10.8, affine[:3, 2] / 9.0)
    np.testing.assert_allclose(IDENTITY.affine(affine, slices), affine)
    with pytest.raises(ValueError, match="4 x 4"):
        IDENTITY.affine(np.eye(3), slices)


def test_factors_must_be_positive_and_round_trip() -> None:
    s = ClassScale(1.06, 1.02, 1.1)
    assert ClassScale.from_dict(s.to_dict()) == s
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="positive finite"):
            ClassScale(slice_spacing=bad)
    with pytest.raises(ValueError, match="unknown"):
        ClassScale.from_dict({"slice_spacing": 1.0, "length": 2.0})
    for wrong in ([1.0, 1.0, 1.0], "x", None):
        with pytest.raises(ValueError, match="mapping"):
            ClassScale.from_dict(wrong)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="numbers"):
        ClassScale.from_dict({"slice_spacing": None})
