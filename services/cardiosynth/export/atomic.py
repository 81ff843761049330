"""Folders that appear whole or not at all (built next to their target, renamed at the end).

Unlike :func:`cardiosynth.fsutil.staged_directory` (one flat subject folder), these hold nested
folders and may replace a non-empty target only when asked.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def check_target(out: Path, overwrite: bool) -> None:
    """Refuse an existing non-empty ``out`` unless ``overwrite`` (call before any work is done)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite to replace it")


@contextmanager
def staged_tree(out: Path, overwrite: bool) -> Iterator[Path]:
    """Yield an empty folder next to ``out``; on success it replaces ``out``, on error it is removed
    and ``out`` is left as it was."""
    out = Path(out)
    check_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        yield staging
        staging.chmod(0o755)  # mkdtemp makes a private folder; datasets are meant to be shared
        if out.exists():
            # The old folder goes only once the new one is in place.
            trash = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(out, trash)
            os.replace(staging, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
