"""The embedded default data: the 100-subject phantom (seed 0), generated once into the user cache."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_SUBJECTS = 100
DEFAULT_SEED = 0


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/cardiosynth`` (``~/.cache/cardiosynth`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cardiosynth"


def default_data() -> Path:
    """The phantom data set, generated on first use (deterministic, so every machine has the same)."""
    from cardiosynth.data.phantom import generate_dataset

    root = cache_root() / f"phantom-seed{DEFAULT_SEED}"
    if not (root / "training" / f"patient{DEFAULT_SUBJECTS:03d}" / "Info.cfg").is_file():
        log.info("generating the default phantom data set in %s (once)", root)
        generate_dataset(root, DEFAULT_SUBJECTS, DEFAULT_SEED, overwrite=True)
    return root
