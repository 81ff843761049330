"""Where the LV lies at ES relative to ED, per group: the ES / ED LV-extent length ratio, the mean
shift of its first (basal) and last (apical) slice in slices, and the ED extent's length.

    .venv/bin/python reports/synthesis-phantom-v2/vae-v2b/extent.py DATA
"""

import collections
import sys
from pathlib import Path

import numpy as np

from cardiosynth.synthesis import sources
from cardiosynth.synthesis.equalise import lv_extent

rows: dict[str, list[tuple[float, int, int, int]]] = collections.defaultdict(list)
for ref in sources.scan(Path(sys.argv[1])):
    loaded = sources.load(ref)
    ed, es = lv_extent(loaded.processed.ed_label), lv_extent(loaded.processed.es_label)
    length = ed[1] - ed[0] + 1
    rows[loaded.subject.info.group.value].append(
        ((es[1] - es[0] + 1) / length, es[0] - ed[0], es[1] - ed[1], length)
    )
for group, values in sorted(rows.items()):
    ratio, first, last, slices = np.array(values, dtype=float).mean(axis=0)
    shifts = f"first shift {first:.2f}  last shift {last:.2f}"
    sys.stdout.write(f"{group} ES/ED extent {ratio:.3f}  {shifts}  ED slices {slices:.1f}\n")
