"""Group SDs of 20-subject groups over many data-set seeds, free vs stratified population draws.

.venv/bin/python reports/phantom-v2/strata_seeds.py --seeds 100

Population draws only (the targets; rendered volumes match them within 0.1 ml/m², mass and wall
are measured from the labels and scatter more), the first draw of each subject, as a 100-subject
data set draws them (content 2.5: free; content 2.6: one Latin-hypercube cell per subject).
"""

from __future__ import annotations

import argparse

import numpy as np

from cardiosynth.data.labels import ACDC_GROUP_ORDER
from cardiosynth.data.phantom.generator import group_for_index
from cardiosynth.data.phantom.population import ACDC_PUBLISHED, FIELDS, group_strata, sample_population


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--subjects", type=int, default=100)
    args = parser.parse_args()
    for stratified in (False, True):
        in_band, dcm, rv = [], [], []
        for seed in range(args.seeds):
            ok = True
            for group in ACDC_GROUP_ORDER:
                members = [i for i in range(args.subjects) if group_for_index(i, args.subjects) is group]
                cells = group_strata(seed, group, len(members))
                draws = [
                    sample_population(
                        group, np.random.default_rng([seed, i]), cells[r] if stratified else None
                    )
                    for r, i in enumerate(members)
                ]
                for field in FIELDS:
                    values = np.array([getattr(d, field) for d in draws if getattr(d, field) is not None])
                    if values.size < 2:
                        continue
                    mean, sd = ACDC_PUBLISHED[group].get(field)
                    ratio = float(values.std(ddof=1)) / sd
                    ok &= 0.67 <= ratio <= 1.5 and abs(float(values.mean()) - mean) <= sd
                    if (group.value, field) == ("DCM", "lv_edv_index"):
                        dcm.append(ratio)
                    if (group.value, field) == ("RV", "rv_edv_index"):
                        rv.append(ratio)
            in_band.append(ok)
        name = "stratified (2.6)" if stratified else "free (2.5)"
        print(  # noqa: T201 (a report script's output)
            f"{name:17s} seeds {args.seeds}: every group SD within 0.67-1.5 x and mean within 1 SD: "
            f"{np.mean(in_band):.0%}; DCM LVEDVi SD ratio median {np.median(dcm):.2f} "
            f"(5-95 % {np.percentile(dcm, 5):.2f}-{np.percentile(dcm, 95):.2f}, seed 0 {dcm[0]:.2f}); "
            f"RV RVEDVi {np.median(rv):.2f} ({np.percentile(rv, 5):.2f}-{np.percentile(rv, 95):.2f}, "
            f"seed 0 {rv[0]:.2f})"
        )


if __name__ == "__main__":
    main()
