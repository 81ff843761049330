"""Label and group conventions shared by every layer (ACDC convention everywhere)."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

import numpy as np
import numpy.typing as npt

BACKGROUND: Final = 0
RV_CAVITY: Final = 1
LV_MYOCARDIUM: Final = 2
LV_CAVITY: Final = 3
NUM_CLASSES: Final = 4
LABEL_NAMES: Final[dict[int, str]] = {
    BACKGROUND: "background",
    RV_CAVITY: "RV cavity",
    LV_MYOCARDIUM: "LV myocardium",
    LV_CAVITY: "LV cavity",
}


class Group(StrEnum):
    """ACDC diagnostic groups."""

    NOR = "NOR"
    DCM = "DCM"
    HCM = "HCM"
    MINF = "MINF"
    RV = "RV"


# The order of the ACDC training set (patients 1-20 DCM, 21-40 HCM, 41-60 MINF, 61-80 NOR, 81-100 RV).
ACDC_GROUP_ORDER: Final[tuple[Group, ...]] = (Group.DCM, Group.HCM, Group.MINF, Group.NOR, Group.RV)


def parse_group(value: str) -> Group:
    """Return the :class:`Group` for ``value`` (case-insensitive), or raise ``ValueError``."""
    try:
        return Group(value.strip().upper())
    except ValueError:
        allowed = ", ".join(g.value for g in Group)
        raise ValueError(f"unknown group {value!r}; expected one of {allowed}") from None


def invalid_label_values(labels: npt.NDArray[np.generic]) -> list[float]:
    """Return the sorted distinct values of ``labels`` that are not in {0, 1, 2, 3}.

    Float label maps (as some ACDC files are stored) are accepted when their values are integral.
    """
    array = np.asarray(labels)
    # An integer map within 0..3 (every decoded or cleaned stack) needs no sort: two reductions.
    if array.dtype.kind in "ui" and (array.size == 0 or (array.min() >= 0 and array.max() <= 3)):
        return []
    values = np.unique(array)
    return [float(v) for v in values if v not in (0, 1, 2, 3)]


def as_label_map(labels: npt.NDArray[np.generic], *, what: str = "label map") -> npt.NDArray[np.uint8]:
    """Validate ``labels`` against {0, 1, 2, 3} and return them as ``uint8``.

    Raises:
        ValueError: naming ``what`` and the offending values.
    """
    bad = invalid_label_values(labels)
    if bad:
        shown = ", ".join(f"{v:g}" for v in bad[:8])
        raise ValueError(f"{what}: label values outside {{0, 1, 2, 3}}: {shown}")
    return np.asarray(labels).astype(np.uint8)
