"""The VAE round trip of every subject of a data set, with the engine's decoder calibration: decoded
over true volume per group, phase and label (RV / myocardium / LV), and the LVEF, RVEF and regional
heterogeneity differences (round trip minus the processed labels).

    .venv/bin/python reports/synthesis-phantom-v2/vae-v2b/roundtrip.py DATA VERSION [uncalibrated]
"""

import collections
import sys
import tempfile
from pathlib import Path

import numpy as np

from cardiosynth.data.biomarkers import compute_biomarkers
from cardiosynth.data.preprocess import restore_labels
from cardiosynth.models.registry import load_model
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.engine import Synthesizer
from cardiosynth.synthesis.stages import decode_latents, encode_stacks

data, version = Path(sys.argv[1]), sys.argv[2]
vae = load_model("vae", version, None)
cache = Path(tempfile.mkdtemp(prefix="roundtrip-"))
synth = Synthesizer(vae.module, None, data, model_versions={"vae": vae.version}, cache_dir=cache)
bias = None if len(sys.argv) > 3 and sys.argv[3] == "uncalibrated" else synth.logit_bias()
sys.stdout.write(f"bias {None if bias is None else np.round(bias, 3)}\n")
out: dict[tuple[str, ...], list[float]] = collections.defaultdict(list)
for ref in sources.scan(data):
    loaded = sources.load(ref)
    p, info = loaded.processed, loaded.subject.info
    z = encode_stacks(vae.module, [p.ed_label, p.es_label])
    ed, es = (decode_latents(vae.module, zi, logit_bias=bias) for zi in z)
    g = info.group.value

    kw = {"height": info.height, "weight": info.weight}
    spacing = loaded.subject.spacing
    trip = compute_biomarkers(restore_labels(ed, p.geometry), restore_labels(es, p.geometry), spacing, **kw)
    true = compute_biomarkers(
        restore_labels(p.ed_label, p.geometry), restore_labels(p.es_label, p.geometry), spacing, **kw
    )
    for phase, a, b in (("ED", ed, p.ed_label), ("ES", es, p.es_label)):
        for c in (1, 2, 3):
            out[(g, phase, str(c))].append(np.count_nonzero(a == c) / max(1, np.count_nonzero(b == c)))
    out[(g, "lv_ef")].append(trip.lv_ef - true.lv_ef)
    out[(g, "rv_ef")].append(trip.rv_ef - true.rv_ef)
    out[(g, "het")].append(trip.regional_heterogeneity - true.regional_heterogeneity)
for g in sorted({k[0] for k in out}):
    vols = " ".join(
        f"{ph}:" + "/".join(f"{np.mean(out[(g, ph, str(c))]):.3f}" for c in (1, 2, 3)) for ph in ("ED", "ES")
    )
    lv, rv, het = (np.mean(out[(g, k)]) for k in ("lv_ef", "rv_ef", "het"))
    sys.stdout.write(f"{g} {vols} dLVEF {lv:.1f} dRVEF {rv:.1f} dhet {het:.3f}\n")
