"""What long_axis.py and long_axis_means.py share: a data set's real subjects by class, a subject's
LV ED extent along the long axis (mm) and its BSA (m2), the biomarkers' short names."""

from pathlib import Path
from typing import Any

import numpy as np

from cardiosynth.data.acdc import body_surface_area, read_subject
from cardiosynth.data.labels import LV_CAVITY, Group

# The biomarkers' short names in the tables' headers.
SHORT = {"lv_edv_index": "LVEDVi", "lv_ef": "LVEF", "rv_edv_index": "RVEDVi", "rv_ef": "RVEF",
         "mass_index": "mass i", "max_wall_thickness": "max wall",
         "regional_heterogeneity": "het."}  # fmt: skip


def subjects(root: Path) -> dict[Group, list[Any]]:
    out: dict[Group, list[Any]] = {}
    for p in sorted((root / "training").iterdir()):
        s = read_subject(p)
        out.setdefault(s.info.group, []).append(s)
    return out


def long_axis_mm(s: Any) -> float:
    slices = np.nonzero((s.ed_label == LV_CAVITY).any(axis=(0, 1)))[0]
    return float((slices[-1] - slices[0] + 1) * s.spacing[2])


def bsa(s: Any) -> float:
    return body_surface_area(s.info.height, s.info.weight)
