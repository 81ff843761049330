"""bSSFP-like appearance: tissue intensities per scanner style, body anatomy, bias, noise.

Intensities are relative to blood (1.0 before gain). bSSFP cine: bright blood and fat, dark
myocardium, very dark lung; liver and skeletal muscle in between.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from cardiosynth.data.phantom.anatomy import FloatArray
from cardiosynth.data.phantom.tissues import Tissue


@dataclass(frozen=True)
class ScannerStyle:
    """Contrast, noise, bias and resolution of one scanner-like appearance."""

    name: str
    blood: float
    myocardium: float
    fat: float
    liver: float
    muscle: float
    lung: float
    soft_tissue: float
    bone: float
    csf: float
    noise: float  # Rician sigma relative to blood
    bias: float  # amplitude of the smooth multiplicative field (log scale)
    coil_falloff_mm: float  # surface-coil sensitivity falls off over this distance from the chest wall
    blur: float  # point-spread sigma, pixels
    gain: float  # stored value of blood

    def tissue_lut(self) -> FloatArray:
        """Intensity for each :class:`Tissue` code (NONE is filled in from the body model)."""
        lut = np.zeros(len(Tissue))
        lut[Tissue.LV_BLOOD] = self.blood
        lut[Tissue.LV_MYO] = self.myocardium
        lut[Tissue.RV_BLOOD] = self.blood
        lut[Tissue.PAPILLARY] = self.myocardium * 1.1
        lut[Tissue.RV_TRABECULA] = self.myocardium * 1.2
        lut[Tissue.RV_WALL] = self.myocardium
        lut[Tissue.EPI_FAT] = self.fat
        lut[Tissue.OTHER_BLOOD] = self.blood  # version 2: outflow tract, atria
        return lut


STYLES: dict[str, ScannerStyle] = {
    s.name: s
    for s in (
        ScannerStyle("1.5T-standard", 1.0, 0.27, 0.85, 0.36, 0.30, 0.04, 0.32, 0.38, 0.70,
                     noise=0.025, bias=0.20, coil_falloff_mm=160.0, blur=0.5, gain=700.0),
        ScannerStyle("3T-high-contrast", 1.0, 0.20, 0.70, 0.30, 0.25, 0.03, 0.26, 0.33, 0.80,
                     noise=0.035, bias=0.40, coil_falloff_mm=110.0, blur=0.4, gain=1400.0),
        ScannerStyle("1.5T-low-snr", 0.90, 0.33, 0.90, 0.42, 0.36, 0.06, 0.38, 0.42, 0.65,
                     noise=0.055, bias=0.25, coil_falloff_mm=140.0, blur=0.6, gain=420.0),
        ScannerStyle("3T-smooth", 1.0, 0.25, 0.78, 0.34, 0.28, 0.04, 0.30, 0.36, 0.75,
                     noise=0.020, bias=0.30, coil_falloff_mm=130.0, blur=0.9, gain=1000.0),
    )
}  # fmt: skip


@dataclass(frozen=True)
class BodyLayout:
    """Thoracic anatomy around the heart, in the heart frame (mm; x image right, y anterior)."""

    torso_centre: tuple[float, float]
    torso_axes: tuple[float, float]
    subcutaneous_fat: float
    chest_muscle: float
    left_lung_centre: tuple[float, float]  # patient left = image right
    left_lung_axes: tuple[float, float]
    right_lung_centre: tuple[float, float]
    right_lung_axes: tuple[float, float]
    liver_centre: tuple[float, float]
    liver_axes: tuple[float, float]
    liver_from: float  # depth fraction of the heart where the liver appears
    aorta_centre: tuple[float, float]
    aorta_radius: float
    spine_centre: tuple[float, float]
    spine_radius: float


def _inside_ellipse(
    x: FloatArray, y: FloatArray, centre: tuple[float, float], axes: tuple[float, float], grow: float = 0.0
) -> npt.NDArray[np.bool_]:
    out: npt.NDArray[np.bool_] = ((x - centre[0]) / (axes[0] + grow)) ** 2 + (
        (y - centre[1]) / (axes[1] + grow)
    ) ** 2 < 1.0
    return out


def body_intensity(
    body: BodyLayout, style: ScannerStyle, x: FloatArray, y: FloatArray, depth_fraction: float
) -> FloatArray:
    """Intensity of the thorax without the heart at points ``(x, y)``; ``depth_fraction`` 0 base, 1 apex."""
    out = np.zeros(x.shape)
    torso = _inside_ellipse(x, y, body.torso_centre, body.torso_axes)
    out[torso] = style.fat
    inner = _inside_ellipse(x, y, body.torso_centre, body.torso_axes, -body.subcutaneous_fat)
    out[inner] = style.muscle
    cavity = _inside_ellipse(
        x, y, body.torso_centre, body.torso_axes, -body.subcutaneous_fat - body.chest_muscle
    )
    out[cavity] = style.soft_tissue
    out[cavity & _inside_ellipse(x, y, body.left_lung_centre, body.left_lung_axes)] = style.lung
    # Toward the apex the diaphragm rises into the short-axis planes: liver replaces the right lung.
    liver_grow = np.clip((depth_fraction - body.liver_from) / 0.5, 0.0, 1.0)
    shrink = 1.0 - 0.6 * liver_grow
    right_axes = (body.right_lung_axes[0] * shrink, body.right_lung_axes[1] * shrink)
    out[cavity & _inside_ellipse(x, y, body.right_lung_centre, right_axes)] = style.lung
    if liver_grow > 0:
        liver_axes = (body.liver_axes[0] * liver_grow, body.liver_axes[1] * liver_grow)
        liver = _inside_ellipse(x, y, body.liver_centre, liver_axes)
        out[cavity & liver] = style.liver
    ax, ay = body.aorta_centre
    out[(x - ax) ** 2 + (y - ay) ** 2 < body.aorta_radius**2] = style.blood * 0.8
    sx, sy = body.spine_centre
    d_spine = np.hypot(x - sx, y - sy)
    out[d_spine < body.spine_radius] = style.bone
    out[np.hypot(x - sx, y - sy + body.spine_radius * 1.3) < body.spine_radius * 0.4] = style.csf
    return out


def bias_field(
    shape: tuple[int, int],
    spacing: float,
    style: ScannerStyle,
    anterior_wall_y: float,
    y_mm: FloatArray,
    rng: np.random.Generator,
) -> FloatArray:
    """Smooth multiplicative field: random low-order polynomial times an anterior surface-coil falloff."""
    nx, ny = shape
    u = np.linspace(-1.0, 1.0, nx)[:, None]
    v = np.linspace(-1.0, 1.0, ny)[None, :]
    c = rng.normal(0.0, style.bias, size=5)
    log_field = c[0] * u + c[1] * v + c[2] * u * v + c[3] * (u * u - 0.33) + c[4] * (v * v - 0.33)
    coil = 0.55 + 0.45 * np.exp(-np.clip(anterior_wall_y - y_mm, 0.0, None) / style.coil_falloff_mm)
    out: FloatArray = np.exp(log_field) * coil
    return out


def rician(signal: FloatArray, sigma: float | FloatArray, rng: np.random.Generator) -> FloatArray:
    """Magnitude of the signal plus complex Gaussian noise (Rician distributed); ``sigma`` may be a
    map that broadcasts to ``signal`` (version 2: the parallel-imaging g-factor)."""
    # standard_normal times sigma draws the same numbers as normal(0, sigma), without normal's
    # per-element broadcasting of a sigma map (about twice as fast); in place to spare copies.
    real = rng.standard_normal(signal.shape)
    real *= sigma
    real += signal
    imaginary = rng.standard_normal(signal.shape)
    imaginary *= sigma
    out: FloatArray = np.hypot(real, imaginary, out=real)
    return out


def texture(
    shape: tuple[int, ...], rng: np.random.Generator, sigma_px: float = 3.0, amount: float = 0.05
) -> FloatArray:
    """Smooth multiplicative tissue inhomogeneity around 1."""
    field = ndimage.gaussian_filter(rng.normal(0.0, 1.0, shape), sigma=(sigma_px, sigma_px, 0.0))
    std = float(field.std()) or 1.0
    out: FloatArray = 1.0 + amount * field / std
    return out


# ---------------------------------------------------------------------------------------------
# Version 2: more anatomy around the heart, texture inside organs, bSSFP artefacts.


class Organ(IntEnum):
    """Body tissue codes of the version-2 body model (the heart's :class:`Tissue` codes follow)."""

    OUTSIDE = 0
    FAT = 1  # subcutaneous
    MUSCLE = 2  # chest wall
    SOFT = 3  # mediastinum
    LUNG = 4
    LIVER = 5
    AORTA = 6
    BONE = 7
    CSF = 8
    STOMACH_FLUID = 9
    STOMACH_AIR = 10
    BREAST_FAT = 11
    GLAND = 12  # fibroglandular breast tissue
    MARROW = 13  # sternal marrow


N_ORGANS = len(Organ)


@dataclass(frozen=True)
class BodyExtras:
    """Version 2: structures the version-1 body lacks (mm, heart frame like :class:`BodyLayout`).

    ``breasts`` is empty for men; ``liver_wobble`` bends the liver dome's outline (fraction of
    its radius) so that it is not an ellipse.
    """

    sternum_centre: tuple[float, float]
    sternum_axes: tuple[float, float]
    stomach_centre: tuple[float, float]
    stomach_axes: tuple[float, float]
    stomach_from: float  # depth fraction where the stomach appears
    stomach_air: float  # fraction of its antero-posterior extent filled with air (supine: anterior)
    liver_wobble: tuple[float, float]  # amplitude, phase of a 3-lobed outline perturbation
    breasts: tuple[tuple[float, float, float, float], ...]  # (cx, cy, ax, ay) per breast


@dataclass(frozen=True)
class ArtefactParams:
    """Version 2: bSSFP artefacts and texture of one subject (same for ED and ES).

    - Off-resonance banding: the phase accrued per TR across the field of view,
      ``phi = c0 + gx x + gy y + cq ((x - x0)² + (y - y0)²)`` in cycles (mm), darkens the signal where
      ``phi`` is half-way between integers; ``band_strength`` 0 means no band in this subject.
    - Flow: a signal void (turbulent jet) in basal blood, in the outflow tract at ES and at the
      mitral inflow at ED; ghosts of the blood pool along the phase-encoding axis.
    - Parallel imaging: the noise g-factor peaks at the image centre (``g_peak`` extra, Gaussian
      of ``g_width`` of the field of view).
    - Texture: multiplicative fields inside every tissue, times ``texture_scale``.
    """

    band_strength: float
    band_width: float  # in cycles
    band_coeffs: tuple[float, float, float, float, float, float]  # c0, gx, gy, cq, x0, y0
    band_drift: float  # cycles per slice (the shim differs a little from slice to slice)
    void_strength: float
    void_radius: float  # mm
    ghost_amplitude: float
    ghost_axis: int  # 0 or 1: the phase-encoding axis of the stored array
    ghost_shift: float  # fraction of the matrix along that axis
    g_peak: float
    g_width: float
    texture_scale: float


def organ_lut(style: ScannerStyle) -> FloatArray:
    """Intensity of each :class:`Organ` in ``style``."""
    lut = np.zeros(N_ORGANS)
    lut[Organ.FAT] = style.fat
    lut[Organ.MUSCLE] = style.muscle
    lut[Organ.SOFT] = style.soft_tissue
    lut[Organ.LUNG] = style.lung
    lut[Organ.LIVER] = style.liver
    lut[Organ.AORTA] = style.blood * 0.8
    lut[Organ.BONE] = style.bone * 0.35  # cortical bone: little signal
    lut[Organ.CSF] = style.csf
    lut[Organ.STOMACH_FLUID] = 0.5 * (style.csf + style.blood)  # fluid is bright on bSSFP
    lut[Organ.STOMACH_AIR] = style.lung * 0.5
    lut[Organ.BREAST_FAT] = style.fat
    lut[Organ.GLAND] = 0.5 * (style.soft_tissue + style.muscle)
    lut[Organ.MARROW] = 0.8 * style.fat  # fatty marrow
    return lut


# Texture amplitude per class (coarse, fine): body organs, then heart tissues (code + N_ORGANS).
# The lung and liver carry vessels on top (bright dots); blood is nearly flat, fat and glands mottled.
_ORGAN_TEXTURE: dict[int, tuple[float, float]] = {
    Organ.FAT: (0.05, 0.04),
    Organ.MUSCLE: (0.06, 0.05),
    Organ.SOFT: (0.08, 0.05),
    Organ.LUNG: (0.30, 0.25),
    Organ.LIVER: (0.06, 0.05),
    Organ.AORTA: (0.04, 0.02),
    Organ.BONE: (0.15, 0.10),
    Organ.CSF: (0.03, 0.02),
    Organ.STOMACH_FLUID: (0.12, 0.05),
    Organ.STOMACH_AIR: (0.20, 0.20),
    Organ.BREAST_FAT: (0.06, 0.05),
    Organ.GLAND: (0.18, 0.12),
    Organ.MARROW: (0.10, 0.08),
}
_HEART_TEXTURE: dict[int, tuple[float, float]] = {
    Tissue.LV_BLOOD: (0.04, 0.015),
    Tissue.LV_MYO: (0.04, 0.03),
    Tissue.RV_BLOOD: (0.05, 0.015),
    Tissue.PAPILLARY: (0.04, 0.03),
    Tissue.RV_TRABECULA: (0.04, 0.03),
    Tissue.RV_WALL: (0.05, 0.04),
    Tissue.EPI_FAT: (0.05, 0.04),
    Tissue.OTHER_BLOOD: (0.06, 0.02),
}


def _texture_tables() -> tuple[FloatArray, FloatArray]:
    coarse = np.zeros(N_ORGANS + len(Tissue))
    fine = np.zeros(N_ORGANS + len(Tissue))
    for code, (c, f) in _ORGAN_TEXTURE.items():
        coarse[code], fine[code] = c, f
    for code, (c, f) in _HEART_TEXTURE.items():
        coarse[N_ORGANS + code], fine[N_ORGANS + code] = c, f
    return coarse, fine


TEXTURE_COARSE, TEXTURE_FINE = _texture_tables()


def _ellipse_value(
    x: FloatArray, y: FloatArray, centre: tuple[float, float], axes: tuple[float, float]
) -> FloatArray:
    out: FloatArray = ((x - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2
    return out


def _at(a: FloatArray, shape: tuple[int, ...], flat: npt.NDArray[np.intp]) -> FloatArray:
    """Values of ``a`` broadcast to ``shape`` at the flat indices ``flat`` (without the broadcast copy)."""
    out: FloatArray = np.broadcast_to(a, shape)[np.unravel_index(flat, shape)]
    return out


def body_organs(
    body: BodyLayout, extras: BodyExtras, x: FloatArray, y: FloatArray, depth_fraction: float
) -> npt.NDArray[np.int8]:
    """Version 2's thorax without the heart: :class:`Organ` codes at points ``(x, y)``.

    The version-1 layout plus a sternum in the chest wall, breasts (women), a liver dome with a
    lobed outline, and the stomach under the left hemidiaphragm toward the apex (fluid with an
    anterior air cap, as in a supine patient).
    """
    # x and y may be broadcastable (a column and a row of a grid: half the work on the outlines).
    out = np.zeros(np.broadcast_shapes(x.shape, y.shape), dtype=np.int8)
    for cx, cy, ax, ay in extras.breasts:
        out[_ellipse_value(x, y, (cx, cy), (ax, ay)) < 1.0] = Organ.BREAST_FAT
        # Fibroglandular tissue: a lobulated cone behind the nipple, inside the fat. The lobes reach
        # 1.25 at most: the angle (and its cosine, the costly part) only where that can matter.
        value = _ellipse_value(x, y, (cx, cy + 0.15 * ay), (0.5 * ax, 0.45 * ay))
        near = np.flatnonzero(value < 1.25)
        xn, yn = _at(x, out.shape, near), _at(y, out.shape, near)
        lobes = 1.0 + 0.25 * np.cos(5.0 * np.arctan2(yn - cy, xn - cx) + cx)
        out.reshape(-1)[near[value.reshape(-1)[near] < lobes]] = Organ.GLAND
    torso = _inside_ellipse(x, y, body.torso_centre, body.torso_axes)
    out[torso] = Organ.FAT
    out[_inside_ellipse(x, y, body.torso_centre, body.torso_axes, -body.subcutaneous_fat)] = Organ.MUSCLE
    cavity = _inside_ellipse(
        x, y, body.torso_centre, body.torso_axes, -body.subcutaneous_fat - body.chest_muscle
    )
    out[cavity] = Organ.SOFT
    sternum = _ellipse_value(x, y, extras.sternum_centre, extras.sternum_axes)
    out[sternum < 1.0] = Organ.BONE
    out[sternum < 0.45] = Organ.MARROW
    out[cavity & _inside_ellipse(x, y, body.left_lung_centre, body.left_lung_axes)] = Organ.LUNG
    liver_grow = float(np.clip((depth_fraction - body.liver_from) / 0.5, 0.0, 1.0))
    shrink = 1.0 - 0.6 * liver_grow
    right_axes = (body.right_lung_axes[0] * shrink, body.right_lung_axes[1] * shrink)
    out[cavity & _inside_ellipse(x, y, body.right_lung_centre, right_axes)] = Organ.LUNG
    if liver_grow > 0:
        # The dome: its cross-section grows as the planes go down; a lobed outline, not an ellipse.
        axes = (body.liver_axes[0] * liver_grow, body.liver_axes[1] * liver_grow)
        value = _ellipse_value(x, y, body.liver_centre, axes)
        amplitude, phase = extras.liver_wobble
        # The outline swings by at most the amplitude: the angle only where that can matter.
        near = np.flatnonzero(cavity & (value < (1.0 + abs(amplitude)) ** 2))
        xn, yn = _at(x, out.shape, near), _at(y, out.shape, near)
        angle = np.arctan2(yn - body.liver_centre[1], xn - body.liver_centre[0])
        wobble = 1.0 + amplitude * np.cos(3.0 * angle + phase)
        out.reshape(-1)[near[value.reshape(-1)[near] < wobble**2]] = Organ.LIVER
    stomach_grow = float(np.clip((depth_fraction - extras.stomach_from) / 0.4, 0.0, 1.0))
    if stomach_grow > 0:
        axes = (extras.stomach_axes[0] * stomach_grow, extras.stomach_axes[1] * stomach_grow)
        inside = cavity & (_ellipse_value(x, y, extras.stomach_centre, axes) < 1.0)
        out[inside] = Organ.STOMACH_FLUID
        level = extras.stomach_centre[1] + axes[1] * (1.0 - 2.0 * extras.stomach_air)
        out[inside & (y > level)] = Organ.STOMACH_AIR
    ax, ay = body.aorta_centre
    out[(x - ax) ** 2 + (y - ay) ** 2 < body.aorta_radius**2] = Organ.AORTA
    sx, sy = body.spine_centre
    out[np.hypot(x - sx, y - sy) < body.spine_radius] = Organ.BONE
    out[np.hypot(x - sx, y - sy + body.spine_radius * 1.3) < body.spine_radius * 0.4] = Organ.CSF
    return out


def banding(x: FloatArray, y: FloatArray, artefacts: ArtefactParams, slice_index: int) -> FloatArray:
    """Multiplicative off-resonance band pattern (1 away from the bands) at points ``(x, y)`` (mm)."""
    shape = np.broadcast_shapes(x.shape, y.shape)  # x and y may be a column and a row of a grid
    if artefacts.band_strength <= 0.0:
        return np.ones(shape)
    c0, gx, gy, cq, x0, y0 = artefacts.band_coeffs
    phi = c0 + artefacts.band_drift * slice_index + gx * x + gy * y + cq * ((x - x0) ** 2 + (y - y0) ** 2)
    distance = np.abs(np.mod(phi, 1.0) - 0.5)  # cycles from the band centre
    z = (distance / artefacts.band_width) ** 2
    # Away from the bands strength * exp(-z) is below half an ulp of 1: the result is 1.0 exactly,
    # so only the points near a band need the exponential.
    near = z < _BAND_NEGLIGIBLE + math.log(max(artefacts.band_strength, 1.0))
    out: FloatArray = np.ones(shape)
    out[near] = 1.0 - artefacts.band_strength * np.exp(-z[near])
    return out


_BAND_NEGLIGIBLE = 40.0  # exp(-40) = 4e-18, under 2**-54 (half an ulp of 1.0)


def g_factor(shape: tuple[int, int], artefacts: ArtefactParams) -> FloatArray:
    """Noise amplification of parallel imaging: 1 at the edges, ``1 + g_peak`` at the centre."""
    u = np.linspace(-1.0, 1.0, shape[0])[:, None]
    v = np.linspace(-1.0, 1.0, shape[1])[None, :]
    out: FloatArray = 1.0 + artefacts.g_peak * np.exp(-(u * u + v * v) / (2.0 * artefacts.g_width**2))
    return out


def ghosts(image: FloatArray, blood: npt.NDArray[np.bool_], artefacts: ArtefactParams) -> FloatArray:
    """Faint copies of the (pulsatile) blood pool shifted along the phase-encoding axis."""
    if artefacts.ghost_amplitude <= 0.0:
        return np.zeros(image.shape)
    axis = artefacts.ghost_axis
    shift = max(1, round(artefacts.ghost_shift * image.shape[axis]))
    source = image * blood
    out: FloatArray = artefacts.ghost_amplitude * (
        np.roll(source, shift, axis=axis) + 0.5 * np.roll(source, -shift, axis=axis)
    )
    return out


def textured(
    image: FloatArray, classes: npt.NDArray[np.int16], artefacts: ArtefactParams, rng: np.random.Generator
) -> FloatArray:
    """``image`` times a texture inside every tissue (per-class coarse and fine fields), with bright
    vessels in the lung and the liver. ``classes`` holds organ codes, or ``N_ORGANS + Tissue`` in the
    heart; both arrays are ``(X, Y, Z)``."""
    # standard_normal draws what normal(0, 1) draws; the field is built in place (same values).
    coarse = ndimage.gaussian_filter(rng.standard_normal(image.shape), sigma=(4.0, 4.0, 0.0))
    fine = ndimage.gaussian_filter(rng.standard_normal(image.shape), sigma=(1.0, 1.0, 0.0))
    coarse /= float(coarse.std()) or 1.0
    fine /= float(fine.std()) or 1.0
    field = TEXTURE_COARSE[classes]
    field *= coarse
    fine_part = TEXTURE_FINE[classes]
    fine_part *= fine
    field += fine_part
    field *= artefacts.texture_scale
    field += 1.0
    out: FloatArray = np.clip(field, 0.2, None, out=field)
    out *= image
    vessels = fine > 2.2
    out[vessels & (classes == Organ.LUNG)] *= 5.0  # pulmonary vessels on dark lung
    out[vessels & (classes == Organ.LIVER)] *= 1.7  # hepatic vessels are bright on bSSFP
    return out
