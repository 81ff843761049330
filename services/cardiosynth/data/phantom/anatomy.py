"""Analytic biventricular heart in a short-axis frame, fitted to target volumes.

Frame: in-plane coordinates ``(x, y)`` in mm with the LV long axis at the origin (``x`` to the image
right, ``y`` anterior), and ``depth`` in mm from the mitral valve plane (0) toward the apex.
Every boundary is a radius in polar coordinates about the LV axis, a function of angle and depth:

- LV cavity ``r_c(θ, d) = a · f(d / L) · (1 + e cos 2(θ - φ))`` with ``f(u) = (1 - u^q)^(1/q)``;
- LV epicardium ``r_o = r_c + t(θ, d)``, wall thickness with regional modulation (HCM septal
  hypertrophy, MINF thinning) and an apical cap below the cavity;
- RV cavity, a crescent over the septum: ``r_o < r < r_o + h(θ, d)``;
- ES: the cavity contracts by ``c(θ, d) = 1 - k g(θ, d)`` (``g`` < 1 in an infarct) and the myocardium
  keeps its area at every angle, ``r_o,ES² = r_c,ES² + r_o,ED² - r_c,ED²``, so mass is preserved.

Volumes are computed as ACDC measures them, slice area times slice spacing at the slice centres,
by quadrature over angle; the free scale of each structure (LV radius ``a``, contraction ``k``,
RV height ``H``) is solved in closed form for the target volumes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Phase = Literal["ED", "ES"]
PHASES: tuple[Phase, ...] = ("ED", "ES")

_N_ANGLES = 720  # quadrature points over the circle; sub-0.1 % error on the fitted volumes
_ANGLES: FloatArray = np.linspace(0.0, 2.0 * np.pi, _N_ANGLES, endpoint=False)
_RV_TIP_EXPONENT = 0.7  # < 1 gives blunt crescent tips at the RV insertion points


def wrap_angle(theta: FloatArray | float) -> FloatArray:
    """Angles wrapped to [-pi, pi)."""
    return np.mod(np.asarray(theta, dtype=np.float64) + np.pi, 2.0 * np.pi) - np.pi


def window(x: FloatArray, half_width: float, edge: float) -> FloatArray:
    """Smooth box: 1 for ``|x| <= half_width - edge``, cosine taper to 0 at ``|x| = half_width``."""
    ax = np.abs(x)
    inner = max(half_width - edge, 0.0)
    ramp = np.clip((ax - inner) / max(edge, 1e-9), 0.0, 1.0)
    out: FloatArray = np.where(ax >= half_width, 0.0, 0.5 * (1.0 + np.cos(np.pi * ramp)))
    return out


@dataclass(frozen=True)
class Infarct:
    """A transmural infarct territory (MINF): thinned and hypo/akinetic."""

    angle: float  # centre direction (rad)
    width: float  # angular extent (rad)
    depth_start: float  # fraction of the LV cavity length
    depth_end: float
    wall_kept: float  # fraction of the normal wall thickness left (thinning)
    contractility: float  # 0 akinetic ... 1 normal
    territory: str | None = None  # coronary territory (LAD, LCx, RCA) it was drawn in; ground truth

    def indicator(self, theta: FloatArray, depth_fraction: float) -> FloatArray:
        angular = window(wrap_angle(theta - self.angle), self.width / 2.0, math.radians(15.0))
        mid = 0.5 * (self.depth_start + self.depth_end)
        half = 0.5 * (self.depth_end - self.depth_start)
        along = window(np.asarray(depth_fraction - mid), half, 0.08)
        out: FloatArray = angular * along
        return out


@dataclass(frozen=True)
class HeartShape:
    """Shape parameters of the ED heart (mm and radians); scales are fitted by :func:`fit_heart`."""

    lv_length: float  # base to cavity apex, L
    profile_exponent: float  # q; 2 is an ellipsoid, larger is blunter
    ellipticity: float  # e, in-plane LV ovality
    ellipse_angle: float  # φ
    wall_thickness: float  # t0, basal wall thickness
    apex_cap: float  # thickness of the myocardial cap below the cavity
    septal_angle: float  # direction from the LV axis to the RV (the septum)
    septal_extra: float  # HCM: septal thickness is t0 * (1 + septal_extra)
    septal_width: float  # angular extent of the hypertrophy (rad)
    rv_width: float  # angular extent of the RV crescent at the base (rad)
    rv_length_ratio: float  # RV depth extent / LV cavity length
    infarct: Infarct | None = None
    lv_radius: float = 1.0  # a, fitted
    es_contraction: float = 0.0  # k, fitted
    rv_height_ed: float = 0.0  # H at ED, fitted
    rv_height_es: float = 0.0  # H at ES, fitted
    # Version-2 anatomy (drawn in :mod:`.variation`); the defaults reproduce version 1 bit for bit.
    ellipticity_slope: float = 0.0  # e(u) = ellipticity + ellipticity_slope * u (u = depth / L)
    ellipse_twist: float = 0.0  # φ(u) = ellipse_angle + ellipse_twist * u (rad)
    taper: float = 0.0  # cavity radius times 1 + taper (0.5 - u): > 0 conical, < 0 globular
    base_narrowing: float = 0.0  # mitral annulus narrower than the basal cavity (fraction at u = 0)
    thickness_wave: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # a1, phase1, a2, phase2
    apical_extra: float = 0.0  # apical HCM: thickness times 1 + apical_extra toward the apex
    contraction_wave: tuple[float, float, float] = (0.0, 0.0, 0.0)  # b1, phase1, base-apex slope
    base_descent: float = 0.0  # mm the base moves toward the (fixed) apex at ES

    @property
    def rv_length(self) -> float:
        return self.rv_length_ratio * self.lv_length

    @property
    def epi_length(self) -> float:
        """Depth of the epicardial apex."""
        return self.lv_length + self.apex_cap

    def _profile(self, u: float) -> float:
        if u >= 1.0 or u < 0.0:
            return 0.0
        return float((1.0 - u**self.profile_exponent) ** (1.0 / self.profile_exponent))

    @property
    def _shaped(self) -> bool:
        """Whether any version-2 shape term is set (version 1 keeps its exact arithmetic)."""
        return bool(self.ellipticity_slope or self.ellipse_twist or self.taper or self.base_narrowing)

    def cavity_radius_ed(self, theta: FloatArray, depth: float) -> FloatArray:
        u = depth / self.lv_length
        f = self._profile(u)
        if self._shaped:
            # Long-axis shape: a conical or globular taper, and a basal narrowing toward the annulus.
            f *= (1.0 + self.taper * (0.5 - u)) * (1.0 - self.base_narrowing * math.exp(-u / 0.12))
            e = self.ellipticity + self.ellipticity_slope * u
            phi = self.ellipse_angle + self.ellipse_twist * u
            shaped: FloatArray = self.lv_radius * f * (1.0 + e * np.cos(2.0 * (theta - phi)))
            return shaped
        out: FloatArray = (
            self.lv_radius * f * (1.0 + self.ellipticity * np.cos(2.0 * (theta - self.ellipse_angle)))
        )
        return out

    def ellipticity_at(self, depth: float) -> float:
        """In-plane cavity ovality ``e(u)`` at ``depth`` (the radius swings by ``± e``)."""
        return self.ellipticity + self.ellipticity_slope * depth / self.lv_length

    def heart_depth(self, depth: float, phase: Phase) -> float:
        """Depth in the ED heart of the material that lies at image ``depth`` in ``phase``.

        At ES the base descends by :attr:`base_descent` toward the apex, which stays in place: the
        long axis shortens linearly, so image depth ``d`` holds ED depth
        ``(d - descent) · E / (E - descent)`` (``E`` the epicardial apex depth).
        """
        if phase == "ED" or self.base_descent == 0.0:
            return depth
        epi = self.epi_length
        return (depth - self.base_descent) * epi / (epi - self.base_descent)

    def thickness_ed(self, theta: FloatArray, depth: float) -> FloatArray:
        u = min(depth / self.lv_length, 1.0)
        modulation = 1.0 + self.septal_extra * window(
            wrap_angle(theta - self.septal_angle), self.septal_width / 2.0, self.septal_width / 4.0
        )
        if self.apical_extra:
            # Apical HCM: hypertrophy confined to the apical third ("ace of spades" cavity).
            ramp = min(max((u - 0.45) / 0.3, 0.0), 1.0)
            modulation = modulation + self.apical_extra * (3.0 * ramp**2 - 2.0 * ramp**3)
        a1, p1, a2, p2 = self.thickness_wave
        if a1 or a2:
            # Regional variation of a normal wall: a few % thicker or thinner by segment.
            modulation = modulation * (1.0 + a1 * np.cos(theta - p1) + a2 * np.cos(2.0 * (theta - p2)))
        if self.infarct is not None:
            modulation = modulation - (1.0 - self.infarct.wall_kept) * self.infarct.indicator(theta, u)
        out: FloatArray = self.wall_thickness * modulation * (1.0 - 0.25 * u * u)
        return out

    def contraction(self, theta: FloatArray, depth: float) -> FloatArray:
        """ES/ED cavity radius ratio ``c = 1 - k g``."""
        g = np.ones_like(theta)
        if self.infarct is not None:
            u = depth / self.lv_length
            g = g - (1.0 - self.infarct.contractility) * self.infarct.indicator(theta, u)
        b1, p1, slope = self.contraction_wave
        if b1 or slope:
            # Regional variation of normal function: some segments move more than others, and the
            # radial motion differs from base to apex.
            u = depth / self.lv_length
            g = g * (1.0 + b1 * np.cos(theta - p1) + slope * (u - 0.5))
        out: FloatArray = 1.0 - self.es_contraction * g
        return out

    def lv_radii(self, theta: FloatArray, depth: float, phase: Phase) -> tuple[FloatArray, FloatArray]:
        """Cavity and epicardial radius (mm) at angles ``theta`` and image ``depth``."""
        stretch = 1.0
        if phase == "ES" and self.base_descent != 0.0:
            # Longitudinal shortening squeezes the same myocardium into a shorter ventricle: the
            # wall area per slice grows by the inverse factor, so mass is preserved.
            stretch = self.epi_length / (self.epi_length - self.base_descent)
            depth = self.heart_depth(depth, phase)
        if depth < 0.0 or depth > self.epi_length:
            zero = np.zeros_like(theta)
            return zero, zero
        if depth <= self.lv_length:
            r_c = self.cavity_radius_ed(theta, depth)
            r_o = r_c + self.thickness_ed(theta, depth)
        else:  # apical cap: solid myocardium shrinking to the epicardial apex
            r_c = np.zeros_like(theta)
            s = (depth - self.lv_length) / self.apex_cap
            r_o = self.thickness_ed(theta, self.lv_length) * math.sqrt(max(1.0 - s * s, 0.0))
        if phase == "ES":
            r_c_es = r_c * self.contraction(theta, depth)
            if stretch != 1.0:
                r_o = np.sqrt(r_c_es**2 + (r_o**2 - r_c**2) * stretch)
            else:
                r_o = np.sqrt(r_c_es**2 + r_o**2 - r_c**2)
            r_c = r_c_es
        return r_c, r_o

    def rv_unit_height(self, theta: FloatArray, depth: float, phase: Phase = "ED") -> FloatArray:
        """RV crescent height profile for ``H = 1`` at image ``depth`` (the tricuspid plane descends
        with the mitral plane at ES)."""
        depth = self.heart_depth(depth, phase)
        u = depth / self.rv_length
        if depth < 0.0 or u >= 1.0:
            return np.zeros_like(theta)
        half = 0.5 * self.rv_width * (1.0 - 0.35 * u)
        delta = wrap_angle(theta - self.septal_angle)
        inside = np.abs(delta) < half
        tip = np.where(inside, np.cos(0.5 * np.pi * np.clip(delta / half, -1.0, 1.0)), 0.0)
        out: FloatArray = (1.0 - u * u) ** 0.6 * np.power(tip, _RV_TIP_EXPONENT)
        return out

    def rv_height(self, theta: FloatArray, depth: float, phase: Phase) -> FloatArray:
        scale = self.rv_height_ed if phase == "ED" else self.rv_height_es
        out: FloatArray = scale * self.rv_unit_height(theta, depth, phase)
        return out


@dataclass(frozen=True)
class SliceAreas:
    """Per-slice areas (mm²) of the LV cavity, LV myocardium and RV cavity."""

    lv: FloatArray
    myo: FloatArray
    rv: FloatArray


def slice_areas(shape: HeartShape, depths: FloatArray, phase: Phase) -> SliceAreas:
    """Exact (quadrature) cross-section areas at the slice-centre ``depths``."""
    lv = np.zeros(len(depths))
    myo = np.zeros(len(depths))
    rv = np.zeros(len(depths))
    dtheta = 2.0 * np.pi / _N_ANGLES
    for i, d in enumerate(depths):
        r_c, r_o = shape.lv_radii(_ANGLES, float(d), phase)
        h = shape.rv_height(_ANGLES, float(d), phase)
        lv[i] = 0.5 * np.sum(r_c**2) * dtheta
        myo[i] = 0.5 * np.sum(r_o**2 - r_c**2) * dtheta
        rv[i] = 0.5 * np.sum((r_o + h) ** 2 - r_o**2) * dtheta
    return SliceAreas(lv=lv, myo=myo, rv=rv)


def volumes_ml(shape: HeartShape, depths: FloatArray, spacing: float, phase: Phase) -> dict[str, float]:
    """LV, myocardium and RV volumes (ml) as ACDC measures them: sum of areas times spacing."""
    areas = slice_areas(shape, depths, phase)
    return {
        "lv": float(areas.lv.sum() * spacing / 1000.0),
        "myo": float(areas.myo.sum() * spacing / 1000.0),
        "rv": float(areas.rv.sum() * spacing / 1000.0),
    }


def _solve_quadratic(a: float, b: float, c: float, what: str) -> float:
    """Smallest non-negative root of ``a x² + b x + c = 0``."""
    if abs(a) < 1e-12:
        if abs(b) < 1e-12:
            raise ValueError(f"{what}: degenerate equation")
        return -c / b
    disc = b * b - 4.0 * a * c
    if disc < 0.0:
        raise ValueError(f"{what}: target volume is out of reach of this shape (discriminant {disc:.3g})")
    sq = math.sqrt(disc)
    roots = sorted(r for r in ((-b - sq) / (2 * a), (-b + sq) / (2 * a)) if r >= 0.0)
    if not roots:
        raise ValueError(f"{what}: no non-negative solution")
    return roots[0]


def fit_heart(
    shape: HeartShape,
    depths: FloatArray,
    spacing: float,
    *,
    lv_edv: float,
    lv_esv: float,
    rv_edv: float,
    rv_esv: float,
) -> HeartShape:
    """Return ``shape`` with LV radius, ES contraction and RV heights solved for the target volumes (ml).

    Raises:
        ValueError: a target cannot be reached with this shape (contraction beyond the cavity, ...).
    """
    for name, value in (("lv_edv", lv_edv), ("lv_esv", lv_esv), ("rv_edv", rv_edv), ("rv_esv", rv_esv)):
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")
    if lv_esv >= lv_edv or rv_esv >= rv_edv:
        raise ValueError(f"ESV must be below EDV (LV {lv_esv}/{lv_edv}, RV {rv_esv}/{rv_edv})")
    dtheta = 2.0 * np.pi / _N_ANGLES
    scale = spacing * dtheta / 1000.0  # mm² * mm -> ml, times the quadrature weight

    # LV cavity volume is a² times the unit-radius volume.
    unit = replace(shape, lv_radius=1.0)
    unit_volume = sum(0.5 * np.sum(unit.cavity_radius_ed(_ANGLES, float(d)) ** 2) for d in depths) * scale
    if unit_volume <= 0:
        raise ValueError("no slice cuts the LV cavity; check the slice depths")
    fitted = replace(shape, lv_radius=math.sqrt(lv_edv / unit_volume))

    # ES cavity: V(k) = Σ ½ r² (1 - k g)² = A0 - 2 k A1 + k² A2.
    a0 = a1 = a2 = 0.0
    probe = replace(fitted, es_contraction=1.0)  # contraction() then returns 1 - g
    g_max = 0.0
    for d in depths:
        d_es = fitted.heart_depth(float(d), "ES")  # the ED material at this slice in systole
        r = fitted.cavity_radius_ed(_ANGLES, d_es)
        g = 1.0 - probe.contraction(_ANGLES, d_es)
        if d_es >= 0.0:
            g_max = max(g_max, float(np.max(g)))
        a0 += 0.5 * float(np.sum(r**2))
        a1 += 0.5 * float(np.sum(r**2 * g))
        a2 += 0.5 * float(np.sum(r**2 * g**2))
    a0, a1, a2 = a0 * scale, a1 * scale, a2 * scale
    k = _solve_quadratic(a2, -2.0 * a1, a0 - lv_esv, "LV end-systolic volume")
    if not 0.0 <= k < 0.95:
        raise ValueError(
            f"LV end-systolic volume {lv_esv:.1f} ml needs contraction k={k:.3f} outside [0, 0.95)"
        )
    if k * g_max >= 0.95:  # a regional contraction wave must not close the cavity anywhere
        raise ValueError(f"LV contraction k={k:.3f} times the regional peak {g_max:.3f} reaches 0.95")
    fitted = replace(fitted, es_contraction=k)

    # RV: V(H) = H B1 + H² B2 with B1 = Σ r_o q, B2 = Σ ½ q² (q the unit height).
    heights = {}
    for phase, target in zip(PHASES, (rv_edv, rv_esv), strict=True):
        b1 = b2 = 0.0
        for d in depths:
            _, r_o = fitted.lv_radii(_ANGLES, float(d), phase)
            q = fitted.rv_unit_height(_ANGLES, float(d), phase)
            b1 += float(np.sum(r_o * q))
            b2 += 0.5 * float(np.sum(q * q))
        heights[phase] = _solve_quadratic(b2 * scale, b1 * scale, -target, f"RV {phase} volume")
    return replace(fitted, rv_height_ed=heights["ED"], rv_height_es=heights["ES"])
