"""What a perfect generator scores on the distribution targets, at an evaluation's sample sizes.

A perfect generator draws new real subjects of the class. Given a pool of real biomarker vectors of
one class, larger than an evaluation needs, :func:`perfect_sampler` draws disjoint training,
held-out and "synthetic" sets from it many times and computes :func:`.distribution_figures` for
each draw, as ``cardiosynth evaluate synthesis`` does for a row. The share of draws that meet a
target is the most any generator can be expected to reach at those sizes: a target that a perfect
generator meets in 30 % of draws cannot tell a good method from a bad one at that size, whatever the
method does. (Normalised W1 with the one-split floor divides one noisy distance by another alike
noisy one, and the target takes the worst of seven such ratios.)

Pure numpy: the pool is a matrix; building it (phantom subjects, their biomarkers) is the caller's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from cardiosynth.evaluation.distribution import (
    BIOMARKERS,
    K_DEFAULT,
    MAX_W1_NORMALISED,
    MIN_PR,
    W1_KEY_SUFFIX,
    distribution_figures,
)

FloatArray = npt.NDArray[np.float64]


def perfect_sampler(
    pool: FloatArray,
    *,
    n_train: int,
    n_held: int,
    n_synth: int,
    draws: int = 500,
    k: int = K_DEFAULT,
    seed: int = 0,
    names: tuple[str, ...] = BIOMARKERS,
    synthetic_pool: FloatArray | None = None,
) -> dict[str, Any]:
    """Distribution figures of a perfect generator over ``draws`` disjoint draws from ``pool``.

    Args:
        pool: ``(N, len(names))`` biomarker vectors of one class's real subjects (rows with a
            non-finite entry are left out); ``N >= n_train + n_held + n_synth`` finite rows. The
            draws are without replacement within a draw, so the three sets never share a subject.
        n_train, n_held, n_synth: the evaluation's training split (the W1 floor's reference), its
            held-out subjects and its synthetic subjects per class.
        draws: Monte Carlo draws; ``seed`` makes them reproducible.
        synthetic_pool: the power side: rows aligned with ``pool`` (the same subjects, distorted as
            a flawed sampler would, e.g. shrunk toward the mean): the synthetic set is drawn from
            these rows instead, so a target's share of draws met is how often it passes that sampler.

    Returns:
        ``floors``: for each W1 floor (:data:`.W1_KEY_SUFFIX`), per biomarker the median and 90th
        percentile of normalised W1 and the share of draws within :data:`MAX_W1_NORMALISED`, the
        median of the maximum over biomarkers and the share of draws whose maximum is within it (the
        W1 target), and the share of draws meeting all three distribution targets at once; the
        medians of precision and recall and the share of draws at or above :data:`MIN_PR` for each;
        the median range share.

    Raises:
        ValueError: a non-positive size or ``draws``, or a pool too small for one draw.
    """
    sizes = {"n_train": n_train, "n_held": n_held, "n_synth": n_synth, "draws": draws}
    bad = {key: v for key, v in sizes.items() if v < 1}
    if bad:
        raise ValueError(f"sizes and draws must be positive, got {bad}")
    pool = np.asarray(pool, dtype=np.float64)
    other = pool if synthetic_pool is None else np.asarray(synthetic_pool, dtype=np.float64)
    if other.shape != pool.shape:
        raise ValueError(f"synthetic_pool's shape {other.shape} differs from the pool's {pool.shape}")
    if pool.ndim != 2 or pool.shape[1] != len(names):
        raise ValueError(
            f"pool has shape {pool.shape}: expected (N, {len(names)}) columns, one per biomarker"
        )
    keep = np.isfinite(pool).all(axis=1) & np.isfinite(other).all(axis=1)
    rows, synth_rows = pool[keep], other[keep]
    need = n_train + n_held + n_synth
    if len(rows) < need:
        raise ValueError(
            f"the pool has {len(rows)} finite subjects; a draw of {n_train} + {n_held} + {n_synth} "
            f"needs {need}"
        )
    rng = np.random.default_rng(seed)
    w1 = {floor: np.empty((draws, len(names))) for floor in W1_KEY_SUFFIX}
    precision, recall, share = np.empty(draws), np.empty(draws), np.empty(draws)
    for t in range(draws):
        order = rng.permutation(len(rows))
        train = rows[order[:n_train]]
        held = rows[order[n_train : n_train + n_held]]
        synth = synth_rows[order[n_train + n_held : need]]
        fig = distribution_figures(synth, held, train, k)
        for floor, values in w1.items():
            values[t] = [fig[f"w1_normalised{W1_KEY_SUFFIX[floor]}"][name] for name in names]
        precision[t], recall[t], share[t] = fig["precision"], fig["recall"], fig["range_share"]
    with np.errstate(invalid="ignore"):
        pr_met = (precision >= MIN_PR) & (recall >= MIN_PR)  # NaN (too few rows) fails

    def per_biomarker(column_values: FloatArray) -> dict[str, float]:
        return dict(zip(names, column_values.tolist(), strict=True))

    floors: dict[str, dict[str, Any]] = {}
    for floor, values in w1.items():
        w1_met = values.max(axis=1) <= MAX_W1_NORMALISED  # inf (a zero floor) fails, as in the evaluation
        floors[floor] = {
            "w1_normalised_median": per_biomarker(np.median(values, axis=0)),
            "w1_normalised_q90": per_biomarker(np.quantile(values, 0.9, axis=0)),
            "w1_met_share": per_biomarker((values <= MAX_W1_NORMALISED).mean(axis=0)),
            "w1_normalised_max_median": float(np.median(values.max(axis=1))),
            "w1_max_met_share": float(w1_met.mean()),
            "all_met_share": float((w1_met & pr_met).mean()),
        }
    return {
        **sizes,
        "k": k,
        "floors": floors,
        "precision_median": float(np.nanmedian(precision)),
        "recall_median": float(np.nanmedian(recall)),
        "precision_met_share": float((precision >= MIN_PR).mean()),
        "recall_met_share": float((recall >= MIN_PR).mean()),
        "range_share_median": float(np.nanmedian(share)),
    }
