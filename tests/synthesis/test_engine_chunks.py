"""The VAE half for a chunk of subject indices (issue 13): a subject's labels do not depend on which
subjects share its chunk, a one-pass request stays within MAX_SUBJECTS, and a chunk must lie in 0..n."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cardiosynth.data.labels import Group
from cardiosynth.models.vae import LabelVAE, VAEConfig
from cardiosynth.synthesis.engine import MAX_JOB_SUBJECTS, MAX_SUBJECTS, SynthesisRequest, Synthesizer


@pytest.fixture(scope="module")
def synth(phantom_root: Path) -> Synthesizer:
    torch.manual_seed(0)
    return Synthesizer(LabelVAE(VAEConfig()).eval(), None, phantom_root, model_versions={"vae": "t0"})


def _per_subject(batch: object) -> dict[int, np.ndarray]:
    """Subject index -> its label slices, in plan order."""
    out: dict[int, list[np.ndarray]] = {}
    offset = 0
    for index, _, _, z_count in batch.plan:  # type: ignore[attr-defined]
        out.setdefault(index, []).append(batch.labels[offset : offset + z_count])  # type: ignore[attr-defined]
        offset += z_count
    return {i: np.concatenate(parts) for i, parts in out.items()}


def test_a_subjects_labels_do_not_depend_on_its_chunk(synth: Synthesizer) -> None:
    request = SynthesisRequest(Group.DCM, n=4, seed=3, severities=(0.5, 1.0))
    whole = _per_subject(synth.make_labels(request, subjects=range(0, 4)))
    parts = {**_per_subject(synth.make_labels(request, subjects=range(0, 3))),
             **_per_subject(synth.make_labels(request, subjects=range(3, 4)))}  # fmt: skip
    assert sorted(whole) == sorted(parts) == [0, 1, 2, 3]
    for index in whole:
        assert whole[index].tobytes() == parts[index].tobytes()
    chunk = synth.make_labels(request, subjects=range(2, 4))
    assert {p[0] for p in chunk.plan} == {2, 3}
    assert len(chunk.base_ids) == 4  # every subject's base: names and bases keep their job-wide index


def test_one_pass_is_bounded_and_chunks_lie_within_the_request(synth: Synthesizer) -> None:
    big = SynthesisRequest(Group.HCM, n=MAX_JOB_SUBJECTS)
    with pytest.raises(ValueError, match=f"n={MAX_JOB_SUBJECTS} in one pass: at most {MAX_SUBJECTS};"):
        synth.make_labels(big)
    with pytest.raises(ValueError, match=r"n must be in 1\.\.5000"):
        SynthesisRequest(Group.HCM, n=MAX_JOB_SUBJECTS + 1)
    small = SynthesisRequest(Group.HCM, n=3)
    for bad in (range(2, 5), range(0, 0), range(0, 3, 2)):
        with pytest.raises(ValueError, match=r"not a non-empty range within 0\.\.3"):
            synth.make_labels(small, subjects=bad)
    assert len(synth.make_labels(big, subjects=range(4990, 4992)).base_ids) == MAX_JOB_SUBJECTS
