"""Cross-validation folds without leakage: a real subject and every synthetic subject made from it
(its "family") always land in the same fold, so no validation fold holds a heart whose base or
descendant was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cardiosynth.export.cases import Case


def assign_folds(cases: Sequence[Case], n_folds: int = 5, seed: int = 0) -> dict[str, int]:
    """Fold of each training case (test cases are left out), by family.

    Families are spread group by group (the group of their real subject when there is one), so each
    fold gets its share of every group, and within that by size, so folds hold similar case counts.
    Deterministic by ``seed``.

    Raises:
        ValueError: ``n_folds`` < 2, or fewer families than folds (a fold would be empty).
    """
    if n_folds < 2:
        raise ValueError(f"need at least 2 folds, got {n_folds}")
    training = [c for c in cases if not c.test]
    families: dict[str, list[Case]] = {}
    for c in training:
        families.setdefault(c.family, []).append(c)
    if len(families) < n_folds:
        raise ValueError(
            f"{len(families)} base subject(s) cannot fill {n_folds} folds without splitting a base from its "
            "descendants; include the real subjects or use fewer folds"
        )

    def stratum(members: list[Case]) -> str:
        real = [c.group for c in members if c.source == "real"]
        return str(real[0]) if real else "synthetic-only"

    rng = np.random.default_rng([seed, 0xF01D])
    names = sorted(families)
    tie = {name: int(k) for name, k in zip(names, rng.permutation(len(names)), strict=True)}
    order = sorted(names, key=lambda f: (stratum(families[f]), -len(families[f]), tie[f]))
    per_stratum: dict[tuple[str, int], int] = {}
    size = [0] * n_folds
    fold_of_family: dict[str, int] = {}
    for f in order:
        s = stratum(families[f])
        fold = min(range(n_folds), key=lambda k: (per_stratum.get((s, k), 0), size[k], k))
        fold_of_family[f] = fold
        per_stratum[(s, fold)] = per_stratum.get((s, fold), 0) + 1
        size[fold] += len(families[f])
    return {c.case_id: fold_of_family[c.family] for c in training}


def splits(folds: dict[str, int], n_folds: int) -> list[dict[str, list[str]]]:
    """nnU-Net's ``splits_final.json`` content: per fold, the sorted train and val case ids."""
    return [
        {
            "train": sorted(c for c, f in folds.items() if f != k),
            "val": sorted(c for c, f in folds.items() if f == k),
        }
        for k in range(n_folds)
    ]
