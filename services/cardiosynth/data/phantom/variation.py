"""Version-2 anatomy and appearance of a phantom subject, drawn on top of its population draw.

:func:`vary_subject` takes the :class:`SubjectParams` that the population sampler drew and returns
them with the anatomy of issue 10 (all recorded in :class:`Variation`, serialised to phantom.json):

- **LV shape.** Oval cross-sections whose ovality and axis change from base to apex
  (``e`` 0.03-0.14, more in RV overload where the septum flattens, less in the spherical DCM
  ventricle), a long-axis profile that varies by subject (conical to globular taper, a narrower
  mitral annulus).
- **Base.** The basal slices cut the LV outflow tract (an open myocardial ring within the top
  8-18 % of the cavity) and, when the stack starts above the valve plane, the atria and the aortic
  root (background-labelled blood pools).
- **Motion.** Base descent toward the fixed apex at ES (mitral annular plane excursion: normal
  9-15 mm, less in failing ventricles, at most 0.3 x EF x LV length) with the wall thickening that
  keeps the mass; regional variation of wall thickness (a few %) and of contraction in every heart
  (1st harmonic 8-28 % around the ring and a base-to-apex gradient).
- **HCM patterns.** Septal (the population's, 60 %), apical (20 %: the hypertrophy moves to the
  apical third) or diffuse asymmetric (20 %: a wider septal-anterior region).
- **Acquisition.** Coverage that starts between 0.45 slice above the base (an atrial slice) and
  0.7 slice below it and ends between one slice short of the apex and 0.35 slice past it (the apex
  taken 8 mm below the cavity), so some stacks miss the apex and some end in an empty slice,
  whatever the group; in-plane shifts per slice
  (breath-hold misregistration, SD 0.8-2.5 mm per axis) plus a tilt of the long axis.
- **Body and artefacts** (:class:`.appearance.BodyExtras`, :class:`.appearance.ArtefactParams`).

Everything here is drawn from its own random stream (the caller passes ``default_rng([seed, index,
7])``), so the population's draws do not shift when this module changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from cardiosynth.data.labels import Group
from cardiosynth.data.phantom.anatomy import HeartShape
from cardiosynth.data.phantom.appearance import ArtefactParams, BodyExtras, BodyLayout
from cardiosynth.data.phantom.tissues import Atria, Outflow

if TYPE_CHECKING:
    from cardiosynth.data.phantom.params import SubjectParams

VARIATION_STREAM = 7  # third entry of the seed sequence of this module's random stream
HCM_PATTERNS: dict[str, float] = {"septal": 0.6, "apical": 0.2, "diffuse": 0.2}
MIN_SLICES, MAX_SLICES = 8, 14  # ACDC stacks (DESIGN.md)
NOMINAL_APEX_CAP = 8.0  # mm of myocardium below the cavity that coverage plans for


@dataclass(frozen=True)
class Variation:
    """What :func:`vary_subject` drew for one subject (ground truth in phantom.json).

    The shape terms are also in the fitted :class:`HeartShape` (``ellipticity``, ``taper``, ...);
    the outflow tract and atria in :class:`.tissues.HeartExtras`.
    """

    hcm_pattern: str | None
    sex: str | None  # as the population recorded it ("M"/"F"), None when it did not
    base_margin: float  # first slice centre, in slice spacings from the mitral plane (< 0: atrial)
    apex_margin: float  # last slice centre past the epicardial apex, in spacings (< 0: misses it)
    breath_sd: float  # mm, SD of the per-slice shift per axis
    axis_tilt: tuple[float, float]  # mm of in-plane drift of the LV axis per mm of depth
    slice_shifts: tuple[tuple[float, float], ...]  # per slice (x, y) mm, heart and body together
    outflow: Outflow
    atria: Atria
    body: BodyExtras
    artefacts: ArtefactParams


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _sex(params: SubjectParams) -> str | None:
    """The population's sex of the subject, normalised to "M"/"F" (None when it records none)."""
    value = getattr(params, "sex", None)
    if value is None:
        return None
    text = str(getattr(value, "value", value)).strip().upper()
    if text in {"F", "FEMALE", "W", "WOMAN"}:
        return "F"
    if text in {"M", "MALE", "MAN"}:
        return "M"
    return None


def _shape_terms(
    shape: HeartShape, group: Group, ef: float, rng: np.random.Generator
) -> tuple[HeartShape, str | None]:
    e0 = _u(rng, 0.03, 0.10)
    if group is Group.RV:
        e0 += _u(rng, 0.02, 0.05)  # septal flattening under RV overload
    elif group is Group.DCM:
        e0 *= 0.7  # the dilated ventricle turns spherical
    taper = {
        Group.DCM: (-0.25, 0.05),
        Group.MINF: (-0.15, 0.15),
    }.get(group, (-0.05, 0.25))
    descent = {
        Group.NOR: (9.0, 15.0),
        Group.HCM: (6.0, 12.0),
        Group.RV: (7.0, 13.0),
        Group.DCM: (2.0, 7.0),
        Group.MINF: (3.0, 8.0),
    }[group]
    wave = (0.08, 0.28)
    if group is Group.MINF:
        wave = (0.0, 0.10)  # the infarct is the regional abnormality; keep the rest even
    elif group is Group.DCM:
        wave = (0.03, 0.15)
    shape = replace(
        shape,
        ellipticity=e0,
        ellipticity_slope=_u(rng, -0.03, 0.08),
        ellipse_twist=_u(rng, -0.5, 0.5),
        taper=_u(rng, *taper),
        base_narrowing=_u(rng, 0.0, 0.12),
        thickness_wave=(
            _u(rng, 0.0, 0.10),
            _u(rng, -math.pi, math.pi),
            _u(rng, 0.0, 0.06),
            _u(rng, -math.pi, math.pi),
        ),
        contraction_wave=(_u(rng, *wave), _u(rng, -math.pi, math.pi), _u(rng, -0.25, 0.25)),
        # At most 0.3 x EF x length: the descent alone must not empty more than the stroke volume.
        base_descent=min(_u(rng, *descent), 0.3 * ef * shape.lv_length),
    )
    pattern = None
    if group is Group.HCM:
        names = list(HCM_PATTERNS)
        pattern = names[int(rng.choice(len(names), p=list(HCM_PATTERNS.values())))]
        if pattern == "apical":
            # The same maximal thickness, moved to the apical third (the thickness also tapers by
            # 1 - u²/4 toward the apex, 0.86 at u = 0.75). The septum goes back to normal: a zero
            # septal_extra also tells the mass fit (population.fit_wall_to_mass) to leave it there.
            peak = 1.0 + shape.septal_extra
            shape = replace(shape, apical_extra=peak / 0.86 - 1.0, septal_extra=0.0)
        elif pattern == "diffuse":
            shape = replace(
                shape,
                septal_extra=0.9 * shape.septal_extra,
                septal_width=math.radians(_u(rng, 170.0, 230.0)),
                septal_angle=shape.septal_angle - math.radians(_u(rng, 10.0, 30.0)),  # toward anterior
            )
    return shape, pattern


def _outflow_and_atria(shape: HeartShape, lv_edv: float, rng: np.random.Generator) -> tuple[Outflow, Atria]:
    # The outflow tract leaves the LV anteriorly next to the septum, at the RV's anterior insertion
    # point (the septum is at septal_angle, anterior at septal_angle - pi/2; see
    # params.sample_infarct). Centred just past the RV's tip, the gap opens onto the background
    # around the heart instead of a pocket walled in by the RV.
    outflow = Outflow(
        angle=shape.septal_angle - 0.5 * shape.rv_width - _u(rng, 0.0, 0.3),
        width=math.radians(_u(rng, 50.0, 90.0)),
        depth=_u(rng, 0.08, 0.18) * shape.lv_length,
    )
    radius = math.sqrt(lv_edv * 1000.0 / (math.pi * shape.lv_length * 0.75))  # ~ basal cavity radius
    atria = Atria(
        la_angle=shape.septal_angle + math.pi / 2 + _u(rng, -0.3, 0.3),  # posterior
        la_offset=_u(rng, 0.3, 0.6) * radius,
        la_radius=_u(rng, 0.7, 0.95) * radius,
        ra_angle=shape.septal_angle + _u(rng, 0.4, 0.9),  # septal side, posterior
        ra_offset=radius + _u(rng, 12.0, 22.0),
        ra_radius=_u(rng, 14.0, 22.0),
        aorta_angle=outflow.angle,
        aorta_offset=_u(rng, 0.3, 0.6) * radius,
        aorta_radius=_u(rng, 11.0, 15.0),
        wall=_u(rng, 1.5, 2.5),
        height=_u(rng, 35.0, 50.0),
    )
    return outflow, atria


def _body_extras(body: BodyLayout, female: bool, rng: np.random.Generator) -> BodyExtras:
    midline = body.torso_centre[0]
    anterior = body.torso_centre[1] + body.torso_axes[1]
    breasts: tuple[tuple[float, float, float, float], ...] = ()
    if female:
        # Supine: flattened, spread laterally, their base sunk into the chest wall's fat.
        ax, ay = _u(rng, 60.0, 85.0), _u(rng, 22.0, 42.0)
        breasts = tuple(
            (
                midline + side * _u(rng, 60.0, 80.0),
                anterior - _u(rng, 0.1, 0.4) * ay,
                ax * _u(rng, 0.9, 1.1),
                ay,
            )
            for side in (-1.0, 1.0)
        )
    return BodyExtras(
        sternum_centre=(midline + _u(rng, -6.0, 6.0), anterior - body.subcutaneous_fat - _u(rng, 4.0, 7.0)),
        sternum_axes=(_u(rng, 10.0, 15.0), _u(rng, 4.5, 7.0)),
        stomach_centre=(_u(rng, 60.0, 90.0), _u(rng, -50.0, -20.0)),
        stomach_axes=(_u(rng, 30.0, 50.0), _u(rng, 25.0, 40.0)),
        stomach_from=_u(rng, 0.55, 0.85),
        stomach_air=_u(rng, 0.1, 0.4),
        liver_wobble=(_u(rng, 0.0, 0.12), _u(rng, 0.0, 2.0 * math.pi)),
        breasts=breasts,
    )


def _artefacts(rng: np.random.Generator) -> ArtefactParams:
    # About one to two bands across the field of view: a linear shim error plus a bowl of
    # susceptibility off-resonance centred lateral to the heart (the lung-heart interface).
    gradient = _u(rng, 1.0 / 600.0, 1.0 / 250.0)  # cycles per mm
    direction = _u(rng, -math.pi, math.pi)
    banded = rng.random() < 0.75
    voided = rng.random() < 0.7
    return ArtefactParams(
        band_strength=_u(rng, 0.4, 0.9) if banded else 0.0,
        band_width=_u(rng, 0.03, 0.07),
        band_coeffs=(
            _u(rng, 0.0, 1.0),
            gradient * math.cos(direction),
            gradient * math.sin(direction),
            _u(rng, 0.0, 1.0 / 30000.0),
            _u(rng, 20.0, 80.0),
            _u(rng, -40.0, 40.0),
        ),
        band_drift=float(rng.normal(0.0, 0.03)),
        void_strength=_u(rng, 0.3, 0.8) if voided else 0.0,
        void_radius=_u(rng, 4.0, 8.0),
        ghost_amplitude=_u(rng, 0.02, 0.08),
        ghost_axis=int(rng.integers(0, 2)),
        ghost_shift=_u(rng, 0.15, 0.5),
        g_peak=_u(rng, 0.2, 1.2),
        g_width=_u(rng, 0.25, 0.5),
        texture_scale=_u(rng, 0.7, 1.3),
    )


def vary_subject(params: SubjectParams, rng: np.random.Generator) -> SubjectParams:
    """``params`` with the version-2 anatomy, coverage and appearance drawn from ``rng``.

    Raises:
        ValueError: ``params`` already carries a variation (it would be applied twice).
    """
    if getattr(params, "variation", None) is not None:
        raise ValueError("subject params already carry a version-2 variation")
    ef = 1.0 - params.lv_esv / params.lv_edv
    shape, pattern = _shape_terms(params.shape, params.group, ef, rng)
    outflow, atria = _outflow_and_atria(shape, params.lv_edv, rng)
    sex = _sex(params)
    body = _body_extras(params.body, sex == "F", rng)
    artefacts = _artefacts(rng)

    acq = params.acquisition
    spacing = acq.slice_spacing
    base_margin = _u(rng, -0.45, 0.7)
    apex_margin = _u(rng, -1.0, 0.35)
    first = base_margin * spacing
    # The apex is placed from the cavity's length, which the fits keep, and a nominal cap: the mass
    # fit rescales the cap with the wall (HCM caps shrink from the first guess), and coverage
    # planned on the unfitted cap ran past the apex in half the HCM stacks.
    last = shape.lv_length + NOMINAL_APEX_CAP + apex_margin * spacing
    n_slices = int(np.clip(math.floor((last - first) / spacing) + 1, MIN_SLICES, MAX_SLICES))
    depths = first + spacing * np.arange(n_slices)
    breath_sd = _u(rng, 0.8, 2.5)
    tilt = (_u(rng, -0.08, 0.08), _u(rng, -0.08, 0.08))
    centre = float(depths.mean())
    breath = rng.normal(0.0, breath_sd, (n_slices, 2))
    shifts = tuple(
        (float(bx + tilt[0] * (d - centre)), float(by + tilt[1] * (d - centre)))
        for (bx, by), d in zip(breath, depths, strict=True)
    )
    variation = Variation(
        hcm_pattern=pattern,
        sex=sex,
        base_margin=base_margin,
        apex_margin=apex_margin,
        breath_sd=breath_sd,
        axis_tilt=tilt,
        slice_shifts=shifts,
        outflow=outflow,
        atria=atria,
        body=body,
        artefacts=artefacts,
    )
    return replace(
        params,
        shape=shape,
        extras=replace(params.extras, outflow=outflow, atria=atria),
        acquisition=replace(acq, first_depth=first, n_slices=n_slices),
        variation=variation,
    )
