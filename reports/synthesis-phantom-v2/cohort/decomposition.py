"""Where the synthetic walls' excess thickness and mass come from: the default engine (``joint``,
severity 1, n per class, seed 0) with its severity-1 end point replaced, one step at a time:

- ``joint``: the default, a joint draw through the truncated-normal copula;
- ``joint, no copula``: the same Gaussian scores, ``mean + std * v`` (no truncation, no transform);
- ``moment-matched copula``: a truncated normal widened until its variance is the class's (tried);
- ``replay``: one training subject's own equalised latents (a real heart through the same LV
  placement, decoder and restore: what the pipeline adds without any sampling);
- ``class mean``: the class mean latents.

Class statistics from DATA (all of it); real figures to compare with: the held-out cohort's row in
`cardiosynth evaluate synthesis --held-out`. Output: mean max wall thickness (mm), mass index (g/m2),
LVEDV index (ml/m2), LVEF (%) and regional heterogeneity per line.

    .venv/bin/python reports/synthesis-phantom-v2/cohort/decomposition.py DATA N CLASSES > decomposition.txt
"""

import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy import stats as sps

from cardiosynth.data.labels import Group
from cardiosynth.models.registry import load_model
from cardiosynth.synthesis import engine, sampling
from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer

data, n, classes = Path(sys.argv[1]), int(sys.argv[2]), [Group(c) for c in sys.argv[3].split(",")]
version = "phantom-v2c"
vae = load_model("vae", version, None).module
cache = Path(tempfile.mkdtemp(prefix="decomposition-"))
default_target = engine.target_latents


def no_copula(request, stats, nor, base, rng):
    return stats.mean + stats.std * sampling.gaussian_scores(stats, "joint", None, rng)


def moment_matched(request, stats, nor, base, rng):
    v = sampling.gaussian_scores(stats, "joint", None, rng)
    live, a, b = sampling._bounds(stats)
    s = np.ones_like(a)  # scale of the untruncated normal: Var(TN(0, s, a, b)) = 1 per entry
    for _ in range(30):
        var = sps.truncnorm.var(a / s, b / s) * s**2
        s = np.clip(s / np.maximum(var, 1e-6) ** 0.25, 1.0, 3.0)
    t = s * sps.truncnorm.ppf(sps.norm.cdf(v), a / s, b / s)
    return np.clip(np.where(live, stats.mean + stats.std * t, stats.mean), stats.min, stats.max)


def replay(request, stats, nor, base, rng):
    k = stats.subject_residuals.shape[0]
    return stats.mean + stats.std * stats.subject_residuals[rng.integers(k)] * np.sqrt(k - 1)


def class_mean(request, stats, nor, base, rng):
    return stats.mean.copy()


variants = {
    "joint (default)": default_target,
    "joint, no copula": no_copula,
    "moment-matched copula": moment_matched,
    "replay": replay,
    "class mean": class_mean,
}
sys.stdout.write("| class | end point | max wall mm | mass index | LVEDV index | LVEF % | heterogeneity |\n")
sys.stdout.write("|---|---|---|---|---|---|---|\n")
for cls in classes:
    for name, fn in variants.items():
        engine.target_latents = fn
        synth = Synthesizer(vae, None, data, model_versions={"vae": version}, cache_dir=cache)
        b = [s.biomarkers[1.0] for s in synth.run(SynthesisRequest(cls, n=n, seed=0))]
        figures = [
            np.nanmean([getattr(x, f) for x in b])
            for f in ("max_wall_thickness", "mass_index", "lv_edv_index", "lv_ef", "regional_heterogeneity")
        ]
        sys.stdout.write(f"| {cls.value} | {name} | " + " | ".join(f"{v:.3g}" for v in figures) + " |\n")
        sys.stdout.flush()
engine.target_latents = default_target
