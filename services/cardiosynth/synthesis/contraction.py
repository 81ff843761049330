"""The LV's regional contraction between ED and ES, and its calibration to the class's.

The regional biomarkers split each mid-ventricular slice into six 60° sectors about its ED cavity
centroid (sector 0 toward the RV; :mod:`cardiosynth.data.biomarkers`) and measure each sector's
fractional area change (FAC) of the cavity. An infarct is akinetic: in the phantom's LAD subjects the
infarcted sector keeps a FAC of 0.02 against 0.16-0.27 in the others. The decoder smooths that
regional defect, and the synthetic infarct contracts with a third of the normal FAC (0.07; MINF's
regional heterogeneity 0.70 against the real 0.96: reports/synthesis-phantom-v2/cohort/sector_fac.txt).

The calibration (:class:`ContractionCalibration`) compares the mean sector FACs of a class's real
subjects with those of synthetic subjects made as synthesis makes them, and per sector scales the
synthetic contraction by ``gain = (synthetic + offset) / synthetic``, ``offset`` the real-minus-
synthetic difference shrunk by its standard error (:func:`.motion.shrunk_difference`: zero within
the noise of the two means) and the gain bounded to :data:`GAIN_RANGE`: it takes out contraction the
decoder adds to a sector, never adds any (as the motion calibration takes out motion, never adds it).
On each mid-ventricular ES slice the cavity's sector area becomes ``A_ED - gain (A_ED - A_ES)``
(:func:`widen_sectors`) by an area-preserving radial map about the ED centroid, ``r -> sqrt(r^2 +
delta(theta))``: the phantom's own ES model (its myocardium keeps its area at every angle,
``r_o^2 - r_c^2`` constant), so the wall in a sector that contracts less also thickens less and the
myocardium's area is kept. ``delta`` interpolates linearly between the sectors' centres and is solved
so that each sector gains exactly the wanted area. It is applied on the decoder's class
probabilities before the argmax, after the motion calibration (:mod:`.motion`), so the heart is drawn
once; ED is not touched, nor the basal and apical slices the fit does not see.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from cardiosynth.data.biomarkers import (
    N_SECTORS,
    global_rv_angle,
    regional_contraction,
    sector_areas,
    sector_frame,
)
from cardiosynth.data.labels import LV_CAVITY
from cardiosynth.synthesis.motion import (
    MIN_CAVITY_PIXELS,
    for_subject,
    mid_ventricular,
    phase_pairs,
    shrunk_difference,
)

FloatArray = npt.NDArray[np.float64]

# A sector's contraction is only ever reduced (gain <= 1): what the calibration takes out is the
# decoder's smoothing of a regional defect, which only ever adds contraction to a hypokinetic sector.
GAIN_RANGE = (0.0, 1.0)
_WIDTH = 2.0 * math.pi / N_SECTORS
# Area a unit node of delta(theta) adds to each sector, times 2 / width: the hat interpolation between
# sector centres puts 3/4 of a node's integral in its own sector and 1/8 in each neighbour.
_SPREAD = np.array([[0.75 if i == j else 0.125 if (i - j) % N_SECTORS in (1, N_SECTORS - 1) else 0.0
                     for j in range(N_SECTORS)] for i in range(N_SECTORS)])  # fmt: skip


def sector_contraction(ed: npt.NDArray[np.integer[Any]], es: npt.NDArray[np.integer[Any]]) -> FloatArray:
    """The FAC ``(6,)`` of each sector over the mid-ventricular slices of one subject's ``(Z, S, S)``
    stacks, as the biomarker measures it (:func:`cardiosynth.data.biomarkers.regional_contraction`):
    what the calibration is fitted on.

    Raises:
        ValueError: the stacks differ in shape or are not 3D.
    """
    if np.ndim(ed) != 3 or np.shape(ed) != np.shape(es):
        raise ValueError(f"need two (Z, S, S) stacks of one shape, got {np.shape(ed)} and {np.shape(es)}")
    volumes = (np.moveaxis(np.asarray(ed), 0, 2), np.moveaxis(np.asarray(es), 0, 2))
    fac: FloatArray = regional_contraction(*volumes, (1.0, 1.0, 1.0))
    return fac


@dataclass(frozen=True)
class ContractionCalibration:
    """Mean FAC per sector (:func:`sector_contraction`) of real subjects of a class and of synthetic
    ones made as synthesis makes them, and the shrunk difference that the gains come from."""

    fac_real: tuple[float, ...]
    fac_synthetic: tuple[float, ...]
    offset: tuple[float, ...]  # shrunk real - synthetic, per sector
    subjects_real: int = 0
    subjects_synthetic: int = 0

    def __post_init__(self) -> None:
        values = (*self.fac_real, *self.fac_synthetic, *self.offset)
        lengths = {len(self.fac_real), len(self.fac_synthetic), len(self.offset)}
        if lengths != {N_SECTORS} or not all(math.isfinite(v) for v in values):
            raise ValueError(f"a contraction calibration needs {N_SECTORS} finite values a field, got {self}")

    @property
    def gains(self) -> tuple[float, ...]:
        """Per sector, ``(synthetic + offset) / synthetic`` bounded to :data:`GAIN_RANGE` (1 where the
        synthetic sector does not contract)."""
        return tuple(
            float(np.clip((s + o) / s, *GAIN_RANGE)) if s > 0 else 1.0
            for s, o in zip(self.fac_synthetic, self.offset, strict=True)
        )

    @property
    def moves(self) -> bool:
        """Whether any sector's gain is below 1."""
        return any(g < 1.0 for g in self.gains)

    @classmethod
    def identity(cls) -> ContractionCalibration:
        """The calibration that changes nothing."""
        zero = (0.0,) * N_SECTORS
        return cls(zero, zero, zero)

    @classmethod
    def fit(cls, real: list[FloatArray], synthetic: list[FloatArray]) -> ContractionCalibration:
        """From per-subject sector FACs ``(6,)`` (subjects with a NaN sector are left out).

        Raises:
            ValueError: no subject with every sector measured on either side.
        """
        means = []
        for name, parts in (("real", real), ("synthetic", synthetic)):
            rows = [np.asarray(p, dtype=np.float64).reshape(N_SECTORS) for p in parts]
            rows = [r for r in rows if np.isfinite(r).all()]
            if not rows:
                raise ValueError(f"no {name} subject with every sector's contraction measured")
            means.append(np.stack(rows))
        r, s = means
        offset = shrunk_difference(r, s)
        return cls(tuple(float(v) for v in r.mean(axis=0)), tuple(float(v) for v in s.mean(axis=0)),
                   tuple(float(v) for v in offset), len(r), len(s))  # fmt: skip

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ContractionCalibration:
        """Raises ValueError on anything but :meth:`to_bytes`' output."""
        try:
            raw = json.loads(data.decode())
            return cls(
                fac_real=tuple(float(v) for v in raw["fac_real"]),
                fac_synthetic=tuple(float(v) for v in raw["fac_synthetic"]),
                offset=tuple(float(v) for v in raw["offset"]),
                subjects_real=int(raw["subjects_real"]),
                subjects_synthetic=int(raw["subjects_synthetic"]),
            )
        except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a contraction calibration: {exc}") from exc


def radial_nodes(added: npt.NDArray[np.floating[Any]]) -> FloatArray:
    """The values ``delta_k`` (pixels squared) at the sector centres of the map ``r -> sqrt(r^2 +
    delta(theta))``, ``delta`` interpolated linearly between them, that add ``added`` ``(6,)``
    pixels of area to each sector of a region containing the centre."""
    a = np.asarray(added, dtype=np.float64)
    if a.shape != (N_SECTORS,):
        raise ValueError(f"need {N_SECTORS} sector areas, got shape {a.shape}")
    out: FloatArray = np.linalg.solve(_SPREAD, 2.0 * a / _WIDTH)
    return out


def widen_sectors(
    shares: npt.NDArray[np.floating[Any]],
    frame: tuple[tuple[float, float], float],
    nodes: npt.NDArray[np.floating[Any]],
) -> FloatArray:
    """Class shares ``(C, S, S)`` of one slice resampled by the map ``r -> sqrt(r^2 + delta(theta))``
    about ``frame``'s centre (polar angle from its reference, as the sectors are;
    :func:`cardiosynth.data.biomarkers.sector_frame`), ``delta`` interpolated linearly between
    ``nodes`` ``(6,)`` at the sectors' centres (:func:`radial_nodes`). Area-preserving outside the
    centre; edges extended."""
    (c0, c1), reference = frame
    size = shares.shape[1:]
    ii, jj = np.meshgrid(np.arange(size[0], dtype=np.float64), np.arange(size[1], dtype=np.float64),
                         indexing="ij")  # fmt: skip
    di, dj = ii - c0, jj - c1
    r2 = di**2 + dj**2
    t = np.mod(np.arctan2(dj, di) - reference, 2.0 * math.pi) / _WIDTH
    k0 = np.floor(t).astype(np.intp) % N_SECTORS
    f = t - np.floor(t)
    n = np.asarray(nodes, dtype=np.float64)
    delta = (1.0 - f) * n[k0] + f * n[(k0 + 1) % N_SECTORS]
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(r2 > 0, np.sqrt(np.maximum(r2 - delta, 0.0) / r2), 0.0)
    coords = np.stack([c0 + scale * di, c1 + scale * dj])
    out: FloatArray = np.stack([ndimage.map_coordinates(s, coords, order=1, mode="nearest") for s in shares])
    return out


def calibrate_batch(
    labels: npt.NDArray[np.uint8],
    probabilities: npt.NDArray[np.uint8] | None,
    plan: list[tuple[int, float, str, int]],
    calibration: ContractionCalibration | Mapping[int, ContractionCalibration],
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8] | None]:
    """A decoded batch's mid-ventricular ES slices widened per sector so that each sector's cavity
    area ``A_ES`` becomes ``A_ES + a (1 - gain) (A_ED - A_ES)`` at the block's severity ``a`` (a
    sector that does not contract is left as it is). ``labels`` ``(N, S, S)`` and ``probabilities``
    ``(N, C, S, S)`` (softmax x 255; ``None``: the labels' one-hot shares) are the blocks of
    ``plan`` ``(subject, severity, phase, slices)`` in order; ``calibration``: one for every
    subject, or one per subject index (MINF: its territory's). Returns new arrays.

    Raises:
        ValueError: ``plan`` does not cover ``labels``, or a subject of ``plan`` has no calibration.
    """
    out_labels = labels.copy()
    out_probs = None if probabilities is None else probabilities.copy()
    classes = probabilities.shape[1] if probabilities is not None else int(labels.max(initial=0)) + 1
    for index, severity, ed_at, at, z in phase_pairs(plan, len(labels)):
        cal = for_subject(calibration, index, ContractionCalibration, "contraction calibration")
        if not cal.moves:
            continue
        keep = 1.0 - np.asarray(cal.gains)
        ed = labels[ed_at : ed_at + z]
        fallback = global_rv_angle(np.moveaxis(ed, 0, 2))
        for k in np.flatnonzero(mid_ventricular(ed)):
            es_slice = labels[at + k]
            frame = sector_frame(ed[k], fallback)
            if frame is None or np.count_nonzero(es_slice == LV_CAVITY) < MIN_CAVITY_PIXELS:
                continue
            area_ed, area_es = sector_areas(ed[k], frame), sector_areas(es_slice, frame)
            added = severity * keep * np.maximum(area_ed - area_es, 0.0)
            if not np.any(added > 0):
                continue
            if probabilities is not None:
                shares = probabilities[at + k].astype(np.float64)
            else:
                shares = np.stack([(es_slice == c).astype(np.float64) for c in range(classes)])
            widened = widen_sectors(shares, frame, radial_nodes(added))
            out_labels[at + k] = np.argmax(widened, axis=0).astype(np.uint8)
            if out_probs is not None:
                out_probs[at + k] = np.clip(np.rint(widened), 0, 255).astype(np.uint8)
    return out_labels, out_probs
