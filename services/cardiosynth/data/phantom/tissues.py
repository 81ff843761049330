"""Tissue map of the phantom heart: ACDC labels plus structures that labels leave out.

Papillary muscles and trabeculations sit inside the cavities (labelled as cavity, as in ACDC, but
dark in the image); the RV free wall and epicardial fat are labelled background.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from cardiosynth.data.labels import BACKGROUND, LV_CAVITY, LV_MYOCARDIUM, RV_CAVITY
from cardiosynth.data.phantom.anatomy import FloatArray, HeartShape, Phase

RV_WALL_MIN_HEIGHT_MM = 0.3  # below this crescent height there is no RV cavity to wall in


class Tissue(IntEnum):
    NONE = 0  # not heart: the body model decides
    LV_BLOOD = 1
    LV_MYO = 2
    RV_BLOOD = 3
    PAPILLARY = 4  # in the LV cavity label
    RV_TRABECULA = 5  # in the RV cavity label
    RV_WALL = 6  # background label
    EPI_FAT = 7  # background label


# Tissue code -> ACDC label.
TISSUE_TO_LABEL: npt.NDArray[np.uint8] = np.array(
    [BACKGROUND, LV_CAVITY, LV_MYOCARDIUM, RV_CAVITY, LV_CAVITY, RV_CAVITY, BACKGROUND, BACKGROUND],
    dtype=np.uint8,
)


@dataclass(frozen=True)
class Columns:
    """Thin muscular columns in a cavity (trabeculae, papillary muscles), one entry per column.

    ``angle`` is the direction from the LV axis, ``radial`` the position as a fraction of the cavity
    (LV: of the cavity radius; RV: of the crescent height, from the septum), ``radius`` mm, and
    ``depth_lo``/``depth_hi`` the depth range in mm.
    """

    angle: FloatArray
    radial: FloatArray
    radius: FloatArray
    depth_lo: FloatArray
    depth_hi: FloatArray

    def at_depth(self, depth: float) -> npt.NDArray[np.bool_]:
        out: npt.NDArray[np.bool_] = (self.depth_lo <= depth) & (depth <= self.depth_hi)
        return out


@dataclass(frozen=True)
class HeartExtras:
    """Structures around and inside the heart that are not in the labels."""

    papillary: Columns
    lv_trabeculae: Columns
    rv_trabeculae: Columns
    rv_wall: float  # mm
    fat_base: float  # mm of epicardial fat everywhere
    fat_extra: float  # mm more toward fat_angle (AV groove side)
    fat_angle: float


def _paint_columns(
    codes: npt.NDArray[np.int8],
    x: FloatArray,
    y: FloatArray,
    centres: FloatArray,
    angles: FloatArray,
    radii: FloatArray,
    inside: Tissue,
    paint: Tissue,
) -> None:
    for rho, ang, rad in zip(centres, angles, radii, strict=True):
        cx, cy = rho * np.cos(ang), rho * np.sin(ang)
        hit = ((x - cx) ** 2 + (y - cy) ** 2 < rad * rad) & (codes == inside)
        codes[hit] = paint


def heart_tissues(
    shape: HeartShape,
    extras: HeartExtras,
    x: FloatArray,
    y: FloatArray,
    depth: float,
    phase: Phase,
) -> npt.NDArray[np.int8]:
    """Tissue codes at in-plane points ``(x, y)`` (mm, LV axis at the origin), any array shape."""
    codes = np.zeros(x.shape, dtype=np.int8)
    if depth < -extras.fat_base - extras.fat_extra or depth > shape.epi_length + extras.fat_base:
        return codes
    r = np.hypot(x, y)
    theta = np.arctan2(y, x)
    r_c, r_o = shape.lv_radii(theta, depth, phase)
    h = shape.rv_height(theta, depth, phase)
    has_rv = h > RV_WALL_MIN_HEIGHT_MM
    wall_outer = r_o + h + np.where(has_rv, extras.rv_wall, 0.0)
    fat = extras.fat_base + extras.fat_extra * 0.5 * (1.0 + np.cos(theta - extras.fat_angle))
    # Below the epicardial apex, only the fat pad over the apex remains.
    heart_present = wall_outer > 0.0
    codes[heart_present & (r < wall_outer + fat)] = Tissue.EPI_FAT
    codes[has_rv & (r < wall_outer)] = Tissue.RV_WALL
    codes[has_rv & (r < r_o + h)] = Tissue.RV_BLOOD
    codes[r < r_o] = Tissue.LV_MYO
    codes[r < r_c] = Tissue.LV_BLOOD

    # Cavity structures move with the wall: positions scale with the local cavity size.
    for columns, tissue, inside in (
        (extras.papillary, Tissue.PAPILLARY, Tissue.LV_BLOOD),
        (extras.lv_trabeculae, Tissue.PAPILLARY, Tissue.LV_BLOOD),
    ):
        sel = columns.at_depth(depth)
        if not np.any(sel):
            continue
        ang = columns.angle[sel]
        rc_at, _ = shape.lv_radii(ang, depth, phase)
        grow = 1.15 if phase == "ES" else 1.0  # papillary muscles thicken in systole
        _paint_columns(
            codes, x, y, columns.radial[sel] * rc_at, ang, columns.radius[sel] * grow, inside, tissue
        )
    sel = extras.rv_trabeculae.at_depth(depth)
    if np.any(sel):
        ang = extras.rv_trabeculae.angle[sel]
        _, ro_at = shape.lv_radii(ang, depth, phase)
        h_at = shape.rv_height(ang, depth, phase)
        centres = ro_at + extras.rv_trabeculae.radial[sel] * h_at
        _paint_columns(
            codes, x, y, centres, ang, extras.rv_trabeculae.radius[sel], Tissue.RV_BLOOD, Tissue.RV_TRABECULA
        )
    return codes
