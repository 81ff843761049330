"""Cardiac biomarkers from ED and ES label volumes (ACDC convention).

Volumes are voxel counts times the voxel volume (in-plane spacing times slice spacing), as the
ACDC challenge measures them. Wall thickness is measured per short-axis slice with a Euclidean
distance transform: for each pixel on the outer border of the LV myocardium (epicardium, or the
septum's RV side) the distance to the nearest LV cavity pixel.

Regional function is the fractional area change (FAC) of the LV cavity per 60° sector. A sector is
hypokinetic RELATIVE TO THE SUBJECT'S OWN global function: its FAC is below
:data:`HYPOKINETIC_RATIO` of the median sector FAC and at least :data:`HYPOKINETIC_MARGIN` below it
in absolute terms. The median is the reference (not the best sector) so that one noisy,
over-contracting sector cannot make the others look abnormal, and the absolute margin keeps a
globally failing heart that contracts homogeneously (DCM, FAC ~0.15 everywhere, where a 0.07
sector is below half the median but within label noise of it) from counting as regionally
abnormal. There is no clinical FAC threshold for hypokinesis; the two numbers are design choices,
checked against the data they must separate (see the constants).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from cardiosynth.data.acdc import Subject, body_surface_area
from cardiosynth.data.labels import LV_CAVITY, LV_MYOCARDIUM, RV_CAVITY, as_label_map

MYOCARDIAL_DENSITY_G_PER_ML = 1.05
N_SECTORS = 6  # 60° sectors, sector 0 centred on the septum (toward the RV)
HYPOKINETIC_RATIO = 0.6  # a sector contracting less than 60 % as much as the subject's median sector
# ... and clearly worse than the rest in absolute FAC (median - sector): a label boundary that moves by
# one 1.5 mm pixel changes one slice's sector FAC by up to ~0.07; pooled over the mid slices the
# deficits of homogeneously contracting hearts stay below 0.05 (phantom DCM/NOR/HCM/RV < 0.03;
# synthetic DCM from phantom-v1, n = 10, seed 1: <= 0.049), while infarcts in 60° sectors that a
# coronary territory only partly covers show 0.10-0.14 (phantom MINF with territories: >= 0.135).
HYPOKINETIC_MARGIN = 0.10
_MID_FRACTION = 0.2  # basal and apical share of LV slices left out of the regional analysis
_STRUCTURE = ndimage.generate_binary_structure(2, 1)

LabelVolume = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Biomarkers:
    """Clinical figures of one subject. Volumes in ml, mass in g, thickness in mm, EF in %.

    Indexed values (per m² of body surface area) are ``None`` without height and weight.
    ``sector_fac`` is the fractional area change of the LV cavity per 60° sector over the
    mid-ventricular slices (sector 0 septal, counter-clockwise in the image frame).
    ``hypokinetic_sectors`` counts the sectors that :func:`hypokinetic_sectors` flags (relative to
    the median sector); ``regional_heterogeneity`` is ``1 - min / median`` of ``sector_fac``: 0 for
    homogeneous contraction, 1 for an akinetic sector, above 1 for a dyskinetic one (NaN without a
    positive median).
    """

    lv_edv: float
    lv_esv: float
    lv_sv: float
    lv_ef: float
    rv_edv: float
    rv_esv: float
    rv_sv: float
    rv_ef: float
    myo_mass: float
    max_wall_thickness: float
    thick_segments: int  # slice sectors whose diastolic thickness exceeds 15 mm
    sector_fac: tuple[float, ...]
    hypokinetic_sectors: int
    bsa: float | None = None
    lv_edv_index: float | None = None
    lv_esv_index: float | None = None
    rv_edv_index: float | None = None
    rv_esv_index: float | None = None
    mass_index: float | None = None
    regional_heterogeneity: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["sector_fac"] = list(self.sector_fac)
        return out


def volume_ml(labels: LabelVolume, spacing: tuple[float, float, float], value: int) -> float:
    """Volume of label ``value`` in ml."""
    voxel_ml = spacing[0] * spacing[1] * spacing[2] / 1000.0
    return float(np.count_nonzero(labels == value)) * voxel_ml


def ejection_fraction(edv: float, esv: float) -> float:
    """EF in % (nan when the EDV is zero)."""
    return 100.0 * (edv - esv) / edv if edv > 0 else math.nan


Origin = tuple[int, int]


def _box(mask: npt.NDArray[np.bool_]) -> tuple[slice, slice] | None:
    """The in-plane bounding box of ``mask`` ``(X, Y)`` grown by one pixel (clipped to the image);
    ``None`` when it is empty.

    The measurements below work on the heart's box instead of the whole field (mostly background):
    with every labelled pixel inside and a background margin, distances to the cavity, the wall's
    border and every centroid are exactly those of the whole field, and the coordinates are put
    back on the field's grid (``origin``) before any arithmetic, so the figures are bit for bit the
    same, several times faster."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return (
        slice(max(int(rows[0]) - 1, 0), int(rows[-1]) + 2),
        slice(max(int(cols[0]) - 1, 0), int(cols[-1]) + 2),
    )


def _points(mask: npt.NDArray[np.bool_], origin: Origin) -> npt.NDArray[np.intp]:
    """``np.argwhere(mask)`` on the field's grid: in-plane coordinates moved by ``origin``."""
    points: npt.NDArray[np.intp] = np.argwhere(mask)
    points[:, :2] += np.asarray(origin, dtype=points.dtype)
    return points


def _reference_angle(
    label_slice: LabelVolume, centre: tuple[float, float], fallback: float | None, origin: Origin = (0, 0)
) -> float | None:
    """Direction (rad, array axes) from the LV centre to the RV centroid of the slice."""
    rv = _points(label_slice == RV_CAVITY, origin)
    if rv.size == 0:
        return fallback
    cy = rv.mean(axis=0)
    return math.atan2(cy[1] - centre[1], cy[0] - centre[0])


def _sectors(
    points: npt.NDArray[np.intp], centre: tuple[float, float], reference: float
) -> npt.NDArray[np.intp]:
    angle = np.arctan2(points[:, 1] - centre[1], points[:, 0] - centre[0]) - reference
    width = 2.0 * math.pi / N_SECTORS
    out: npt.NDArray[np.intp] = (
        np.floor(np.mod(angle + width / 2.0, 2.0 * math.pi) / width).astype(np.intp)
    ) % N_SECTORS
    return out


def global_rv_angle(labels: LabelVolume, origin: Origin = (0, 0)) -> float | None:
    """Direction (rad, array axes) from the LV's centroid to the RV cavity's over a whole volume
    ``(X, Y, Z)``: the sectors' reference in a slice without an RV (``None``: no LV or no RV)."""
    lv = _points((labels == LV_CAVITY) | (labels == LV_MYOCARDIUM), origin)[:, :2]
    rv = _points(labels == RV_CAVITY, origin)[:, :2]
    if lv.size == 0 or rv.size == 0:
        return None
    d = rv.mean(axis=0) - lv.mean(axis=0)
    return math.atan2(d[1], d[0])


def wall_thickness_by_sector(
    label_slice: LabelVolume,
    spacing: tuple[float, float],
    rv_angle: float | None = None,
    origin: Origin = (0, 0),
) -> npt.NDArray[np.float64]:
    """Maximal myocardial thickness (mm) in each of the :data:`N_SECTORS` sectors of one slice.

    Sectors without a measurement (no cavity in the slice, or no myocardium there) are NaN.
    ``origin``: where ``label_slice`` lies in a larger field (a crop of it), so that angles are the
    field's.
    """
    out = np.full(N_SECTORS, np.nan)
    box = _box(label_slice != 0)
    if box is None:
        return out
    label_slice = label_slice[box]
    origin = (origin[0] + box[0].start, origin[1] + box[1].start)
    cavity = label_slice == LV_CAVITY
    myo = label_slice == LV_MYOCARDIUM
    if not cavity.any() or not myo.any():
        return out
    distance = ndimage.distance_transform_edt(~cavity, sampling=spacing)
    outside = ~(myo | cavity)
    border = myo & ndimage.binary_dilation(outside, structure=_STRUCTURE)
    points = _points(border, origin)
    if points.size == 0:
        return out
    centre_arr = _points(cavity, origin).mean(axis=0)
    centre = (float(centre_arr[0]), float(centre_arr[1]))
    reference = _reference_angle(label_slice, centre, rv_angle, origin) or 0.0
    sector = _sectors(points, centre, reference)
    values = distance[border]
    for s in range(N_SECTORS):
        sel = values[sector == s]
        if sel.size:
            out[s] = float(sel.max())
    return out


def sector_frame(
    ed_slice: LabelVolume, fallback: float | None, origin: Origin = (0, 0)
) -> tuple[tuple[float, float], float] | None:
    """The sectors' centre (the ED LV cavity's centroid, array axes) and reference angle (rad, toward
    the slice's RV centroid; ``fallback`` where the slice has no RV, else 0) of one ED slice ``(X,
    Y)``; ``None`` without an LV cavity. :func:`regional_contraction` measures about it."""
    ed_pts = _points(ed_slice == LV_CAVITY, origin)
    if ed_pts.size == 0:
        return None
    centre_arr = ed_pts.mean(axis=0)
    centre = (float(centre_arr[0]), float(centre_arr[1]))
    return centre, _reference_angle(ed_slice, centre, fallback, origin) or 0.0


def sector_areas(
    label_slice: LabelVolume, frame: tuple[tuple[float, float], float], origin: Origin = (0, 0)
) -> npt.NDArray[np.float64]:
    """LV cavity pixels of one slice ``(X, Y)`` in each of the :data:`N_SECTORS` sectors of ``frame``
    (:func:`sector_frame`)."""
    pts = _points(label_slice == LV_CAVITY, origin)
    if pts.size == 0:
        return np.zeros(N_SECTORS)
    out: npt.NDArray[np.float64] = np.bincount(_sectors(pts, *frame), minlength=N_SECTORS).astype(np.float64)
    return out


def regional_contraction(
    ed: LabelVolume, es: LabelVolume, spacing: tuple[float, float, float], origin: Origin = (0, 0)
) -> npt.NDArray[np.float64]:
    """Fractional LV cavity area change ED -> ES per sector, pooled over the mid-ventricular slices.

    Each slice is split into sectors about its ED cavity centroid (a fixed reference, as in
    echocardiographic wall-motion analysis), sector 0 toward the RV. ``origin``: where the volumes
    lie in a larger field (crops of it).
    """
    lv_slices = np.flatnonzero((ed == LV_CAVITY).any(axis=(0, 1)))
    if lv_slices.size == 0:
        return np.full(N_SECTORS, np.nan)
    drop = math.floor(_MID_FRACTION * lv_slices.size)
    used = lv_slices[drop : lv_slices.size - drop] if lv_slices.size - 2 * drop >= 1 else lv_slices
    fallback = global_rv_angle(ed, origin)
    area_ed = np.zeros(N_SECTORS)
    area_es = np.zeros(N_SECTORS)
    for k in used:
        frame = sector_frame(ed[:, :, k], fallback, origin)
        if frame is None:  # (not reached: ``used`` slices have an ED cavity)
            continue
        area_ed += sector_areas(ed[:, :, k], frame, origin)
        area_es += sector_areas(es[:, :, k], frame, origin)
    with np.errstate(divide="ignore", invalid="ignore"):
        fac: npt.NDArray[np.float64] = np.where(area_ed > 0, 1.0 - area_es / area_ed, np.nan)
    return fac


def hypokinetic_sectors(sector_fac: Sequence[float]) -> tuple[int, ...]:
    """Indices of the sectors whose FAC is below :data:`HYPOKINETIC_RATIO` x the median sector FAC
    and at least :data:`HYPOKINETIC_MARGIN` below the median (NaN sectors are ignored).

    A heart with a non-positive median FAC has no reference function: no sector is flagged (its
    failure is global, not regional).
    """
    fac = np.asarray(sector_fac, dtype=np.float64)
    valid = np.isfinite(fac)
    if not valid.any():
        return ()
    median = float(np.median(fac[valid]))
    if median <= 0:
        return ()
    flagged = valid & (fac < HYPOKINETIC_RATIO * median) & (median - fac >= HYPOKINETIC_MARGIN)
    return tuple(int(i) for i in np.flatnonzero(flagged))


def regional_heterogeneity(sector_fac: Sequence[float]) -> float:
    """``1 - min / median`` of the finite sector FACs (NaN without a positive median)."""
    fac = np.asarray(sector_fac, dtype=np.float64)
    fac = fac[np.isfinite(fac)]
    if fac.size == 0:
        return math.nan
    median = float(np.median(fac))
    return 1.0 - float(fac.min()) / median if median > 0 else math.nan


def compute_biomarkers(
    ed: npt.NDArray[np.generic],
    es: npt.NDArray[np.generic],
    spacing: tuple[float, float, float],
    *,
    height: float | None = None,
    weight: float | None = None,
    thick_threshold_mm: float = 15.0,
) -> Biomarkers:
    """Biomarkers from ED and ES label volumes ``(X, Y, Z)`` with voxel ``spacing`` in mm.

    Raises:
        ValueError: shapes differ, labels outside {0, 1, 2, 3}, or a non-positive spacing.
    """
    if ed.shape != es.shape or ed.ndim != 3:
        raise ValueError(f"ED and ES label volumes must be 3D of one shape, got {ed.shape} and {es.shape}")
    if len(spacing) != 3 or not all(s > 0 for s in spacing):
        raise ValueError(f"spacing must be three positive numbers, got {spacing}")
    ed_l = as_label_map(ed, what="ED labels")
    es_l = as_label_map(es, what="ES labels")
    # On the heart's in-plane box (both phases), the same figures bit for bit (see _box).
    origin: Origin = (0, 0)
    box = _box((ed_l != 0).any(axis=2) | (es_l != 0).any(axis=2))
    if box is not None:
        ed_l, es_l = ed_l[box], es_l[box]
        origin = (box[0].start, box[1].start)
    lv_edv, lv_esv = volume_ml(ed_l, spacing, LV_CAVITY), volume_ml(es_l, spacing, LV_CAVITY)
    rv_edv, rv_esv = volume_ml(ed_l, spacing, RV_CAVITY), volume_ml(es_l, spacing, RV_CAVITY)
    mass = volume_ml(ed_l, spacing, LV_MYOCARDIUM) * MYOCARDIAL_DENSITY_G_PER_ML

    rv_angle = global_rv_angle(ed_l, origin)
    per_slice = [
        wall_thickness_by_sector(ed_l[:, :, k], spacing[:2], rv_angle, origin) for k in range(ed_l.shape[2])
    ]
    thickness = np.array(per_slice)
    finite = thickness[np.isfinite(thickness)]
    max_wt = float(finite.max()) if finite.size else math.nan
    thick_segments = int(np.count_nonzero(finite > thick_threshold_mm))

    fac = regional_contraction(ed_l, es_l, spacing, origin)

    bsa = body_surface_area(height, weight) if height is not None and weight is not None else None

    def index(value: float) -> float | None:
        return value / bsa if bsa else None

    return Biomarkers(
        lv_edv=lv_edv,
        lv_esv=lv_esv,
        lv_sv=lv_edv - lv_esv,
        lv_ef=ejection_fraction(lv_edv, lv_esv),
        rv_edv=rv_edv,
        rv_esv=rv_esv,
        rv_sv=rv_edv - rv_esv,
        rv_ef=ejection_fraction(rv_edv, rv_esv),
        myo_mass=mass,
        max_wall_thickness=max_wt,
        thick_segments=thick_segments,
        sector_fac=tuple(float(v) for v in fac),
        hypokinetic_sectors=len(hypokinetic_sectors(fac.tolist())),
        bsa=bsa,
        lv_edv_index=index(lv_edv),
        lv_esv_index=index(lv_esv),
        rv_edv_index=index(rv_edv),
        rv_esv_index=index(rv_esv),
        mass_index=index(mass),
        regional_heterogeneity=regional_heterogeneity(fac.tolist()),
    )


def subject_biomarkers(subject: Subject) -> Biomarkers:
    """:func:`compute_biomarkers` for a subject read by :mod:`cardiosynth.data.acdc`."""
    return compute_biomarkers(
        subject.ed_label,
        subject.es_label,
        subject.spacing,
        height=subject.info.height,
        weight=subject.info.weight,
    )
