"""The RV's own length, area and volume, for the RV lead the class scale left (`cohort/README.md`).

Four tables. First, per class, the mean LV and RV ED extents along the long axis (slices holding LV
cavity / RV cavity, first to last, times the slice spacing) of DATA's real subjects, in mm and over
NOR's. Second, the same extents of N synthetic subjects per class (the default request, seed 0,
shipped VAE, labels on the base's native grid), over the base's own slice spacing and over the
class-scaled one the engine writes (`cardiosynth.synthesis.scale`, the LV's ratio for both
ventricles), with the real class's alongside. Third, the RV's mean area per slice over its own
extent (cm2, native grid, ED and ES), synthetic against real, which with the extent makes its
volume. Fourth, the RV cavity's volume (ml; the synthetic over the class-scaled spacing) and its EF,
with the sampling calibration fitting the LV's labels only (the default) and the RV's volume as
well (`Synthesizer(calibrate_rv=True)`).
CACHE: the engine's cache folder (optional; the calibrations are fitted without one).

    .venv/bin/python reports/synthesis-phantom-v2/cohort/rv_long_axis.py DATA N [CACHE]
"""

import sys
from pathlib import Path
from typing import Any

import numpy as np
from long_axis_common import subjects
from lvef_common import VERSION, vae

from cardiosynth.data.labels import LV_CAVITY, RV_CAVITY, Group
from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer

data, n = Path(sys.argv[1]), int(sys.argv[2])
cache = Path(sys.argv[3]) if len(sys.argv) > 3 else None
GROUPS = (Group.DCM, Group.HCM, Group.MINF, Group.RV, Group.NOR)


def rv_area_cm2(labels: Any, spacing: Any) -> float:
    """Mean RV cavity area per slice over the slices that hold RV cavity (cm2)."""
    per_slice = (labels == RV_CAVITY).sum(axis=(0, 1))
    return float(per_slice[per_slice > 0].mean() * spacing[0] * spacing[1] / 100.0)


def rv_ml(labels: Any, spacing: Any) -> float:
    """RV cavity volume (ml) of a native ``(X, Y, Z)`` label stack of voxel size ``spacing`` (mm)."""
    return float((labels == RV_CAVITY).sum() * np.prod(spacing) / 1000.0)


def mean_se(values: Any) -> str:
    return f"{values.mean():.2f} ({values.std(ddof=1) / np.sqrt(len(values)):.2f})"


def extent_mm(labels: Any, label: int, slice_mm: float) -> float:
    present = np.nonzero((labels == label).any(axis=(0, 1)))[0]
    return float((present[-1] - present[0] + 1) * slice_mm) if present.size else float("nan")


loaded = subjects(data)
areas = {
    g: np.array([[rv_area_cm2(s.ed_label, s.spacing), rv_area_cm2(s.es_label, s.spacing)] for s in items])
    for g, items in loaded.items()
}
volumes = {
    g: np.array([[rv_ml(s.ed_label, s.spacing), rv_ml(s.es_label, s.spacing)] for s in items])
    for g, items in loaded.items()
}
real = {
    g: np.array([[extent_mm(s.ed_label, c, s.spacing[2]) for c in (LV_CAVITY, RV_CAVITY)] for s in items])
    for g, items in loaded.items()
}
nor = real[Group.NOR].mean(axis=0)
sys.stdout.write(
    "Real subjects of DATA, ED\n\n"
    "| class | subjects | LV extent mm | RV extent mm | LV over NOR's | RV over NOR's |\n"
    "|---|---|---|---|---|---|\n"
)
for group in GROUPS:
    lv, rv = real[group].mean(axis=0)
    ratios = f"{lv / nor[0]:.3f} | {rv / nor[1]:.3f}"
    sys.stdout.write(f"| {group.value} | {len(real[group])} | {lv:.1f} | {rv:.1f} | {ratios} |\n")

synth = Synthesizer(vae(), None, data, model_versions={"vae": VERSION}, cache_dir=cache, calibrate_rv=False)
sys.stdout.write(
    f"\n{n} synthetic subjects per class (seed 0), ED: mean extent mm (standard error) over the base's\n"
    "slice spacing / over the class-scaled one; the real class's mean\n\n"
    "| class | LV, base spacing | LV, scaled | LV, real | RV, base spacing | RV, scaled | RV, real |\n"
    "|---|---|---|---|---|---|---|\n"
)
area_rows, volume_rows = [], []
for group in GROUPS:
    made = synth.assemble(synth.make_labels(SynthesisRequest(group, n=n, seed=0)), None)
    made_areas = np.array(
        [[rv_area_cm2(s.phases[1.0][ph].native_labels, s.base.spacing) for ph in ("ED", "ES")] for s in made]
    )
    area_cells = [
        f"{mean_se(made_areas[:, k])} | {mean_se(areas[group][:, k])} | "
        f"{made_areas[:, k].mean() / areas[group][:, k].mean():.3f}"
        for k in range(2)
    ]
    area_rows.append(f"| {group.value} | {' | '.join(area_cells)} |\n")
    synth.calibrate_rv = True
    rv_fitted = synth.assemble(synth.make_labels(SynthesisRequest(group, n=n, seed=0)), None)
    synth.calibrate_rv = False
    for fit, subjects_made in (("LV only (default)", made), ("RV volume too", rv_fitted)):
        made_ml = np.array([
            [rv_ml(s.phases[1.0][ph].native_labels, s.spacing(1.0)) for ph in ("ED", "ES")]
            for s in subjects_made
        ])  # fmt: skip
        volume_cells = [
            f"{mean_se(made_ml[:, k])} | {mean_se(volumes[group][:, k])} | "
            f"{made_ml[:, k].mean() / volumes[group][:, k].mean():.3f}"
            for k in range(2)
        ]
        ef = [100.0 * (1.0 - v[:, 1] / v[:, 0]) for v in (made_ml, volumes[group])]
        ef_cells = f"{mean_se(ef[0])} | {mean_se(ef[1])}"
        volume_rows.append(f"| {group.value} | {fit} | {' | '.join(volume_cells)} | {ef_cells} |\n")
    cells = []
    for c, label in enumerate((LV_CAVITY, RV_CAVITY)):
        for spacing in ("base", "scaled"):
            values = np.array([
                extent_mm(s.phases[1.0]["ED"].native_labels, label,
                          s.base.spacing[2] if spacing == "base" else s.spacing(1.0)[2])
                for s in made
            ])  # fmt: skip
            cells.append(f"{values.mean():.1f} ({values.std(ddof=1) / np.sqrt(len(values)):.1f})")
        cells.append(f"{real[group][:, c].mean():.1f}")
    sys.stdout.write(f"| {group.value} | {' | '.join(cells)} |\n")
    sys.stdout.flush()
sys.stdout.write(
    "\nRV cavity area per slice over its own extent, cm2 (standard error): synthetic (the same subjects),\n"
    "real, their ratio\n\n| class | ED synthetic | ED real | ED ratio | ES synthetic | ES real | ES ratio |\n"
    f"|---|---|---|---|---|---|---|\n{''.join(area_rows)}"
)
sys.stdout.write(
    "\nRV cavity volume, ml (standard error): synthetic (the same subjects, over the class-scaled\n"
    "spacing; and with the sampling calibration fitting the RV's volume too), real, their ratio;\n"
    "RV EF %\n\n"
    "| class | sampling calibration | ED synthetic | ED real | ED ratio | ES synthetic | ES real | ES ratio "
    "| EF synthetic | EF real |\n"
    f"|---|---|---|---|---|---|---|---|---|---|\n{''.join(volume_rows)}"
)
