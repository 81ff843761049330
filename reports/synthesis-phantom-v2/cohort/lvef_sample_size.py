"""Is the synthetic DCM LVEF too narrow, or was 40 subjects too few to tell: the spread of LVEF over
N synthetic subjects of CLASS (one request, made in chunks of 100), its bootstrap interval, and the
standard deviation of each consecutive group of 40 subjects (the size of lvef_spread.py's and
lvef_modes.py's rows; the first group is those rows' subjects), beside DATA's and COHORT's real
subjects. Processed grid (LV cavity pixels), severity 1, seed SEED, three set-ups: the shipped default
(`joint`/`sample`, every calibration, dithered ES extents), the same at the nearest slice, and
lvef_modes.py's (only the round trip's calibration, nearest slice), which holds the draws alone.

    .venv/bin/python reports/synthesis-phantom-v2/cohort/lvef_sample_size.py DATA COHORT CLASS N SEED
"""

import sys
from pathlib import Path

import numpy as np
from lvef_common import DRAWS_ALONE, batch_efs, ef, synthesizer

from cardiosynth.data.labels import Group
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.engine import SynthesisRequest, label_stack

data, cohort, group = Path(sys.argv[1]), Path(sys.argv[2]), Group(sys.argv[3])
n, seed = int(sys.argv[4]), int(sys.argv[5])
GROUP_SIZE, CHUNK, BOOT = 40, 100, 2000
rng = np.random.default_rng(0)


def row(source: str, values: list[float]) -> None:
    a = np.asarray(values)
    boot = a[rng.integers(0, len(a), (BOOT, len(a)))].std(axis=1, ddof=1)
    low, high = np.percentile(boot, [5, 95])
    groups = [a[k : k + GROUP_SIZE].std(ddof=1) for k in range(0, len(a) - GROUP_SIZE + 1, GROUP_SIZE)]
    spread = (
        f"{groups[0]:.1f} | {min(groups):.1f} - {np.median(groups):.1f} - {max(groups):.1f}"
        if len(groups) > 1 else "- | -"
    )  # fmt: skip
    sd = f"{a.std(ddof=1):.1f} | {low:.1f} - {high:.1f}"
    sys.stdout.write(f"| {source} | {len(a)} | {a.mean():.1f} | {sd} | {spread} |\n")
    sys.stdout.flush()


def real(root: Path) -> list[float]:
    synth = synthesizer(root)
    refs = sorted(sources.by_group(synth.refs, group), key=lambda r: r.subject_id)
    return [ef(label_stack(p, "ED"), label_stack(p, "ES")) for p in (synth._load(r).processed for r in refs)]


sys.stdout.write(
    f"{group.value}, processed grid, seed {seed}\n\n"
    f"| source | subjects | LVEF % mean | SD | SD, 90 % bootstrap | SD of subjects 0-{GROUP_SIZE - 1} "
    f"| SD per {GROUP_SIZE}: min - median - max |\n|---|---|---|---|---|---|---|\n"
)
row("real, DATA", real(data))
row("real, COHORT", real(cohort))
setups = {
    "shipped default (dithered)": {},
    "shipped, nearest slice": {"dither_extents": False},
    "draws alone (lvef_modes.py)": DRAWS_ALONE,
}
request = SynthesisRequest(group, n=n, seed=seed)
for name, options in setups.items():
    synth = synthesizer(data, **options)
    chunks = (synth.make_labels(request, subjects=range(k, min(k + CHUNK, n))) for k in range(0, n, CHUNK))
    row(name, [e for batch in chunks for e in batch_efs(batch)])
