"""Overlap metrics (Dice): they live in :mod:`cardiosynth.data.overlap`, a leaf module that the models
can use without importing the evaluation layer; re-exported here for the evaluation code."""

from __future__ import annotations

from cardiosynth.data.overlap import dice, dice_ceiling, dice_per_class, mean_dice_over_volumes, named

__all__ = ["dice", "dice_ceiling", "dice_per_class", "mean_dice_over_volumes", "named"]
