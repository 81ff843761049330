"""bSSFP-like appearance: tissue intensities per scanner style, body anatomy, bias, noise.

Intensities are relative to blood (1.0 before gain). bSSFP cine: bright blood and fat, dark
myocardium, very dark lung; liver and skeletal muscle in between.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def rician(signal: FloatArray, sigma: float, rng: np.random.Generator) -> FloatArray:
    """Magnitude of the signal plus complex Gaussian noise (Rician distributed)."""
    out: FloatArray = np.hypot(
        signal + rng.normal(0.0, sigma, signal.shape), rng.normal(0.0, sigma, signal.shape)
    )
    return out


def texture(
    shape: tuple[int, ...], rng: np.random.Generator, sigma_px: float = 3.0, amount: float = 0.05
) -> FloatArray:
    """Smooth multiplicative tissue inhomogeneity around 1."""
    field = ndimage.gaussian_filter(rng.normal(0.0, 1.0, shape), sigma=(sigma_px, sigma_px, 0.0))
    std = float(field.std()) or 1.0
    out: FloatArray = 1.0 + amount * field / std
    return out
