"""How much each LV sector contracts between ED and ES: real against synthetic, per class and territory.

Per subject: the fractional area change of the LV cavity in each of the six 60-degree sectors over the
mid-ventricular slices (`sector_fac` of cardiosynth.data.biomarkers, sector 0 toward the RV), and the
regional heterogeneity biomarker (1 - min / median of those six). Real: DATA's subjects (those the
statistics and calibrations come from) and COHORT's (held out); synthetic: the default request
(`joint`/`sample`, severity 1, shipped VAE, every calibration on, statistics and bases from DATA),
N subjects per class and per MINF territory, seed 0, labels only. MINF rows by the territory
estimated from the labels (real) or requested (synthetic). Columns: the mean over subjects of each
sector's FAC, then the mean heterogeneity.

    .venv/bin/python reports/synthesis-phantom-v2/cohort/sector_fac.py DATA COHORT N [CLASSES] > OUT.txt
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

data, cohort, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
classes = [Group(c) for c in (sys.argv[4] if len(sys.argv) > 4 else "DCM,HCM,MINF,NOR,RV").split(",")]
version = "phantom-v2c"
vae = load_model("vae", version).module

Row = tuple[str, np.ndarray, float]


def measure(ed: np.ndarray, es: np.ndarray, spacing: tuple[float, float, float], minf: bool) -> Row:
    """Territory (MINF) or "", sector FACs, heterogeneity."""
    bio = compute_biomarkers(ed, es, spacing)
    territory = ""
    if minf:
        territory = estimate_territory(np.moveaxis(ed, 2, 0), np.moveaxis(es, 2, 0)).territory or "?"
    return territory, np.asarray(bio.sector_fac), bio.regional_heterogeneity


def report(source: str, group: Group, rows: list[Row]) -> None:
    for territory in sorted({t for t, _, _ in rows}):
        fac = np.array([f for t, f, _ in rows if t == territory])
        het = np.array([h for t, _, h in rows if t == territory])
        mean, sd = np.nanmean(fac, axis=0), np.nanstd(fac, axis=0)
        cells = " | ".join(f"{m:.2f} ({s:.2f})" for m, s in zip(mean, sd, strict=True))
        name = f"{group.value} {territory}".strip()
        sys.stdout.write(f"| {source} | {name} | {len(fac)} | {cells} | {np.nanmean(het):.3f} |\n")
    sys.stdout.flush()


sys.stdout.write(
    "| source | class | subjects | "
    + " | ".join(f"sector {k} FAC (SD)" for k in range(6))
    + " | heterogeneity |\n|---|---|---|"
    + "---|" * 7
    + "\n"
)
real = {
    source: [read_subject(p) for p in sorted((root / "training").iterdir())]
    for source, root in (("real, DATA", data), ("real, COHORT", cohort))
}
synth = Synthesizer(vae, None, data, model_versions={"vae": version})
for group in classes:
    minf = group == Group.MINF
    for source, subjects in real.items():
        rows = [measure(s.ed_label, s.es_label, s.spacing, minf) for s in subjects if s.info.group == group]
        report(source, group, rows)
    for territory in TERRITORIES if minf else (None,):
        batch = synth.make_labels(SynthesisRequest(group, n=n, seed=0, territory=territory))
        rows = []
        for subject in synth.assemble(batch, None):
            phases = subject.phases[1.0]
            _, fac, het = measure(phases["ED"].native_labels, phases["ES"].native_labels,
                                  subject.base.spacing, False)  # fmt: skip
            rows.append((territory or "", fac, het))
        report("synthetic", group, rows)
