"""What long_axis.py and long_axis_means.py share: a data set's real subjects by class, a subject's
LV ED extent along the long axis (mm) and its BSA (m2), the biomarkers' short names."""

from pathlib import Path
from typing import Any

from cardiosynth.data.acdc import body_surface_area, read_subject
from cardiosynth.data.labels import Group
from cardiosynth.synthesis.scale import lv_long_axis_mm

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
    return lv_long_axis_mm(s.ed_label, s.spacing[2])  # as the engine's class scale measures it


def bsa(s: Any) -> float:
    return body_surface_area(s.info.height, s.info.weight)
