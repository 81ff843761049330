"""What lvef_round_trip.py, lvef_modes.py, lvef_marginals.py and lvef_sample_size.py share: the shipped
VAE's engine on a data set (as shipped, or with the draws alone), LVEF on the processed grid (LV
cavity pixels) of a real pair or of every subject of a synthetic label batch, and the table row."""

import functools
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cardiosynth.data.labels import LV_CAVITY
from cardiosynth.models.registry import load_model
from cardiosynth.synthesis.engine import Synthesizer

VERSION = "phantom-v2c"
# The draws alone: only the round trip's decoder calibration, the ES extent at the nearest slice, so
# that nothing after the draw adds or removes spread.
DRAWS_ALONE = {
    "calibrate_sampling": False,
    "calibrate_motion": False,
    "calibrate_contraction": False,
    "dither_extents": False,
}


@functools.cache
def vae() -> Any:
    return load_model("vae", VERSION).module


def synthesizer(data: Path, **options: bool) -> Synthesizer:
    """The engine on ``data`` with the shipped VAE, without SPADE; ``options``: Synthesizer flags."""
    return Synthesizer(vae(), None, data, model_versions={"vae": VERSION}, **options)  # type: ignore[arg-type]


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
