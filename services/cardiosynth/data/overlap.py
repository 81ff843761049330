"""Overlap metrics on label maps (numpy, no framework)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from cardiosynth.data.labels import LABEL_NAMES, NUM_CLASSES


def dice(a: npt.NDArray[np.bool_], b: npt.NDArray[np.bool_]) -> float:
    """Dice of two boolean masks; 1.0 when both are empty (nothing to find, nothing found)."""
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, b).sum()) / total


def dice_per_class(
    prediction: npt.NDArray[np.integer],
    reference: npt.NDArray[np.integer],
    classes: tuple[int, ...] = (1, 2, 3),
) -> dict[int, float]:
    """Dice of each foreground class between two label maps of the same shape."""
    if prediction.shape != reference.shape:
        raise ValueError(f"label shapes differ: {prediction.shape} vs {reference.shape}")
    for c in classes:
        if not 0 <= c < NUM_CLASSES:
            raise ValueError(f"class {c} outside 0..{NUM_CLASSES - 1}")
    return {c: dice(prediction == c, reference == c) for c in classes}


def dice_ceiling(
    a: npt.NDArray[np.integer], b: npt.NDArray[np.integer], classes: tuple[int, ...] = (1, 2, 3)
) -> dict[int, float]:
    """The highest Dice any placement of ``a``'s labels could reach against ``b``, per class:
    ``2 min(|A|, |B|) / (|A| + |B|)`` from the two volumes alone (1.0 when both are empty).

    Overlap cannot exceed the smaller volume, so a map whose class volume differs from the
    reference's by a factor ``r`` has Dice at most ``2 / (1 + r)`` however well it is aligned: a
    dilated left ventricle at twice its base volume cannot reach more than 0.67 against its base.
    """
    if a.shape != b.shape:
        raise ValueError(f"label shapes differ: {a.shape} vs {b.shape}")
    out = {}
    for c in classes:
        if not 0 <= c < NUM_CLASSES:
            raise ValueError(f"class {c} outside 0..{NUM_CLASSES - 1}")
        va, vb = int(np.count_nonzero(a == c)), int(np.count_nonzero(b == c))
        out[c] = 1.0 if va + vb == 0 else 2.0 * min(va, vb) / (va + vb)
    return out


def named(scores: dict[int, float]) -> dict[str, float]:
    """``{class index: value}`` -> ``{class name: value}`` (ACDC names)."""
    return {LABEL_NAMES[c]: v for c, v in scores.items()}


def mean_dice_over_volumes(
    predictions: list[npt.NDArray[np.integer]], references: list[npt.NDArray[np.integer]]
) -> dict[int, float]:
    """Per-class Dice averaged over volumes (one Dice per volume, then the mean; the ACDC convention)."""
    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"need equally many volumes, got {len(predictions)} and {len(references)}")
    per = [dice_per_class(p, r) for p, r in zip(predictions, references, strict=True)]
    return {c: float(np.mean([d[c] for d in per])) for c in per[0]}
