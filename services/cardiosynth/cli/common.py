"""Helpers shared by the command groups: user output and the default data and cache locations."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

log = logging.getLogger("cardiosynth")


def _echo(text: str = "") -> None:
    """Command output (results for the user) goes to stdout; diagnostics go to the log on stderr."""
    sys.stdout.write(text + "\n")


def _default_cache() -> Path:
    from cardiosynth.data.default import cache_root

    return cache_root()


def _ensure_default_data() -> Path:
    from cardiosynth.data.default import default_data

    return default_data()
