"""Version-2 rendering of one phase: shifted slices, organ texture, flow voids, bSSFP artefacts.

Version 1 renders in :func:`cardiosynth.data.phantom.generator._render_phase`, frozen. This module
renders a subject whose :attr:`SubjectParams.variation` is set (see :mod:`.variation`):

- each slice is drawn at its own in-plane shift (breath-hold misregistration and a tilt of the
  long axis against the stack), labels and image alike;
- the heart is drawn with the fast (tabulated) boundary radii, which keeps 100 subjects within the
  time budget with the extra anatomy;
- body organs come from :func:`.appearance.body_organs` (sternum, breasts, stomach, liver dome);
- every tissue carries texture (:func:`.appearance.textured`); basal blood has a flow void (the
  outflow jet at ES, the mitral inflow at ED); the blood pool ghosts along the phase-encoding axis;
  off-resonance bands darken the image where the phase per TR is half a cycle; the Rician noise is
  amplified toward the centre as with parallel imaging (g-factor).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from cardiosynth.data.labels import BACKGROUND, LV_CAVITY, RV_CAVITY
from cardiosynth.data.phantom.anatomy import HeartShape, Phase
from cardiosynth.data.phantom.appearance import (
    N_ORGANS,
    STYLES,
    banding,
    bias_field,
    body_organs,
    g_factor,
    ghosts,
    organ_lut,
    rician,
    textured,
)
from cardiosynth.data.phantom.tissues import (
    TISSUE_TO_LABEL,
    PolarGrid,
    RadiiTable,
    Tissue,
    heart_reach,
    heart_tissues,
)

if TYPE_CHECKING:
    from cardiosynth.data.phantom.params import SubjectParams

INPLANE_SUPERSAMPLING = 2  # per axis, for partial volume at tissue boundaries
THROUGH_PLANE_SAMPLES = 3  # across the slice thickness
VOID_DEPTH_FRACTION = 0.3  # flow voids in the basal 30 % of the cavity
SPECK_PIXELS = 12  # RV fragments smaller than this beside a larger one are not labelled


def _heart_extent(params: SubjectParams, shape: HeartShape) -> float:
    """A bound (mm) on the heart's in-plane reach from the LV axis, atria included."""
    extras = params.extras
    e_max = max(abs(shape.ellipticity), abs(shape.ellipticity + shape.ellipticity_slope))
    a1, _, a2, _ = shape.thickness_wave
    wall = shape.wall_thickness * (1.0 + max(shape.septal_extra, 0.0) + max(shape.apical_extra, 0.0))
    reach = (
        shape.lv_radius * (1.0 + e_max) * (1.0 + 0.5 * abs(shape.taper))
        + wall * (1.0 + abs(a1) + abs(a2)) * 1.3  # ES thickening
        + max(shape.rv_height_ed, shape.rv_height_es)
        + extras.rv_wall
        + extras.fat_base
        + extras.fat_extra
    )
    atria = extras.atria
    if atria is not None:
        reach = max(
            reach,
            atria.la_offset + atria.la_radius + atria.wall,
            atria.ra_offset + atria.ra_radius + atria.wall,
            atria.aorta_offset + atria.aorta_radius + atria.wall,
        )
    return reach + 2.0 * params.acquisition.pixel_spacing


def _without_specks(labels: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """``labels`` (one slice) without RV fragments of a few pixels beside the main crescent.

    Where the RV crescent thins to its apical tip the pixel grid can cut it into specks; no
    annotator draws those, and with the slices shifted against each other they would stand alone
    as extra 3D components.
    """
    rv = labels == RV_CAVITY
    components, count = ndimage.label(rv, structure=np.ones((3, 3), dtype=bool))
    if count < 2:
        return labels
    sizes = np.bincount(components.ravel())[1:]
    specks = np.flatnonzero((sizes < SPECK_PIXELS) & (sizes < sizes.max())) + 1
    if specks.size:
        labels = labels.copy()
        labels[np.isin(components, specks)] = BACKGROUND
    return labels


def _flow_void(
    image: npt.NDArray[np.float64],
    codes: npt.NDArray[np.int8],
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    params: SubjectParams,
    shape: HeartShape,
    depth: float,
    phase: Phase,
) -> None:
    """Darken basal blood where a jet dephases it: the outflow tract at ES, the mitral inflow at ED."""
    variation = params.variation
    outflow = params.extras.outflow
    if variation is None or outflow is None or variation.artefacts.void_strength <= 0.0:
        return
    heart_depth = shape.heart_depth(depth, phase)
    reach = VOID_DEPTH_FRACTION * shape.lv_length
    if not 0.0 <= heart_depth < reach:
        return
    angle = outflow.angle if phase == "ES" else outflow.angle + math.pi
    r_c, _ = shape.lv_radii(np.array([angle]), depth, phase)
    rho = (0.6 if phase == "ES" else 0.45) * float(r_c[0])
    cx, cy = rho * math.cos(angle), rho * math.sin(angle)
    blood = (codes == Tissue.LV_BLOOD) | (codes == Tissue.OTHER_BLOOD)
    radius = variation.artefacts.void_radius
    weight = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2.0 * radius * radius))
    strength = variation.artefacts.void_strength * (1.0 - heart_depth / reach)
    image[blood] *= 1.0 - strength * weight[blood]


def _render_heart(
    params: SubjectParams,
    shape: HeartShape,
    phase: Phase,
    bx: npt.NDArray[np.float64],
    by: npt.NDArray[np.float64],
    depth: float,
    depths: list[float],
    tables: list[RadiiTable],
    body: npt.NDArray[np.float64],
    labels: npt.NDArray[np.uint8],
    classes: npt.NDArray[np.int16],
    organs: npt.NDArray[np.int8],
    lut: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Partial-volume image of the heart region ``(bx, by)`` (heart frame, mm) of the slice at
    ``depth``, sampled at ``depths`` across the slice (``tables``: their radii); writes the slice's
    ``labels`` and ``classes`` there. ``body``/``organs``: the body model at the pixel centres."""
    px = params.acquisition.pixel_spacing
    offsets = (np.arange(INPLANE_SUPERSAMPLING) + 0.5) / INPLANE_SUPERSAMPLING - 0.5
    # The pixel centres (labels) and the in-plane sub-samples as one stack of layers: one polar grid
    # and one call per depth instead of one per sub-sample (point by point the same values as
    # drawing each layer on its own).
    layers_x = np.stack([bx] + [bx + ox * px for ox in offsets for _ in offsets])
    layers_y = np.stack([by] + [by + oy * px for _ in offsets for oy in offsets])
    grid = PolarGrid.of(layers_x, layers_y)
    samples = grid.layers(slice(1, None))
    codes = None
    subs = []
    for dd, table in zip(depths, tables, strict=True):
        if dd == depth:  # the labels' depth: the pixel centres go with the sub-samples
            both = heart_tissues(
                shape, params.extras, layers_x, layers_y, dd, phase, fast=True, grid=grid, table=table
            )
            codes, sub = both[0], both[1:]
        else:
            sub = heart_tissues(
                shape,
                params.extras,
                layers_x[1:],
                layers_y[1:],
                dd,
                phase,
                fast=True,
                grid=samples,
                table=table,
            )
        subs.append(np.where(sub == Tissue.NONE, body, lut[sub]))
    if codes is None:
        codes = heart_tissues(shape, params.extras, bx, by, depth, phase, fast=True)
    labels[...] = _without_specks(TISSUE_TO_LABEL[codes])
    classes[...] = np.where(codes == Tissue.NONE, organs, N_ORGANS + codes)
    # Summed in the order the sub-samples were always summed (in-plane outer, through-plane inner).
    acc = np.zeros(bx.shape)
    for layer in range(len(offsets) ** 2):
        for values in subs:
            acc += values[layer]
    out = acc / (len(depths) * len(offsets) ** 2)
    _flow_void(out, codes, bx, by, params, shape, depth, phase)
    return out


def render_phase(
    params: SubjectParams, shape: HeartShape, phase: Phase, rng: np.random.Generator
) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.uint8]]:
    """Image (int16) and labels (uint8), ``(X, Y, Z)``, of one phase of a version-2 subject.

    Raises:
        ValueError: ``params`` carries no version-2 variation.
    """
    variation = params.variation
    if variation is None:
        raise ValueError(f"subject of phantom version {params.version} has no version-2 variation to render")
    acq = params.acquisition
    if len(variation.slice_shifts) != acq.n_slices:
        raise ValueError(f"{len(variation.slice_shifts)} slice shifts for {acq.n_slices} slices")
    style = STYLES[params.style]
    artefacts = variation.artefacts
    nx, ny = acq.matrix
    px = acq.pixel_spacing
    # Heart-frame coordinates of pixel centres: x to the image right, y anterior (up on display).
    xs = (np.arange(nx) - (nx - 1) / 2.0) * px - acq.heart_offset[0]
    ys = -(np.arange(ny) - (ny - 1) / 2.0) * px - acq.heart_offset[1]
    x, y = np.meshgrid(xs, ys, indexing="ij")
    # The grid as a column and a row, for the functions that broadcast them.
    col = np.asarray(xs[:, None], dtype=np.float64)
    row = np.asarray(ys[None, :], dtype=np.float64)
    extent = _heart_extent(params, shape)
    offsets = (np.arange(INPLANE_SUPERSAMPLING) + 0.5) / INPLANE_SUPERSAMPLING - 0.5
    through = (np.arange(THROUGH_PLANE_SAMPLES) + 0.5) / THROUGH_PLANE_SAMPLES - 0.5
    lut = style.tissue_lut()
    olut = organ_lut(style)
    n_samples = len(through) * len(offsets) ** 2
    # A pixel whose sub-samples all miss the heart: the sum of n_samples copies of its body value
    # over n_samples, accumulated as _render_heart accumulates (so not always the value itself).
    all_body = np.zeros(len(olut))
    for _ in range(n_samples):
        all_body += olut
    all_body = all_body / n_samples

    image = np.zeros((nx, ny, acq.n_slices))
    labels = np.zeros((nx, ny, acq.n_slices), dtype=np.uint8)
    classes = np.zeros((nx, ny, acq.n_slices), dtype=np.int16)
    for k, depth in enumerate(acq.depths):
        d = float(depth)
        dx, dy = variation.slice_shifts[k]
        # The heart (and body) moved by (dx, dy) in this breath-hold; the body model takes the grid
        # as a column and a row.
        organs = body_organs(params.body, variation.body, col - dx, row - dy, d / shape.epi_length)
        body = olut[organs]
        classes[:, :, k] = organs
        image[:, :, k] = body
        ii = np.flatnonzero(np.abs(xs - dx) < extent)
        jj = np.flatnonzero(np.abs(ys - dy) < extent)
        if ii.size and jj.size:  # the heart lies inside this box; outside it every code is NONE
            box = (slice(ii[0], ii[-1] + 1), slice(jj[0], jj[-1] + 1))
            depths = [d + dz * acq.slice_thickness for dz in through]
            tables = [RadiiTable.at(shape, dd, phase) for dd in depths]
            # Where this slice's heart reaches (far less than the box, which bounds every slice and
            # the atria): pixels of the box beyond it hold only background sub-samples, which sum
            # to ``all_body`` exactly as the loop below sums them.
            reach = max(
                heart_reach(shape, params.extras, dd, phase, t) for dd, t in zip(depths, tables, strict=True)
            )
            image[(*box, k)] = all_body[organs[box]]
            near = reach + px + 1.0  # the sub-samples lie within half a pixel of the centres
            ti = np.flatnonzero(np.abs(xs[box[0]] - dx) < near) + box[0].start
            tj = np.flatnonzero(np.abs(ys[box[1]] - dy) < near) + box[1].start
            if ti.size and tj.size:
                heart = (slice(ti[0], ti[-1] + 1), slice(tj[0], tj[-1] + 1))
                image[(*heart, k)] = _render_heart(
                    params,
                    shape,
                    phase,
                    x[heart] - dx,
                    y[heart] - dy,
                    d,
                    depths,
                    tables,
                    body[heart],
                    labels[(*heart, k)],
                    classes[(*heart, k)],
                    organs[heart],
                    lut,
                )

    image = textured(image, classes, artefacts, rng)
    image = ndimage.gaussian_filter(image, sigma=(style.blur, style.blur, 0.0))
    blood = (labels == LV_CAVITY) | (labels == RV_CAVITY)
    image += ghosts(image, blood, artefacts)
    for k in range(acq.n_slices):
        image[:, :, k] *= banding(col, row, artefacts, k)
    anterior_wall = params.body.torso_centre[1] + params.body.torso_axes[1]
    image *= bias_field((nx, ny), px, style, anterior_wall, y, rng)[:, :, None]
    sigma = style.noise * g_factor((nx, ny), artefacts)[:, :, None]
    image = rician(image, sigma, rng) * style.gain * float(rng.uniform(0.85, 1.15))
    return np.clip(np.rint(image), 0, np.iinfo(np.int16).max).astype(np.int16), labels
