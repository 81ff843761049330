"""The engine's cache of base subjects is bounded and least-recently-used: a warm worker serving
many jobs over a data set with many NOR subjects must not keep every one it has read."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cardiosynth.models.vae import LabelVAE, VAEConfig
from cardiosynth.synthesis import engine, sources
from cardiosynth.synthesis.engine import Synthesizer


def _vae() -> LabelVAE:
    torch.manual_seed(0)
    return LabelVAE(VAEConfig(channels=(4, 4, 8, 8), fc_features=(32, 32, 32))).eval()


def test_least_recently_used_bases_are_dropped(phantom_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synth = Synthesizer(_vae(), None, phantom_root, base_cache=2)
    refs = sorted(synth.refs, key=lambda r: r.subject_id)[:3]
    reads: list[str] = []
    real_load = sources.load

    def counting(ref: sources.SubjectRef, label_interpolation: str = "nearest") -> sources.LoadedSubject:
        reads.append(ref.subject_id)
        return real_load(ref, label_interpolation)

    monkeypatch.setattr(sources, "load", counting)  # the module the engine reads through
    a, b, c = refs
    synth._base(a)
    synth._base(b)
    synth._base(a)  # a is now the most recently used
    synth._base(c)  # over the bound: b goes, not a
    assert list(synth._loaded) == [a.subject_id, c.subject_id]
    synth._base(a)
    assert reads == [a.subject_id, b.subject_id, c.subject_id]  # a was never read twice
    synth._base(b)
    assert reads[-1] == b.subject_id
    assert len(synth._loaded) == 2


def test_base_cache_must_hold_a_subject(phantom_root: Path) -> None:
    with pytest.raises(ValueError, match="base_cache must be at least 1 subject, got 0"):
        Synthesizer(_vae(), None, phantom_root, base_cache=0)


def test_default_bound_covers_a_chunk() -> None:
    from cardiosynth.workers.settings import WorkerSettings

    assert WorkerSettings().chunk_size <= engine.BASE_CACHE_DEFAULT  # a chunk never reloads its bases


def test_workers_fit_the_sampling_calibration_on_the_engines_number_of_end_points(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cardiosynth.workers.settings import WorkerSettings

    monkeypatch.delenv("CARDIOSYNTH_SAMPLING_CALIBRATION_SUBJECTS", raising=False)
    assert WorkerSettings().sampling_calibration_subjects == 128  # the engine's, not imported (no torch)
    monkeypatch.setenv("CARDIOSYNTH_SAMPLING_CALIBRATION_SUBJECTS", "0")
    with pytest.raises(ValueError, match="sampling_calibration_subjects"):
        WorkerSettings()


def test_workers_fit_the_motion_calibration_on_the_engines_number_of_subjects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cardiosynth.workers.settings import WorkerSettings

    monkeypatch.delenv("CARDIOSYNTH_MOTION_CALIBRATION_SUBJECTS", raising=False)
    # the engine's default (64), written out in the settings (the gateway does not import torch)
    assert WorkerSettings().motion_calibration_subjects == 64
    monkeypatch.setenv("CARDIOSYNTH_MOTION_CALIBRATION_SUBJECTS", "101")  # one pass of make_labels
    with pytest.raises(ValueError, match="motion_calibration_subjects"):
        WorkerSettings()
