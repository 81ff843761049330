"""Filesystem helpers: folders that appear whole or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_directory(target: Path) -> Iterator[Path]:
    """Yield an empty staging folder next to ``target``; on success it replaces ``target`` (which may
    exist) with one rename, on error it is removed. Readers never see a half-written folder."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield staging
        # mkdtemp makes a private folder; outputs are meant to be shared and served.
        staging.chmod(0o755)
        for item in staging.iterdir():
            item.chmod(0o644)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
