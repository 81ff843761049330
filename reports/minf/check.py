import json
import sys
from pathlib import Path

import numpy as np

from cardiosynth.data.acdc import read_subject
from cardiosynth.data.biomarkers import subject_biomarkers
from cardiosynth.data.classify import classify
from cardiosynth.data.preprocess import preprocess_subject
from cardiosynth.data.territory import estimate_territory


def _out(*parts: object, flush: bool = False) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")


root = Path(sys.argv[1]) / "training"
ok = n = 0
for p in sorted(root.iterdir()):
    meta = json.loads((p / "phantom.json").read_text())
    if meta["group"] != "MINF":
        continue
    s = read_subject(p)
    b = subject_biomarkers(s)
    d = classify(b)
    pp = preprocess_subject(s)
    est = estimate_territory(pp.ed_label, pp.es_label)
    inf = meta["shape"]["infarct"]
    psi_true = np.degrees(meta["shape"]["septal_angle"] - inf["angle"])
    n += 1
    ok += est.territory == meta["territory"]
    _out(
        p.name,
        meta["territory"],
        f"psi={psi_true:6.1f} est={est.angle_deg:6.1f} {est.territory} c={est.contrast:.2f}",
        d.label,
        "fac",
        np.round(b.sector_fac, 2),
        f"ds={inf['depth_start']:.2f} de={inf['depth_end']:.2f} w={np.degrees(inf['width']):.0f}",
    )
_out(f"territory agreement {ok}/{n}")
