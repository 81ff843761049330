"""3D consistency of label stacks built from 2D slices (pure functions on ``(Z, H, W)`` stacks).

- adjacent-slice Dice: foreground-class Dice between neighbouring slices, averaged; jumps between
  independently decoded slices lower it;
- LV-area smoothness: mean absolute second difference of the LV cavity area along the stack,
  relative to the mean area (0 for a linear profile; noise raises it);
- connected components per class in 3D (a heart chamber is one component).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from cardiosynth.data.labels import LV_CAVITY
from cardiosynth.evaluation.metrics import dice

LabelStack = npt.NDArray[np.integer[Any]]


def _check(stack: LabelStack) -> None:
    if stack.ndim != 3:
        raise ValueError(f"expected a label stack (Z, H, W), got shape {stack.shape}")


def adjacent_slice_dice(stack: LabelStack, classes: tuple[int, ...] = (1, 2, 3)) -> float:
    """Mean Dice between slices ``k`` and ``k + 1`` over the classes present in either (NaN for one slice)."""
    _check(stack)
    scores = []
    for k in range(len(stack) - 1):
        for c in classes:
            a, b = stack[k] == c, stack[k + 1] == c
            if a.any() or b.any():
                scores.append(dice(a, b))
    return float(np.mean(scores)) if scores else float("nan")


def area_smoothness(stack: LabelStack, label: int = LV_CAVITY) -> float:
    """Mean ``|A[k+1] - 2 A[k] + A[k-1]|`` of the class area profile over its mean area (NaN if < 3 slices
    or the class is absent)."""
    _check(stack)
    area = (stack == label).sum(axis=(1, 2)).astype(np.float64)
    if len(area) < 3 or area.mean() == 0:
        return float("nan")
    return float(np.abs(np.diff(area, n=2)).mean() / area.mean())


def components_per_class(stack: LabelStack, classes: tuple[int, ...] = (1, 2, 3)) -> dict[int, int]:
    """Number of 3D connected components (6-connectivity) of each class."""
    _check(stack)
    structure = ndimage.generate_binary_structure(3, 1)
    return {c: int(ndimage.label(stack == c, structure=structure)[1]) for c in classes}


def consistency_figures(stacks: Sequence[LabelStack]) -> dict[str, float]:
    """Means over stacks: adjacent-slice Dice, LV-area smoothness, components per class, and the share of
    stacks where every present class is one component."""
    if not stacks:
        raise ValueError("no stacks to measure")
    adj = [adjacent_slice_dice(s) for s in stacks]
    smooth = [area_smoothness(s) for s in stacks]
    comps = [components_per_class(s) for s in stacks]
    return {
        "adjacent_slice_dice": float(np.nanmean(adj)),
        "lv_area_smoothness": float(np.nanmean(smooth)),
        "components_rv": float(np.mean([c[1] for c in comps])),
        "components_myo": float(np.mean([c[2] for c in comps])),
        "components_lv": float(np.mean([c[3] for c in comps])),
        "single_component_share": float(np.mean([all(v <= 1 for v in c.values()) for c in comps])),
    }
