"""How widely the synthetic LVEF spreads, with and without the dithered ES extent, against real.

Per class: mean, standard deviation and 10th-90th percentiles of LVEF over DATA's real subjects of the
class (the statistics' own), COHORT's (held out), and N synthetic subjects of the default request
(`joint`/`sample`, severity 1, shipped VAE, every calibration on, seed SEED, native grid) placed with
the dither (the default) and at the nearest slice (`dither_extents=False`).

40 subjects are too few to compare standard deviations: over 400 the draws keep DCM's spread
(lvef_sample_size.py, lvef_sample_size.txt, and cohort/README.md).

    .venv/bin/python reports/synthesis-phantom-v2/cohort/lvef_spread.py DATA COHORT CLASS N SEED
"""

import sys
from pathlib import Path

import numpy as np

from cardiosynth.data.acdc import read_subject
from cardiosynth.data.biomarkers import subject_biomarkers
from cardiosynth.data.labels import Group
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


def report(source: str, ef: list[float]) -> None:
    a = np.asarray([e for e in ef if np.isfinite(e)])
    p10, p90 = np.percentile(a, [10, 90])
    sys.stdout.write(
        f"| {source} | {len(a)} | {a.mean():.1f} | {a.std(ddof=1):.1f} | {p10:.1f} - {p90:.1f} |\n"
    )
    sys.stdout.flush()


sys.stdout.write(
    f"{group.value}\n\n| source | subjects | LVEF % mean | SD | 10th - 90th |\n|---|---|---|---|---|\n"
)
for source, root in (("real, DATA", data), ("real, COHORT", cohort)):
    subjects = (read_subject(p) for p in sorted((root / "training").iterdir()))
    report(source, [subject_biomarkers(s).lv_ef for s in subjects if s.info.group == group])
model = load_model("vae", version).module
for dither in (True, False):
    synth = Synthesizer(model, None, data, model_versions={"vae": version}, dither_extents=dither)
    batch = synth.make_labels(SynthesisRequest(group, n=n, seed=seed))
    ef = [m.lv_ef for s in synth.assemble(batch, None) if (m := s.biomarkers[1.0]) is not None]
    report(f"synthetic, seed {seed}, {'dithered' if dither else 'nearest slice'}", ef)
