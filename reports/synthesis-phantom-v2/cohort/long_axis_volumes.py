"""What the synthetic hearts' volumes are made of: per class, the means of the slice spacing, the LV
ED extent in mm (the long axis), BSA, LV and RV EDV, myocardial mass, the LVEDV per mm of long axis and
the indices, over DATA's and COHORT's real subjects of the class and N synthetic subjects of the
default request (`joint`/`sample`, severity 1, shipped VAE, every calibration, seed 0, native grid).
A synthetic heart has its NOR base's spacing, long axis and BSA (long_axis.py measures what scaling
the spacing would do).

    .venv/bin/python reports/synthesis-phantom-v2/cohort/long_axis_volumes.py DATA COHORT N CLASSES

(CLASSES: comma-separated, e.g. DCM,HCM,MINF,NOR,RV.)
"""

import sys
from pathlib import Path
from typing import Any

import numpy as np

from cardiosynth.data.acdc import read_subject
from cardiosynth.data.biomarkers import Biomarkers, subject_biomarkers
from cardiosynth.data.labels import LV_CAVITY, Group
from cardiosynth.models.registry import load_model
from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer

data, cohort, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])


def long_axis_mm(ed: np.ndarray, z_mm: float) -> float:
    slices = np.nonzero((ed == LV_CAVITY).any(axis=(0, 1)))[0]
    return float((slices[-1] - slices[0] + 1) * z_mm)


def row(name: str, items: list[list[float]]) -> None:
    a = np.array(items)
    sys.stdout.write(f"| {name} | {len(a)} | " + " | ".join(f"{v:.3g}" for v in a.mean(0)) + " |\n")
    sys.stdout.flush()


def features(ed: np.ndarray, spacing: Any, b: Biomarkers) -> list[float]:
    length = long_axis_mm(ed, spacing[2])
    return [spacing[2], length, b.bsa, b.lv_edv, b.lv_edv / length, b.rv_edv, b.myo_mass,
            b.lv_edv_index, b.mass_index, b.rv_edv_index]  # fmt: skip


sys.stdout.write(
    "| source | n | spacing z | LV ED extent mm | BSA | LVEDV ml | LVEDV / mm | RVEDV ml | mass g | LVEDVi "
    "| mass i | RVEDVi |\n|" + "---|" * 12 + "\n"
)
model = load_model("vae", "phantom-v2c").module
# The engine as it was when this was measured: the class scale it led to (synthesis.scale) left out.
synth = Synthesizer(model, None, data, model_versions={"vae": "phantom-v2c"}, scale_to_class=False)
for name in sys.argv[4].split(","):
    group = Group(name)
    for source, root in (("DATA", data), ("COHORT", cohort)):
        subjects = (read_subject(p) for p in sorted((root / "training").iterdir()))
        real = [s for s in subjects if s.info.group == group]
        row(f"{name} real {source}", [features(s.ed_label, s.spacing, subject_biomarkers(s)) for s in real])
    made = synth.assemble(synth.make_labels(SynthesisRequest(group, n=n, seed=0)), None)
    row(f"{name} synthetic", [features(s.phases[1.0]["ED"].native_labels, s.base.spacing, s.biomarkers[1.0])
                              for s in made])  # fmt: skip
