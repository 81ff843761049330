"""Per-subject parameters: clinical targets per ACDC group, heart shape, acquisition, body, style.

The targets keep a margin from the ACDC thresholds (Bernard et al. 2018) so that, measured back
from the rasterised labels, each subject still meets its group's criteria:

======  ===============  ===========  ===============  ===========  =====================
group   LV EDV (ml/m²)   LV EF (%)    RV EDV (ml/m²)   RV EF (%)    wall
======  ===============  ===========  ===============  ===========  =====================
NOR     60-85            56-70        58-90            46-62        7-10 mm
DCM     120-165          15-33        60-92            42-58        6-8.5 mm
HCM     50-78            62-78        55-85            48-62        13-16, septum 20-28
MINF    85-115           20-36        58-90            42-58        8-10, infarct thinned
RV      58-85            56-68        125-175          22-38        7-10 mm
======  ===============  ===========  ===============  ===========  =====================

A MINF subject's infarct lies in one coronary territory (LAD, LCx or RCA, drawn 50/25/25 %) placed
relative to its own septum, so the class has a few consistent infarct locations instead of one
smeared over every angle (:data:`TERRITORY_EXTENTS`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cardiosynth.data.acdc import body_surface_area
from cardiosynth.data.labels import Group
from cardiosynth.data.phantom.anatomy import FloatArray, HeartShape, Infarct
from cardiosynth.data.phantom.appearance import STYLES, BodyLayout
from cardiosynth.data.phantom.population import PopulationDraw, Strata, initial_wall, sample_population
from cardiosynth.data.phantom.tissues import Columns, HeartExtras
from cardiosynth.data.phantom.variation import Variation
from cardiosynth.data.territory import TERRITORIES, TERRITORY_FREQUENCY

# The phantom's versions. Each is kept reproducible: a subject of version ``v`` with seed ``s`` and
# index ``i`` is the same array on every release. 1: uniform independent targets inside
# :data:`GROUP_RANGES`, circular LV, MINF infarct at a uniformly random angle (the phantom before
# issue 10). 2: the ACDC-like joint population (:mod:`.population`), MINF infarcts in coronary
# territories and the anatomy and appearance of issue 10. Code that renders a subject branches on
# ``SubjectParams.version`` (never on the module default), so both stay available.
PHANTOM_VERSIONS: tuple[int, ...] = (1, 2)
PHANTOM_VERSION = 2  # the default
# What a version's output is, as a string that changes whenever the arrays of that version change
# (the default data cache is keyed by it, so a machine never serves data made by older code of the
# same version). Version 1 is frozen; bump version 2's minor with every change to its output.
PHANTOM_CONTENT: dict[int, str] = {1: "1.0", 2: "2.6"}


def check_phantom_version(version: int) -> int:
    """``version`` if it is one of :data:`PHANTOM_VERSIONS`.

    Raises:
        ValueError: naming the value and the versions there are.
    """
    if (
        isinstance(version, bool)
        or not isinstance(version, int | np.integer)
        or version not in PHANTOM_VERSIONS
    ):
        raise ValueError(
            f"unknown phantom version {version!r}; expected one of {', '.join(map(str, PHANTOM_VERSIONS))}"
        )
    return int(version)


@dataclass(frozen=True)
class GroupRanges:
    lv_edv_index: tuple[float, float]
    lv_ef: tuple[float, float]
    rv_edv_index: tuple[float, float]
    rv_ef: tuple[float, float]
    wall: tuple[float, float]
    aspect: tuple[float, float]  # LV cavity length / basal radius


GROUP_RANGES: dict[Group, GroupRanges] = {
    Group.NOR: GroupRanges((60, 85), (56, 70), (58, 90), (46, 62), (7.0, 10.0), (3.0, 3.6)),
    Group.DCM: GroupRanges((120, 165), (15, 33), (60, 92), (42, 58), (6.0, 8.5), (2.2, 2.7)),
    Group.HCM: GroupRanges((50, 78), (62, 78), (55, 85), (48, 62), (13.0, 16.0), (3.0, 3.6)),
    Group.MINF: GroupRanges((85, 115), (20, 36), (58, 90), (42, 58), (8.0, 10.0), (2.7, 3.2)),
    Group.RV: GroupRanges((58, 85), (56, 68), (125, 175), (22, 38), (7.0, 10.0), (3.0, 3.6)),
}
MATRIX_SIZES = (208, 216, 224, 232, 240, 256)


@dataclass(frozen=True)
class Acquisition:
    """Native geometry of the short-axis stack."""

    pixel_spacing: float  # mm, in-plane (square pixels)
    slice_spacing: float  # mm, centre to centre
    slice_thickness: float  # mm, <= slice_spacing
    matrix: tuple[int, int]
    first_depth: float  # depth of the first (basal) slice centre, mm
    n_slices: int
    heart_offset: tuple[float, float]  # LV axis position from the image centre, mm
    nb_frames: int
    es_frame: int

    @property
    def depths(self) -> FloatArray:
        out: FloatArray = self.first_depth + self.slice_spacing * np.arange(self.n_slices, dtype=np.float64)
        return out


@dataclass(frozen=True)
class SubjectParams:
    """Everything that determines one phantom subject (before the volume fit)."""

    group: Group
    height: float
    weight: float
    lv_edv: float  # ml
    lv_esv: float
    rv_edv: float
    rv_esv: float
    shape: HeartShape
    extras: HeartExtras
    acquisition: Acquisition
    body: BodyLayout
    style: str
    version: int = PHANTOM_VERSION  # phantom version (PHANTOM_VERSIONS) that rendering follows
    # Version 2's population (None in version 1): sex (M/F), the LV mass (g) the generator fits the
    # wall thickness to, and HCM's maximal (septal) wall thickness (mm).
    sex: str | None = None
    mass_target: float | None = None
    max_wall_target: float | None = None
    variation: Variation | None = None  # version 2's anatomy, coverage and appearance (.variation)

    @property
    def bsa(self) -> float:
        return body_surface_area(self.height, self.weight)


def _u(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _columns(
    rng: np.random.Generator,
    n: int,
    angle: tuple[float, float],
    radial: tuple[float, float],
    radius: tuple[float, float],
    depth: tuple[float, float],
    length: tuple[float, float],
) -> Columns:
    centre = rng.uniform(*depth, n)
    half = rng.uniform(*length, n) / 2.0
    return Columns(
        angle=rng.uniform(*angle, n),
        radial=rng.uniform(*radial, n),
        radius=rng.uniform(*radius, n),
        depth_lo=centre - half,
        depth_hi=centre + half,
    )


@dataclass(frozen=True)
class TerritoryExtent:
    """Where an infarct of one coronary territory lies: its centre in degrees from the septum toward
    anterior (see :mod:`cardiosynth.data.territory`), its angular width in degrees and its depth
    extent as fractions of the LV cavity length (0 base, 1 cavity apex, up to 1.05 into the cap)."""

    centre: tuple[float, float]
    width: tuple[float, float]
    depth_start: tuple[float, float]
    depth_end: tuple[float, float]


# LAD: anterior and anteroseptal, mid to apex (the apex is LAD territory in most hearts); LCx:
# anterolateral and inferolateral, base to mid-apical; RCA: inferoseptal and inferior, basal and mid.
# Centres jitter within their territory; every extent reaches the mid-ventricular slices on which
# the rule classifier measures regional function.
TERRITORY_EXTENTS: dict[str, TerritoryExtent] = {
    "LAD": TerritoryExtent((40.0, 80.0), (100.0, 140.0), (0.12, 0.28), (0.95, 1.05)),
    "LCx": TerritoryExtent((160.0, 200.0), (90.0, 130.0), (0.05, 0.2), (0.75, 0.9)),
    "RCA": TerritoryExtent((-80.0, -40.0), (90.0, 130.0), (0.0, 0.1), (0.65, 0.8)),
}


def sample_infarct(septal_angle: float, rng: np.random.Generator) -> Infarct:
    """A transmural infarct in a coronary territory drawn with :data:`TERRITORY_FREQUENCY`.

    The phantom frame's angle grows counter-clockwise with ``y`` anterior and the septum at
    ``septal_angle`` (about pi), so anterior is ``septal_angle - pi/2``: a territory angle ``psi``
    (degrees from the septum toward anterior) sits at ``septal_angle - radians(psi)``.
    """
    names = list(TERRITORIES)
    territory = names[int(rng.choice(len(names), p=[TERRITORY_FREQUENCY[t] for t in names]))]
    extent = TERRITORY_EXTENTS[territory]
    psi = math.radians(_u(rng, extent.centre))
    return Infarct(
        angle=septal_angle - psi,
        width=math.radians(_u(rng, extent.width)),
        depth_start=_u(rng, extent.depth_start),
        depth_end=_u(rng, extent.depth_end),
        wall_kept=_u(rng, (0.5, 0.7)),
        contractility=_u(rng, (-0.15, 0.05)),  # akinetic to mildly dyskinetic
        territory=territory,
    )


def _sample_infarct_v1(septal_angle: float, rng: np.random.Generator) -> Infarct:
    """Version 1's infarct: anywhere around the LV (a uniformly random angle), no territory."""
    return Infarct(
        angle=septal_angle + _u(rng, (-math.pi, math.pi)),
        width=math.radians(_u(rng, (110.0, 160.0))),
        depth_start=_u(rng, (0.05, 0.25)),
        depth_end=_u(rng, (0.9, 1.05)),
        wall_kept=_u(rng, (0.5, 0.7)),
        contractility=_u(rng, (-0.15, 0.05)),  # akinetic to mildly dyskinetic
    )


def sample_subject_params(
    group: Group, rng: np.random.Generator, version: int = PHANTOM_VERSION, strata: Strata | None = None
) -> SubjectParams:
    """Draw one subject of ``group`` for phantom ``version``: targets, anatomy, geometry, style;
    ``strata`` (version 2) places its population draw in its group's Latin hypercube.

    Raises:
        ValueError: ``version`` is not one of :data:`PHANTOM_VERSIONS`.
    """
    version = check_phantom_version(version)
    ranges = GROUP_RANGES[group]
    draw: PopulationDraw | None = None
    if version >= 2:
        # The ACDC-like joint population: sizes, functions, mass and sex drawn together.
        draw = sample_population(group, rng, strata)
        height, weight = draw.height, draw.weight
        bsa = body_surface_area(height, weight)
        lv_edv = draw.lv_edv_index * bsa
        lv_esv = lv_edv * (1.0 - draw.lv_ef / 100.0)
        rv_edv = draw.rv_edv_index * bsa
        rv_esv = rv_edv * (1.0 - draw.rv_ef / 100.0)
    else:  # version 1: uniform, independent targets inside GROUP_RANGES
        height = float(np.clip(rng.normal(171.0, 9.0), 150.0, 195.0))
        weight = float(np.clip(rng.normal(76.0, 13.0), 48.0, 120.0))
        bsa = body_surface_area(height, weight)
        lv_edv = _u(rng, ranges.lv_edv_index) * bsa
        lv_esv = lv_edv * (1.0 - _u(rng, ranges.lv_ef) / 100.0)
        rv_edv = _u(rng, ranges.rv_edv_index) * bsa
        rv_esv = rv_edv * (1.0 - _u(rng, ranges.rv_ef) / 100.0)

    septal_angle = math.pi + _u(rng, (-0.35, 0.35))
    q = _u(rng, (2.0, 2.5))
    aspect = _u(rng, ranges.aspect)
    # Radius of a solid of this profile holding lv_edv; fixes the length before the exact fit.
    u = np.linspace(0.0, 1.0, 2001)
    profile_sq = float(np.trapezoid((1.0 - u**q) ** (2.0 / q), u))
    radius0 = (lv_edv * 1000.0 / (math.pi * aspect * profile_sq)) ** (1.0 / 3.0)
    # Version 2: a first guess; the generator solves the wall for the drawn mass (fit_wall_to_mass).
    wall = _u(rng, ranges.wall) if draw is None else initial_wall(draw.mass_index * bsa, lv_edv, aspect)
    septal_extra, septal_width = 0.0, math.radians(100.0)
    if group is Group.HCM:
        septal = _u(rng, (20.0, 28.0)) if draw is None or draw.max_wall is None else draw.max_wall
        septal_extra = max(septal / wall - 1.0, 0.05)
        septal_width = math.radians(_u(rng, (80.0, 140.0)))
    infarct = None
    if group is Group.MINF:
        infarct = sample_infarct(septal_angle, rng) if version >= 2 else _sample_infarct_v1(septal_angle, rng)
    rv_dilated = group is Group.RV
    shape = HeartShape(
        lv_length=aspect * radius0,
        profile_exponent=q,
        ellipticity=_u(rng, (0.0, 0.06)),
        ellipse_angle=_u(rng, (0.0, math.pi)),
        wall_thickness=wall,
        apex_cap=_u(rng, (0.7, 1.0)) * wall,
        septal_angle=septal_angle,
        septal_extra=septal_extra,
        septal_width=septal_width,
        rv_width=math.radians(_u(rng, (190.0, 220.0) if rv_dilated else (150.0, 185.0))),
        rv_length_ratio=_u(rng, (0.88, 0.96) if rv_dilated else (0.72, 0.86)),
        infarct=infarct,
    )

    pixel = _u(rng, (1.3, 1.9))
    n_target = int(rng.integers(8, 15))
    epi = shape.epi_length
    spacing = float(np.clip(epi / (n_target - 1.2), max(5.0, epi / 12.8), 10.0))
    thickness = spacing if rng.random() < 0.5 else min(spacing, _u(rng, (5.0, 8.0)))
    first = _u(rng, (0.2, 0.6)) * spacing
    n_slices = int(np.clip(math.ceil((epi - first) / spacing) + 1, 8, 14))
    nb_frames = int(rng.integers(20, 31))
    acquisition = Acquisition(
        pixel_spacing=pixel,
        slice_spacing=spacing,
        slice_thickness=thickness,
        matrix=(int(rng.choice(MATRIX_SIZES)), int(rng.choice(MATRIX_SIZES))),
        first_depth=first,
        n_slices=n_slices,
        heart_offset=(_u(rng, (-15.0, 25.0)), _u(rng, (-10.0, 25.0))),
        nb_frames=nb_frames,
        es_frame=int(rng.integers(round(0.3 * nb_frames), round(0.45 * nb_frames) + 1)),
    )

    lv_len = shape.lv_length
    extras = HeartExtras(
        papillary=Columns(
            angle=np.array([septal_angle + math.pi - 0.75, septal_angle + math.pi + 0.8])
            + rng.normal(0, 0.12, 2),
            radial=rng.uniform(0.68, 0.76, 2),
            radius=rng.uniform(3.0, 5.5, 2),
            depth_lo=rng.uniform(0.25, 0.35, 2) * lv_len,
            depth_hi=rng.uniform(0.7, 0.8, 2) * lv_len,
        ),
        lv_trabeculae=_columns(
            rng, 24, (0.0, 2 * math.pi), (0.88, 0.97), (0.8, 1.6), (0.3 * lv_len, lv_len), (8, 20)
        ),
        rv_trabeculae=_columns(
            rng,
            16,
            (septal_angle - 1.2, septal_angle + 1.2),
            (0.7, 0.92),
            (0.8, 1.8),
            (0.2 * lv_len, lv_len),
            (8, 20),
        ),
        rv_wall=_u(rng, (2.5, 4.0)),
        fat_base=_u(rng, (0.8, 2.0)),
        fat_extra=_u(rng, (2.0, 6.0)),
        fat_angle=septal_angle + _u(rng, (-1.0, 1.0)),
    )

    torso_a, torso_b = _u(rng, (165.0, 195.0)), _u(rng, (105.0, 130.0))
    body = BodyLayout(
        torso_centre=(_u(rng, (-35.0, -15.0)), -torso_b + _u(rng, (55.0, 75.0))),
        torso_axes=(torso_a, torso_b),
        subcutaneous_fat=_u(rng, (6.0, 20.0)),
        chest_muscle=_u(rng, (8.0, 14.0)),
        left_lung_centre=(_u(rng, (80.0, 95.0)), _u(rng, (-40.0, -20.0))),
        left_lung_axes=(_u(rng, (45.0, 60.0)), _u(rng, (70.0, 90.0))),
        right_lung_centre=(_u(rng, (-120.0, -100.0)), _u(rng, (-45.0, -25.0))),
        right_lung_axes=(_u(rng, (50.0, 65.0)), _u(rng, (70.0, 90.0))),
        liver_centre=(_u(rng, (-100.0, -70.0)), _u(rng, (-70.0, -45.0))),
        liver_axes=(_u(rng, (80.0, 100.0)), _u(rng, (60.0, 75.0))),
        liver_from=_u(rng, (0.45, 0.7)),
        aorta_centre=(_u(rng, (20.0, 40.0)), _u(rng, (-85.0, -70.0))),
        aorta_radius=_u(rng, (9.0, 13.0)),
        spine_centre=(_u(rng, (-5.0, 10.0)), _u(rng, (-120.0, -105.0))),
        spine_radius=_u(rng, (15.0, 20.0)),
    )
    style = str(rng.choice(sorted(STYLES)))
    return SubjectParams(
        group=group,
        height=height,
        weight=weight,
        lv_edv=lv_edv,
        lv_esv=lv_esv,
        rv_edv=rv_edv,
        rv_esv=rv_esv,
        shape=shape,
        extras=extras,
        acquisition=acquisition,
        body=body,
        style=style,
        version=version,
        sex=draw.sex if draw is not None else None,
        mass_target=draw.mass_index * bsa if draw is not None else None,
        max_wall_target=draw.max_wall if draw is not None else None,
    )
