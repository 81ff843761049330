from __future__ import annotations

import numpy as np
import pytest

from cardiosynth.models.slices import SliceSet, split_subjects


def test_slices_of_the_phantom(phantom_slices: SliceSet) -> None:
    s = phantom_slices
    assert s.labels.shape[1:] == (128, 128)
    assert s.images.shape == s.labels.shape
    assert set(np.unique(s.labels)) <= {0, 1, 2, 3}
    assert len(s.subject_ids) == 5
    assert set(np.unique(s.phase)) == {0, 1}
    for i in range(5):  # each subject gives as many ED as ES slices, numbered from the base
        ed = s.position[(s.subject == i) & (s.phase == 0)]
        assert np.array_equal(ed, np.arange(len(ed)))
        assert (s.subject == i).sum() == 2 * len(ed)


def test_select_subjects_and_fingerprint(phantom_slices: SliceSet) -> None:
    ids = phantom_slices.subject_ids
    part = phantom_slices.select_subjects([ids[3], ids[1]])
    assert part.subject_ids == (ids[1], ids[3])
    assert set(np.unique(part.subject)) == {0, 1}
    assert len(part) == int(np.isin(phantom_slices.subject, [1, 3]).sum())
    assert part.fingerprint() != phantom_slices.fingerprint()
    assert part.fingerprint() == phantom_slices.select_subjects([ids[1], ids[3]]).fingerprint()
    with pytest.raises(ValueError, match="not in this set"):
        phantom_slices.select_subjects(["patient999"])


def test_split_is_stratified_and_deterministic() -> None:
    ids = [f"p{i:03d}" for i in range(50)]
    groups = [("DCM", "HCM", "MINF", "NOR", "RV")[i // 10] for i in range(50)]
    train, test = split_subjects(ids, groups, holdout=0.2, seed=3)
    assert len(test) == 10
    assert sorted(train + test) == ids
    by_group = {g: sum(1 for s in test if groups[ids.index(s)] == g) for g in set(groups)}
    assert set(by_group.values()) == {2}
    assert split_subjects(ids, groups, holdout=0.2, seed=3) == (train, test)
    assert split_subjects(ids, groups, holdout=0.2, seed=4) != (train, test)


def test_split_of_tiny_sets_and_bad_arguments() -> None:
    train, test = split_subjects(["a", "b", "c"], ["NOR", "DCM", "HCM"], holdout=0.2)
    assert len(test) == 1
    assert len(train) == 2
    with pytest.raises(ValueError, match="holdout"):
        split_subjects(["a", "b"], ["NOR", "NOR"], holdout=1.0)
    with pytest.raises(ValueError, match="at least 2"):
        split_subjects(["a"], ["NOR"])
    with pytest.raises(ValueError, match="groups"):
        split_subjects(["a", "b"], ["NOR"])
