"""Where an infarct moves the LV between ED and ES, per coronary territory: real against synthetic.

Per MINF subject: the territory estimated from its labels (cardiosynth.data.territory), the mean ED ->
ES displacement of the LV cavity's centroid over its mid-ventricular slices in the heart's frame
(toward the RV, across; native pixels, about 1.6 mm; cardiosynth.synthesis.motion) and the regional
heterogeneity biomarker. Real: DATA's MINF subjects (those the statistics and calibrations come from)
and COHORT's (held out); synthetic: the default request (`joint`/`sample`, severity 1, shipped VAE,
statistics and bases from DATA), N subjects per requested territory, seed 0, labels only, without
and with the motion calibration. Rows by estimated territory (`LAD>LCx`: requested LAD, found LCx).

    .venv/bin/python reports/synthesis-phantom-v2/cohort/minf_motion.py DATA COHORT N > OUT.txt
"""

import sys
from pathlib import Path

import numpy as np

from cardiosynth.data.acdc import read_subject
from cardiosynth.data.biomarkers import compute_biomarkers
from cardiosynth.data.labels import Group
from cardiosynth.data.territory import TERRITORIES, estimate_territory
from cardiosynth.models.registry import load_model
from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer
from cardiosynth.synthesis.motion import mid_displacements

data, cohort, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
version = "phantom-v2c"
vae = load_model("vae", version).module


Row = tuple[str, np.ndarray, float]


def measure(ed: np.ndarray, es: np.ndarray, spacing: tuple[float, float, float]) -> Row:
    """Territory, mean mid-ventricular displacement (toward the RV, across), heterogeneity."""
    e, s = np.moveaxis(ed, 2, 0), np.moveaxis(es, 2, 0)
    mean = np.nanmean(mid_displacements(e, s), axis=0)
    het = compute_biomarkers(ed, es, spacing).regional_heterogeneity
    return estimate_territory(e, s).territory, mean, het


def report(source: str, rows: list[Row]) -> None:
    for territory in sorted({t for t, _, _ in rows}):
        means = np.array([m for t, m, _ in rows if t == territory])
        het = np.array([h for t, _, h in rows if t == territory])
        mean, sd = np.nanmean(means, axis=0), np.nanstd(means, axis=0)
        sys.stdout.write(
            f"| {source} | {territory} | {len(means)} | {mean[0]:+.2f} / {mean[1]:+.2f}"
            f" | {sd[0]:.2f} / {sd[1]:.2f} | {np.nanmean(het):.3f} |\n"
        )
    sys.stdout.flush()


sys.stdout.write(
    "| source | territory | subjects | mean displacement toward RV / across (px) | SD over subjects"
    " | regional heterogeneity |\n|---|---|---|---|---|---|\n"
)
for source, root in (("real, DATA (training)", data), ("real, COHORT (held out)", cohort)):
    subjects = [read_subject(p) for p in sorted((root / "training").iterdir())]
    report(
        source, [measure(s.ed_label, s.es_label, s.spacing) for s in subjects if s.info.group == Group.MINF]
    )
for calibrate in (False, True):
    synth = Synthesizer(vae, None, data, model_versions={"vae": version}, calibrate_motion=calibrate)
    for territory in TERRITORIES:
        batch = synth.make_labels(SynthesisRequest(Group.MINF, n=n, seed=0, territory=territory))
        rows = []
        for subject in synth.assemble(batch, None):
            phases = subject.phases[1.0]
            found, mean, het = measure(
                phases["ED"].native_labels, phases["ES"].native_labels, subject.base.spacing
            )
            rows.append((f"{territory}>{found}", mean, het))
        report(f"synthetic, motion calibration {'on' if calibrate else 'off'}", rows)
