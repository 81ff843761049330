"""How much the sampling calibration's fitted correction depends on which end points it is fitted on:
per class, the calibration (Synthesizer.sampling_calibration, ED, the default request) fitted with
the shipped seed (SAMPLING_CALIBRATION_SEED) and others, each on N end points, drawn independently
("plain") and in antithetic pairs (engine.SAMPLING_CALIBRATION_ANTITHETIC: two end points per base,
the second with the first's Gaussian scores negated). "before" is the decoded-over-real pixel ratio
of the LV myocardium and cavity in the end points' LV extents with the round trip's offsets only
(the over-call the fit corrects, as that draw of end points sees it); "offsets" are the fitted
logits. Class statistics and the truth from DATA.

    .venv/bin/python reports/synthesis-phantom-v2/cohort/sampling_calibration_noise.py \
        DATA N CLASSES [SEEDS] > OUT.txt
"""

import sys
import tempfile
from pathlib import Path

import numpy as np

import cardiosynth.synthesis.engine as engine
from cardiosynth.data.labels import LV_CAVITY, LV_MYOCARDIUM, Group
from cardiosynth.models.registry import load_model

data, n, classes = Path(sys.argv[1]), int(sys.argv[2]), [Group(c) for c in sys.argv[3].split(",")]
others = int(sys.argv[4]) if len(sys.argv) > 4 else 4
version = "phantom-v2c"
vae = load_model("vae", version, None).module
shipped, shipped_pairs = engine.SAMPLING_CALIBRATION_SEED, engine.SAMPLING_CALIBRATION_ANTITHETIC
seeds = [shipped, *range(1, others + 1)]
synth = engine.Synthesizer(
    vae, None, data, model_versions={"vae": version}, cache_dir=Path(tempfile.mkdtemp()),
    sampling_calibration_subjects=n,
)  # fmt: skip
sys.stdout.write(f"{n} end points per fit, ED\n\n")
sys.stdout.write(
    "| class | draws | seed | myocardium before | LV cavity before | offset myocardium | offset LV cavity |\n"
)
sys.stdout.write("|---|---|---|---|---|---|---|\n")
for cls in classes:
    for pairs in (False, True):
        engine.SAMPLING_CALIBRATION_ANTITHETIC = pairs  # read at fit time; part of the cache key
        draws = "antithetic" if pairs else "plain"
        before, offsets = [], []
        for seed in seeds:
            engine.SAMPLING_CALIBRATION_SEED = seed  # as above
            fit = synth.sampling_calibration(engine.SynthesisRequest(cls, n=1), "ED")
            b, o = fit.ratio_before, fit.logit_bias
            before.append(b[[LV_MYOCARDIUM, LV_CAVITY]])
            offsets.append(o[[LV_MYOCARDIUM, LV_CAVITY]])
            name = f"{seed} (shipped)" if seed == shipped else str(seed)
            sys.stdout.write(
                f"| {cls.value} | {draws} | {name} | {b[LV_MYOCARDIUM]:.3f} | {b[LV_CAVITY]:.3f} | "
                f"{o[LV_MYOCARDIUM]:+.2f} | {o[LV_CAVITY]:+.2f} |\n"
            )
            sys.stdout.flush()
        m, s = np.mean(before, 0), np.std(before, 0, ddof=1)
        om, os_ = np.mean(offsets, 0), np.std(offsets, 0, ddof=1)
        sys.stdout.write(
            f"| {cls.value} | {draws} | mean +- SD | {m[0]:.3f} +- {s[0]:.3f} | {m[1]:.3f} +- {s[1]:.3f} | "
            f"{om[0]:+.2f} +- {os_[0]:.2f} | {om[1]:+.2f} +- {os_[1]:.2f} |\n"
        )
engine.SAMPLING_CALIBRATION_SEED, engine.SAMPLING_CALIBRATION_ANTITHETIC = shipped, shipped_pairs
