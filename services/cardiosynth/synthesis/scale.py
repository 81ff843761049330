"""A class's heart length and body, which slices drawn by a 2D label VAE cannot carry.

The VAE draws short-axis slices; a synthetic heart keeps its NOR base's slices (their count, their
spacing, and at ED the base's own LV extent: :func:`.equalise.target_extent`), so its length along
the long axis is the base's, and so is the body its indices are taken over. Real diseased hearts
are not NOR's length and their patients are not NOR's size. On phantom-v2 (200 synthetic subjects
per class; ``reports/synthesis-phantom-v2/cohort/long_axis_means.txt``) the class's mean LV ED
extent over NOR's is DCM 1.057, HCM 1.064, MINF 1.126, RV 0.972: the synthetic LV ED volumes came
out 5-12 % below the real class's, and the class's BSA is 1.89-1.98 m2 against NOR's 1.85, so the
indices were taken over the wrong body. Both moved to the class's (as here) put the volumes and the
indexed volumes within a standard error of held-out real subjects.

:class:`ClassScale` holds the class's mean over NOR's of three quantities, from the real subjects
the class statistics come from: the LV ED extent along the long axis (mm), height and weight. At
severity ``a`` each factor ``r`` becomes ``1 + a (r - 1)`` (:meth:`ClassScale.at`, severity 0 the
base's own), and is applied as

- slice spacing: the stack is stretched along its slice axis about its centre slice (the written
  volumes' affine, :meth:`ClassScale.affine`; the volumes and masses, :meth:`ClassScale.spacing`):
  the slices keep their in-plane grid, only their distance apart changes;
- height and weight: the synthetic subject's recorded body (:meth:`ClassScale.body`), over which
  the indexed volumes and the rule diagnosis are taken.

The class's mean is moved to, not its spread: each synthetic subject keeps its base's own length and
body relative to NOR's (the base's identity), times the class's ratio.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from cardiosynth.data.labels import LV_CAVITY

log = logging.getLogger(__name__)


class HeartBody(NamedTuple):
    """What :func:`class_scale` needs of one real subject."""

    long_axis_mm: float  # LV ED extent: slices with LV cavity, first to last, times the slice spacing
    height: float | None  # cm
    weight: float | None  # kg


def lv_long_axis_mm(ed_labels: npt.NDArray[np.integer[Any]], slice_mm: float) -> float:
    """The LV's ED extent along the long axis in mm: the slices from the first to the last that hold
    LV cavity, counted whole, times ``slice_mm`` (ACDC's volumes count whole slices the same way).

    ``ed_labels`` ``(X, Y, Z)`` on the native grid, ``Z`` the short-axis slice index.

    Raises:
        ValueError: not a 3D stack, a spacing that is not positive, or no LV cavity.
    """
    labels = np.asarray(ed_labels)
    if labels.ndim != 3:
        raise ValueError(f"ED labels must be (X, Y, Z), got shape {labels.shape}")
    if not (math.isfinite(slice_mm) and slice_mm > 0):
        raise ValueError(f"slice spacing must be a positive number of mm, got {slice_mm}")
    present = np.flatnonzero((labels == LV_CAVITY).any(axis=(0, 1)))
    if not present.size:
        raise ValueError("no LV cavity in the ED labels: no long-axis extent")
    return float((present[-1] - present[0] + 1) * slice_mm)


def _check_factor(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} factor must be a positive finite number, got {value}")


@dataclass(frozen=True)
class ClassScale:
    """Factors on a NOR base's slice spacing, height and weight (1: the base's own)."""

    slice_spacing: float = 1.0
    height: float = 1.0
    weight: float = 1.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            _check_factor(name, value)

    def at(self, severity: float) -> ClassScale:
        """The factors at ``severity`` in [0, 1]: each ``1 + a (r - 1)``."""
        if not 0.0 <= severity <= 1.0:
            raise ValueError(f"severity must be in [0, 1], got {severity}")
        return ClassScale(**{k: 1.0 + severity * (v - 1.0) for k, v in asdict(self).items()})

    def spacing(self, spacing: Sequence[float]) -> tuple[float, float, float]:
        """A voxel size ``(x, y, z)`` mm with the slice spacing ``z`` scaled."""
        if len(spacing) != 3:
            raise ValueError(f"spacing must be (x, y, z) mm, got {tuple(spacing)}")
        x, y, z = (float(v) for v in spacing)
        return x, y, z * self.slice_spacing

    def body(self, height: float | None, weight: float | None) -> tuple[float | None, float | None]:
        """A subject's height (cm) and weight (kg) scaled; ``None`` (not recorded) stays ``None``."""
        return (
            None if height is None else height * self.height,
            None if weight is None else weight * self.weight,
        )

    def affine(self, affine: npt.NDArray[np.floating[Any]], slices: int) -> npt.NDArray[np.float64]:
        """A ``(4, 4)`` voxel-to-world affine of a stack of ``slices`` slices with its slice axis (the
        third voxel axis) stretched by the slice spacing factor about the stack's centre: the centre
        stays where it is in world space, and so does every voxel with the factor 1."""
        a = np.array(affine, dtype=np.float64)
        if a.shape != (4, 4):
            raise ValueError(f"affine must be 4 x 4, got shape {a.shape}")
        if slices < 1:
            raise ValueError(f"a stack has at least one slice, got {slices}")
        centre = (slices - 1) / 2.0
        step = a[:3, 2].copy()
        a[:3, 2] = step * self.slice_spacing
        # world(i, j, k) = A[:3, :3] (i, j, k) + t: keep world(., ., centre) where it was
        a[:3, 3] += step * centre * (1.0 - self.slice_spacing)
        return a

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassScale:
        """The inverse of :meth:`to_dict`.

        Raises:
            ValueError: not a mapping, a key other than the three factors, or a factor that is not
                a positive number.
        """
        if not isinstance(data, dict):
            raise ValueError(f"a class scale is a mapping of its factors, got {type(data).__name__}")
        unknown = set(data) - {"slice_spacing", "height", "weight"}
        if unknown:
            raise ValueError(f"unknown class scale fields {sorted(unknown)}")
        try:
            return cls(**{k: float(v) for k, v in data.items()})
        except TypeError as exc:  # a factor that is no number
            raise ValueError(f"class scale factors must be numbers, got {data}") from exc


IDENTITY = ClassScale()


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def class_scale(cls: Sequence[HeartBody], nor: Sequence[HeartBody]) -> ClassScale:
    """The class's mean long-axis extent, height and weight over NOR's.

    ``cls``, ``nor``: the real subjects the class's and NOR's statistics come from (never held-out
    ones). A height or weight recorded for no subject of either leaves its factor 1 (logged).

    Raises:
        ValueError: either group empty.
    """
    if not cls or not nor:
        raise ValueError(f"a class scale needs subjects of both groups, got {len(cls)} and {len(nor)}")
    factors: dict[str, float] = {
        "slice_spacing": float(
            np.mean([b.long_axis_mm for b in cls]) / np.mean([b.long_axis_mm for b in nor])
        )
    }
    for field in ("height", "weight"):
        ours, theirs = _mean([getattr(b, field) for b in cls]), _mean([getattr(b, field) for b in nor])
        if ours is None or theirs is None:
            log.warning("no %s recorded for the class or for NOR: the base's %s is kept", field, field)
            factors[field] = 1.0
        else:
            factors[field] = ours / theirs
    return ClassScale(**factors)
