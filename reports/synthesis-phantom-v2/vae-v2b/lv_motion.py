"""Where the synthetic DCM's regional heterogeneity comes from: the LV cavity's in-plane movement
between ED and ES (mean over slices of the distance between the two phases' cavity centroids, in
pixels of the processed grid) and the regional heterogeneity, per class, for the real subjects,
their VAE round trip, the method (default mode, severity 1, n = 10, seed 0), and the class mean
decoded with the same placement (the engine with the sample replaced by the class mean).

    .venv/bin/python reports/synthesis-phantom-v2/vae-v2b/lv_motion.py DATA VERSION
"""

import sys
import tempfile
from pathlib import Path

import numpy as np

from cardiosynth.data.biomarkers import compute_biomarkers
from cardiosynth.data.labels import LV_CAVITY, Group
from cardiosynth.models.registry import load_model
from cardiosynth.synthesis import engine, sources
from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer, label_stack
from cardiosynth.synthesis.stages import decode_latents, encode_slices


def motion(ed: np.ndarray, es: np.ndarray) -> float:
    """Mean over slices (both phases with > 20 cavity pixels) of the ED-to-ES cavity centroid distance."""
    out = []
    for k in range(len(ed)):
        a, b = np.argwhere(ed[k] == LV_CAVITY), np.argwhere(es[k] == LV_CAVITY)
        if len(a) > 20 and len(b) > 20:
            out.append(float(np.hypot(*(a.mean(0) - b.mean(0)))))
    return float(np.mean(out)) if out else float("nan")


data, version = Path(sys.argv[1]), sys.argv[2]
vae = load_model("vae", version, None).module
cache = Path(tempfile.mkdtemp(prefix="lv-motion-"))
classes = (Group.DCM, Group.HCM, Group.MINF, Group.NOR, Group.RV)
rows: dict[str, dict[str, tuple[float, float]]] = {}
synth = Synthesizer(vae, None, data, model_versions={"vae": version}, cache_dir=cache)
bias = synth.logit_bias()
for cls in classes:
    real, trip = [], []
    for ref in sources.by_group(synth.refs, cls):
        loaded = sources.load(ref)
        ed, es = label_stack(loaded.processed, "ED"), label_stack(loaded.processed, "ES")
        s = loaded.subject
        heterogeneity = compute_biomarkers(s.ed_label, s.es_label, s.spacing).regional_heterogeneity
        real.append((motion(ed, es), heterogeneity))
        latents = [encode_slices(vae, x, None, "fp32") for x in (ed, es)]
        decoded = [decode_latents(vae, z, None, None, bias) for z in latents]
        trip.append((motion(*decoded), float("nan")))
    rows.setdefault("real", {})[cls.value] = tuple(np.nanmean(np.array(real), axis=0))
    rows.setdefault("VAE round trip", {})[cls.value] = tuple(np.nanmean(np.array(trip), axis=0))


def made(synth: Synthesizer, cls: Group) -> tuple[float, float]:
    subjects = synth.run(SynthesisRequest(cls, n=10, seed=0))
    values = [(motion(s.phases[1.0]["ED"].labels, s.phases[1.0]["ES"].labels),
               s.biomarkers[1.0].regional_heterogeneity) for s in subjects]  # fmt: skip
    return tuple(np.nanmean(np.array(values), axis=0))


for cls in classes:
    rows.setdefault("method (default)", {})[cls.value] = made(synth, cls)
engine.target_latents = lambda request, stats, nor, base, rng: stats.mean.copy()  # the class mean
mean_synth = Synthesizer(vae, None, data, model_versions={"vae": version}, cache_dir=cache)
for cls in classes:
    rows.setdefault("class mean, same placement", {})[cls.value] = made(mean_synth, cls)

sys.stdout.write("ED->ES LV centroid movement (px, processed grid) / regional heterogeneity\n")
sys.stdout.write(f"{'':28s}" + "".join(f"{c.value:>16s}" for c in classes) + "\n")


def cell(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if np.isfinite(value) else "-"


for name, by_class in rows.items():
    pairs = [by_class[c.value] for c in classes]
    cells = "".join(f"{cell(move, 2):>8s} / {cell(het, 3):>5s}" for move, het in pairs)
    sys.stdout.write(f"{name:28s}{cells}\n")
