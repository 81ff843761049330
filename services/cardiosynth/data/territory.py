"""Coronary territories of the LV (AHA 17-segment model) and their estimation from labels alone.

Orientation. Angles are relative to the septum and grow toward ANTERIOR: ``psi = 0`` is the middle
of the interventricular septum (the bisector of the two RV insertion points), ``+90°`` anterior,
``-90°`` inferior, ``180°`` lateral. The six basal/mid AHA segments are then 60° wide: anterior
(1) 60..120°, anteroseptal (2) 0..60°, inferoseptal (3) -60..0°, inferior (4) -120..-60°,
inferolateral (5) -180..-120°, anterolateral (6) 120..180°. The usual coronary assignment
(Cerqueira et al., Circulation 2002; 105:539-42) gives three 120° territories:

- LAD: anterior + anteroseptal (segments 1, 2, 7, 8, 13, 14 and the apex), centred at +60°;
- LCx: anterolateral + inferolateral (5, 6, 11, 12, 16), centred at 180°;
- RCA: inferoseptal + inferior (3, 4, 9, 10, 15), centred at -60°.

Estimation (:func:`estimate_territory`) works on LABELS ONLY, so that it applies to real ACDC data,
which has no territory annotation:

1. the septal direction from the RV insertion points: LV myocardium pixels touching the RV cavity,
   their angles about the LV cavity centre pooled over slices; the contact arc is the complement of
   the largest angular gap, its ends the insertion points and its midpoint the septum;
2. regional function in 15° bins about each slice's ED cavity centroid (the fixed reference of
   wall-motion analysis), over every slice with an LV cavity: the cavity's fractional area change
   ED -> ES, the ED wall thickness and the systolic wall thickening, each bin's radius taken from
   its area (an equivalent radius, less noisy on a 1.5 mm grid than boundary pixels);
3. a deficit per bin relative to the subject's own median bin (so global function does not matter),
   averaged over the three measures and smoothed over 75°; the worst angle is the deficit-weighted
   circular mean around the maximum, mapped to the territory whose centre is nearest.

Handedness: labels do not say which insertion point is anterior. The default, ``anterior_sign=+1``,
is the convention of the processed stacks of :mod:`cardiosynth.data.preprocess` for the phantom
(array angle ``atan2(b, a)`` of a ``[k, a, b]`` stack; anterior is +90° from the septum in that
angle, i.e. the phantom's image ``y`` axis points down the array's ``b`` axis). A data set stored
the other way round (mirrored in-plane) needs ``anterior_sign=-1``; check a few real subjects with a
known anterior insertion before trusting LAD vs RCA on a new source. LCx is unaffected by the sign.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal, cast

import numpy as np
import numpy.typing as npt

from cardiosynth.data.labels import LV_CAVITY, LV_MYOCARDIUM, RV_CAVITY, as_label_map

Territory = Literal["LAD", "LCx", "RCA"]
TERRITORIES: Final[tuple[Territory, ...]] = ("LAD", "LCx", "RCA")
# Territory centres, degrees from the septum toward anterior (see the module docstring).
TERRITORY_CENTRE_DEG: Final[dict[str, float]] = {"LAD": 60.0, "LCx": 180.0, "RCA": -60.0}
# How often each artery is the culprit of a myocardial infarction: the LAD in about half, the LCx
# and the RCA in about a quarter each (a round figure of the registry shares, which put the LAD at
# 40-50 % and the RCA at 30-40 %, the LCx at 15-25 %). The phantom draws from these.
TERRITORY_FREQUENCY: Final[dict[str, float]] = {"LAD": 0.5, "LCx": 0.25, "RCA": 0.25}

N_BINS: Final = 24  # 15° bins
_SMOOTH_BINS: Final = 5  # 75° moving average: about one AHA segment and a half
_WEIGHTS: Final = {"fac": 0.4, "thickening": 0.4, "thinning": 0.2}
_DILATE: Final = ((0, 1, 0), (1, 1, 1), (0, 1, 0))

LabelStack = npt.NDArray[np.generic]
FloatArray = npt.NDArray[np.float64]


def check_territory(value: str | None) -> Territory | None:
    """``value`` as a :data:`Territory` (case-insensitive; ``None`` passes).

    Raises:
        ValueError: not one of LAD, LCx, RCA.
    """
    if value is None:
        return None
    for t in TERRITORIES:
        if isinstance(value, str) and value.strip().upper() == t.upper():
            return t
    raise ValueError(f"unknown territory {value!r}; expected one of {', '.join(TERRITORIES)}")


def wrap_degrees(angle: float) -> float:
    """``angle`` wrapped to [-180, 180)."""
    return float((angle + 180.0) % 360.0 - 180.0)


def territory_of_angle(psi_deg: float) -> Territory:
    """The territory whose centre is nearest to ``psi_deg`` (degrees from the septum, + anterior)."""
    if not math.isfinite(psi_deg):
        raise ValueError(f"angle must be finite, got {psi_deg}")
    return min(TERRITORIES, key=lambda t: abs(wrap_degrees(psi_deg - TERRITORY_CENTRE_DEG[t])))


@dataclass(frozen=True)
class TerritoryEstimate:
    """What :func:`estimate_territory` found.

    ``angle_deg``: the worst region's direction from the septum (+ anterior); ``septal_angle``: the
    septum's array angle ``atan2(b, a)`` in radians; ``insertions``: the two RV insertion points'
    array angles (radians); ``deficit``: the smoothed regional deficit per 15° bin ``(N_BINS,)``,
    bin ``i`` centred at ``psi = 15 i`` degrees; ``contrast``: its maximum minus its median (about 0
    for homogeneous function, 0.3-0.8 for an akinetic, thinned territory).
    """

    territory: Territory
    angle_deg: float
    septal_angle: float
    insertions: tuple[float, float]
    deficit: FloatArray
    contrast: float


def _check_stacks(ed: LabelStack, es: LabelStack) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    if ed.ndim != 3 or ed.shape != es.shape:
        raise ValueError(
            f"ED and ES must be label stacks (Z, A, B) of one shape, got {ed.shape} and {es.shape}"
        )
    return as_label_map(ed, what="ED labels"), as_label_map(es, what="ES labels")


def _dilate(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    from scipy import ndimage

    out: npt.NDArray[np.bool_] = ndimage.binary_dilation(mask, structure=np.array(_DILATE, dtype=bool))
    return out


def _angles(points: npt.NDArray[np.intp], centre: npt.NDArray[np.float64]) -> FloatArray:
    out: FloatArray = np.arctan2(points[:, 1] - centre[1], points[:, 0] - centre[0])
    return out


def septal_direction(ed: LabelStack) -> tuple[float, tuple[float, float]]:
    """Septal direction and RV insertion points (array angles, radians) of an ED stack ``(Z, A, B)``.

    The contact between RV cavity and LV myocardium, pooled over slices about each slice's LV
    centre; with no contact (an RV that does not touch the septum), the direction to the RV
    centroid and both insertions equal to it.

    Raises:
        ValueError: no LV or no RV cavity in the stack.
    """
    lab = as_label_map(ed, what="ED labels")
    if lab.ndim != 3:
        raise ValueError(f"expected a label stack (Z, A, B), got shape {lab.shape}")
    contact: list[FloatArray] = []
    rv_dirs: list[FloatArray] = []
    for k in range(lab.shape[0]):
        lv = np.isin(lab[k], (LV_CAVITY, LV_MYOCARDIUM))
        rv = lab[k] == RV_CAVITY
        if not lv.any() or not rv.any():
            continue
        centre = np.argwhere(lv).mean(axis=0)
        touching = (lab[k] == LV_MYOCARDIUM) & _dilate(rv)
        if touching.any():
            contact.append(_angles(np.argwhere(touching), centre))
        rv_dirs.append(np.argwhere(rv).mean(axis=0) - centre)
    if not rv_dirs:
        raise ValueError("the stack has no slice with both LV and RV cavity: no septal direction")
    if not contact:
        d = np.sum(rv_dirs, axis=0)
        a = math.atan2(float(d[1]), float(d[0]))
        return a, (a, a)
    angles = np.sort(np.mod(np.concatenate(contact), 2.0 * math.pi))
    gaps = np.diff(np.append(angles, angles[0] + 2.0 * math.pi))
    widest = int(np.argmax(gaps))
    # The arc runs from the point after the widest gap, counter-clockwise, to the point before it.
    start = float(angles[(widest + 1) % angles.size])
    end = float(angles[widest])
    span = (end - start) % (2.0 * math.pi)
    middle = start + span / 2.0
    return _wrap_radians(middle), (_wrap_radians(start), _wrap_radians(end))


def _wrap_radians(x: float) -> float:
    return (x + math.pi) % (2.0 * math.pi) - math.pi


def _equivalent_radius(area: FloatArray) -> FloatArray:
    """Radius of a circular sector of one bin holding ``area`` pixels."""
    out: FloatArray = np.sqrt(2.0 * area / (2.0 * math.pi / N_BINS))
    return out


def regional_profiles(
    ed: LabelStack, es: LabelStack, septal_angle: float, anterior_sign: int = 1
) -> dict[str, FloatArray]:
    """Per 15° bin (bin ``i`` centred at ``psi = 15 i`` degrees from the septum, + anterior):
    cavity FAC ``fac``, ED wall thickness ``thickness`` (pixels), relative systolic thickening
    ``thickening``; NaN where no slice measured the bin. Stacks ``(Z, A, B)``, slices with an ED
    LV cavity only.
    """
    ed_l, es_l = _check_stacks(ed, es)
    width = 2.0 * math.pi / N_BINS
    cav_ed = np.zeros(N_BINS)
    cav_es = np.zeros(N_BINS)
    thick_ed: list[FloatArray] = []
    thick_es: list[FloatArray] = []
    for k in range(ed_l.shape[0]):
        cavity = ed_l[k] == LV_CAVITY
        if not cavity.any():
            continue
        centre = np.argwhere(cavity).mean(axis=0)

        def bins(mask: npt.NDArray[np.bool_], centre: npt.NDArray[np.float64] = centre) -> FloatArray:
            pts = np.argwhere(mask)
            if pts.size == 0:
                return np.zeros(N_BINS)
            psi = anterior_sign * (_angles(pts, centre) - septal_angle)
            idx = np.floor(np.mod(psi + width / 2.0, 2.0 * math.pi) / width).astype(np.intp) % N_BINS
            out: FloatArray = np.bincount(idx, minlength=N_BINS).astype(np.float64)
            return out

        c_ed, c_es = bins(cavity), bins(es_l[k] == LV_CAVITY)
        o_ed = bins(np.isin(ed_l[k], (LV_CAVITY, LV_MYOCARDIUM)))
        o_es = bins(np.isin(es_l[k], (LV_CAVITY, LV_MYOCARDIUM)))
        cav_ed += c_ed
        cav_es += c_es
        t_ed = _equivalent_radius(o_ed) - _equivalent_radius(c_ed)
        t_es = _equivalent_radius(o_es) - _equivalent_radius(c_es)
        valid = (c_ed > 0) & (t_ed > 0)
        thick_ed.append(np.where(valid, t_ed, np.nan))
        thick_es.append(np.where(valid, t_es, np.nan))
    if not thick_ed:
        raise ValueError("no slice of the ED stack holds an LV cavity: no regional function")
    with np.errstate(divide="ignore", invalid="ignore"):
        fac: FloatArray = np.where(cav_ed > 0, 1.0 - cav_es / cav_ed, np.nan)
    ted, tes = np.array(thick_ed), np.array(thick_es)
    counts = np.isfinite(ted).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        thickness = np.where(counts > 0, np.nansum(ted, axis=0) / np.maximum(counts, 1), np.nan)
        es_thickness = np.where(counts > 0, np.nansum(tes, axis=0) / np.maximum(counts, 1), np.nan)
        thickening = np.where(thickness > 0, es_thickness / thickness - 1.0, np.nan)
    return {"fac": fac, "thickness": thickness, "thickening": thickening}


def _deficit(values: FloatArray) -> FloatArray:
    """``1 - value / median`` (0 where the median is not positive or the value is NaN)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros_like(values)
    median = float(np.median(finite))
    if median <= 0:
        return np.zeros_like(values)
    out: FloatArray = np.where(np.isfinite(values), 1.0 - values / median, 0.0)
    return out


def estimate_territory(ed: LabelStack, es: LabelStack, *, anterior_sign: int = 1) -> TerritoryEstimate:
    """The coronary territory of the worst regional function of ED and ES label stacks ``(Z, A, B)``
    (square in-plane pixels, any size; slice order does not matter). Meant for MINF subjects: any
    heart gets its most abnormal region's territory, ``contrast`` says how abnormal that is.

    The processed stacks of :class:`cardiosynth.data.preprocess.PreprocessedSubject` fit as they
    are; a native ``(X, Y, Z)`` volume with square pixels after ``np.moveaxis(v, 2, 0)``.

    Raises:
        ValueError: shapes differ or are not 3D, labels outside {0..3}, no LV cavity or no RV, or
            ``anterior_sign`` not +1 / -1.
    """
    if anterior_sign not in (1, -1):
        raise ValueError(f"anterior_sign must be +1 or -1, got {anterior_sign}")
    ed_l, es_l = _check_stacks(ed, es)
    septum, insertions = septal_direction(ed_l)
    profiles = regional_profiles(ed_l, es_l, septum, anterior_sign)
    score = (
        _WEIGHTS["fac"] * _deficit(profiles["fac"])
        + _WEIGHTS["thickening"] * _deficit(profiles["thickening"])
        + _WEIGHTS["thinning"] * _deficit(profiles["thickness"])
    )
    half = _SMOOTH_BINS // 2
    smooth = np.mean([np.roll(score, s) for s in range(-half, half + 1)], axis=0)
    worst = int(np.argmax(smooth))
    # Deficit-weighted circular mean over the bins within 60° of the maximum: sub-bin precision.
    psi = np.radians(15.0 * np.arange(N_BINS))
    near = np.abs((np.arange(N_BINS) - worst + N_BINS // 2) % N_BINS - N_BINS // 2) <= 4
    w = np.where(near, np.clip(smooth - np.median(smooth), 0.0, None), 0.0)
    if w.sum() > 0:
        angle = math.degrees(math.atan2(float((w * np.sin(psi)).sum()), float((w * np.cos(psi)).sum())))
    else:
        angle = wrap_degrees(15.0 * worst)
    return TerritoryEstimate(
        territory=territory_of_angle(angle),
        angle_deg=wrap_degrees(angle),
        septal_angle=septum,
        insertions=insertions,
        deficit=smooth.astype(np.float64),
        contrast=float(smooth.max() - np.median(smooth)),
    )


def territory_counts(territories: list[str]) -> dict[str, int]:
    """How many of ``territories`` name each of :data:`TERRITORIES` (unknown names raise)."""
    out: dict[str, int] = {t: 0 for t in TERRITORIES}
    for name in territories:
        out[cast(str, check_territory(name))] += 1
    return out
