"""What the sampling calibration does (Synthesizer.sampling_calibration): per class, the mean area per
slice of the LV's labels inside the LV extent (ED, processed 1.5 mm grid) of the class's real subjects
and of N default synthetic subjects (severity 1, seed 0) decoded with the round trip's calibration
only and with the sampling calibration as well, and their mean ED max wall thickness and mass index
on the native grid. Class statistics and both calibrations from DATA.

    .venv/bin/python reports/synthesis-phantom-v2/cohort/sampling_calibration.py DATA N CLASSES > OUT.txt
"""

import sys
import tempfile
from pathlib import Path

import numpy as np

from cardiosynth.data.labels import LV_CAVITY, LV_MYOCARDIUM, Group
from cardiosynth.models.registry import load_model
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer, label_stack
from cardiosynth.synthesis.equalise import lv_extent

data, n, classes = Path(sys.argv[1]), int(sys.argv[2]), [Group(c) for c in sys.argv[3].split(",")]
version = "phantom-v2c"
vae = load_model("vae", version, None).module
cache = Path(tempfile.mkdtemp(prefix="sampling-calibration-"))
PIXEL_MM2 = 1.5 * 1.5


def areas(stack: np.ndarray) -> tuple[float, float]:
    """Mean myocardium and LV cavity area per slice (mm2) over the stack's LV extent."""
    first, last = lv_extent(stack)
    inside = stack[first : last + 1]
    return tuple(float((inside == c).sum()) / len(inside) * PIXEL_MM2 for c in (LV_MYOCARDIUM, LV_CAVITY))


sys.stdout.write(
    "| class | decoded with | myocardium mm2 / slice | LV cavity mm2 / slice | max wall mm | mass index |\n"
)
sys.stdout.write("|---|---|---|---|---|---|\n")
for cls in classes:
    synth = Synthesizer(vae, None, data, model_versions={"vae": version}, cache_dir=cache)
    real = np.mean(
        [areas(label_stack(synth._load(r).processed, "ED")) for r in sources.by_group(synth.refs, cls)], 0
    )
    sys.stdout.write(f"| {cls.value} | real (DATA) | {real[0]:.0f} | {real[1]:.0f} | | |\n")
    for on in (False, True):
        synth.calibrate_sampling = on
        request = SynthesisRequest(cls, n=n, seed=0)
        batch = synth.make_labels(request)
        at, made = 0, []
        for _, _, phase, z in batch.plan:
            if phase == "ED":
                made.append(areas(batch.labels[at : at + z]))
            at += z
        b = [s.biomarkers[1.0] for s in synth.assemble(batch, None)]
        wall = np.nanmean([x.max_wall_thickness for x in b])
        mass = np.nanmean([x.mass_index for x in b])
        myo, lv = np.mean(made, 0)
        name = "round trip + sampling calibration" if on else "round trip calibration only"
        sys.stdout.write(f"| {cls.value} | {name} | {myo:.0f} | {lv:.0f} | {wall:.2f} | {mass:.1f} |\n")
        sys.stdout.flush()
