from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cardiosynth.data.labels import Group
from cardiosynth.evaluation.baselines import DecodedPairs, shuffle_decoded_slices, shuffle_slices
from cardiosynth.evaluation.split import cohort_split, link_folder, split_subjects
from cardiosynth.evaluation.stacks import myo_ratio, nearest_dice, resample_stack, stack_dice
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.sources import SubjectRef


def _refs(tmp: Path, per_group: int) -> list[SubjectRef]:
    refs = []
    for g_index, group in enumerate(Group):
        for i in range(per_group):
            path = tmp / f"patient{g_index * 100 + i:03d}"
            refs.append(SubjectRef(path.name, path, group))
    return refs


def test_split_is_seeded_disjoint_and_per_group(tmp_path: Path) -> None:
    refs = _refs(tmp_path, 20)
    split = split_subjects(refs, 0.6, seed=1)
    for group in Group:
        train = {r.subject_id for r in split.train[group]}
        held = {r.subject_id for r in split.held_out[group]}
        assert len(train) == 12
        assert len(held) == 8
        assert not train & held
        assert all(r.group is group for r in split.train[group] + split.held_out[group])
    again = split_subjects(refs, 0.6, seed=1)
    other = split_subjects(refs, 0.6, seed=2)
    assert again.train == split.train
    assert other.train != split.train
    with pytest.raises(ValueError, match="train_fraction"):
        split_subjects(refs, 1.0)
    with pytest.raises(ValueError, match="at least 2"):
        split_subjects(_refs(tmp_path, 1), 0.5)


def test_link_folder_is_a_data_folder_of_the_training_subjects(tmp_path: Path) -> None:
    refs = []
    for i, group in enumerate(("NOR", "NOR", "HCM", "HCM")):
        d = tmp_path / "data" / "training" / f"patient{i + 1:03d}"
        d.mkdir(parents=True)
        (d / "Info.cfg").write_text(f"ED: 1\nES: 5\nGroup: {group}\nHeight: 170\nWeight: 70\nNbFrame: 10\n")
        refs.append(SubjectRef(d.name, d, Group(group)))
    split = split_subjects(refs, 0.5, seed=0)
    root = link_folder(split.train_refs(), tmp_path / "train")
    seen = sources.scan(root)
    assert sorted(r.subject_id for r in seen) == sorted(r.subject_id for r in split.train_refs())
    assert len(seen) == 2
    assert {r.group for r in seen} == {Group.NOR, Group.HCM}
    with pytest.raises(ValueError, match="not empty"):
        link_folder(split.train_refs(), root)


def _stack(z: int, radius: int) -> np.ndarray:
    yy, xx = np.mgrid[:32, :32]
    disc = (yy - 16) ** 2 + (xx - 16) ** 2
    sl = np.where(disc <= radius**2, 3, np.where(disc <= (radius + 3) ** 2, 2, 0)).astype(np.uint8)
    sl[2:6, 2:10] = 1
    return np.repeat(sl[None], z, axis=0)


def test_stack_dice_across_slice_counts_and_nearest() -> None:
    a, b = _stack(8, 6), _stack(12, 6)
    assert stack_dice(a, b) == 1.0
    smaller = _stack(8, 3)
    assert stack_dice(a, smaller) < 0.8
    assert nearest_dice(a, [smaller, b]) == 1.0
    ramp = np.arange(5)[:, None, None] * np.ones((1, 2, 2), int)
    assert resample_stack(ramp, 3)[:, 0, 0].tolist() == [0, 2, 4]
    with pytest.raises(ValueError, match="in-plane"):
        stack_dice(a, np.zeros((4, 16, 16), np.uint8))


def test_myo_ratio_and_slice_shuffle() -> None:
    ed, es = _stack(6, 6), _stack(6, 3)
    assert myo_ratio(ed, ed) == 1.0
    assert myo_ratio(ed, es) == pytest.approx((ed == 2).sum() / (es == 2).sum())
    ramp = np.stack([_stack(1, r)[0] for r in range(2, 10)])
    ((shuffled, _),) = shuffle_slices([(ramp, ramp)], seed=0)
    areas = (ramp == 3).sum(axis=(1, 2))
    assert sorted((shuffled == 3).sum(axis=(1, 2)).tolist()) == sorted(areas.tolist())
    assert not np.array_equal(shuffled, ramp)
    # decoded pairs: the probabilities follow their slices (the same order for labels and shares)
    shares = np.stack([np.eye(4, dtype=np.uint8)[s].transpose(0, 3, 1, 2) * 255 for s in (ramp, ramp)])
    decoded = shuffle_decoded_slices(DecodedPairs([(ramp, ramp)], [(shares[0], shares[1])]), seed=0)
    np.testing.assert_array_equal(decoded.pairs[0][0], shuffled)
    for labels, probabilities in zip(decoded.pairs[0], decoded.probabilities[0], strict=True):
        np.testing.assert_array_equal(np.argmax(probabilities, axis=1), labels)


def test_cohort_split_puts_each_cohort_on_one_side(tmp_path: Path) -> None:
    train, held = _refs(tmp_path / "a", 2), _refs(tmp_path / "b", 3)
    split = cohort_split(train, held)
    for group in Group:
        assert [r.path for r in split.train[group]] == sorted(r.path for r in train if r.group is group)
        assert len(split.held_out[group]) == 3
    with pytest.raises(ValueError, match=r"\['NOR'\] are in only one"):
        cohort_split(train, [r for r in held if r.group is not Group.NOR])
