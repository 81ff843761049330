"""Label maps to one-hot tensors: the single conversion every model input goes through."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cardiosynth.data.labels import NUM_CLASSES


def labels_to_onehot(labels: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Validate integer labels ``(B, S, S)`` and return one-hot ``(B, C, S, S)`` float32.

    Raises:
        ValueError: labels are not integers, not 3-D, or hold values outside ``0..num_classes-1``.
    """
    if labels.is_floating_point():
        if not torch.equal(labels, labels.round()):
            raise ValueError("label maps must hold integer class values, got fractional values")
        labels = labels.round()
    if labels.ndim != 3:
        raise ValueError(f"expected labels (B, S, S), got shape {tuple(labels.shape)}")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        bad = sorted({int(v) for v in labels.unique().tolist() if not 0 <= v < num_classes})
        raise ValueError(f"label values {bad} outside 0..{num_classes - 1}")
    return F.one_hot(labels.long(), num_classes).permute(0, 3, 1, 2).float()
