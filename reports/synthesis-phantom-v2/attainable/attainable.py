"""What a perfect generator scores on issue 9's distribution targets, per class, at the sample sizes of
`cardiosynth evaluate synthesis` (a 60 % split of the 100-subject phantom: 12 training, 8 held-out,
10 synthetic per class) and of the same with an external held-out cohort (20 training, 40 held-out,
40 synthetic), with both W1 floors; and, as the power side, two samplers that must fail: a perfect
sample shrunk to half its spread about its mean (a sampler that collapses toward the class mean) and
one moved by half a standard deviation in every biomarker.

    .venv/bin/python reports/synthesis-phantom-v2/attainable/pool.py POOL_DATA pool.npz
    .venv/bin/python reports/synthesis-phantom-v2/attainable/attainable.py pool.npz > attainable.md

POOL_DATA: `cardiosynth phantom --out POOL_DATA --subjects 500 --seed 2` (100 per class, none of
them seen by the shipped models).
"""

import sys

import numpy as np

from cardiosynth.evaluation.attainable import perfect_sampler
from cardiosynth.evaluation.distribution import finite_rows

DESIGNS = {"in-data split (12 / 8 / 10)": (12, 8, 10), "external cohort (20 / 40 / 40)": (20, 40, 40)}
DRAWS = 300


def distorted(pool: np.ndarray, how: str) -> np.ndarray:
    """The pool's subjects as a flawed sampler would return them (row-aligned)."""
    out = pool.copy()
    if how == "shrunk":
        out = out.mean(axis=0) + 0.5 * (out - out.mean(axis=0))
    elif how == "shifted":
        out = out + 0.5 * pool.std(axis=0, ddof=1)
    return out


def draw(pool: np.ndarray, sizes: tuple[int, int, int], how: str, seed: int) -> dict:
    """Train and held-out sets real; the synthetic set real (``perfect``) or distorted."""
    bad = None if how == "perfect" else distorted(pool, how)
    return perfect_sampler(
        pool, n_train=sizes[0], n_held=sizes[1], n_synth=sizes[2], draws=DRAWS, seed=seed, synthetic_pool=bad
    )


pool = np.load(sys.argv[1])
sys.stdout.write(
    "| class | design | sampler | W1 target met, split floor | bootstrap floor "
    "| median max W1n split / bootstrap | precision >= 0.7 | recall >= 0.7 | all three (bootstrap) |\n"
    "|---|---|---|---|---|---|---|---|---|\n"
)
for cls in pool.files:
    rows = finite_rows(pool[cls])
    for design, sizes in DESIGNS.items():
        for how in ("perfect", "shrunk", "shifted"):
            r = draw(rows, sizes, how, seed=0)
            s, b = r["floors"]["split"], r["floors"]["bootstrap"]
            sys.stdout.write(
                f"| {cls} | {design} | {how} | {s['w1_max_met_share']:.0%} | {b['w1_max_met_share']:.0%} "
                f"| {s['w1_normalised_max_median']:.2f} / {b['w1_normalised_max_median']:.2f} "
                f"| {r['precision_met_share']:.0%} | {r['recall_met_share']:.0%} "
                f"| {b['all_met_share']:.0%} |\n"
            )
            sys.stdout.flush()
