"""Whether a shorter ES LV extent costs a synthetic heart what it costs a real one.

Per class: LVEF and regional heterogeneity of the subjects whose LV extent is shorter at ES than at ED
(the base descended a whole slice) and of the others. Real: DATA's and COHORT's subjects of the class;
synthetic: the default request (`joint`/`sample`, severity 1, shipped VAE, every calibration on, the
dithered extent), N subjects, seed SEED, on the native grid.

    .venv/bin/python reports/synthesis-phantom-v2/cohort/extent_subgroups.py DATA COHORT CLASS N SEED
"""

import sys
from pathlib import Path

import numpy as np

from cardiosynth.data.acdc import read_subject
from cardiosynth.data.biomarkers import Biomarkers, subject_biomarkers
from cardiosynth.data.labels import LV_CAVITY, Group
from cardiosynth.models.registry import load_model
from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer

data, cohort, group, n, seed = (
    Path(sys.argv[1]),
    Path(sys.argv[2]),
    Group(sys.argv[3]),
    int(sys.argv[4]),
    int(sys.argv[5]),
)
version = "phantom-v2c"


def lv_slices(labels: np.ndarray) -> int:
    return int((labels == LV_CAVITY).any(axis=(0, 1)).sum())


def report(source: str, rows: list[tuple[bool, Biomarkers]]) -> None:
    for shorter in (False, True):
        part = [b for s, b in rows if s == shorter]
        if not part:
            continue
        ef = np.nanmean([b.lv_ef for b in part])
        het = np.nanmean([b.regional_heterogeneity for b in part])
        what = "shorter at ES" if shorter else "same length"
        sys.stdout.write(f"| {source} | {what} | {len(part)} | {ef:.1f} | {het:.3f} |\n")
    sys.stdout.flush()


sys.stdout.write(
    f"{group.value}\n\n| source | ES LV extent | subjects | LVEF % | regional heterogeneity |\n"
    "|---|---|---|---|---|\n"
)
for source, root in (("real, DATA", data), ("real, COHORT", cohort)):
    rows = []
    for path in sorted((root / "training").iterdir()):
        s = read_subject(path)
        if s.info.group == group:
            rows.append((lv_slices(s.es_label) < lv_slices(s.ed_label), subject_biomarkers(s)))
    report(source, rows)
synth = Synthesizer(load_model("vae", version).module, None, data, model_versions={"vae": version})
batch = synth.make_labels(SynthesisRequest(group, n=n, seed=seed))
rows = []
for subject in synth.assemble(batch, None):
    phases, markers = subject.phases[1.0], subject.biomarkers[1.0]
    if markers is not None:
        rows.append((lv_slices(phases["ES"].native_labels) < lv_slices(phases["ED"].native_labels), markers))
report(f"synthetic, seed {seed}", rows)
