"""The embedded default data: the 100-subject phantom (seed 0), generated once into the user cache.

The cache folder is named after the content version of the default phantom version
(:data:`~cardiosynth.data.phantom.params.PHANTOM_CONTENT`, e.g. ``phantom-v2.1-seed0``), which changes
whenever that version's arrays do, so new generator code makes a new folder instead of silently
serving the data older code left there; a folder whose manifest records another content version
(written by hand, half-written, or by older code) is regenerated too.
"""

from __future__ import annotations

import json
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


def default_content() -> str:
    """Content version of the default data set (that of the default phantom version)."""
    from cardiosynth.data.phantom import PHANTOM_CONTENT, PHANTOM_VERSION

    return PHANTOM_CONTENT[PHANTOM_VERSION]


def default_data_dir() -> Path:
    """Where the default data set of the current phantom content lives (generated or not)."""
    return cache_root() / f"phantom-v{default_content()}-seed{DEFAULT_SEED}"


def _is_current(root: Path) -> bool:
    """The folder holds a complete data set of the current phantom content version."""

    manifest = root / "phantom.json"
    last = root / "training" / f"patient{DEFAULT_SUBJECTS:03d}" / "Info.cfg"
    if not manifest.is_file() or not last.is_file():
        return False
    try:
        recorded = json.loads(manifest.read_text(encoding="utf-8")).get("phantom_content")
    except (OSError, ValueError, AttributeError):  # unreadable, not JSON, not an object
        return False
    return bool(recorded == default_content())


def default_data() -> Path:
    """The phantom data set, generated on first use (deterministic, so every machine has the same)."""
    from cardiosynth.data.phantom import generate_dataset

    root = default_data_dir()
    if not _is_current(root):
        log.info("generating the default phantom data set in %s (once)", root)
        generate_dataset(root, DEFAULT_SUBJECTS, DEFAULT_SEED, overwrite=True)  # the default version
    return root
