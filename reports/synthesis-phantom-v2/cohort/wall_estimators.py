"""How much of the round trip's wall excess belongs to the estimator: the biomarker (the maximum over
single border pixels, then over sectors and slices) against a caliper-like one (the mean border
thickness of each sector, then the maximum over sectors and slices), on each real subject's
processed labels and their VAE round trip (ED, native grid, all subjects of a class).

    .venv/bin/python reports/synthesis-phantom-v2/cohort/wall_estimators.py DATA VERSION [ROOT] >> OUT.txt
"""

import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
from wall_profile import GROUPS, border_thickness, round_trips

from cardiosynth.data.biomarkers import N_SECTORS, compute_biomarkers
from cardiosynth.models.registry import load_model


def sector_mean_max(volume: npt.NDArray[np.uint8], spacing: tuple[float, float]) -> float:
    """Max over slices and sectors (about the cavity centroid) of the mean border thickness (mm)."""
    best = np.nan
    for k in range(volume.shape[2]):
        found = border_thickness(volume[:, :, k], spacing, N_SECTORS)
        if found is None:
            continue
        values, sector = found
        means = [values[sector == s].mean() for s in range(N_SECTORS) if (sector == s).any()]
        best = np.nanmax([best, *means])
    return float(best)


data, version = Path(sys.argv[1]), sys.argv[2]
vae = load_model("vae", version, Path(sys.argv[3]) if len(sys.argv) > 3 else None).module
for group in GROUPS:
    rows = []
    for subject, truth, decoded in round_trips(vae, version, data, group):
        row = []
        for native in (truth, decoded):
            row += [
                compute_biomarkers(native, native, subject.spacing).max_wall_thickness,
                sector_mean_max(native, subject.spacing[:2]),
            ]
        rows.append(row)
    m = np.nanmean(np.array(rows), axis=0)
    sys.stdout.write(
        f"{version} {group.value:4s} biomarker (pixel max) "
        f"{m[0]:.2f} -> {m[2]:.2f} ({m[2] - m[0]:+.2f} mm) | "
        f"sector-mean max {m[1]:.2f} -> {m[3]:.2f} ({m[3] - m[1]:+.2f} mm)\n"
    )
