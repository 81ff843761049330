"""Preprocessing of the paper, with its exact inverse.

1. resample in-plane to 1.5 x 1.5 mm (slices untouched);
2. crop 128 x 128 centred on the heart, found from the labels of both phases (pad where needed);
3. percentile (1, 99) intensity normalisation of each image volume to [-1, 1];
4. order slices base to apex (detected from the labels, or stated).

Resampling and cropping are one affine map per axis, so :class:`Geometry` holds everything needed
to put model outputs back on the native grid and into physical space.

Labels are resampled in one of two ways (:data:`LabelInterpolation`):

- ``nearest`` (every shipped model was trained on it): when the native pixel is at least 1.5 mm,
  labels mapped forward and back are identical (every native pixel centre is within half a pixel of
  its nearest resampled pixel, and vice versa); finer native grids lose detail that a 1.5 mm grid
  cannot hold. Between grids of different pitch nearest neighbour repeats or drops whole rows and
  columns of pixels, and where a repeated row crosses the myocardium the wall is one pixel thicker
  there, which a wall-thickness maximum finds: on the 100 default phantom subjects (native pixels
  about 1.62 mm) the crops' maximal wall is 0.38-0.68 mm above the native labels' per class, and a
  crop that did not come from the native grid (a decoded one) put back on it gains 0.33-0.42 mm
  more (``reports/synthesis-phantom-v2/cohort/label_resampling.txt``).
- ``linear``: each class's indicator is interpolated linearly and every pixel takes the class with
  the largest share (as nnU-Net resamples segmentations), so boundaries move by sub-pixel amounts
  instead of by repeated rows: the crops' maximal wall is 0.25-0.50 mm above the native, and on a
  native grid finer than 1.5 mm a ring's wall moves by 0.1 mm forward and back where nearest
  neighbour moves it by 0.8 (``tests/data/test_preprocess.py``). Forward and back is not the
  identity (a boundary pixel can change class).

A model records the resampling its training data had (the label VAE's ``label_interpolation``), and
synthesis preprocesses the base subjects the same way. Decoded outputs go back to the native grid
from the decoder's class probabilities (:func:`restore_probabilities`: each class's share
interpolated linearly, the largest taken on the native grid), so that a decoded heart is drawn once,
on the native grid, instead of twice (argmax on the 1.5 mm grid, then nearest neighbour); labels
without probabilities go back by :func:`restore_labels`.

Processed arrays are slice stacks ``(Z, S, S)`` with ``[k, a, b]`` the resampled ``(X, Y)`` pixel
``(a + start_x, b + start_y)`` of slice ``k`` (base first).

Synthetic images go back to the native grid by :func:`composite_image`: the synthetic crop is
blended into the BASE subject's own native image with a feathered seam, instead of being pasted
into a constant fill (which made two thirds of every written volume one value and put a hard,
visible square edge around the heart). The output keeps the base's native grid and affine
unchanged, so every voxel keeps its world position, and it is a complete image: the body, the
field of view and the noise outside the crop are the base subject's, inside the crop the synthetic
image, and over a :data:`FEATHER_MM` band inside the crop border a smooth (C1) ramp from one to
the other. Labels need no blending: :func:`restore_labels` puts background outside the crop, which
is what the base's own labels hold there, since the crop (192 mm) is centred on the heart (over
the 100 default phantom subjects the heart is at least 25 mm inside the crop border in both
phases), and the ramp lies in background as well. The alternative, writing only the 128 x 128 x Z
crop with its own affine (:meth:`Geometry.processed_affine`), would lose the base's slice grid
(1.5 mm resampled pixels instead of the native ones), which downstream tools and the evaluation
compare against.

Given the heart (``region``: the synthetic heart and the base's own, each slice), the synthetic
image is kept only around it (:func:`heart_weight`: whole within :data:`HEART_MARGIN_MM` of the
heart, a :data:`FEATHER_MM` ramp beyond): the translator paints the background label with less
texture than a real image has, so a crop-sized composite showed a smoother rectangle around the
heart. Around the heart the image is the base's own: its lungs, liver and chest wall, and, in
slices without any heart, the whole slice; the labels there are background in both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from cardiosynth.data.acdc import Subject
from cardiosynth.data.labels import BACKGROUND, LV_CAVITY, LV_MYOCARDIUM, NUM_CLASSES, RV_CAVITY, as_label_map

TARGET_SPACING_MM = 1.5
CROP_SIZE = 128
PERCENTILES = (1.0, 99.0)
FEATHER_MM = 12.0  # width of the seam ramp inside the crop border (8 resampled pixels)
# How far around the heart (the union of the synthetic and the base heart) the synthetic image is
# kept whole before the ramp to the base's own image starts: the translator's blur of the epicardial
# border reaches about two pixels out, and the base's own heart must not show through anywhere.
HEART_MARGIN_MM = 6.0

LabelInterpolation = Literal["nearest", "linear"]
LABEL_INTERPOLATIONS: tuple[LabelInterpolation, ...] = ("nearest", "linear")


def check_label_interpolation(value: str) -> LabelInterpolation:
    """``value`` as a :data:`LabelInterpolation`; ValueError naming it otherwise."""
    if value not in LABEL_INTERPOLATIONS:
        raise ValueError(
            f"label interpolation must be one of {', '.join(LABEL_INTERPOLATIONS)}, got {value!r}"
        )
    return value


SliceOrder = Literal["auto", "base_first", "apex_first"]


@dataclass(frozen=True)
class Geometry:
    """Mapping between a native ``(X, Y, Z)`` grid and the processed ``(Z, S, S)`` stack."""

    native_shape: tuple[int, int, int]
    native_affine: tuple[tuple[float, ...], ...]  # 4 x 4, rows
    native_spacing: tuple[float, float]  # in-plane X, Y (mm)
    target_spacing: float
    crop_size: int
    crop_start: tuple[int, int]  # in the resampled grid; negative or overhanging means padding
    reversed_slices: bool  # native slice 0 is the apex

    @property
    def scale(self) -> tuple[float, float]:
        """Native pixels per resampled pixel along X and Y."""
        return self.target_spacing / self.native_spacing[0], self.target_spacing / self.native_spacing[1]

    def processed_affine(self) -> npt.NDArray[np.float64]:
        """Voxel-to-world affine of the processed stack written as an ``(S, S, Z)`` NIfTI volume."""
        sx, sy = self.scale
        m = np.eye(4)
        # processed (a, b, k) -> native continuous index
        m[0, 0], m[0, 3] = sx, (self.crop_start[0] + 0.5) * sx - 0.5
        m[1, 1], m[1, 3] = sy, (self.crop_start[1] + 0.5) * sy - 0.5
        if self.reversed_slices:
            m[2, 2], m[2, 3] = -1.0, self.native_shape[2] - 1.0
        out: npt.NDArray[np.float64] = np.asarray(self.native_affine) @ m
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Geometry:
        return cls(
            native_shape=tuple(data["native_shape"]),
            native_affine=tuple(tuple(float(v) for v in row) for row in data["native_affine"]),
            native_spacing=tuple(data["native_spacing"]),
            target_spacing=float(data["target_spacing"]),
            crop_size=int(data["crop_size"]),
            crop_start=tuple(data["crop_start"]),
            reversed_slices=bool(data["reversed_slices"]),
        )


def apex_first(labels: npt.NDArray[np.generic]) -> bool:
    """Whether slice 0 of ``labels`` ``(X, Y, Z)`` is the apex: the heart's area centroid lies
    toward the base (large basal sections, small apical ones)."""
    area = np.isin(labels, (RV_CAVITY, LV_MYOCARDIUM, LV_CAVITY)).sum(axis=(0, 1)).astype(np.float64)
    present = np.flatnonzero(area)
    if present.size < 2:
        return False
    k = np.arange(labels.shape[2], dtype=np.float64)
    centroid = float((area * k).sum() / area.sum())
    middle = 0.5 * (present[0] + present[-1])
    return bool(centroid > middle)


def plan_geometry(
    labels: Sequence[npt.NDArray[np.generic]],
    affine: npt.NDArray[np.float64],
    *,
    slice_order: SliceOrder = "auto",
    target_spacing: float = TARGET_SPACING_MM,
    crop_size: int = CROP_SIZE,
) -> Geometry:
    """Geometry for label volumes ``(X, Y, Z)`` of one subject (all phases, same grid).

    Raises:
        ValueError: no labels, differing shapes, no heart in any of them, or a bad parameter.
    """
    if not labels:
        raise ValueError("plan_geometry needs at least one label volume")
    shape = labels[0].shape
    if len(shape) != 3 or any(lab.shape != shape for lab in labels):
        raise ValueError(f"label volumes must be 3D of one shape, got {[lab.shape for lab in labels]}")
    if target_spacing <= 0 or crop_size < 8:
        raise ValueError(f"bad target spacing {target_spacing} or crop size {crop_size}")
    if slice_order not in ("auto", "base_first", "apex_first"):
        raise ValueError(f"slice_order must be auto, base_first or apex_first, got {slice_order!r}")
    foreground = np.zeros(shape[:2], dtype=np.float64)
    for lab in labels:
        foreground += (np.asarray(lab) > 0).sum(axis=2)
    if not foreground.any():
        raise ValueError("the labels hold no heart (all background): cannot centre the crop")
    spacing = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    sx, sy = float(spacing[0]), float(spacing[1])
    centre_native = ndimage.center_of_mass(foreground)
    # native index i sits at resampled index (i + 0.5) * s / t - 0.5
    cx = (centre_native[0] + 0.5) * sx / target_spacing - 0.5
    cy = (centre_native[1] + 0.5) * sy / target_spacing - 0.5
    start = (round(cx) - crop_size // 2, round(cy) - crop_size // 2)
    reversed_slices = apex_first(labels[0]) if slice_order == "auto" else slice_order == "apex_first"
    return Geometry(
        native_shape=(int(shape[0]), int(shape[1]), int(shape[2])),
        native_affine=tuple(tuple(float(v) for v in row) for row in np.asarray(affine)),
        native_spacing=(sx, sy),
        target_spacing=float(target_spacing),
        crop_size=int(crop_size),
        crop_start=(int(start[0]), int(start[1])),
        reversed_slices=bool(reversed_slices),
    )


def _forward(
    volume: npt.NDArray[np.floating[Any]], geometry: Geometry, order: int, fill: float
) -> npt.NDArray[np.float64]:
    """Resample + crop ``(X, Y, Z)`` to ``(S, S, Z)`` in one interpolation."""
    if volume.shape != geometry.native_shape:
        raise ValueError(f"volume shape {volume.shape} differs from the geometry's {geometry.native_shape}")
    sx, sy = geometry.scale
    offset = ((geometry.crop_start[0] + 0.5) * sx - 0.5, (geometry.crop_start[1] + 0.5) * sy - 0.5, 0.0)
    size = geometry.crop_size
    out: npt.NDArray[np.float64] = ndimage.affine_transform(
        volume.astype(np.float64),
        matrix=(sx, sy, 1.0),
        offset=offset,
        output_shape=(size, size, volume.shape[2]),
        order=order,
        mode="constant",
        cval=fill,
    )
    return out


def _to_stack(volume: npt.NDArray[Any], geometry: Geometry) -> npt.NDArray[Any]:
    stack = np.moveaxis(volume, 2, 0)
    return stack[::-1] if geometry.reversed_slices else stack


def _from_stack(stack: npt.NDArray[Any], geometry: Geometry) -> npt.NDArray[Any]:
    if stack.ndim != 3 or stack.shape[1:] != (geometry.crop_size, geometry.crop_size):
        raise ValueError(
            f"expected a stack (Z, {geometry.crop_size}, {geometry.crop_size}), got shape {stack.shape}"
        )
    if geometry.reversed_slices:
        stack = stack[::-1]
    return np.moveaxis(stack, 0, 2)


def normalise(image: npt.NDArray[np.floating[Any]]) -> tuple[npt.NDArray[np.float32], tuple[float, float]]:
    """Map the (1, 99) percentiles of ``image`` to [-1, 1], clipping beyond; returns the window too."""
    lo, hi = (float(v) for v in np.percentile(image, PERCENTILES))
    if hi <= lo:
        return np.zeros(image.shape, dtype=np.float32), (lo, hi)
    out = np.clip(2.0 * (image - lo) / (hi - lo) - 1.0, -1.0, 1.0).astype(np.float32)
    return out, (lo, hi)


def apply_image(
    image: npt.NDArray[np.generic], geometry: Geometry
) -> tuple[npt.NDArray[np.float32], tuple[float, float]]:
    """Resample (linear), crop, order and normalise an image ``(X, Y, Z)``.

    Returns the ``(Z, S, S)`` stack and the intensity window (the native 1st and 99th percentiles).

    The percentiles are taken over the native volume, so the window does not depend on the crop.
    """
    native = np.asarray(image, dtype=np.float64)
    _, window = normalise(native)
    lo, hi = window
    resampled = _forward(native, geometry, order=1, fill=float(native.min()))
    if hi > lo:
        stack = np.clip(2.0 * (resampled - lo) / (hi - lo) - 1.0, -1.0, 1.0)
    else:
        stack = np.zeros_like(resampled)
    return np.ascontiguousarray(_to_stack(stack, geometry), dtype=np.float32), window


def _resample_labels(
    lab: npt.NDArray[np.uint8],
    interpolation: LabelInterpolation,
    resample: Callable[[npt.NDArray[np.float64], int, float], npt.NDArray[np.float64]],
) -> npt.NDArray[np.uint8]:
    """``resample(volume, order, fill)`` applied to a label map: nearest neighbour on the labels, or
    linear on each class's indicator followed by the class of the largest share (ties go to the
    lower label; outside the input every share is background's)."""
    if interpolation == "nearest":
        return np.rint(resample(lab.astype(np.float64), 0, 0.0)).astype(np.uint8)
    return _largest_share(lambda c: resample((lab == c).astype(np.float64), 1, float(c == BACKGROUND)))


def _largest_share(share: Callable[[int], npt.NDArray[np.float64]]) -> npt.NDArray[np.uint8]:
    """The label of the largest ``share(c)`` over the classes, pixel by pixel (ties go to the lower
    label); one class's share in memory at a time besides the best so far."""
    best = share(BACKGROUND)
    out = np.full(best.shape, BACKGROUND, dtype=np.uint8)
    for c in range(NUM_CLASSES):
        if c == BACKGROUND:
            continue
        current = share(c)
        wins = current > best
        out[wins] = c
        best = np.where(wins, current, best)
    return out


def apply_labels(
    labels: npt.NDArray[np.generic], geometry: Geometry, interpolation: str = "nearest"
) -> npt.NDArray[np.uint8]:
    """Resample (``interpolation``, see the module), crop and order labels ``(X, Y, Z)``; returns
    ``(Z, S, S)`` uint8."""
    method = check_label_interpolation(interpolation)
    lab = as_label_map(np.asarray(labels), what="labels")  # before the work: a bad map fails at once
    out = _resample_labels(lab, method, lambda v, order, fill: _forward(v, geometry, order=order, fill=fill))
    return np.ascontiguousarray(_to_stack(out, geometry), dtype=np.uint8)


def restore_labels(
    stack: npt.NDArray[np.generic], geometry: Geometry, interpolation: str = "nearest"
) -> npt.NDArray[np.uint8]:
    """Inverse of :func:`apply_labels`: ``(Z, S, S)`` labels back to the native ``(X, Y, Z)`` grid,
    resampled by ``interpolation`` (use the one they were made with).

    Native pixels outside the crop are background.
    """
    method = check_label_interpolation(interpolation)
    lab = as_label_map(np.asarray(stack), what="processed labels")
    volume = _from_stack(lab, geometry)
    return _resample_labels(volume, method, lambda v, order, fill: _backward(v, geometry, order, fill))


def _backward(
    volume: npt.NDArray[np.floating[Any]],
    geometry: Geometry,
    order: int,
    fill: float,
    box: tuple[slice, slice] | None = None,
) -> npt.NDArray[np.float64]:
    """Inverse of :func:`_forward`: a processed ``(S, S, Z)`` volume onto the native grid (``fill``
    outside the crop); with ``box`` (native X and Y index ranges) only that part of it."""
    sx, sy = geometry.scale
    # native index i -> processed index (i + 0.5) / scale - 0.5 - start
    offset = [0.5 / sx - 0.5 - geometry.crop_start[0], 0.5 / sy - 0.5 - geometry.crop_start[1], 0.0]
    shape = geometry.native_shape
    if box is not None:
        offset[0] += box[0].start / sx
        offset[1] += box[1].start / sy
        shape = (box[0].stop - box[0].start, box[1].stop - box[1].start, shape[2])
    out: npt.NDArray[np.float64] = ndimage.affine_transform(
        np.asarray(volume, dtype=np.float64),
        matrix=(1.0 / sx, 1.0 / sy, 1.0),
        offset=offset,
        output_shape=shape,
        order=order,
        mode="constant",
        cval=fill,
    )
    return out


def _crop_box(geometry: Geometry) -> tuple[slice, slice]:
    """The native X and Y index ranges that a linear :func:`_backward` can give anything but its fill:
    processed coordinates within one pixel of the crop (a margin of one native pixel besides)."""
    ranges = []
    for start, scale, size in zip(
        geometry.crop_start, geometry.scale, geometry.native_shape[:2], strict=True
    ):
        lo = int(np.floor((start - 0.5) * scale - 0.5)) - 1
        hi = int(np.ceil((geometry.crop_size + start + 0.5) * scale - 0.5)) + 2
        ranges.append(slice(min(max(lo, 0), size), min(max(hi, 0), size)))
    return ranges[0], ranges[1]


def restore_probabilities(
    probabilities: npt.NDArray[np.generic],
    geometry: Geometry,
    labels: npt.NDArray[np.generic] | None = None,
) -> npt.NDArray[np.uint8]:
    """Class probabilities ``(Z, C, S, S)`` of a processed stack to native ``(X, Y, Z)`` labels:
    each class's share interpolated linearly onto the native grid and the largest share taken
    there (ties go to the lower label; outside the crop every share is background's).

    Why: a decoder's argmax draws the heart on the 1.5 mm grid, and resampling those labels draws it
    a second time on the native grid, where nearest neighbour repeats whole pixel rows and a wall
    maximum finds them; the probabilities hold where the boundary lies between pixels, so one
    rasterisation on the native grid keeps it (``reports/synthesis-phantom-v2/cohort/soft_restore.txt``).
    Floating-point probabilities sum to 1; integer ones to their dtype's maximum (``uint8``
    probabilities times 255, :class:`cardiosynth.synthesis.stages.Decoded`).

    ``labels`` ``(Z, S, S)``: the stack's labels after any correction (a clean-up that removed an
    island or filled a hole); where a pixel's label is not its largest share, the pixel is restored
    as its label (its share set to one class), so the native labels never bring back what was
    corrected. Where every processed pixel around a native one holds the same label, the native
    pixel gets that label (a convex combination keeps the largest share).
    """
    probs = np.asarray(probabilities)
    size = geometry.crop_size
    if probs.ndim != 4 or probs.shape[1] != NUM_CLASSES or probs.shape[2:] != (size, size):
        raise ValueError(
            f"expected probabilities (Z, {NUM_CLASSES}, {size}, {size}), got shape {probs.shape}"
        )
    if not np.issubdtype(probs.dtype, np.number) or np.issubdtype(probs.dtype, np.complexfloating):
        raise ValueError(f"probabilities must be real numbers, got dtype {probs.dtype}")
    scale = float(np.iinfo(probs.dtype).max) if np.issubdtype(probs.dtype, np.integer) else 1.0
    shares = probs.astype(np.float32)
    if labels is not None:
        lab = as_label_map(np.asarray(labels), what="processed labels")
        if lab.shape != (probs.shape[0], size, size):
            raise ValueError(f"labels of shape {lab.shape} for probabilities of shape {probs.shape}")
        corrected = np.argmax(shares, axis=1) != lab
        if corrected.any():
            shares = np.where(corrected[:, None], one_hot(lab) * np.float32(scale), shares)
    # Only where the crop reaches is there work: outside it every share is background's (the native
    # field of view is often twice the crop's width, four times its area).
    box = _crop_box(geometry)
    out = np.full(geometry.native_shape, BACKGROUND, dtype=np.uint8)
    out[box] = _largest_share(
        lambda c: _backward(_from_stack(shares[:, c], geometry), geometry, 1, scale * (c == BACKGROUND), box)
    )
    return out


def restore_image(
    stack: npt.NDArray[np.floating[Any]], geometry: Geometry, window: tuple[float, float] | None = None
) -> npt.NDArray[np.float32]:
    """Inverse of :func:`apply_image` (linear): ``(Z, S, S)`` in [-1, 1] back to ``(X, Y, Z)``.

    With ``window`` the intensities are mapped back to the native scale; outside the crop the value
    is the window's low end (or -1). Written outputs use :func:`composite_image` instead.
    """
    out = _backward(_from_stack(np.asarray(stack, dtype=np.float64), geometry), geometry, 1, -1.0)
    if window is not None:
        lo, hi = window
        out = (out + 1.0) * 0.5 * (hi - lo) + lo
    restored: npt.NDArray[np.float32] = out.astype(np.float32)
    return restored


def crop_weight(geometry: Geometry, feather_mm: float = FEATHER_MM) -> npt.NDArray[np.float64]:
    """Blending weight of the synthetic crop per native pixel, ``(X, Y)`` in [0, 1].

    0 outside the crop, 1 deeper than ``feather_mm`` inside it, and a smoothstep ramp
    (``3t² - 2t³``: no kink at either end) in between, by the distance in mm from the outermost
    crop pixel centres. The ramp starts at those centres because linear interpolation beyond them
    mixes in the constant fill of :func:`restore_image`.

    Raises:
        ValueError: ``feather_mm`` negative.
    """
    if not feather_mm >= 0:
        raise ValueError(f"feather_mm must be >= 0, got {feather_mm}")
    sx, sy = geometry.scale
    last = geometry.crop_size - 1
    # native index i -> processed continuous index (i + 0.5) / scale - 0.5 - start (as restore_*)
    u = (np.arange(geometry.native_shape[0]) + 0.5) / sx - 0.5 - geometry.crop_start[0]
    v = (np.arange(geometry.native_shape[1]) + 0.5) / sy - 0.5 - geometry.crop_start[1]
    inside_mm = np.minimum(np.minimum(u, last - u)[:, None], np.minimum(v, last - v)[None, :])
    inside_mm = inside_mm * geometry.target_spacing
    if feather_mm == 0:
        hard: npt.NDArray[np.float64] = (inside_mm >= 0).astype(np.float64)
        return hard
    t = np.clip(inside_mm / feather_mm, 0.0, 1.0)
    weight: npt.NDArray[np.float64] = t * t * (3.0 - 2.0 * t)
    return weight


def heart_weight(
    region: npt.NDArray[np.bool_],
    spacing: tuple[float, float],
    margin_mm: float = HEART_MARGIN_MM,
    feather_mm: float = FEATHER_MM,
) -> npt.NDArray[np.float64]:
    """Blending weight of the synthetic image around the heart, ``(X, Y, Z)`` in [0, 1].

    Per slice, by the in-plane distance ``d`` (mm, ``spacing`` along X and Y) from ``region``
    ``(X, Y, Z)`` (the heart): 1 for ``d <= margin_mm``, 0 beyond ``margin_mm + feather_mm``, the
    smoothstep ramp of :func:`crop_weight` between. A slice without any of ``region`` is 0 throughout.

    Raises:
        ValueError: ``region`` not 3D, a non-positive spacing, or a negative margin or feather.
    """
    mask = np.asarray(region, dtype=bool)
    if mask.ndim != 3:
        raise ValueError(f"region must be (X, Y, Z), got shape {mask.shape}")
    if not (spacing[0] > 0 and spacing[1] > 0):
        raise ValueError(f"spacing must be positive, got {spacing}")
    if not margin_mm >= 0:
        raise ValueError(f"margin_mm must be >= 0, got {margin_mm}")
    if not feather_mm >= 0:
        raise ValueError(f"feather_mm must be >= 0, got {feather_mm}")
    weight = np.zeros(mask.shape, dtype=np.float64)
    if not mask.any():
        return weight
    # Distances only where the weight can be non-zero: the region's bounding box grown by the reach
    # (every region pixel lies inside it, so the distances there are exact); 4x less work on a slice.
    xs, ys = np.nonzero(mask.any(axis=2))
    reach = margin_mm + feather_mm
    px, py = int(np.ceil(reach / spacing[0])) + 1, int(np.ceil(reach / spacing[1])) + 1
    x0, x1 = max(int(xs.min()) - px, 0), min(int(xs.max()) + px + 1, mask.shape[0])
    y0, y1 = max(int(ys.min()) - py, 0), min(int(ys.max()) + py + 1, mask.shape[1])
    for k in range(mask.shape[2]):
        window = mask[x0:x1, y0:y1, k]
        if not window.any():
            continue
        d = ndimage.distance_transform_edt(~window, sampling=spacing)
        if feather_mm == 0:
            weight[x0:x1, y0:y1, k] = d <= margin_mm
            continue
        t = np.clip(1.0 - (d - margin_mm) / feather_mm, 0.0, 1.0)
        weight[x0:x1, y0:y1, k] = t * t * (3.0 - 2.0 * t)
    return weight


def composite_image(
    stack: npt.NDArray[np.floating[Any]],
    geometry: Geometry,
    base_image: npt.NDArray[np.generic],
    window: tuple[float, float],
    *,
    feather_mm: float = FEATHER_MM,
    region: npt.NDArray[np.bool_] | None = None,
    margin_mm: float = HEART_MARGIN_MM,
) -> npt.NDArray[np.float32]:
    """A synthetic ``(Z, S, S)`` image stack in [-1, 1] composited into the base subject's native
    image ``(X, Y, Z)`` (same phase) with a feathered seam; returns ``(X, Y, Z)`` float32 on the
    native grid, on the base's intensity scale (``window`` maps [-1, 1] back, as in
    :func:`restore_image`). Without ``region`` the whole crop is kept (ramp inside its border); with
    ``region`` ``(X, Y, Z)`` (the heart: the synthetic labels and the base's own, foreground) only
    the part within ``margin_mm`` of it, ramped over ``feather_mm`` beyond (:func:`heart_weight`),
    and never outside the crop. See the module docstring for why.

    Raises:
        ValueError: ``base_image`` or ``region`` not of the geometry's native shape, a bad stack,
            ``feather_mm`` or ``margin_mm``.
    """
    base = np.asarray(base_image, dtype=np.float64)
    if base.shape != geometry.native_shape:
        raise ValueError(f"base image shape {base.shape} differs from the geometry's {geometry.native_shape}")
    if region is not None and np.shape(region) != geometry.native_shape:
        shape = np.shape(region)
        raise ValueError(f"region shape {shape} differs from the geometry's {geometry.native_shape}")
    synthetic = restore_image(stack, geometry, window).astype(np.float64)
    weight = crop_weight(geometry, feather_mm)[:, :, None]
    if region is not None:
        weight = weight * heart_weight(region, geometry.native_spacing, margin_mm, feather_mm)
    out: npt.NDArray[np.float32] = (weight * synthetic + (1.0 - weight) * base).astype(np.float32)
    return out


def one_hot(stack: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
    """``(Z, S, S)`` labels to ``(Z, 4, S, S)`` one-hot float32 (model input)."""
    lab = as_label_map(np.asarray(stack), what="labels")
    out: npt.NDArray[np.float32] = np.eye(NUM_CLASSES, dtype=np.float32)[lab].transpose(0, 3, 1, 2)
    return np.ascontiguousarray(out)


PHASE_NAMES = ("ED", "ES")


@dataclass(frozen=True)
class PhaseStacks:
    """One phase of a subject on the model grid: ``(Z, S, S)`` stacks, base slice first, and the
    intensity window that maps the image back to the native scale."""

    image: npt.NDArray[np.float32]
    label: npt.NDArray[np.uint8]
    window: tuple[float, float]


@dataclass(frozen=True)
class PreprocessedSubject:
    """A subject on the model grid: its phases keyed by name (``ED``, ``ES``) on one geometry.

    One mapping instead of six parallel ``ed_*``/``es_*`` fields, so code that handles a phase reads
    ``phases[phase]`` rather than choosing between two fields; the old names remain as read-only
    properties for the callers that name one phase."""

    subject_id: str
    geometry: Geometry
    phases: dict[str, PhaseStacks]
    label_interpolation: str = "nearest"  # how the labels were resampled; restore them the same way

    def __post_init__(self) -> None:
        check_label_interpolation(self.label_interpolation)
        if set(self.phases) != set(PHASE_NAMES):
            raise ValueError(f"{self.subject_id}: phases must be {PHASE_NAMES}, got {tuple(self.phases)}")

    def phase(self, name: str) -> PhaseStacks:
        """The stacks of phase ``name``; ``ValueError`` naming it when it is not ED or ES."""
        if name not in self.phases:
            raise ValueError(f"phase must be one of {PHASE_NAMES}, got {name!r}")
        return self.phases[name]

    @property
    def ed_image(self) -> npt.NDArray[np.float32]:
        return self.phases["ED"].image

    @property
    def ed_label(self) -> npt.NDArray[np.uint8]:
        return self.phases["ED"].label

    @property
    def es_image(self) -> npt.NDArray[np.float32]:
        return self.phases["ES"].image

    @property
    def es_label(self) -> npt.NDArray[np.uint8]:
        return self.phases["ES"].label

    @property
    def ed_window(self) -> tuple[float, float]:
        return self.phases["ED"].window

    @property
    def es_window(self) -> tuple[float, float]:
        return self.phases["ES"].window


def preprocess_subject(
    subject: Subject,
    *,
    slice_order: SliceOrder = "auto",
    target_spacing: float = TARGET_SPACING_MM,
    crop_size: int = CROP_SIZE,
    label_interpolation: str = "nearest",
) -> PreprocessedSubject:
    """Preprocess both phases of ``subject`` on one geometry (the crop centred on both phases' hearts);
    labels resampled by ``label_interpolation`` (see the module)."""
    geometry = plan_geometry(
        [subject.ed_label, subject.es_label],
        subject.affine,
        slice_order=slice_order,
        target_spacing=target_spacing,
        crop_size=crop_size,
    )
    phases = {}
    for name, image, label in (
        ("ED", subject.ed_image, subject.ed_label),
        ("ES", subject.es_image, subject.es_label),
    ):
        stack, window = apply_image(image, geometry)
        phases[name] = PhaseStacks(stack, apply_labels(label, geometry, label_interpolation), window)
    return PreprocessedSubject(subject.subject_id, geometry, phases, label_interpolation)
