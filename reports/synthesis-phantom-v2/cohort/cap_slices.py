"""How many stacks of each class hold an apical cap slice: slices with LV myocardium after the last
slice with an LV cavity (processed grid, each phase), and how many slices with LV myocardium come
before the first cavity slice, for each data set given (no model).

The share differs by class (the stacks' coverage ends at a planned depth below the cavity), and with
the LV extent over the cavity a synthetic heart has a cap only where its NOR base has one
(``apical_cap.py`` says what taking the cap into the extent does).

    .venv/bin/python reports/synthesis-phantom-v2/cohort/cap_slices.py DATA [DATA ...] > OUT
"""

import sys
from pathlib import Path

import numpy as np

from cardiosynth.data.labels import Group
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.engine import label_stack
from cardiosynth.synthesis.equalise import lv_extent


def main() -> None:
    sys.stdout.write(
        "data      class phase  n | with a cap slice | cap slices (mean) | LV myocardium before the cavity\n"
    )
    for k, root in enumerate(Path(a) for a in sys.argv[1:]):
        refs = sources.scan(root)
        for group in Group:
            found = [sources.load(r).processed for r in sources.by_group(refs, group)]
            for phase in ("ED", "ES"):
                caps, before = [], []
                for processed in found:
                    stack = label_stack(processed, phase)
                    (first, last), (cap_first, cap_last) = lv_extent(stack), lv_extent(stack, cap=True)
                    caps.append(cap_last - last)
                    before.append(first - cap_first)
                n, with_cap, early = len(caps), np.count_nonzero(caps), np.count_nonzero(before)
                sys.stdout.write(
                    f"data {k + 1:<4d} {group.value:5s} {phase:5s} {n:3d} | "
                    f"{with_cap:3d} ({with_cap / n:4.0%})"
                    f"       | {np.mean(caps):17.2f} | {early:3d}\n"
                )


if __name__ == "__main__":
    main()
