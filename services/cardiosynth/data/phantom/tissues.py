"""Tissue map of the phantom heart: ACDC labels plus structures that labels leave out.

Papillary muscles and trabeculations sit inside the cavities (labelled as cavity, as in ACDC, but
dark in the image); the RV free wall and epicardial fat are labelled background.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from cardiosynth.data.labels import BACKGROUND, LV_CAVITY, LV_MYOCARDIUM, RV_CAVITY
from cardiosynth.data.phantom.anatomy import FloatArray, HeartShape, Phase, wrap_angle

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
    OTHER_BLOOD = 8  # version 2: LV outflow tract, aortic root, atria (background label, bright)


# Tissue code -> ACDC label.
TISSUE_TO_LABEL: npt.NDArray[np.uint8] = np.array(
    [
        BACKGROUND,
        LV_CAVITY,
        LV_MYOCARDIUM,
        RV_CAVITY,
        LV_CAVITY,
        RV_CAVITY,
        BACKGROUND,
        BACKGROUND,
        BACKGROUND,
    ],
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
class Outflow:
    """Version 2: the LV outflow tract, where basal slices cut the ring of myocardium open.

    Above ``depth`` (mm from the mitral plane, in the ED heart) the myocardium within ``width``
    (rad) around ``angle`` is replaced by outflow blood, labelled background as ACDC's annotators
    leave it; the gap narrows linearly to half its width at ``depth``.
    """

    angle: float
    width: float
    depth: float


@dataclass(frozen=True)
class Atria:
    """Version 2: blood pools above the mitral plane (left and right atria, aortic root), labelled
    background, so that a stack starting above the base shows atrial slices.

    Positions are polar about the LV axis (mm, rad); ``height`` is how far above the valve plane
    they reach (mm).
    """

    la_angle: float
    la_offset: float
    la_radius: float
    ra_angle: float
    ra_offset: float
    ra_radius: float
    aorta_angle: float
    aorta_offset: float
    aorta_radius: float
    wall: float
    height: float


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
    outflow: Outflow | None = None  # version 2
    atria: Atria | None = None  # version 2


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
    *,
    fast: bool = False,
    grid: PolarGrid | None = None,
    table: RadiiTable | None = None,
) -> npt.NDArray[np.int8]:
    """Tissue codes at in-plane points ``(x, y)`` (mm, LV axis at the origin), any array shape.

    ``fast`` (version 2) evaluates the boundary radii on a table of angles and interpolates
    (under 0.01 mm from the exact radii) instead of at every point; version 1 keeps the exact
    evaluation so that its output does not change. ``grid`` (the polar coordinates of ``(x, y)``)
    saves recomputing them when the same points are drawn at several depths, ``table`` (fast only,
    :meth:`RadiiTable.at` of this depth and phase) the radii when several point sets share a depth.
    """
    codes = np.zeros(x.shape, dtype=np.int8)
    heart_depth = shape.heart_depth(depth, phase)
    if extras.atria is not None and -extras.atria.height < heart_depth < 0.0:
        _paint_atria(codes, x, y, extras.atria, heart_depth)
    if depth < -extras.fat_base - extras.fat_extra or depth > shape.epi_length + extras.fat_base:
        return codes
    if grid is None:
        r = np.hypot(x, y)
        theta = np.arctan2(y, x)
    else:
        r, theta = grid.r, grid.theta
    if fast:
        r_c, r_o, h = _radii_from_table(
            shape, grid if grid is not None else PolarGrid.of(x, y), depth, phase, table
        )
    else:
        r_c, r_o = shape.lv_radii(theta, depth, phase)
        h = shape.rv_height(theta, depth, phase)
    has_rv = h > RV_WALL_MIN_HEIGHT_MM
    wall_outer = r_o + h + np.where(has_rv, extras.rv_wall, 0.0)
    # Below the epicardial apex, only the fat pad over the apex remains.
    heart_present = wall_outer > 0.0
    codes[_epicardial_fat(extras, r, theta, wall_outer, heart_present)] = Tissue.EPI_FAT
    codes[has_rv & (r < wall_outer)] = Tissue.RV_WALL
    codes[has_rv & (r < r_o + h)] = Tissue.RV_BLOOD
    codes[r < r_o] = Tissue.LV_MYO
    codes[r < r_c] = Tissue.LV_BLOOD
    outflow = extras.outflow
    if outflow is not None and 0.0 <= heart_depth < outflow.depth:
        # The gap narrows to half its width at ``depth`` (not to a sliver that would leave pockets).
        half = 0.5 * outflow.width * (1.0 - 0.5 * heart_depth / outflow.depth)
        gap = np.abs(wrap_angle(theta - outflow.angle)) < half
        codes[gap & (codes == Tissue.LV_MYO)] = Tissue.OTHER_BLOOD

    # Cavity structures move with the wall: positions scale with the local cavity size. They are
    # attached to the ED material, so at ES they follow the descent of the base.
    column_depth = heart_depth if fast else depth
    paint = _paint_columns_fast if fast else _paint_columns
    for columns, tissue, inside in (
        (extras.papillary, Tissue.PAPILLARY, Tissue.LV_BLOOD),
        (extras.lv_trabeculae, Tissue.PAPILLARY, Tissue.LV_BLOOD),
    ):
        sel = columns.at_depth(column_depth)
        if not np.any(sel):
            continue
        ang = columns.angle[sel]
        rc_at, _ = shape.lv_radii(ang, depth, phase)
        grow = 1.15 if phase == "ES" else 1.0  # papillary muscles thicken in systole
        paint(codes, x, y, columns.radial[sel] * rc_at, ang, columns.radius[sel] * grow, inside, tissue)
    sel = extras.rv_trabeculae.at_depth(column_depth)
    if np.any(sel):
        ang = extras.rv_trabeculae.angle[sel]
        _, ro_at = shape.lv_radii(ang, depth, phase)
        h_at = shape.rv_height(ang, depth, phase)
        centres = ro_at + extras.rv_trabeculae.radial[sel] * h_at
        paint(
            codes, x, y, centres, ang, extras.rv_trabeculae.radius[sel], Tissue.RV_BLOOD, Tissue.RV_TRABECULA
        )
    return codes


def _epicardial_fat(
    extras: HeartExtras,
    r: FloatArray,
    theta: FloatArray,
    wall_outer: FloatArray,
    heart_present: npt.NDArray[np.bool_],
) -> npt.NDArray[np.bool_]:
    """Points inside the epicardial fat's outline, ``r < wall_outer + fat(theta)`` where the heart is.

    The fat is ``fat_base`` plus up to ``fat_extra`` toward ``fat_angle``; its cosine is evaluated
    only in the shell where the answer depends on it (``wall_outer <= r < wall_outer + fat_base +
    fat_extra``): inside it every point is in, beyond it every point out. The same mask, a few
    times faster (the cosine dominated the whole tissue map).
    """
    inside = heart_present & (r < wall_outer + (extras.fat_base + extras.fat_extra))
    shell = np.flatnonzero(inside & (r >= wall_outer))
    if shell.size:
        th = theta.reshape(-1)[shell]
        fat = extras.fat_base + extras.fat_extra * 0.5 * (1.0 + np.cos(th - extras.fat_angle))
        out = r.reshape(-1)[shell] >= wall_outer.reshape(-1)[shell] + fat
        inside.reshape(-1)[shell[out]] = False
    return inside


_TABLE_SIZE = 4096  # angular step 0.09°: under 0.1 mm at 60 mm from the axis
_TABLE_ANGLES: FloatArray = (np.arange(_TABLE_SIZE, dtype=np.float64) + 0.5) * (
    2.0 * np.pi / _TABLE_SIZE
) - np.pi


@dataclass(frozen=True)
class PolarGrid:
    """Polar coordinates of in-plane points about the LV axis, with their angle-table index."""

    r: FloatArray
    theta: FloatArray
    index: npt.NDArray[np.intp]

    @classmethod
    def of(cls, x: FloatArray, y: FloatArray) -> PolarGrid:
        theta = np.arctan2(y, x)
        index = np.minimum(((theta + np.pi) * (_TABLE_SIZE / (2.0 * np.pi))).astype(np.intp), _TABLE_SIZE - 1)
        return cls(r=np.hypot(x, y), theta=theta, index=index)

    def layers(self, which: slice) -> PolarGrid:
        """The grid of a sub-stack of points (``which`` indexes the first axis)."""
        return PolarGrid(r=self.r[which], theta=self.theta[which], index=self.index[which])


@dataclass(frozen=True)
class RadiiTable:
    """LV cavity, epicardial and RV crescent radii (mm) of one depth and phase on the fine table of
    angles that the fast path interpolates from (computed once, shared by every point set drawn
    at that depth)."""

    r_c: FloatArray
    r_o: FloatArray
    h: FloatArray

    @classmethod
    def at(cls, shape: HeartShape, depth: float, phase: Phase) -> RadiiTable:
        r_c, r_o = shape.lv_radii(_TABLE_ANGLES, depth, phase)
        return cls(r_c=r_c, r_o=r_o, h=shape.rv_height(_TABLE_ANGLES, depth, phase))


def _radii_from_table(
    shape: HeartShape, grid: PolarGrid, depth: float, phase: Phase, table: RadiiTable | None = None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """LV cavity, epicardial and RV crescent radii at the grid's angles, from a fine table."""
    if table is None:
        table = RadiiTable.at(shape, depth, phase)
    return table.r_c[grid.index], table.r_o[grid.index], table.h[grid.index]


def heart_reach(
    shape: HeartShape, extras: HeartExtras, depth: float, phase: Phase, table: RadiiTable | None = None
) -> float:
    """A bound (mm) on the distance from the LV axis of every point that :func:`heart_tissues`
    (``fast``) codes as something other than ``NONE`` at ``depth``; 0 where it codes nothing.

    It follows the painting below: the atria's circles, then the outermost layer (epicardial fat
    around the RV free wall), whose radius is at most the table's largest ``r_o + h + rv_wall``
    plus the largest fat thickness; cavity structures and the outflow gap only recode points
    inside. A renderer draws the points beyond it as background without evaluating them.
    """
    reach = 0.0
    heart_depth = shape.heart_depth(depth, phase)
    atria = extras.atria
    if atria is not None and -atria.height < heart_depth < 0.0:
        reach = atria.wall + max(
            atria.la_offset + atria.la_radius,
            atria.ra_offset + atria.ra_radius,
            atria.aorta_offset + atria.aorta_radius,
        )
    if depth < -extras.fat_base - extras.fat_extra or depth > shape.epi_length + extras.fat_base:
        return reach
    if table is None:
        table = RadiiTable.at(shape, depth, phase)
    wall_outer = table.r_o + table.h + np.where(table.h > RV_WALL_MIN_HEIGHT_MM, extras.rv_wall, 0.0)
    return max(reach, float(np.max(wall_outer)) + extras.fat_base + extras.fat_extra)


def _paint_columns_fast(
    codes: npt.NDArray[np.int8],
    x: FloatArray,
    y: FloatArray,
    centres: FloatArray,
    angles: FloatArray,
    radii: FloatArray,
    inside: Tissue,
    paint: Tissue,
) -> None:
    """:func:`_paint_columns` on the points of the ``inside`` tissue only (a small share of them)."""
    where = np.flatnonzero(codes.ravel() == inside)
    if where.size == 0:
        return
    px, py = x.ravel()[where], y.ravel()[where]
    hit = np.zeros(where.size, dtype=bool)
    for rho, ang, rad in zip(centres, angles, radii, strict=True):
        hit |= (px - rho * np.cos(ang)) ** 2 + (py - rho * np.sin(ang)) ** 2 < rad * rad
    flat = codes.reshape(-1)
    flat[where[hit]] = paint


def _paint_atria(
    codes: npt.NDArray[np.int8], x: FloatArray, y: FloatArray, atria: Atria, depth: float
) -> None:
    """Left and right atria and the aortic root above the valve plane (``depth`` < 0), with walls.

    The atria narrow slightly toward the valve plane and toward their roof.
    """
    s = -depth / atria.height  # 0 at the valve plane, 1 at the roof
    scale = math.sqrt(max(1.0 - s * s, 0.0)) * (0.75 + 0.25 * min(s / 0.2, 1.0))
    for angle, offset, radius, grows in (
        (atria.la_angle, atria.la_offset, atria.la_radius, True),
        (atria.ra_angle, atria.ra_offset, atria.ra_radius, True),
        (atria.aorta_angle, atria.aorta_offset, atria.aorta_radius, False),
    ):
        rad = radius * (scale if grows else 1.0)
        if rad <= 0.5:
            continue
        d2 = (x - offset * math.cos(angle)) ** 2 + (y - offset * math.sin(angle)) ** 2
        codes[(d2 < (rad + atria.wall) ** 2) & (codes != Tissue.OTHER_BLOOD)] = Tissue.RV_WALL
        codes[d2 < rad * rad] = Tissue.OTHER_BLOOD
