import collections
import sys
from pathlib import Path

import numpy as np

from cardiosynth.data.biomarkers import compute_biomarkers
from cardiosynth.data.classify import classify
from cardiosynth.data.labels import Group
from cardiosynth.data.preprocess import restore_labels
from cardiosynth.models.registry import load_model
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.stages import decode_latents, encode_stacks


def _out(*parts: object, flush: bool = False) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")


vae = load_model("vae", sys.argv[2] if len(sys.argv) > 2 else "phantom-v1", None).module.eval()
refs = sources.by_group(sources.scan(Path(sys.argv[1])), Group.MINF)
calls = []
for r in refs:
    x = sources.load(r)
    p, s = x.processed, x.subject
    z = encode_stacks(vae, [p.ed_label, p.es_label])
    ed = decode_latents(vae, z[0])
    es = decode_latents(vae, z[1])
    b = compute_biomarkers(
        restore_labels(ed, p.geometry),
        restore_labels(es, p.geometry),
        s.spacing,
        height=s.info.height,
        weight=s.info.weight,
    )
    d = classify(b).label
    calls.append(d)
    _out(r.subject_id, d, f"EF {b.lv_ef:.0f}", np.round(b.sector_fac, 2))
_out("VAE round trip:", collections.Counter(calls))
