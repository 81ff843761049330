"""Where along the ventricle the synthetic walls are too thick, and whether a sampling calibration
fitted per zone of the LV extent (``Synthesizer(sampling_zones=K)``) takes it out.

For each class: its real subjects (the data's, those the statistics come from) and 40 synthetic
subjects (default request, seed 0) made with the sampling calibration in 1 zone (the default) and in
each K given. Per subject, ED, native grid: the biomarkers (max wall thickness, LV myocardial mass,
LV EDV and EF, RV EDV), and along the ventricle, in 8 bins of relative position over the slices that
hold myocardium (base to apex), the thickest wall of the slices in the bin (mm, the biomarker's
measure per slice) and the mean myocardial and LV cavity areas (mm2), averaged over subjects.

    .venv/bin/python reports/synthesis-phantom-v2/cohort/sampling_zones.py DATA CACHE CLASSES ZONES > OUT

e.g. ``DATA CACHE DCM,HCM,MINF,NOR,RV 1,3,6`` (CACHE: a statistics and calibration cache; the fits per
zone count are made there once, about a minute each per class and phase on 2 cores).
"""

import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cardiosynth.data.biomarkers import (
    Biomarkers,
    compute_biomarkers,
    global_rv_angle,
    wall_thickness_by_sector,
)
from cardiosynth.data.labels import LV_CAVITY, LV_MYOCARDIUM, Group
from cardiosynth.models.registry import load_model
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer

BINS = 8
N = 40
VERSION = "phantom-v2c"
FIELDS = (("max wall", "max_wall_thickness"), ("mass", "myo_mass"), ("LVEDV", "lv_edv"), ("LVEF", "lv_ef"),
          ("RVEDV", "rv_edv"))  # fmt: skip

Profile = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]


def profile(labels: npt.NDArray[np.uint8], spacing: tuple[float, float, float]) -> Profile:
    """Per bin of relative position (base to apex) over the slices with myocardium of an ED label
    volume ``(X, Y, Z)``: the thickest wall (mm), the mean myocardial and LV cavity areas (mm2)."""
    rv = global_rv_angle(labels)
    slices = [k for k in range(labels.shape[2]) if (labels[:, :, k] == LV_MYOCARDIUM).any()]
    pixel = spacing[0] * spacing[1]
    wall, myo, cavity = (np.full(BINS, np.nan) for _ in range(3))
    where = ((np.arange(len(slices)) + 0.5) / len(slices) * BINS).astype(int)
    for b in range(BINS):
        inside = [slices[i] for i in np.flatnonzero(where == b)]
        if not inside:
            continue
        thick = [wall_thickness_by_sector(labels[:, :, k], spacing[:2], rv) for k in inside]
        finite = [t[np.isfinite(t)] for t in thick if np.isfinite(t).any()]
        wall[b] = max(float(t.max()) for t in finite) if finite else np.nan
        myo[b] = np.mean([(labels[:, :, k] == LV_MYOCARDIUM).sum() * pixel for k in inside])
        cavity[b] = np.mean([(labels[:, :, k] == LV_CAVITY).sum() * pixel for k in inside])
    return wall, myo, cavity


def write(group: Group, name: str, profiles: list[Profile], markers: list[Biomarkers]) -> None:
    figures = " ".join(f"{label} {np.mean([getattr(b, f) for b in markers]):.2f}" for label, f in FIELDS)
    sys.stdout.write(f"{group.value:4s} {name:9s} n {len(markers):2d} | {figures}\n")
    for row, label, fmt in ((0, "wall", "{:6.2f}"), (1, "myo", "{:6.0f}"), (2, "cavity", "{:6.0f}")):
        mean = np.nanmean(np.array([p[row] for p in profiles]), axis=0)
        sys.stdout.write(f"     {label:6s} base->apex " + " ".join(fmt.format(v) for v in mean) + "\n")


def main() -> None:
    data, cache = Path(sys.argv[1]), Path(sys.argv[2])
    groups = [Group(g) for g in sys.argv[3].split(",")]
    zone_counts = [int(z) for z in sys.argv[4].split(",")]
    vae = load_model("vae", VERSION).module
    make = lambda zones: Synthesizer(  # noqa: E731
        vae, None, data, model_versions={"vae": VERSION}, cache_dir=cache, sampling_zones=zones
    )
    for group in groups:
        synth = make(1)
        refs = sources.by_group(synth.refs, group)
        real = [sources.load(r, synth.label_interpolation).subject for r in refs]
        write(group, "real", [profile(s.ed_label, s.spacing) for s in real],
              [compute_biomarkers(s.ed_label, s.es_label, s.spacing) for s in real])  # fmt: skip
        for zones in zone_counts:
            synth = make(zones)
            made = synth.assemble(synth.make_labels(SynthesisRequest(group, n=N, seed=0)), None)
            profiles = [profile(s.phases[1.0]["ED"].native_labels, s.base.spacing) for s in made]
            markers = [b for s in made if (b := s.biomarkers.get(1.0)) is not None]
            write(group, f"{zones} zone{'s' if zones > 1 else ''}", profiles, markers)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
