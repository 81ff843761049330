from __future__ import annotations

from dataclasses import replace

import pytest

from cardiosynth.data.biomarkers import Biomarkers, hypokinetic_sectors
from cardiosynth.data.classify import BORDERLINE, MASS_INDEX_NORMAL, RVEF_NORMAL, WALL_NORMAL, classify
from cardiosynth.data.labels import Group

NORMAL = Biomarkers(
    lv_edv=140.0, lv_esv=55.0, lv_sv=85.0, lv_ef=60.7, rv_edv=150.0, rv_esv=70.0, rv_sv=80.0, rv_ef=53.3,
    myo_mass=130.0, max_wall_thickness=9.0, thick_segments=0, sector_fac=(0.6,) * 6, hypokinetic_sectors=0,
    bsa=2.0, lv_edv_index=70.0, lv_esv_index=27.5, rv_edv_index=75.0, rv_esv_index=35.0, mass_index=65.0,
)  # fmt: skip


def with_(**changes: object) -> Biomarkers:
    b = replace(NORMAL, **changes)  # type: ignore[arg-type]
    return replace(b, hypokinetic_sectors=len(hypokinetic_sectors(b.sector_fac)))


# An infarcted heart: two sectors akinetic, the rest contracting as the subject's failing LV does.
INFARCT_FAC = (0.40, 0.38, 0.02, 0.05, 0.41, 0.39)


@pytest.mark.parametrize(
    ("biomarkers", "expected"),
    [
        (NORMAL, Group.NOR.value),
        (with_(lv_ef=25.0, lv_edv_index=130.0), Group.DCM.value),
        (with_(lv_ef=30.0, lv_edv_index=95.0, sector_fac=INFARCT_FAC), Group.MINF.value),
        (
            with_(lv_ef=30.0, lv_edv_index=130.0, sector_fac=(0.35, 0.1, 0.33, 0.36, 0.34, 0.35)),
            Group.MINF.value,
        ),
        (with_(lv_ef=70.0, max_wall_thickness=22.0, thick_segments=9, mass_index=140.0), Group.HCM.value),
        (with_(rv_ef=30.0), Group.RV.value),
        (with_(rv_edv_index=130.0), Group.RV.value),
    ],
)
def test_acdc_groups(biomarkers: Biomarkers, expected: str) -> None:
    assert classify(biomarkers).label == expected


@pytest.mark.parametrize(
    ("biomarkers", "reason"),
    [
        (with_(lv_ef=30.0, lv_edv_index=80.0), "without LV dilation"),
        (
            with_(lv_ef=50.0, max_wall_thickness=20.0, thick_segments=5, mass_index=130.0),
            "without a normal EF",
        ),
        (with_(rv_edv_index=105.0), "sex unknown"),
        (with_(lv_ef=45.0), "mildly reduced"),
        (with_(lv_edv_index=110.0), "dilated LV with preserved EF"),
    ],
)
def test_ambiguous_cases_are_borderline_with_a_reason(biomarkers: Biomarkers, reason: str) -> None:
    d = classify(biomarkers)
    assert d.label == BORDERLINE
    assert d.group is None
    assert any(reason in r for r in d.reasons)


def test_hypertrophy_needs_several_segments_and_mass() -> None:
    one_segment = with_(lv_ef=70.0, max_wall_thickness=16.0, thick_segments=1, mass_index=140.0)
    light = with_(lv_ef=70.0, max_wall_thickness=18.0, thick_segments=6, mass_index=100.0)
    # not HCM, and no longer NOR either: a 16-18 mm wall is not a normal heart
    for b, reason in ((one_segment, "wall thicker than normal"), (light, "wall thicker than normal")):
        d = classify(b)
        assert d.label == BORDERLINE
        assert any(reason in r for r in d.reasons)


def test_sex_sets_the_rv_threshold() -> None:
    b = with_(rv_edv_index=105.0)
    assert classify(b, sex="F").label == Group.RV.value
    assert classify(b, sex="M").label == Group.NOR.value


def test_missing_bsa_and_bad_sex_are_value_errors() -> None:
    with pytest.raises(ValueError, match="height and weight"):
        classify(with_(bsa=None, lv_edv_index=None, rv_edv_index=None, mass_index=None))
    with pytest.raises(ValueError, match="'X'"):
        classify(NORMAL, sex="X")  # type: ignore[arg-type]


def test_severe_global_failure_with_homogeneous_contraction_stays_dcm() -> None:
    # LVEF 13-21 %: every sector contracts little. One sector at 0.07 is below half the best (0.18)
    # and below half the median (0.16): the old "half the best" rule called this MINF. It is within
    # label noise of the rest (0.09 FAC), so it is not a regional abnormality.
    for lvef, fac in (
        (13.0, (0.14, 0.12, 0.13, 0.05, 0.14, 0.13)),
        (17.0, (0.18, 0.16, 0.07, 0.15, 0.17, 0.16)),
        (21.0, (0.22, 0.21, 0.20, 0.21, 0.22, 0.21)),
    ):
        b = with_(lv_ef=lvef, lv_edv_index=140.0, sector_fac=fac)
        assert hypokinetic_sectors(fac) == ()
        assert classify(b).label == Group.DCM.value, (lvef, fac)


def test_minf_criterion_is_relative_to_the_subjects_own_function() -> None:
    # The same absolute sector FAC (0.12) is an infarct in a heart whose other sectors contract by
    # 0.45, and normal for a heart whose sectors all contract by about 0.12.
    regional = (0.45, 0.44, 0.12, 0.46, 0.45, 0.44)
    uniform = (0.12, 0.13, 0.12, 0.11, 0.12, 0.13)
    assert classify(with_(lv_ef=35.0, lv_edv_index=120.0, sector_fac=regional)).label == Group.MINF.value
    assert classify(with_(lv_ef=15.0, lv_edv_index=120.0, sector_fac=uniform)).label == Group.DCM.value
    # the median, not the best sector, is the reference: one hyperkinetic sector makes no infarct
    hyper = (0.30, 0.31, 0.29, 0.62, 0.30, 0.31)
    assert classify(with_(lv_ef=30.0, lv_edv_index=120.0, sector_fac=hyper)).label == Group.DCM.value
    # a dyskinetic (negative FAC) sector is regional too; NaN sectors are ignored
    dyskinetic = (0.30, float("nan"), -0.05, 0.32, 0.31, 0.30)
    assert hypokinetic_sectors(dyskinetic) == (2,)
    assert classify(with_(lv_ef=30.0, lv_edv_index=90.0, sector_fac=dyskinetic)).label == Group.MINF.value


def test_no_contraction_anywhere_has_no_regional_reference() -> None:
    assert hypokinetic_sectors((0.0, -0.01, 0.0, 0.0, 0.01, 0.0)) == ()
    assert hypokinetic_sectors((float("nan"),) * 6) == ()


def test_nor_requires_normal_wall_thickness() -> None:
    thick = with_(max_wall_thickness=14.5, thick_segments=0)
    d = classify(thick)
    assert d.label == BORDERLINE
    assert any("wall thicker than normal" in r for r in d.reasons)
    assert classify(with_(max_wall_thickness=WALL_NORMAL)).label == Group.NOR.value
    assert classify(with_(max_wall_thickness=WALL_NORMAL + 0.1)).label == BORDERLINE
    assert classify(with_(max_wall_thickness=float("nan"))).label == BORDERLINE


def test_nor_requires_normal_mass_index() -> None:
    heavy = with_(mass_index=MASS_INDEX_NORMAL + 5.0)
    d = classify(heavy)
    assert d.label == BORDERLINE
    assert any("high mass index" in r for r in d.reasons)
    # thick AND heavy in several segments with a normal EF is still HCM, not borderline
    hcm = with_(lv_ef=68.0, max_wall_thickness=18.0, thick_segments=4, mass_index=MASS_INDEX_NORMAL + 5.0)
    assert classify(hcm).label == Group.HCM.value


RVEF_CASES = [(39.0, Group.RV.value), (42.0, BORDERLINE), (44.9, BORDERLINE), (RVEF_NORMAL, Group.NOR.value)]


@pytest.mark.parametrize(("rvef", "expected"), RVEF_CASES)
def test_rvef_40_to_45_is_borderline(rvef: float, expected: str) -> None:
    d = classify(with_(rv_ef=rvef))
    assert d.label == expected
    if expected == BORDERLINE:
        assert any("mildly reduced RVEF" in r for r in d.reasons)
