from __future__ import annotations

from dataclasses import replace

import pytest

from cardiosynth.data.biomarkers import Biomarkers
from cardiosynth.data.classify import BORDERLINE, classify
from cardiosynth.data.labels import Group

NORMAL = Biomarkers(
    lv_edv=140.0, lv_esv=55.0, lv_sv=85.0, lv_ef=60.7, rv_edv=150.0, rv_esv=70.0, rv_sv=80.0, rv_ef=53.3,
    myo_mass=130.0, max_wall_thickness=9.0, thick_segments=0, sector_fac=(0.6,) * 6, hypokinetic_sectors=0,
    bsa=2.0, lv_edv_index=70.0, lv_esv_index=27.5, rv_edv_index=75.0, rv_esv_index=35.0, mass_index=65.0,
)  # fmt: skip


def with_(**changes: object) -> Biomarkers:
    return replace(NORMAL, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("biomarkers", "expected"),
    [
        (NORMAL, Group.NOR.value),
        (with_(lv_ef=25.0, lv_edv_index=130.0), Group.DCM.value),
        (with_(lv_ef=30.0, lv_edv_index=95.0, hypokinetic_sectors=2), Group.MINF.value),
        (with_(lv_ef=30.0, lv_edv_index=130.0, hypokinetic_sectors=1), Group.MINF.value),
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
    assert classify(one_segment).label == Group.NOR.value
    assert classify(light).label == Group.NOR.value


def test_sex_sets_the_rv_threshold() -> None:
    b = with_(rv_edv_index=105.0)
    assert classify(b, sex="F").label == Group.RV.value
    assert classify(b, sex="M").label == Group.NOR.value


def test_missing_bsa_and_bad_sex_are_value_errors() -> None:
    with pytest.raises(ValueError, match="height and weight"):
        classify(with_(bsa=None, lv_edv_index=None, rv_edv_index=None, mass_index=None))
    with pytest.raises(ValueError, match="'X'"):
        classify(NORMAL, sex="X")  # type: ignore[arg-type]
