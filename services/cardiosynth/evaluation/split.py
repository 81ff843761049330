"""Training / held-out split of a data folder's subjects, per group, for the synthesis evaluation.

The class statistics (and the NOR bases) come from the training subjects; every comparison is
against the held-out ones, so that a method that replays its training data cannot look better
than real subjects it has never seen. The synthesis engine works on a data folder, so the
training split is materialised as a folder of symbolic links to the subject folders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cardiosynth.data.labels import Group
from cardiosynth.synthesis.sources import SubjectRef


@dataclass(frozen=True)
class Split:
    """Subjects of each group for the statistics (``train``) and for the comparisons (``held_out``)."""

    train: dict[Group, list[SubjectRef]]
    held_out: dict[Group, list[SubjectRef]]

    def train_refs(self) -> list[SubjectRef]:
        return [r for refs in self.train.values() for r in refs]


def split_subjects(refs: list[SubjectRef], train_fraction: float = 0.6, seed: int = 0) -> Split:
    """Seeded split of each group's subjects: ``round(train_fraction * n)`` to training (at least one
    each side). Subjects without a group are left out.

    Raises:
        ValueError: ``train_fraction`` not in (0, 1), or a group present with fewer than 2 subjects.
    """
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    train: dict[Group, list[SubjectRef]] = {}
    held: dict[Group, list[SubjectRef]] = {}
    for index, group in enumerate(Group):
        members = sorted((r for r in refs if r.group is group), key=lambda r: r.subject_id)
        if not members:
            continue
        if len(members) < 2:
            raise ValueError(f"group {group.value} has {len(members)} subject; a split needs at least 2")
        order = np.random.default_rng([seed, index]).permutation(len(members))
        n_train = min(max(1, round(train_fraction * len(members))), len(members) - 1)
        train[group] = sorted((members[i] for i in order[:n_train]), key=lambda r: r.subject_id)
        held[group] = sorted((members[i] for i in order[n_train:]), key=lambda r: r.subject_id)
    return Split(train, held)


def cohort_split(train_refs: list[SubjectRef], held_refs: list[SubjectRef]) -> Split:
    """Every subject of one cohort to training, every subject of another to held-out, per group: an
    external held-out cohort (a test set, another centre), compared with nothing but its own subjects.
    Subjects without a group are left out.

    Raises:
        ValueError: a group that one cohort has and the other lacks.
    """

    def by_group(refs: list[SubjectRef]) -> dict[Group, list[SubjectRef]]:
        out: dict[Group, list[SubjectRef]] = {}
        for r in sorted(refs, key=lambda r: r.subject_id):
            if r.group is not None:
                out.setdefault(r.group, []).append(r)
        return out

    train, held = by_group(train_refs), by_group(held_refs)
    only = sorted(g.value for g in set(train) ^ set(held))
    if only:
        raise ValueError(f"groups {only} are in only one of the training and held-out cohorts")
    return Split(train, held)


def link_folder(refs: list[SubjectRef], dest: Path) -> Path:
    """An ACDC-layout folder ``dest/training/<subject>`` of symbolic links to ``refs``; returns ``dest``.

    Raises:
        ValueError: ``dest`` exists and is not empty, or two subjects share a name.
    """
    names = [r.subject_id for r in refs]
    if len(set(names)) != len(names):
        raise ValueError(f"subject names repeat in the split: {sorted(names)}")
    if dest.exists() and any(dest.iterdir()):
        raise ValueError(f"{dest} is not empty")
    training = dest / "training"
    training.mkdir(parents=True, exist_ok=True)
    for ref in refs:
        os.symlink(ref.path.resolve(), training / ref.subject_id, target_is_directory=True)
    return dest
