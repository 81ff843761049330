"""Phantom version 2's population: per-group joint distributions of the ACDC biomarkers.

What is drawn, per subject of a group: sex, height and weight (so BSA), LV EDV index, LVEF, RV EDV
index, RVEF, LV mass index and, for HCM, the maximal (septal) wall thickness. Volumes and mass are
log-normal, EFs normal, jointly through one Gaussian copula per group with the correlations of
:data:`CORRELATION` (mass with LV EDV, LVEF against LV EDV, the two ventricles' sizes and
functions); sizes are indexed, so absolute volumes and mass grow with BSA as they do in patients.
The wall thickness of non-HCM hearts is not drawn: the generator solves it from the drawn mass and
the fitted cavity (:func:`fit_wall_to_mass`), so thickness follows mass and EDV (eccentric
remodelling: DCM's mass index is above NOR's at a normal wall).

Sampling. In a data set (:func:`~cardiosynth.data.phantom.generator.generate_dataset`) each group's
subjects draw their copula normals from a Latin hypercube over the group (:func:`group_strata`):
one cell of each dimension per subject, so that a group of 20 spans its distribution instead of
landing, by chance, at 0.6-1.4 x its SD (content 2.6; a subject generated on its own draws freely).

Selection. ACDC included patients by its group criteria (Bernard et al. 2018, section II-A), so each
group is the joint distribution restricted to its criteria, but with relaxed thresholds
(:data:`SELECTION`): a subject a few units on the wrong side of a threshold is kept, as ACDC's
readers measured on their own contours and kept cases that the rules, on other contours, call
borderline. That overlap is what brings the rule classifier's agreement down from 100 % to the
85-97 % of the issue's target.

Sources, and how much to trust them. :data:`ACDC_PUBLISHED` holds per-group means and SDs of the
ACDC training set (100 subjects, 20 per group). We could not retrieve a table with exact values
here: the group definitions are those of Bernard et al., IEEE TMI 37(11):2514-2525, 2018 (and the
challenge's classification page); the numbers are approximate values recalled from analyses of
the ACDC reference contours (the feature distributions of Wolterink et al. and Isensee et al.,
STACOM 2017, LNCS 10663, and Khened et al., Med Image Anal 51:21-45, 2019), rounded to the precision
we believe they have: about ±10 % on a mean, ±25 % on an SD. Replace them with exact figures when
a source is at hand (every consumer reads this table). Sex is not in ACDC's Info.cfg; the shares
in :data:`MALE_SHARE` and the body sizes in :data:`BODY` are assumptions (typical adult European
cardiac MR cohorts), and the sex effect on indexed sizes follows CMR reference values (Kawel-Boehm
et al., J Cardiovasc Magn Reson 17:29, 2015: men's indexed LV/RV volumes about 5-10 % and mass index
about 15-20 % above women's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Final, Literal

import numpy as np
from scipy import special

from cardiosynth.data.labels import Group
from cardiosynth.data.phantom.anatomy import FloatArray, HeartShape, fit_heart, volumes_ml

Sex = Literal["M", "F"]
MYOCARDIAL_DENSITY: Final = 1.05  # g/ml, as the biomarkers measure mass

# Biomarker names, in the order of the copula's dimensions.
FIELDS: Final[tuple[str, ...]] = ("lv_edv_index", "lv_ef", "rv_edv_index", "rv_ef", "mass_index", "max_wall")
TITLES: Final[dict[str, str]] = {
    "lv_edv_index": "LVEDVi ml/m²",
    "lv_ef": "LVEF %",
    "rv_edv_index": "RVEDVi ml/m²",
    "rv_ef": "RVEF %",
    "mass_index": "mass g/m²",
    "max_wall": "max WT mm",
}


@dataclass(frozen=True)
class GroupStats:
    """Published per-group (mean, SD) of each biomarker of :data:`FIELDS`, and where they come from."""

    lv_edv_index: tuple[float, float]  # ml/m²
    lv_ef: tuple[float, float]  # %
    rv_edv_index: tuple[float, float]  # ml/m²
    rv_ef: tuple[float, float]  # %
    mass_index: tuple[float, float]  # g/m², LV myocardium at ED (papillary muscles in the cavity)
    max_wall: tuple[float, float]  # mm, maximal ED myocardial thickness
    source: str

    def get(self, field: str) -> tuple[float, float]:
        if field not in FIELDS:
            raise ValueError(f"unknown biomarker {field!r}; expected one of {', '.join(FIELDS)}")
        value: tuple[float, float] = getattr(self, field)
        return value


_RECALLED = (
    "approximate, recalled from ACDC training-set analyses (Wolterink 2017, Isensee 2017, "
    "Khened 2019); group criteria Bernard et al. 2018"
)
# ACDC training set, per group: (mean, SD). See the module docstring for how far to trust them.
ACDC_PUBLISHED: Final[dict[Group, GroupStats]] = {
    Group.NOR: GroupStats((75, 13), (62, 5), (76, 15), (56, 6), (62, 11), (9.5, 1.3), _RECALLED),
    Group.DCM: GroupStats((160, 35), (18, 8), (95, 30), (36, 14), (92, 20), (10.0, 1.8), _RECALLED),
    Group.HCM: GroupStats((78, 17), (72, 8), (72, 15), (60, 9), (130, 30), (19.5, 3.5), _RECALLED),
    Group.MINF: GroupStats((122, 28), (26, 8), (78, 20), (46, 12), (88, 18), (11.0, 1.8), _RECALLED),
    Group.RV: GroupStats((72, 15), (58, 7), (140, 30), (34, 10), (62, 12), (9.5, 1.5), _RECALLED),
}

# Correlations of the copula (order of FIELDS, max_wall used by HCM only): mass grows with the LV
# (remodelling), a larger LV ejects a smaller fraction, the two ventricles' sizes and functions go
# together, and the HCM septum is thicker in heavier hearts.
CORRELATION: Final[FloatArray] = np.array(
    [
        [1.0, -0.35, 0.45, -0.1, 0.5, 0.0],
        [-0.35, 1.0, -0.1, 0.4, -0.15, 0.0],
        [0.45, -0.1, 1.0, -0.35, 0.25, 0.0],
        [-0.1, 0.4, -0.35, 1.0, 0.0, 0.0],
        [0.5, -0.15, 0.25, 0.0, 1.0, 0.5],
        [0.0, 0.0, 0.0, 0.0, 0.5, 1.0],
    ]
)
_CHOLESKY: Final[FloatArray] = np.asarray(np.linalg.cholesky(CORRELATION), dtype=np.float64)

# Share of men per group (assumption: ACDC does not report sex; cardiomyopathy and infarct cohorts
# are mostly men, normal volunteers about half).
MALE_SHARE: Final[dict[Group, float]] = {
    Group.NOR: 0.5,
    Group.DCM: 0.65,
    Group.HCM: 0.65,
    Group.MINF: 0.8,
    Group.RV: 0.55,
}


@dataclass(frozen=True)
class Body:
    """Height (cm) and weight (kg) of one sex: means, SDs, their correlation, and clipping bounds."""

    height: tuple[float, float]
    weight: tuple[float, float]
    correlation: float
    height_bounds: tuple[float, float]
    weight_bounds: tuple[float, float]


BODY: Final[dict[str, Body]] = {
    "M": Body((176.0, 7.0), (82.0, 13.0), 0.45, (155.0, 198.0), (52.0, 130.0)),
    "F": Body((163.0, 6.5), (67.0, 13.0), 0.4, (145.0, 185.0), (42.0, 115.0)),
}
# Indexed sizes of men over the group mean (women get the reciprocal share): volumes and mass.
SEX_VOLUME_EFFECT: Final = 0.04
SEX_MASS_EFFECT: Final = 0.08


@dataclass(frozen=True)
class Selection:
    """A group's inclusion criteria with relaxed thresholds (None: no bound).

    Each bound is the ACDC threshold moved outward by a margin, so that a few subjects lie on the
    wrong side of the rule (borderline) as in a clinical data set.
    """

    lv_ef: tuple[float | None, float | None] = (None, None)
    lv_edv_index: tuple[float | None, float | None] = (None, None)
    rv_edv_index: tuple[float | None, float | None] = (None, None)
    rv_ef: tuple[float | None, float | None] = (None, None)
    mass_index: tuple[float | None, float | None] = (None, None)
    max_wall: tuple[float | None, float | None] = (None, None)
    rv_abnormal: bool = False  # RV group: RVEDVi above or RVEF below the relaxed bounds (either)

    def accepts(self, values: dict[str, float]) -> bool:
        if self.rv_abnormal:
            lo_ef = self.rv_ef[1]
            hi_edv = self.rv_edv_index[0]
            if not (
                (lo_ef is not None and values["rv_ef"] < lo_ef)
                or (hi_edv is not None and values["rv_edv_index"] > hi_edv)
            ):
                return False
        for field in ("lv_ef", "lv_edv_index", "mass_index", "max_wall") + (
            () if self.rv_abnormal else ("rv_edv_index", "rv_ef")
        ):
            lo, hi = getattr(self, field)
            v = values[field]
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                return False
        return True


# Relaxed criteria (ACDC's threshold, then the margin that lets borderline cases in).
SELECTION: Final[dict[Group, Selection]] = {
    # NOR: none of the diseases, and normal by the project's NOR rule (LVEF >= 50, RVEF >= 45,
    # LVEDVi <= 100, RVEDVi <= 100 for women / 110 for men, mass index <= 110).
    Group.NOR: Selection(
        lv_ef=(47.0, None), lv_edv_index=(None, 104.0), rv_edv_index=(None, 106.0), rv_ef=(43.0, None)
    ),
    # DCM: LVEDVi > 100 and LVEF < 40.
    Group.DCM: Selection(lv_ef=(None, 41.0), lv_edv_index=(95.0, None), max_wall=(None, None)),
    # HCM: mass index > 110, wall > 15 mm, LVEF > 55.
    Group.HCM: Selection(lv_ef=(53.0, None), mass_index=(100.0, None), max_wall=(14.5, None)),
    # MINF: LVEF < 40 (the regional abnormality is the infarct itself).
    Group.MINF: Selection(lv_ef=(None, 42.0)),
    # RV: RVEDVi > 110 (men; 100 women) or RVEF < 40; and a normally functioning LV.
    Group.RV: Selection(rv_edv_index=(100.0, None), rv_ef=(None, 42.0), rv_abnormal=True, lv_ef=(47.0, None)),
}
# Plausibility bounds on every draw (beyond them a heart is not a patient of these groups).
_BOUNDS: Final[dict[str, tuple[float, float]]] = {
    "lv_edv_index": (35.0, 260.0),
    "lv_ef": (6.0, 85.0),
    "rv_edv_index": (35.0, 260.0),
    "rv_ef": (10.0, 80.0),
    "mass_index": (35.0, 220.0),
    "max_wall": (13.0, 32.0),
}
_LOG_NORMAL: Final = frozenset({"lv_edv_index", "rv_edv_index", "mass_index"})
_MAX_TRIES: Final = 500


@dataclass(frozen=True)
class PopulationDraw:
    """One subject's drawn biomarkers (targets; the generator fits the anatomy to them)."""

    group: Group
    sex: Sex
    height: float  # cm
    weight: float  # kg
    lv_edv_index: float  # ml/m²
    lv_ef: float  # %
    rv_edv_index: float  # ml/m²
    rv_ef: float  # %
    mass_index: float  # g/m²
    max_wall: float | None  # mm, HCM only (the septal maximum); None: follows from the mass


def _marginal(field: str, mean: float, sd: float, z: float) -> float:
    """The value at standard-normal quantile ``z`` of a marginal with this ``mean`` and ``sd``."""
    if field in _LOG_NORMAL:
        s2 = math.log1p((sd / mean) ** 2)
        return math.exp(math.log(mean) - 0.5 * s2 + math.sqrt(s2) * z)
    return mean + sd * z


def _body(sex: Sex, rng: np.random.Generator) -> tuple[float, float]:
    b = BODY[sex]
    z1, z2 = rng.standard_normal(2)
    z2 = b.correlation * z1 + math.sqrt(1.0 - b.correlation**2) * z2
    height = float(np.clip(b.height[0] + b.height[1] * z1, *b.height_bounds))
    weight = float(np.clip(b.weight[0] + b.weight[1] * z2, *b.weight_bounds))
    return height, weight


@dataclass(frozen=True)
class Strata:
    """Where one subject's copula normals lie among the ``size`` subjects of its group in a data set:
    per dimension of the copula, the cell (of ``size`` equiprobable cells) it draws from."""

    cells: tuple[int, ...]
    size: int

    def normals(self, rng: np.random.Generator) -> FloatArray:
        """Independent standard normals, each uniform within its cell's quantile range."""
        u = (np.asarray(self.cells, dtype=np.float64) + rng.random(len(self.cells))) / self.size
        out: FloatArray = np.asarray(special.ndtri(u), dtype=np.float64)
        return out


STRATA_STREAM: Final = 11  # seed-sequence entry of the data set's stratification stream


def group_strata(seed: int, group: Group, size: int) -> list[Strata]:
    """Latin-hypercube strata of the ``size`` subjects of ``group`` in a data set with ``seed``.

    Why: drawn independently, 20 subjects give a group SD anywhere within about ±30 % of the
    population's (the standard error of an SD from 20 draws is 16 %), so a data set's groups could
    miss the published spread by chance (DCM LVEDVi at 0.60 x on seed 0 with content 2.5, with no
    draw clipped or rejected). One cell per subject per copula dimension, in an independent random
    order per dimension, makes each group's draws cover their distribution whatever the seed.

    Raises:
        ValueError: ``size`` below 1.
    """
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    rng = np.random.default_rng([seed, STRATA_STREAM, list(Group).index(group)])
    orders = [rng.permutation(size) for _ in FIELDS]
    return [Strata(cells=tuple(int(order[j]) for order in orders), size=size) for j in range(size)]


def sample_population(group: Group, rng: np.random.Generator, strata: Strata | None = None) -> PopulationDraw:
    """Draw one subject of ``group`` from its joint distribution, restricted to :data:`SELECTION`.

    With ``strata`` (its place in its group's Latin hypercube, :func:`group_strata`) the first try
    draws the copula normals from its cells; a try that the selection rejects draws freely.

    Raises:
        RuntimeError: no draw met the selection in :data:`_MAX_TRIES` (a mis-set table).
    """
    stats = ACDC_PUBLISHED[group]
    selection = SELECTION[group]
    sex: Sex = "M" if rng.random() < MALE_SHARE[group] else "F"
    height, weight = _body(sex, rng)
    sign = 1.0 if sex == "M" else -1.0
    for attempt in range(_MAX_TRIES):
        if strata is not None and attempt == 0:
            z = _CHOLESKY @ strata.normals(rng)
        else:
            z = _CHOLESKY @ rng.standard_normal(len(FIELDS))
        values = {f: _marginal(f, *stats.get(f), float(z[i])) for i, f in enumerate(FIELDS)}
        for f in ("lv_edv_index", "rv_edv_index"):
            values[f] *= 1.0 + sign * SEX_VOLUME_EFFECT
        values["mass_index"] *= 1.0 + sign * SEX_MASS_EFFECT
        if not all(lo <= values[f] <= hi for f, (lo, hi) in _BOUNDS.items() if f != "max_wall"):
            continue
        if group is Group.HCM and not _BOUNDS["max_wall"][0] <= values["max_wall"] <= _BOUNDS["max_wall"][1]:
            continue
        if selection.accepts(values):
            return PopulationDraw(
                group=group,
                sex=sex,
                height=height,
                weight=weight,
                lv_edv_index=values["lv_edv_index"],
                lv_ef=values["lv_ef"],
                rv_edv_index=values["rv_edv_index"],
                rv_ef=values["rv_ef"],
                mass_index=values["mass_index"],
                max_wall=values["max_wall"] if group is Group.HCM else None,
            )
    raise RuntimeError(f"{group.value}: no draw met the selection in {_MAX_TRIES} tries")


# Apical hypertrophy peaks where the apical ramp is complete, u = 0.75, where the wall's base-to-apex
# taper (1 - u²/4) is 0.86 (HeartShape.thickness_ed).
_APICAL_TAPER: Final = 0.86


def _hypertrophy(shape: HeartShape, max_wall: float | None, wall: float) -> HeartShape:
    """``shape`` at basal wall ``wall`` with its hypertrophy (septal or apical, whichever is set)
    rescaled so that its peak stays at ``max_wall`` mm; without ``max_wall``, ratios are kept."""
    if max_wall is None:
        return replace(shape, wall_thickness=wall, apex_cap=shape.apex_cap * wall / shape.wall_thickness)
    septal = shape.septal_extra
    apical = shape.apical_extra
    if septal > 0.0:
        septal = max(max_wall / wall - 1.0, 0.02)  # stays > 0: still the septal pattern
    elif apical > 0.0:
        apical = max(max_wall / (_APICAL_TAPER * wall) - 1.0, 0.02)
    return replace(
        shape,
        wall_thickness=wall,
        apex_cap=shape.apex_cap * wall / shape.wall_thickness,
        septal_extra=septal,
        apical_extra=apical,
    )


def fit_wall_to_mass(
    shape: HeartShape,
    depths: FloatArray,
    spacing: float,
    *,
    mass_g: float,
    max_wall: float | None,
    lv_edv: float,
    lv_esv: float,
    rv_edv: float,
    rv_esv: float,
    tolerance: float = 0.003,
) -> HeartShape:
    """``shape`` (already fitted to its volumes) with the wall thickness that holds ``mass_g``.

    The cavity does not depend on the wall, so only the thickness scale changes (with the apical
    cap in proportion): a few multiplicative steps on the model's ED myocardial volume, which is
    measured the way ACDC measures it (slice areas times spacing). With ``max_wall`` (HCM) the septal
    or apical hypertrophy is rescaled at each step so its peak stays at ``max_wall`` mm (a diffuse
    pattern is a wide septal one); other regional terms (thickness waves) keep their ratios. The RV
    is refitted last, as it wraps the new epicardium.

    Raises:
        ValueError: the mass needs a wall outside 3-30 mm (the caller draws again).
    """
    if not mass_g > 0:
        raise ValueError(f"mass must be positive, got {mass_g}")
    target = mass_g / MYOCARDIAL_DENSITY
    current = shape
    for _ in range(12):
        myo = volumes_ml(current, depths, spacing, "ED")["myo"]
        if myo <= 0:
            raise ValueError("no myocardium in the slices; cannot fit the mass")
        ratio = target / myo
        if abs(ratio - 1.0) < tolerance:
            break
        wall = current.wall_thickness * ratio**0.9
        if not 3.0 <= wall <= 30.0:
            raise ValueError(f"mass {mass_g:.0f} g needs a wall of {wall:.1f} mm, outside 3-30 mm")
        current = _hypertrophy(current, max_wall, wall)
    return fit_heart(current, depths, spacing, lv_edv=lv_edv, lv_esv=lv_esv, rv_edv=rv_edv, rv_esv=rv_esv)


def initial_wall(mass_g: float, lv_edv: float, aspect: float) -> float:
    """A first guess of the basal wall (mm) for ``mass_g`` around a cavity of ``lv_edv`` ml.

    A prolate shell of cavity radius ``a`` and length ``L = aspect a``: myocardial volume is about
    the cavity's surface times the wall, ``S t`` with ``S ≈ 2.6 a L`` (a quadrature fit of the
    phantom's profiles); only the acquisition's extent depends on it, the fit refines it.
    """
    a = (lv_edv * 1000.0 / (0.55 * math.pi * aspect)) ** (1.0 / 3.0)
    surface = 2.6 * a * aspect * a
    return float(np.clip(mass_g / MYOCARDIAL_DENSITY * 1000.0 / surface, 4.0, 20.0))
