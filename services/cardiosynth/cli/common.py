"""Helpers shared by the command groups: user output and the default data and cache locations."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cardiosynth.synthesis.engine import Synthesizer

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


def _synthesizer(
    vae_version: str,
    spade_version: str,
    model_root: Path | None,
    data: Path | None,
    cache: Path | None,
    *,
    device: str | None = None,
    precision: str | None = None,
) -> tuple[Synthesizer, dict[str, str]]:
    """A :class:`Synthesizer` over ``data`` (default: the phantom) with the two models loaded from the
    registry, and their versions; ``cache`` ``None``: class statistics are not cached. ``device``
    (``auto``, ``cpu``, ``cuda[:N]``; ``None``: CPU) and ``precision`` as in the Synthesizer."""
    from cardiosynth.models.registry import load_spade, load_vae
    from cardiosynth.synthesis.engine import Synthesizer

    vae = load_vae(vae_version, root=model_root)
    spade = load_spade(spade_version, root=model_root)
    models = {"vae": vae.version, "spade": spade.version}
    synthesizer = Synthesizer(
        vae.module,
        spade.module,
        data if data is not None else _ensure_default_data(),
        model_versions=models,
        cache_dir=cache,
        device=device,
        precision=precision,
    )
    return synthesizer, models
