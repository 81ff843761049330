"""The apex compared stack for stack: real and synthetic ED stacks grouped by whether they reach the
apical cap (a slice with LV myocardium after the last slice with an LV cavity), so that the coverage
(which stacks hold a cap, ``cap_slices.txt``) does not pass for the method's shape.

For each class: its 20 training subjects, the held-out cohort's 40, and 40 synthetic subjects (default
request, seed 0) with the LV extent over the cavity (the default) and to the cap
(``Synthesizer(apical_cap=True)``). Per group and coverage (processed grid, pixels, mean over stacks):
the last cavity slice's myocardium and cavity, and for stacks with a cap the first cap slice's
myocardium.

    .venv/bin/python reports/synthesis-phantom-v2/cohort/apex_by_coverage.py DATA COHORT CACHE CLASSES > OUT
"""

import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
from apical_cap import SETTINGS, synthesise
from sampling_zones import VERSION

from cardiosynth.data.labels import LV_CAVITY, LV_MYOCARDIUM, Group
from cardiosynth.models.registry import load_model
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.engine import label_interpolation_of, label_stack
from cardiosynth.synthesis.equalise import lv_extent

Stack = npt.NDArray[np.uint8]


def write(group: Group, name: str, stacks: list[Stack]) -> None:
    """One line per coverage (no cap slice, a cap slice) of ``stacks`` ``(Z, S, S)``."""
    rows: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}
    for s in stacks:
        last, cap_last = lv_extent(s)[1], lv_extent(s, cap=True)[1]
        cap = cap_last > last
        myo = float((s[last] == LV_MYOCARDIUM).sum())
        cavity = float((s[last] == LV_CAVITY).sum())
        cap_myo = float((s[last + 1] == LV_MYOCARDIUM).sum()) if cap else np.nan
        rows[cap].append((myo, cavity, cap_myo))
    for cap, found in rows.items():
        if not found:
            continue
        m = np.mean(np.array(found), axis=0)
        tail = f" | cap slice myo {m[2]:5.0f}" if cap else ""
        sys.stdout.write(
            f"{group.value:4s} {name:9s} {'cap   ' if cap else 'no cap'} n {len(found):2d} | "
            f"last cavity slice myo {m[0]:5.0f} cavity {m[1]:5.0f}{tail}\n"
        )


def main() -> None:
    data, cohort, cache = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    groups = [Group(g) for g in sys.argv[4].split(",")]
    vae = load_model("vae", VERSION).module
    for group in groups:
        for name, root in (("train", data), ("held out", cohort)):
            refs = sources.by_group(sources.scan(root), group)
            write(
                group,
                name,
                [label_stack(sources.load(r, label_interpolation_of(vae)).processed, "ED") for r in refs],
            )
        for name, cap in SETTINGS.items():
            write(group, name, synthesise(vae, data, cache, group, cap)[2])
        sys.stdout.flush()


if __name__ == "__main__":
    main()
