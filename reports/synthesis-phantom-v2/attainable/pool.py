"""Biomarker vectors of every subject of a data folder, per class, into an .npz (the pool that
`attainable.py` draws perfect-generator samples from).

    .venv/bin/python reports/synthesis-phantom-v2/attainable/pool.py DATA OUT.npz
"""

import sys
from pathlib import Path

import numpy as np

from cardiosynth.data.biomarkers import subject_biomarkers
from cardiosynth.evaluation.distribution import biomarker_matrix
from cardiosynth.synthesis import sources

data, out = Path(sys.argv[1]), Path(sys.argv[2])
refs = sources.scan(data)
groups = sorted({r.group.value for r in refs if r.group is not None})
matrices = {}
for g in groups:
    members = [r for r in refs if r.group is not None and r.group.value == g]
    matrices[g] = biomarker_matrix([subject_biomarkers(sources.load(r).subject) for r in members])
    sys.stderr.write(f"{g}: {matrices[g].shape[0]} subjects\n")
np.savez(out, **matrices)
