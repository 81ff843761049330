"""How much of the joint draws' LVEF spread the truncated-normal marginals take.

As lvef_modes.py (processed grid, only the round trip's calibration, nearest slice, `joint`/`sample`,
severity 1, N subjects, seed SEED), with the copula's marginals as shipped (the class's
TN(mean, std, min, max) per entry), untruncated (mean + std * score), and as shipped with the Gaussian
scores scaled by 1.5.

40 subjects are too few to compare standard deviations: over 400 the draws keep DCM's spread
(lvef_sample_size.py, lvef_sample_size.txt, and cohort/README.md).

    .venv/bin/python reports/synthesis-phantom-v2/cohort/lvef_marginals.py DATA CLASS N SEED
"""

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from lvef_common import DRAWS_ALONE, batch_efs, synthesizer

import cardiosynth.synthesis.engine as engine
from cardiosynth.data.labels import Group

data, group, n, seed = Path(sys.argv[1]), Group(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
synth = synthesizer(data, **DRAWS_ALONE)
shipped = engine.copula_transform
variants: dict[str, Callable[..., np.ndarray]] = {
    "truncated normal marginals (shipped)": shipped,
    "untruncated normal marginals": lambda scores, stats: stats.mean + stats.std * np.asarray(scores),
    "truncated, scores x 1.5": lambda scores, stats: shipped(1.5 * np.asarray(scores), stats),
}
sys.stdout.write(
    f"{group.value}, `joint`, processed grid\n\n| marginals | LVEF % mean | SD |\n|---|---|---|\n"
)
for name, transform in variants.items():
    engine.copula_transform = transform  # type: ignore[assignment]
    batch = synth.make_labels(engine.SynthesisRequest(group, n=n, seed=seed))
    ef = np.array(batch_efs(batch))
    sys.stdout.write(f"| {name} | {ef.mean():.1f} | {ef.std(ddof=1):.1f} |\n")
    sys.stdout.flush()
