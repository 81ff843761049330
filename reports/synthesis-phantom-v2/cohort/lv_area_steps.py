"""Where the synthetic LV's area per slice comes from: the mean ED LV cavity area per slice of the LV
extent (the slices from the first to the last with a cavity, processed grid, mm2), as the mean of
each stack's mean and pooled over the stacks (all cavity pixels over all extent slices), and the
myocardium's pooled, over DATA's real subjects of each class in CLASSES (comma-separated) and 40
synthetic subjects (default request, ED only, severity 1, seed 0) made with the default engine,
without the label clean-up, and without the motion and contraction calibrations. (In these 40
subjects the LVEDV per mm of long axis is 2-7 % above the real, long_axis_volumes.txt; over 200 the
area per slice is within 1 %, lv_area_sample_size.txt.)

    .venv/bin/python reports/synthesis-phantom-v2/cohort/lv_area_steps.py DATA CLASSES
"""

import itertools
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cardiosynth.data.labels import LV_CAVITY, LV_MYOCARDIUM, Group
from cardiosynth.models.registry import load_model
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer, label_stack

data = Path(sys.argv[1])
version = "phantom-v2c"
PIXEL_MM2 = 1.5**2  # the processed grid
model = load_model("vae", version).module


def extent(stack: np.ndarray) -> np.ndarray:
    slices = np.nonzero((stack == LV_CAVITY).reshape(len(stack), -1).any(axis=1))[0]
    return stack[slices[0] : slices[-1] + 1]


def mean_of_means(stacks: Sequence[np.ndarray]) -> float:
    return float(
        np.mean([(extent(s) == LV_CAVITY).reshape(len(extent(s)), -1).sum(1).mean() for s in stacks])
    )


def pooled(stacks: Sequence[np.ndarray], label: int) -> float:
    return sum(int((extent(s) == label).sum()) for s in stacks) / sum(len(extent(s)) for s in stacks)


def row(name: str, stacks: Sequence[np.ndarray]) -> None:
    cavity = f"{mean_of_means(stacks) * PIXEL_MM2:.0f} | {pooled(stacks, LV_CAVITY) * PIXEL_MM2:.0f}"
    sys.stdout.write(f"| {name} | {cavity} | {pooled(stacks, LV_MYOCARDIUM) * PIXEL_MM2:.0f} |\n")
    sys.stdout.flush()


variants = {
    "synthetic, default": {},
    "synthetic, no clean-up": {"clean_labels": False},
    "synthetic, no motion or contraction calibration": {
        "calibrate_motion": False,
        "calibrate_contraction": False,
    },
}
sys.stdout.write(
    "| class, source | LV cavity mm2 per slice (mean of stacks) | pooled | myocardium, pooled |\n"
    "|---|---|---|---|\n"
)
for name in sys.argv[2].split(","):
    group = Group(name)
    synth = Synthesizer(model, None, data, model_versions={"vae": version})
    refs = sorted(sources.by_group(synth.refs, group), key=lambda r: r.subject_id)
    row(f"{name}, real", [label_stack(synth._load(r).processed, "ED") for r in refs])
    for variant, options in variants.items():
        synth = Synthesizer(model, None, data, model_versions={"vae": version}, **options)  # type: ignore[arg-type]
        batch = synth.make_labels(SynthesisRequest(group, n=40, seed=0, phases=("ED",)))
        bounds = np.cumsum([0, *(z for *_, z in batch.plan)])
        row(f"{name}, {variant}", [batch.labels[a:b] for a, b in itertools.pairwise(bounds)])
