"""Shared fixtures: a tiny phantom data set (one subject per group), made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from cardiosynth.data.phantom import generate_dataset
from cardiosynth.models.slices import SliceSet, load_slices


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("phantom")
    generate_dataset(root, n_subjects=5, seed=0, workers=1)
    return root


@pytest.fixture(scope="session")
def phantom_slices(phantom_root: Path) -> SliceSet:
    """The fixture subjects preprocessed and cut into 2D slices (about 110 of 128 x 128)."""
    return load_slices(phantom_root)
