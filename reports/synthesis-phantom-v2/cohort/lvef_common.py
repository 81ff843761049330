"""What lvef_round_trip.py, lvef_modes.py and lvef_marginals.py share: LVEF on the processed grid (LV
cavity pixels) of a real pair or of every subject of a synthetic label batch, and the table row."""

import sys
from typing import Any

import numpy as np

from cardiosynth.data.labels import LV_CAVITY


def ef(ed: np.ndarray, es: np.ndarray) -> float:
    return float(100.0 * (1.0 - (es == LV_CAVITY).sum() / (ed == LV_CAVITY).sum()))


def batch_efs(batch: Any) -> list[float]:
    """The LVEF of each subject of a ``LabelBatch`` made with both phases at one severity."""
    stacks: dict[int, dict[str, np.ndarray]] = {}
    at = 0
    for index, _, phase, z in batch.plan:
        stacks.setdefault(index, {})[phase] = batch.labels[at : at + z]
        at += z
    return [ef(s["ED"], s["ES"]) for s in stacks.values()]


def report(source: str, values: list[float]) -> None:
    a = np.asarray(values)
    sys.stdout.write(f"| {source} | {len(a)} | {a.mean():.1f} | {a.std(ddof=1):.1f} |\n")
    sys.stdout.flush()
