"""Where synthetic MINF loses ejection fraction: LV volumes and the ES / ED cavity ratio by level.

Per MINF subject: LV EDV and ESV (ml) and LVEF, and the ES / ED LV cavity volume ratio over the basal,
mid and apical thirds of the ED LV slices (1 - ratio is that level's share of the ejection). Real:
DATA's MINF subjects (those the statistics and calibrations come from) and COHORT's (held out), rows by
the territory estimated from the labels; synthetic: the default request (`joint`/`sample`, severity 1,
shipped VAE, every calibration on), N subjects per requested territory, seed 0, on the native grid.

    .venv/bin/python reports/synthesis-phantom-v2/cohort/minf_ef.py DATA COHORT N > OUT.txt
"""

import sys
from pathlib import Path

import numpy as np

from cardiosynth.data.acdc import read_subject
from cardiosynth.data.labels import LV_CAVITY, Group
from cardiosynth.data.territory import TERRITORIES, estimate_territory
from cardiosynth.models.registry import load_model
from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer

data, cohort, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
version = "phantom-v2c"
vae = load_model("vae", version).module

Row = tuple[str, np.ndarray]


def measure(ed: np.ndarray, es: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """EDV, ESV (ml), LVEF (%), ES / ED cavity ratio in the basal, mid and apical thirds."""
    voxel = float(np.prod(spacing)) / 1000.0
    ed_area = (ed == LV_CAVITY).sum(axis=(0, 1)).astype(float)
    es_area = (es == LV_CAVITY).sum(axis=(0, 1)).astype(float)
    lv = np.flatnonzero(ed_area > 0)
    edv, esv = ed_area.sum() * voxel, es_area.sum() * voxel
    thirds = np.array_split(lv, 3)
    ratios = [es_area[t].sum() / ed_area[t].sum() if len(t) else np.nan for t in thirds]
    return np.array([edv, esv, 100.0 * (1.0 - esv / edv), *ratios])


def report(source: str, rows: list[Row]) -> None:
    for territory in sorted({t for t, _ in rows}):
        values = np.array([v for t, v in rows if t == territory])
        mean = np.nanmean(values, axis=0)
        cells = " | ".join(f"{m:.1f}" for m in mean[:3]) + " | " + " | ".join(f"{m:.3f}" for m in mean[3:])
        sys.stdout.write(f"| {source} | {territory} | {len(values)} | {cells} |\n")
    sys.stdout.flush()


sys.stdout.write(
    "| source | territory | subjects | LV EDV ml | LV ESV ml | LVEF % | ES/ED basal | ES/ED mid"
    " | ES/ED apical |\n"
    "|---|---|---|---|---|---|---|---|---|\n"
)
for source, root in (("real, DATA", data), ("real, COHORT", cohort)):
    rows = []
    for path in sorted((root / "training").iterdir()):
        s = read_subject(path)
        if s.info.group != Group.MINF:
            continue
        found = estimate_territory(np.moveaxis(s.ed_label, 2, 0), np.moveaxis(s.es_label, 2, 0)).territory
        rows.append((found or "?", measure(s.ed_label, s.es_label, s.spacing)))
    report(source, rows)
synth = Synthesizer(vae, None, data, model_versions={"vae": version})
for territory in TERRITORIES:
    batch = synth.make_labels(SynthesisRequest(Group.MINF, n=n, seed=0, territory=territory))
    rows = []
    for subject in synth.assemble(batch, None):
        phases = subject.phases[1.0]
        rows.append((territory, measure(phases["ED"].native_labels, phases["ES"].native_labels,
                                        subject.base.spacing)))  # fmt: skip
    report("synthetic", rows)
