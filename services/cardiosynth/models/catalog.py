"""The model registry's index: where models are and which exist, without loading any (no torch
import, so the gateway can list models)."""

from __future__ import annotations

import os
from pathlib import Path

MODEL_KINDS: tuple[str, ...] = ("vae", "spade")
DEFAULT_VERSION = "phantom-v2c"
PACKAGE_ROOT = Path(__file__).resolve().parent.parent / "weights"


def check_kind(kind: str) -> str:
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {list(MODEL_KINDS)}")
    return kind


def registry_roots(root: Path | None = None) -> list[Path]:
    """Roots searched in order: ``root`` if given, else ``$CARDIOSYNTH_MODELS`` then the package's."""
    if root is not None:
        return [Path(root)]
    roots = []
    env = os.environ.get("CARDIOSYNTH_MODELS")
    if env:
        roots.append(Path(env))
    roots.append(PACKAGE_ROOT)
    return roots


def list_models(root: Path | None = None) -> list[tuple[str, str, Path]]:
    """``(kind, version, path)`` of every model in the registry roots (first root wins)."""
    seen: dict[tuple[str, str], Path] = {}
    for base in registry_roots(root):
        for kind in MODEL_KINDS:
            folder = base / kind
            if not folder.is_dir():
                continue
            for entry in sorted(folder.iterdir()):
                if (entry / "config.json").is_file():
                    seen.setdefault((kind, entry.name), entry)
    return [(k, v, p) for (k, v), p in sorted(seen.items())]


def find_model(kind: str, version: str = DEFAULT_VERSION, root: Path | None = None) -> Path:
    """Directory of model ``kind`` at ``version``; ``ValueError`` listing what exists otherwise."""
    check_kind(kind)
    for base in registry_roots(root):
        candidate = base / kind / version
        if (candidate / "config.json").is_file():
            return candidate
    available = [v for k, v, _ in list_models(root) if k == kind]
    raise ValueError(f"no {kind} model {version!r}; available: {available or 'none'}")


# -- models pushed to the object store (``cardiosynth models push``) ---------------------------------
# One rule for the whole stack: a model version exists when the local registry holds it or the
# object store holds its weights. The workers load it from the first place that has it
# (registry.load_model_anywhere); the gateway accepts a request for it (gateway/catalog.py).
WEIGHTS_FILE = "model.safetensors"
STORE_PREFIX = "models/"


def stored_model_key(kind: str, version: str) -> str:
    """The object-store key of a pushed model's weights, written last by a push: a model whose
    weights are there is whole."""
    return f"{STORE_PREFIX}{check_kind(kind)}/{version}/{WEIGHTS_FILE}"


def pushed_models(keys: list[str]) -> set[tuple[str, str]]:
    """``(kind, version)`` of the whole models among object-store ``keys`` (a listing of ``models/``)."""
    found = set()
    for key in keys:
        parts = key.split("/")
        if len(parts) == 4 and parts[0] == "models" and parts[1] in MODEL_KINDS and parts[3] == WEIGHTS_FILE:
            found.add((parts[1], parts[2]))
    return found
