"""Experiment: the ES latents drawn from the ED draw instead of by the copula of their own phase.

    .venv/bin/python reports/synthesis-phantom-v2/vae-v2b/es_from_ed.py linear|meandiff DATA

``linear``: ES = the ED draw + the linear difference of the two phases' scores (same weights, no
truncation); ``meandiff``: ES = the ED draw + the class-mean ED-to-ES difference only. Prints the
ED-to-ES LV centroid movement (px), the regional heterogeneity and the LVEF of 10 subjects per class.
"""

import copy
import sys
from pathlib import Path

import numpy as np

from cardiosynth.data.labels import LV_CAVITY, Group
from cardiosynth.models.catalog import DEFAULT_VERSION
from cardiosynth.models.registry import load_model
from cardiosynth.synthesis import engine
from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer
from cardiosynth.synthesis.sampling import gaussian_scores, sample_pathology


def motion(ed, es):
    out = []
    for k in range(len(ed)):
        a = np.argwhere(ed[k] == LV_CAVITY)
        b = np.argwhere(es[k] == LV_CAVITY)
        if len(a) > 20 and len(b) > 20:
            out.append(np.hypot(*(a.mean(0) - b.mean(0))))
    return np.mean(out)


vae = load_model("vae", DEFAULT_VERSION).module
synth = Synthesizer(
    vae,
    None,
    Path(sys.argv[2]) if len(sys.argv) > 2 else Path("/tmp/ph100"),
    model_versions={"vae": DEFAULT_VERSION},
    device="cpu",
)
original = engine.target_latents
mode = sys.argv[1]


def patched(request, stats, nor, base, rng):
    if stats.phase != "ES":
        return original(request, stats, nor, base, rng)
    ed = synth.class_stats(Group(stats.pathology), "ED", request.ns)
    r1, r2 = copy.deepcopy(rng), copy.deepcopy(rng)
    x_ed = sample_pathology(ed, request.correlation, None, r1)
    v_ed = gaussian_scores(ed, request.correlation, None, r2)
    v_es = gaussian_scores(stats, request.correlation, None, rng)
    if mode == "linear":  # x_ES = x_ED + linear difference of the two phases' draws
        diff = (stats.mean + stats.std * v_es) - (ed.mean + ed.std * v_ed)
        return np.clip(x_ed + diff, stats.min, stats.max)
    if mode == "meandiff":  # x_ES = x_ED + the class-mean difference only
        return np.clip(x_ed + (stats.mean - ed.mean), stats.min, stats.max)
    return original(request, stats, nor, base, copy.deepcopy(rng))


engine.target_latents = patched
for cls in (Group.DCM, Group.NOR, Group.HCM):
    subs = synth.run(SynthesisRequest(cls, n=10, seed=0))
    v = [motion(s.phases[1.0]["ED"].labels, s.phases[1.0]["ES"].labels) for s in subs]
    h = [s.biomarkers[1.0].regional_heterogeneity for s in subs]
    ef = [s.biomarkers[1.0].lv_ef for s in subs]
    line = f"{mode} {cls.value} movement {np.nanmean(v):.2f} heterogeneity {np.nanmean(h):.3f}"
    sys.stdout.write(f"{line} LVEF {np.nanmean(ef):.1f}\n")
