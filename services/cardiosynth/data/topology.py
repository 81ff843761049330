"""Label topology: a clean-up of decoded label stacks, and a count of what it fixes.

A VAE decodes each short-axis slice on its own, so its argmax labels can hold what no heart has:
a few RV voxels floating in the background, a pocket of background inside the myocardium, an LV
cavity that touches the background or the RV through a gap in the myocardium. Biomarkers (volumes,
wall thickness, regional contraction) and any segmenter trained on the output inherit them.

:func:`clean_labels` works on a processed stack ``(Z, S, S)`` of ACDC labels (0 background, 1 RV
cavity, 2 LV myocardium, 3 LV cavity), slice 0 first, and applies, in this order:

1. **Largest 3D component per class.** For each of RV, myocardium and LV cavity, only the largest
   3D connected component is kept; every smaller one (an *island*) takes the label that surrounds
   it most, counted over its in-plane border (the 8 in-plane neighbours of its voxels, because the
   slices are 5-10 mm apart while pixels are 1.5 mm: the next slice is not a neighbour in the same
   sense). A heart has one RV, one myocardium and one LV cavity; everything else is decoder noise.
   The myocardium is the one exception to "largest component of its own label": its components
   are kept when they belong to the largest component of the LV as a solid (myocardium plus
   cavity), because the apical cap (a disc of myocardium on the slice below the last cavity
   slice) touches the rest of the wall only through the cavity above it in a stack of thick
   slices; taken alone it is a separate component in most real and phantom hearts, and removing
   it would delete anatomy (44-196 voxels in the phantom).
   Connectivity is 26 by default (voxels touching by a face, an edge or a corner are connected):
   with thick slices the heart shifts by a pixel or two from slice to slice, and a structure that
   continues diagonally into the next slice is the same structure, so 6-connectivity would cut
   real anatomy (the apical RV, a thin basal wall) into "islands" and delete it.
2. **Holes filled per slice.** In each slice, background enclosed by the heart (not connected to
   the slice's edge) takes its most frequent neighbouring label; any pixel of another label
   enclosed by the LV cavity becomes LV cavity (ACDC labels papillary muscles and trabeculae as
   cavity), and likewise inside the RV cavity. Holes are a 2D notion here because a short-axis
   slice is what is drawn and measured; through-plane "holes" are the normal base and apex.
3. **LV cavity closed by myocardium.** LV cavity pixels with a background or RV pixel among their
   8 in-plane neighbours become myocardium, so that in every slice the cavity is surrounded by a
   closed ring (closed for 4- and 8-connectivity alike): in a short-axis slice the LV blood pool
   is always bounded by the wall, and an open ring makes wall thickness and mass undefined there.
   The ring is one pixel (1.5 mm) wide where it was missing. Through-plane contacts (cavity above
   background at the base or apex) are anatomy and left alone.

Steps 2 and 3 can create new small components (a closed ring can cut off a sliver of cavity), so
the three steps repeat until nothing changes (at most :data:`MAX_PASSES` times). A clean heart
passes through unchanged.

:func:`topology_errors` counts, with the same connectivity, what the clean-up removes: components
and islands per class (3D), fragments per class (extra 2D components within a slice), holes per
slice, and LV-cavity pixels in contact with background or RV in-plane. The evaluation reports them
for real, synthetic and cleaned stacks alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from cardiosynth.data.labels import BACKGROUND, LV_CAVITY, LV_MYOCARDIUM, NUM_CLASSES, RV_CAVITY, as_label_map

Connectivity = Literal[6, 26]

CLASSES: Final = (RV_CAVITY, LV_MYOCARDIUM, LV_CAVITY)
MAX_PASSES: Final = 4
# In-plane neighbourhoods as 3D structures (no through-plane extent).
_IN_PLANE_8: Final = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE_8[1] = True
_IN_PLANE_4: Final = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE_4[1] = ndimage.generate_binary_structure(2, 1)

LabelStack = npt.NDArray[np.uint8]


def _structure(connectivity: Connectivity) -> npt.NDArray[np.bool_]:
    if connectivity not in (6, 26):
        raise ValueError(f"connectivity must be 6 or 26, got {connectivity!r}")
    out: npt.NDArray[np.bool_] = ndimage.generate_binary_structure(3, 1 if connectivity == 6 else 3)
    return out


def _check(stack: npt.NDArray[np.generic]) -> LabelStack:
    if np.ndim(stack) != 3:
        raise ValueError(f"expected a label stack (Z, S, S), got shape {np.shape(stack)}")
    return as_label_map(np.asarray(stack), what="label stack")


def _components(
    mask: npt.NDArray[np.bool_], structure: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[Any], int]:
    labelled, count = ndimage.label(mask, structure=structure)
    return labelled, int(count)


def _grow(box: tuple[slice, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    """``box`` (from ``find_objects``) widened by one pixel in-plane, clipped to ``shape``."""
    z, a, b = box
    return (
        z,
        slice(max(a.start - 1, 0), min(a.stop + 1, shape[1])),
        slice(max(b.start - 1, 0), min(b.stop + 1, shape[2])),
    )


def _majority_neighbour(labels: LabelStack, region: npt.NDArray[np.bool_], exclude: int) -> int:
    """The most frequent label on the in-plane border of ``region`` (ties: the lower label), never
    ``exclude``; background when the border holds nothing else (e.g. the region fills the image)."""
    border = ndimage.binary_dilation(region, structure=_IN_PLANE_8) & ~region
    counts = np.bincount(labels[border], minlength=NUM_CLASSES)
    counts[exclude] = 0
    return int(np.argmax(counts)) if counts.any() else BACKGROUND


def _island_ids(
    labels: LabelStack, value: int, structure: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[Any], list[int]]:
    """The 3D components of ``value`` and the ids of those that are islands (see step 1)."""
    labelled, count = _components(labels == value, structure)
    if count < 2:
        return labelled, []
    if value == LV_MYOCARDIUM:
        solid, solid_count = _components((labels == LV_MYOCARDIUM) | (labels == LV_CAVITY), structure)
        main = int(np.argmax(np.bincount(solid.ravel(), minlength=solid_count + 1)[1:])) + 1
        # each myocardial component lies inside one solid component: keep those of the main one
        first = ndimage.labeled_comprehension(solid, labelled, np.arange(1, count + 1), np.max, np.int64, 0)
        return labelled, [i + 1 for i in range(count) if first[i] != main]
    sizes = np.bincount(labelled.ravel(), minlength=count + 1)[1:]
    keep = int(np.argmax(sizes)) + 1
    # smallest first, each seeing the islands already reassigned around it
    return labelled, [int(i) + 1 for i in np.argsort(sizes, kind="stable") if int(i) + 1 != keep]


def _keep_largest(labels: LabelStack, structure: npt.NDArray[np.bool_]) -> LabelStack:
    out = labels.copy()
    for value in CLASSES:
        labelled, islands = _island_ids(out, value, structure)
        if not islands:
            continue
        boxes = ndimage.find_objects(labelled)
        for component in islands:
            box = _grow(boxes[component - 1], out.shape)
            island = labelled[box] == component
            sub = out[box]
            sub[island] = _majority_neighbour(sub, island, exclude=value)
    return out


def _fill_slices(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """``ndimage.binary_fill_holes`` of every slice of a stack ``(Z, S, S)``, in one call: the
    4-connected components of each slice's outside (an in-plane structure keeps slices apart) that
    do not reach that slice's edges are its holes. One labelling pass instead of the iterated
    dilation of ``binary_fill_holes``."""
    outside, _ = ndimage.label(~mask, structure=_IN_PLANE_4)
    edges = np.concatenate([outside[:, 0], outside[:, -1], outside[:, :, 0], outside[:, :, -1]], axis=None)
    reaches_edge = np.zeros(int(outside.max()) + 1, dtype=bool)  # by region id: a lookup, not isin's sort
    reaches_edge[edges] = True
    holes = (outside > 0) & ~reaches_edge[outside]
    filled: npt.NDArray[np.bool_] = mask | holes
    return filled


def _fill_holes(labels: LabelStack) -> LabelStack:
    """Per slice (all slices at once; each slice only ever sees itself): pixels enclosed by a cavity
    join it, then each hole in the heart takes its most frequent non-background neighbour."""
    out = labels.copy()
    for value in (LV_CAVITY, RV_CAVITY):
        cavity = out == value
        out[_fill_slices(cavity) & ~cavity] = value
    heart = out != BACKGROUND
    holes, _ = ndimage.label(_fill_slices(heart) & ~heart, structure=_IN_PLANE_4)
    # In slice order, and within a slice in label order, each seeing the holes filled before it.
    for h, box in enumerate(ndimage.find_objects(holes), start=1):
        if box is None:
            continue
        grown = _grow(box, out.shape)
        hole = holes[grown] == h
        sub = out[grown]
        border = ndimage.binary_dilation(hole, structure=_IN_PLANE_8) & ~hole
        counts = np.bincount(sub[border], minlength=NUM_CLASSES)
        counts[BACKGROUND] = 0
        sub[hole] = int(np.argmax(counts))
    return out


def _lv_contacts(labels: LabelStack) -> npt.NDArray[np.bool_]:
    """LV cavity pixels with background or RV among their 8 in-plane neighbours."""
    outside = (labels == BACKGROUND) | (labels == RV_CAVITY)
    touching: npt.NDArray[np.bool_] = (labels == LV_CAVITY) & ndimage.binary_dilation(
        outside, structure=_IN_PLANE_8
    )
    return touching


def _close_ring(labels: LabelStack) -> LabelStack:
    out = labels.copy()
    out[_lv_contacts(labels)] = LV_MYOCARDIUM
    return out


def clean_labels(stack: npt.NDArray[np.generic], *, connectivity: Connectivity = 26) -> LabelStack:
    """The clean-up of the module docstring on a label stack ``(Z, S, S)``; returns a new uint8 stack.

    Raises:
        ValueError: not 3D, labels outside {0, 1, 2, 3}, or a connectivity other than 6 or 26.
    """
    labels = _check(stack)
    structure = _structure(connectivity)
    out = labels.copy()
    # Work on the heart's in-plane bounding box with a one-pixel margin, not the whole field (a 128 x
    # 128 slice is mostly background): exactly the same result, since no step grows the heart beyond
    # its extent and, outside the box, background is one region that reaches the image border, as the
    # margin does (holes and neighbours are judged the same). Several times faster.
    ys, xs = np.nonzero(labels.any(axis=0))
    if len(ys) == 0:
        return out
    box = (
        slice(None),
        slice(max(int(ys.min()) - 1, 0), int(ys.max()) + 2),
        slice(max(int(xs.min()) - 1, 0), int(xs.max()) + 2),
    )
    out[box] = _clean(labels[box], structure)
    return out


def _clean(labels: LabelStack, structure: npt.NDArray[np.bool_]) -> LabelStack:
    out = labels.copy()
    for _ in range(MAX_PASSES):
        cleaned = _close_ring(_fill_holes(_keep_largest(out, structure)))
        if np.array_equal(cleaned, out):
            break
        out = cleaned
    return out


@dataclass(frozen=True)
class TopologyErrors:
    """Topology counts of one label stack. Per-class dicts are keyed by label value (1, 2, 3).

    ``components``: 3D connected components of each label alone; ``islands``: those that the
    clean-up reassigns (beyond the largest; for the myocardium, outside the LV solid's largest
    component, so an apical cap is no island) and ``island_voxels`` their size; ``fragments``:
    2D components beyond the largest within a slice, summed over slices (4- or 8-connected
    in-plane, matching 6 or 26 in 3D); ``holes``: enclosed regions per slice (background inside the
    heart, other labels inside a cavity); ``lv_contacts``: LV cavity pixels touching background or
    RV in-plane.
    """

    components: dict[int, int]
    islands: dict[int, int]
    island_voxels: dict[int, int]
    fragments: dict[int, int]
    holes: int
    lv_contacts: int

    @property
    def total(self) -> int:
        """Islands + holes + LV contacts (0 for a clean stack; fragments are not errors in 3D)."""
        return sum(self.islands.values()) + self.holes + self.lv_contacts

    def to_dict(self) -> dict[str, Any]:
        return {
            "components": {str(k): v for k, v in self.components.items()},
            "islands": {str(k): v for k, v in self.islands.items()},
            "island_voxels": {str(k): v for k, v in self.island_voxels.items()},
            "fragments": {str(k): v for k, v in self.fragments.items()},
            "holes": self.holes,
            "lv_contacts": self.lv_contacts,
            "total": self.total,
        }


def topology_errors(stack: npt.NDArray[np.generic], *, connectivity: Connectivity = 26) -> TopologyErrors:
    """Count the topology errors of a label stack ``(Z, S, S)`` (see :class:`TopologyErrors`).

    Raises:
        ValueError: as :func:`clean_labels`.
    """
    labels = _check(stack)
    structure = _structure(connectivity)
    in_plane = structure[1]  # the matching 2D neighbourhood: 4 for 6-connectivity, 8 for 26
    components: dict[int, int] = {}
    islands: dict[int, int] = {}
    island_voxels: dict[int, int] = {}
    fragments: dict[int, int] = {}
    for value in CLASSES:
        labelled, ids = _island_ids(labels, value, structure)
        components[value] = int(labelled.max())
        islands[value] = len(ids)
        island_voxels[value] = int(np.isin(labelled, ids).sum()) if ids else 0
        fragments[value] = sum(
            max(ndimage.label(labels[k] == value, structure=in_plane)[1] - 1, 0)
            for k in range(labels.shape[0])
        )
    holes = 0
    for k in range(labels.shape[0]):
        sl = labels[k]
        heart = sl != BACKGROUND
        holes += ndimage.label(ndimage.binary_fill_holes(heart) & ~heart)[1]
        for value in (LV_CAVITY, RV_CAVITY):
            cavity = sl == value
            # background pockets in a cavity are holes of the heart already: counted once
            holes += ndimage.label(ndimage.binary_fill_holes(cavity) & ~cavity & heart)[1]
    return TopologyErrors(
        components=components,
        islands=islands,
        island_voxels=island_voxels,
        fragments=fragments,
        holes=int(holes),
        lv_contacts=int(_lv_contacts(labels).sum()),
    )
