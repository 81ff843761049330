"""How much of the synthetic volumes' and masses' misses is the heart's long axis and the body: a
synthetic heart keeps its NOR base's slice count and spacing (so the base's long axis) and its
height and weight (so the base's BSA), while its slices' areas are drawn from the class.

Per class, N synthetic subjects of the default request (`joint`/`sample`, severity 1, shipped VAE,
every calibration, seed SEED; native grid) against COHORT's held-out real subjects, W1 normalised by
the bootstrap floor from DATA's training subjects (as `cardiosynth evaluate synthesis --held-out`):

- `shipped`: as the engine makes them;
- `x length`: the same subjects with the slice spacing scaled by the class's long axis over NOR's
  (mean LV ED extent in mm of DATA's subjects), exact for volumes, masses and their indices (the
  other biomarkers are in-plane or ratios and do not move);
- `body-matched bases`: each subject's NOR base drawn (with replacement, pinned with
  `base_subjects`) with weight p_class(BSA) / p_NOR(BSA), the ratio of Gaussian kernel density
  estimates (Scott's bandwidth) of DATA's class and NOR subjects' BSAs, so that the bases' bodies
  follow the class's (NOR's own weights are all 1);
- `body-matched x length`: both.

    .venv/bin/python reports/synthesis-phantom-v2/cohort/long_axis.py DATA COHORT N SEED
"""

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import scipy.stats as sps
from long_axis_common import SHORT, bsa, long_axis_mm, subjects

from cardiosynth.data.biomarkers import Biomarkers, subject_biomarkers
from cardiosynth.data.labels import Group
from cardiosynth.evaluation.distribution import BIOMARKERS, biomarker_matrix, normalised_w1
from cardiosynth.models.registry import load_model
from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer

data, cohort, n, seed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
version = "phantom-v2c"
VOLUMES = ("lv_edv", "lv_esv", "lv_sv", "rv_edv", "rv_esv", "rv_sv", "myo_mass",
           "lv_edv_index", "lv_esv_index", "rv_edv_index", "rv_esv_index", "mass_index")  # fmt: skip


def scaled(b: Biomarkers, r: float) -> Biomarkers:
    return replace(b, **{f: getattr(b, f) * r for f in VOLUMES if getattr(b, f) is not None})


train, held = subjects(data), subjects(cohort)
nor = train[Group.NOR]
nor_length = np.mean([long_axis_mm(s) for s in nor])
model = load_model("vae", version).module
# The engine as it was when this was measured: the class scale it led to (synthesis.scale) left out.
synth = Synthesizer(model, None, data, model_versions={"vae": version}, scale_to_class=False)
names = [SHORT[b] for b in BIOMARKERS]
sys.stdout.write(
    f"W1n against COHORT, {n} synthetic subjects per class and row, seed {seed}\n\n"
    f"| class | row | long axis x | base BSA | {' | '.join(names)} | max |\n|{'---|' * (len(names) + 5)}\n"
)
for group in (Group.DCM, Group.HCM, Group.MINF, Group.RV, Group.NOR):
    r = float(np.mean([long_axis_mm(s) for s in train[group]]) / nor_length)
    real_train = biomarker_matrix([subject_biomarkers(s) for s in train[group]])
    real_held = biomarker_matrix([subject_biomarkers(s) for s in held[group]])
    rng = np.random.default_rng([seed, list(Group).index(group)])
    nor_bsa = np.array([bsa(s) for s in nor])
    ratio = sps.gaussian_kde([bsa(s) for s in train[group]])(nor_bsa) / sps.gaussian_kde(nor_bsa)(nor_bsa)
    picks = rng.choice(len(nor), size=n, p=ratio / ratio.sum())
    base_sets = {"shipped": (), "body-matched bases": tuple(nor[i].subject_id for i in picks)}
    for bases_name, pinned in base_sets.items():
        request = SynthesisRequest(group, n=n, seed=seed, base_subjects=pinned)
        made = synth.assemble(synth.make_labels(request), None)
        bms = [s.biomarkers[1.0] for s in made]
        base_bsa = np.mean([bsa(s.base) for s in made])
        for factor, row in ((1.0, bases_name), (r, f"{bases_name} x length")):
            if group == Group.NOR and row.endswith("x length"):  # r = 1: nothing to scale
                continue
            syn = biomarker_matrix([None if b is None else scaled(b, factor) for b in bms])
            w = normalised_w1(syn, real_held, real_train, floor="bootstrap")
            cells = " | ".join(f"{w[b]:.2f}" for b in BIOMARKERS)
            head = f"| {group.value} | {row} | {factor:.3f} | {base_bsa:.2f}"
            sys.stdout.write(f"{head} | {cells} | {max(w.values()):.2f} |\n")
            sys.stdout.flush()
    real_bsa = np.mean([bsa(s) for s in held[group]])
    blanks = " | ".join("" for _ in names)
    sys.stdout.write(f"| {group.value} | real, COHORT | | {real_bsa:.2f} | {blanks} | |\n")
