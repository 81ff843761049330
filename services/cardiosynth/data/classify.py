"""Rule-based ACDC diagnosis from biomarkers (Bernard et al., IEEE TMI 2018, section II-A).

The challenge's group definitions:

- DCM: LV EDV > 100 ml/m² and LVEF < 40 %;
- HCM: LV mass > 110 g/m², several myocardial segments thicker than 15 mm in diastole, normal EF;
- MINF: LVEF < 40 % and several myocardial segments with abnormal contraction;
- RV: RV EDV > 110 ml/m² (men) or > 100 ml/m² (women), and/or RVEF < 40 %;
- NOR: none of these.

The groups overlap (MINF hearts dilate, DCM can involve the RV), so the rules are applied in the
order LV systolic failure, hypertrophy, RV, normal, and the ambiguous cases are reported as
``borderline`` with the reason instead of being forced into a group: LVEF < 40 % without dilation
or regional abnormality; hypertrophy without a normal EF; an RV volume between the women's and
the men's threshold when the sex is unknown (ACDC's Info.cfg does not give it); LVEF 40-50 %; a
dilated LV with preserved EF; RVEF 40-45 %; a wall thicker than normal or a high mass index
without meeting the HCM rule.

ACDC states "none of these" for NOR; a normal heart must also look normal, so NOR here requires
normal wall thickness, mass and RV function (thresholds and sources at the constants below).

The MINF rule's "abnormal contraction" is regional and relative to the subject's own global
function (see :func:`cardiosynth.data.biomarkers.hypokinetic_sectors`): a sector that contracts
less than 60 % as much as the subject's median sector AND at least 0.10 less in absolute FAC. A
globally failing heart that contracts homogeneously (DCM, LVEF 13-21 %) has no such sector and
stays DCM; the earlier rule (one sector below half the BEST one) turned such hearts into MINF,
because at a FAC of ~0.15 label noise alone halves a sector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from cardiosynth.data.biomarkers import Biomarkers, hypokinetic_sectors
from cardiosynth.data.labels import Group

BORDERLINE: Final = "borderline"
LVEF_FAILURE: Final = 40.0  # % below: systolic failure (DCM, MINF)
LVEF_NORMAL_HCM: Final = 55.0  # % above: the "normal EF" of HCM
LVEF_NORMAL: Final = 50.0  # % from: normal subject
LV_EDVI_DILATED: Final = 100.0  # ml/m²
MASS_INDEX_HCM: Final = 110.0  # g/m²
WALL_HCM: Final = 15.0  # mm
HCM_MIN_SEGMENTS: Final = 2  # "several segments"
MINF_MIN_SECTORS: Final = 1  # hypokinetic 60° sectors (each spans several AHA segments over the slices)
RVEF_FAILURE: Final = 40.0  # %
# RVEF 40-45 % is mildly reduced, not normal: the ASE/EACVI chamber quantification recommendations
# (Lang et al., J Am Soc Echocardiogr 2015; 28:1-39) put the lower limit of normal RVEF at 45 %.
RVEF_NORMAL: Final = 45.0  # % from: normal RV
# Maximal diastolic LV wall thickness of a normal heart. ESC 2014 HCM guidelines (Elliott et al.,
# Eur Heart J 2014; 35:2733-79): >= 15 mm is diagnostic of HCM in adults, 13-14 mm is a grey zone;
# <= 12 mm is normal (CMR reference values for the maximal segmental thickness of adults are
# below it). Our measure is the maximum over all slices and sectors on a 1.5 mm grid.
WALL_NORMAL: Final = 12.0  # mm
# Mass index of a normal heart: ACDC's own "high mass" threshold (its HCM criterion); the ASE/EACVI
# 2015 echocardiographic upper limits (95 g/m² women, 115 g/m² men) bracket it.
MASS_INDEX_NORMAL: Final = MASS_INDEX_HCM  # g/m²
RV_EDVI_MEN: Final = 110.0  # ml/m²
RV_EDVI_WOMEN: Final = 100.0  # ml/m²

Sex = Literal["M", "F"]


@dataclass(frozen=True)
class Diagnosis:
    """The rule outcome: a group, or ``borderline``; ``reasons`` says which criteria decided it."""

    label: str  # a Group value or "borderline"
    reasons: tuple[str, ...]

    @property
    def group(self) -> Group | None:
        return None if self.label == BORDERLINE else Group(self.label)


def classify(b: Biomarkers, sex: Sex | None = None) -> Diagnosis:
    """Apply the ACDC rules to ``b``.

    Raises:
        ValueError: the indexed volumes are missing (no height and weight), or ``sex`` is not M/F/None.
    """
    if sex not in ("M", "F", None):
        raise ValueError(f"sex must be 'M', 'F' or None, got {sex!r}")
    if b.lv_edv_index is None or b.rv_edv_index is None or b.mass_index is None:
        raise ValueError("classification needs indexed volumes: the subject has no height and weight (BSA)")
    lvef, lvedvi, rvedvi = b.lv_ef, b.lv_edv_index, b.rv_edv_index
    facts = f"LVEF {lvef:.0f} %, LVEDVi {lvedvi:.0f} ml/m²"

    if lvef < LVEF_FAILURE:
        # From the measured sector FACs, not the stored count, so the rule lives here alone.
        regional = hypokinetic_sectors(b.sector_fac)
        if len(regional) >= MINF_MIN_SECTORS:
            return Diagnosis(
                Group.MINF.value,
                (facts, f"{len(regional)} hypokinetic sector(s) {list(regional)} relative to the median"),
            )
        if lvedvi > LV_EDVI_DILATED:
            return Diagnosis(Group.DCM.value, (facts, "dilated LV, homogeneous contraction"))
        return Diagnosis(BORDERLINE, (facts, "LVEF < 40 % without LV dilation or regional abnormality"))

    hypertrophy = (
        b.max_wall_thickness > WALL_HCM
        and b.thick_segments >= HCM_MIN_SEGMENTS
        and b.mass_index > MASS_INDEX_HCM
    )
    if hypertrophy:
        why = (
            f"max wall {b.max_wall_thickness:.1f} mm in {b.thick_segments} segments",
            f"mass {b.mass_index:.0f} g/m²",
            f"LVEF {lvef:.0f} %",
        )
        if lvef > LVEF_NORMAL_HCM:
            return Diagnosis(Group.HCM.value, why)
        return Diagnosis(BORDERLINE, (*why, "hypertrophy without a normal EF"))

    rv_threshold = {"M": RV_EDVI_MEN, "F": RV_EDVI_WOMEN, None: RV_EDVI_MEN}[sex]
    rv_facts = f"RVEF {b.rv_ef:.0f} %, RVEDVi {rvedvi:.0f} ml/m²"
    if b.rv_ef < RVEF_FAILURE or rvedvi > rv_threshold:
        return Diagnosis(Group.RV.value, (rv_facts,))
    if sex is None and rvedvi > RV_EDVI_WOMEN:
        return Diagnosis(BORDERLINE, (rv_facts, "RV dilated by the women's threshold only; sex unknown"))

    if lvef < LVEF_NORMAL:
        return Diagnosis(BORDERLINE, (facts, "mildly reduced LVEF (40-50 %)"))
    if lvedvi > LV_EDVI_DILATED:
        return Diagnosis(BORDERLINE, (facts, "dilated LV with preserved EF"))
    if b.rv_ef < RVEF_NORMAL:
        return Diagnosis(BORDERLINE, (rv_facts, "mildly reduced RVEF (40-45 %)"))
    wall_facts = f"max wall {b.max_wall_thickness:.1f} mm, mass {b.mass_index:.0f} g/m²"
    if not b.max_wall_thickness <= WALL_NORMAL:  # NaN (no wall measured) is not normal either
        return Diagnosis(BORDERLINE, (wall_facts, f"wall thicker than normal (> {WALL_NORMAL:.0f} mm)"))
    if b.mass_index > MASS_INDEX_NORMAL:
        return Diagnosis(BORDERLINE, (wall_facts, f"high mass index (> {MASS_INDEX_NORMAL:.0f} g/m²)"))
    return Diagnosis(Group.NOR.value, (facts, rv_facts, wall_facts))
