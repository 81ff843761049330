"""The long axis lead over more subjects: does scaling a synthetic heart's slice spacing by its class's
long axis over NOR's (long_axis.py's `x length`) bring its volumes to the real class's, and is what
is left in the indices its NOR base's body?

Per class, N synthetic subjects of the default request (`joint`/`sample`, severity 1, shipped VAE,
every calibration, seed SEED, in chunks of 50; native grid), three ways:

- `shipped`: as the engine makes them;
- `x length`: the slice spacing scaled by the class's mean LV ED extent (mm) over NOR's, DATA's
  subjects (volumes and masses scale exactly; BSA does not move, so the indices scale too);
- `x length, class body`: also the base's height and weight scaled by the class's mean over NOR's
  (DATA's subjects), the indices over the BSA of that body.

Two tables: the means (standard errors) of the LV ED volume (ml), BSA (m2), LV ED volume index, RV
ED volume index and mass index, with the real subjects of DATA (the training split the statistics
come from) and COHORT (held out); then W1n against COHORT for every biomarker (the bootstrap floor
from DATA, as `cardiosynth evaluate synthesis --held-out`).

    .venv/bin/python reports/synthesis-phantom-v2/cohort/long_axis_means.py DATA COHORT N SEED
"""

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from long_axis_common import SHORT, bsa, long_axis_mm, subjects
from lvef_common import synthesizer

from cardiosynth.data.acdc import body_surface_area
from cardiosynth.data.biomarkers import Biomarkers, subject_biomarkers
from cardiosynth.data.labels import Group
from cardiosynth.evaluation.distribution import BIOMARKERS, biomarker_matrix, normalised_w1
from cardiosynth.synthesis.engine import SynthesisRequest

data, cohort, n, seed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
CHUNK = 50
VOLUMES = {"lv_edv": "lv_edv_index", "lv_esv": "lv_esv_index", "lv_sv": None, "rv_edv": "rv_edv_index",
           "rv_esv": "rv_esv_index", "rv_sv": None, "myo_mass": "mass_index"}  # fmt: skip
COLUMNS = (("LVEDV ml", "lv_edv"), ("BSA m2", "bsa"), ("LVEDVi", "lv_edv_index"),
           ("RVEDVi", "rv_edv_index"), ("mass i", "mass_index"))  # fmt: skip


def rescaled(b: Biomarkers, length: float, body: float) -> Biomarkers:
    """``b`` with its volumes and masses times ``length`` and its indices over a BSA ``body`` m2."""
    fields: dict[str, float] = {}
    for volume, index in VOLUMES.items():
        value = getattr(b, volume)
        if value is not None:
            fields[volume] = value * length
            if index is not None:
                fields[index] = value * length / body
    return replace(b, **fields)


def means_row(group: Group, name: str, factor: str, bms: list[Biomarkers], bodies: list[float]) -> None:
    cells = []
    for _, field in COLUMNS:
        a = np.asarray(bodies if field == "bsa" else [getattr(b, field) for b in bms], dtype=float)
        a = a[np.isfinite(a)]
        digits = 2 if field == "bsa" else 1
        cells.append(f"{a.mean():.{digits}f} ({a.std(ddof=1) / np.sqrt(len(a)):.{digits}f})")
    sys.stdout.write(f"| {group.value} | {name} | {len(bms)} | {factor} | {' | '.join(cells)} |\n")


def mean_of(items: list[Any], attribute: str) -> float:
    return float(np.mean([getattr(s.info, attribute) for s in items]))


train, held = subjects(data), subjects(cohort)
nor = train[Group.NOR]
nor_length, nor_height, nor_weight = (
    np.mean([long_axis_mm(s) for s in nor]),
    *(mean_of(nor, a) for a in ("height", "weight")),
)
# The engine as it was when this was measured: the class scale it led to (synthesis.scale) left out.
synth = synthesizer(data, scale_to_class=False)
w1_rows: list[str] = []
head = " | ".join(f"{name} (SE)" for name, _ in COLUMNS)
sys.stdout.write(
    f"Means (standard errors), {n} synthetic subjects per class, seed {seed}\n\n"
    f"| class | source | subjects | long axis x | {head} |\n|{'---|' * (len(COLUMNS) + 4)}\n"
)
for group in (Group.DCM, Group.HCM, Group.MINF, Group.RV, Group.NOR):
    r = float(np.mean([long_axis_mm(s) for s in train[group]]) / nor_length)
    h = mean_of(train[group], "height") / nor_height
    w = mean_of(train[group], "weight") / nor_weight
    for name, real in (("real, DATA", train[group]), ("real, COHORT", held[group])):
        means_row(group, name, "", [subject_biomarkers(s) for s in real], [bsa(s) for s in real])
    request = SynthesisRequest(group, n=n, seed=seed)
    made: list[tuple[Biomarkers, Any]] = []
    for k in range(0, n, CHUNK):
        batch = synth.assemble(synth.make_labels(request, subjects=range(k, min(k + CHUNK, n))), None)
        made += [(s.biomarkers[1.0], s.base.info) for s in batch]
    own = [body_surface_area(info.height, info.weight) for _, info in made]
    moved = [body_surface_area(info.height * h, info.weight * w) for _, info in made]
    rows = [("shipped", 1.0, own)]
    if group != Group.NOR:
        rows += [("x length", r, own), ("x length, class body", r, moved)]
    real_train = biomarker_matrix([subject_biomarkers(s) for s in train[group]])
    real_held = biomarker_matrix([subject_biomarkers(s) for s in held[group]])
    for name, factor, bodies in rows:
        bms = [rescaled(b, factor, body) for (b, _), body in zip(made, bodies, strict=True)]
        means_row(group, f"synthetic, {name}", f"{factor:.3f}", bms, bodies)
        got = normalised_w1(biomarker_matrix(bms), real_held, real_train, floor="bootstrap")
        cells = " | ".join(f"{got[b]:.2f}" for b in BIOMARKERS)
        w1_rows.append(f"| {group.value} | {name} | {cells} | {max(got.values()):.2f} |\n")
    sys.stdout.flush()
names = [SHORT[b] for b in BIOMARKERS]
sys.stdout.write(
    f"\nW1n against COHORT, the same subjects\n\n| class | row | {' | '.join(names)} | max |\n"
    f"|{'---|' * (len(names) + 3)}\n{''.join(w1_rows)}"
)
