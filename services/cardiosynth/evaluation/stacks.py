"""Label-stack comparisons for the synthesis evaluation (pure numpy on processed ``(Z, S, S)`` stacks).

- :func:`stack_dice`: mean foreground Dice of two stacks, the second resampled to the first's slice
  count (nearest slice by relative position), so subjects with different stack lengths compare;
- :func:`nearest_dice`: the highest :func:`stack_dice` to a set (memorisation: a synthetic subject
  that is a copy of a training subject scores 1);
- :func:`myo_ratio`: ED / ES myocardial volume (about 1 in real hearts: the muscle is incompressible).

Topology counts come from :func:`cardiosynth.data.topology.topology_errors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from cardiosynth.data.labels import LV_MYOCARDIUM
from cardiosynth.data.overlap import dice_per_class

LabelStack = npt.NDArray[np.integer[Any]]
_STRUCTURE_26 = ndimage.generate_binary_structure(3, 3)


def resample_stack(stack: LabelStack, z: int) -> LabelStack:
    """``stack`` ``(Z, S, S)`` with ``z`` slices, each the nearest source slice by relative position."""
    if stack.ndim != 3 or len(stack) < 1 or z < 1:
        raise ValueError(f"need a stack (Z >= 1, S, S) and z >= 1, got {stack.shape} and {z}")
    index = (
        np.rint(np.linspace(0, len(stack) - 1, z)).astype(np.intp) if z > 1 else np.array([len(stack) // 2])
    )
    out: LabelStack = stack[index]
    return out


def stack_dice(a: LabelStack, b: LabelStack) -> float:
    """Mean Dice over classes 1-3 of ``a`` and ``b`` resampled to ``a``'s slice count (same in-plane size)."""
    if a.ndim != 3 or b.ndim != 3 or a.shape[1:] != b.shape[1:]:
        raise ValueError(f"stacks must be (Z, S, S) of one in-plane size, got {a.shape} and {b.shape}")
    return float(np.mean(list(dice_per_class(a, resample_stack(b, len(a))).values())))


def nearest_dice(stack: LabelStack, candidates: Sequence[LabelStack]) -> float:
    """The highest :func:`stack_dice` of ``stack`` to any of ``candidates``."""
    if not candidates:
        raise ValueError("no candidate stacks")
    return max(stack_dice(stack, c) for c in candidates)


def myo_ratio(ed: LabelStack, es: LabelStack) -> float:
    """ED / ES myocardial voxel count (NaN without ES myocardium)."""
    es_count = int(np.count_nonzero(es == LV_MYOCARDIUM))
    return float(np.count_nonzero(ed == LV_MYOCARDIUM)) / es_count if es_count else float("nan")


def components_3d(stack: LabelStack, classes: tuple[int, ...] = (1, 2, 3)) -> dict[int, int]:
    """3D connected components of each class, 26-connected (the connectivity of
    :func:`cardiosynth.data.topology.topology_errors`, whose islands are these beyond the first);
    a cheap count for rows where the full topology census is not needed."""
    if stack.ndim != 3:
        raise ValueError(f"expected a label stack (Z, S, S), got shape {stack.shape}")
    return {c: int(ndimage.label(stack == c, structure=_STRUCTURE_26)[1]) for c in classes}
