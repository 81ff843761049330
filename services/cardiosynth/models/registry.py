"""Model files and the local registry.

A model is a directory::

    model.safetensors   weights (float16 or float32)
    config.json         {"kind": ..., "config": constructor arguments, "dtype": ...}
    card.json           the model card: name, version, preset, epochs, training data fingerprint,
                        metrics, cardiosynth version, creation time
    README.md           the same card for people

The registry is a root directory holding ``<kind>/<version>/`` model directories. The default root
is the package's own ``weights/`` folder (the shipped ``phantom-v1`` and ``phantom-v2`` models);
``CARDIOSYNTH_MODELS`` names another root, searched first.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cardiosynth import __version__
from cardiosynth.fsutil import staged_directory
from cardiosynth.models.catalog import (
    DEFAULT_VERSION,
    WEIGHTS_FILE,
    check_kind,
    find_model,
    stored_model_key,
)

if TYPE_CHECKING:  # the classes load lazily at run time (SPADE pulls in MONAI)
    from cardiosynth.models.spade import SpadeTranslator
    from cardiosynth.models.vae import LabelVAE

log = logging.getLogger(__name__)

ModelKind = Literal["vae", "spade"]


def _builders() -> dict[str, Callable[[dict[str, Any]], nn.Module]]:
    # Imported lazily: the SPADE builder pulls in MONAI, which a VAE-only process does not need.
    from cardiosynth.models.spade import SpadeConfig, SpadeTranslator
    from cardiosynth.models.vae import LabelVAE, VAEConfig

    return {
        "vae": lambda cfg: LabelVAE(VAEConfig.from_dict(cfg)),
        "spade": lambda cfg: SpadeTranslator(SpadeConfig.from_dict(cfg)),
    }


@dataclass
class LoadedModel:
    """A model in eval mode with its card."""

    module: nn.Module
    kind: str
    version: str
    card: dict[str, Any]
    path: Path


def _config_of(module: nn.Module) -> dict[str, Any]:
    config = getattr(module, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        raise ValueError(f"{type(module).__name__} has no .config with to_dict(); cannot save it")
    out: dict[str, Any] = config.to_dict()
    return out


def _card_markdown(card: dict[str, Any]) -> str:
    lines = [f"# {card.get('kind', 'model')} {card.get('version', '')}", ""]
    for key in ("description", "preset", "epochs", "seed", "data", "data_fingerprint", "dtype", "parameters"):
        if key in card:
            lines.append(f"- **{key}**: {card[key]}")
    metrics = card.get("metrics") or {}
    if metrics:
        lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
        for name, value in metrics.items():
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            lines.append(f"| {name} | {shown} |")
    lines += [
        "",
        f"cardiosynth {card.get('cardiosynth_version', '?')}, created {card.get('created', '?')}",
        "",
    ]
    return "\n".join(lines)


def save_model(
    module: nn.Module,
    path: Path,
    *,
    kind: str,
    version: str,
    card: dict[str, Any] | None = None,
    dtype: Literal["float16", "float32"] = "float16",
) -> Path:
    """Write ``module`` as a model directory at ``path`` (replaced atomically when it exists)."""
    check_kind(kind)
    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be float16 or float32, got {dtype!r}")
    path = Path(path)
    target = torch.float16 if dtype == "float16" else torch.float32
    state = {
        k: (v.detach().to(target) if v.is_floating_point() else v.detach()).contiguous().cpu()
        for k, v in module.state_dict().items()
    }
    full_card = {
        "kind": kind,
        "version": version,
        "dtype": dtype,
        "parameters": sum(p.numel() for p in module.parameters()),
        "cardiosynth_version": __version__,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **(card or {}),
    }
    with staged_directory(path) as staging:
        save_file(state, str(staging / WEIGHTS_FILE), metadata={"kind": kind, "version": version})
        config = {"kind": kind, "version": version, "dtype": dtype, "config": _config_of(module)}
        (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        (staging / "card.json").write_text(json.dumps(full_card, indent=2) + "\n", encoding="utf-8")
        (staging / "README.md").write_text(_card_markdown(full_card), encoding="utf-8")
    log.info("saved %s model %s to %s", kind, version, path)
    return path


def update_card(path: Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into a model directory's card (JSON and Markdown), each file replaced atomically."""
    path = Path(path)
    card_file = path / "card.json"
    if not card_file.is_file():
        raise FileNotFoundError(f"{path}: no card.json")
    card: dict[str, Any] = json.loads(card_file.read_text(encoding="utf-8"))
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(card.get(key), dict):
            card[key] = {**card[key], **value}
        else:
            card[key] = value
    for name, text in (("card.json", json.dumps(card, indent=2) + "\n"), ("README.md", _card_markdown(card))):
        tmp = path / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o644)
        os.replace(tmp, path / name)
    return card


def load_model_dir(path: Path, *, kind: str | None = None) -> LoadedModel:
    """Load a model directory; the module is float32 and in eval mode."""
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file() or not (path / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{path}: not a model directory (needs config.json and {WEIGHTS_FILE})")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    found = check_kind(str(config.get("kind")))
    if kind is not None and found != kind:
        raise ValueError(f"{path}: holds a {found} model, expected {kind}")
    module = _builders()[found](config["config"])
    state = {
        k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path / WEIGHTS_FILE)).items()
    }
    module.load_state_dict(state, strict=True)
    module.eval()
    card_file = path / "card.json"
    card = json.loads(card_file.read_text(encoding="utf-8")) if card_file.is_file() else {}
    return LoadedModel(module, found, str(config.get("version", path.name)), card, path)


# Card fields that describe the saved file itself; save_model writes them afresh.
_FILE_FIELDS = ("kind", "version", "dtype", "parameters", "cardiosynth_version", "created")


def copy_model(source: Path, root: Path, version: str, **card_fields: Any) -> Path:
    """Install the model directory ``source`` into registry ``root`` as ``version`` (weights, config
    and card carried over, the version written into each; ``card_fields`` merged into the card).

    How a model version reuses another's network unchanged (a new VAE paired with an existing SPADE
    translator): the copy is a model of its own, so caches keyed by version never mix the two.

    Raises:
        ValueError: ``version`` is ``source``'s own version (nothing to copy) or not a safe name.
    """
    if not version or version in (".", "..") or "/" in version or "\\" in version:
        raise ValueError(f"model version must be a plain name, got {version!r}")
    loaded = load_model_dir(source)
    if loaded.version == version:
        raise ValueError(f"{source} already holds version {version!r}")
    dtype = str(loaded.card.get("dtype", "float16"))
    card = {k: v for k, v in loaded.card.items() if k not in _FILE_FIELDS}
    card.update(card_fields)
    return save_model(
        loaded.module,
        Path(root) / loaded.kind / version,
        kind=loaded.kind,
        version=version,
        card=card,
        dtype="float32" if dtype == "float32" else "float16",
    )


def load_model(kind: str, version: str = DEFAULT_VERSION, root: Path | None = None) -> LoadedModel:
    """Load model ``kind`` (``vae`` or ``spade``) at ``version`` from the registry."""
    return load_model_dir(find_model(kind, version, root), kind=kind)


MODEL_FILES = (WEIGHTS_FILE, "config.json", "card.json", "README.md")
M = TypeVar("M", bound=nn.Module)


def push_model(store: Any, path: Path) -> str:
    """Upload a model directory to an object store under ``models/<kind>/<version>/``; return the prefix."""
    config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    kind, version = check_kind(str(config["kind"])), str(config["version"])
    prefix = f"models/{kind}/{version}"
    # Weights last: a reader that finds the weights finds a complete model.
    for name in sorted(MODEL_FILES, key=lambda n: n == WEIGHTS_FILE):
        file = Path(path) / name
        if file.is_file():
            store.put_bytes(f"{prefix}/{name}", file.read_bytes())
    return prefix


def fetch_model(store: Any, kind: str, version: str, cache_dir: Path) -> Path:
    """Download model ``kind``/``version`` from an object store into ``cache_dir`` (once) and return
    the local model directory; ``ValueError`` when the store does not hold it."""
    check_kind(kind)
    prefix = f"models/{kind}/{version}"
    target = Path(cache_dir) / kind / version
    if (target / WEIGHTS_FILE).is_file() and (target / "config.json").is_file():
        return target
    if not store.exists(stored_model_key(kind, version)):  # the rule the gateway checks too
        raise ValueError(f"no {kind} model {version!r} in the object store")
    with staged_directory(target) as staging:
        for name in MODEL_FILES:
            try:
                (staging / name).write_bytes(store.get_bytes(f"{prefix}/{name}"))
            except KeyError:
                if name in (WEIGHTS_FILE, "config.json"):
                    raise ValueError(
                        f"{prefix}: incomplete model in the object store ({name} missing)"
                    ) from None
    return target


def load_model_anywhere(
    kind: str, version: str, *, root: Path | None = None, store: Any = None, cache_dir: Path | None = None
) -> LoadedModel:
    """The local registry first, then the object store (downloaded into ``cache_dir``)."""
    try:
        return load_model(kind, version, root)
    except ValueError:
        if store is None or cache_dir is None:
            raise
    return load_model_dir(fetch_model(store, kind, version, cache_dir), kind=kind)


@dataclass
class LoadedVAE(LoadedModel):
    """A loaded label VAE: :attr:`module` typed as :class:`~cardiosynth.models.vae.LabelVAE`."""

    module: LabelVAE


@dataclass
class LoadedSpade(LoadedModel):
    """A loaded SPADE translator: :attr:`module` typed as
    :class:`~cardiosynth.models.spade.SpadeTranslator`."""

    module: SpadeTranslator


def _module_of(loaded: LoadedModel, cls: type[M]) -> M:
    """``loaded.module`` as ``cls``; ``ValueError`` naming the model when it is something else."""
    if not isinstance(loaded.module, cls):
        raise ValueError(
            f"{loaded.path}: {loaded.kind} model {loaded.version!r} holds a {type(loaded.module).__name__}, "
            f"not a {cls.__name__}"
        )
    return loaded.module


def load_vae(
    version: str = DEFAULT_VERSION,
    *,
    root: Path | None = None,
    store: Any = None,
    cache_dir: Path | None = None,
    path: Path | None = None,
) -> LoadedVAE:
    """The label VAE ``version`` (from ``path`` when given, else the registry, else the object store
    as :func:`load_model_anywhere`), typed."""
    from cardiosynth.models.vae import LabelVAE

    loaded = (
        load_model_dir(path, kind="vae")
        if path is not None
        else load_model_anywhere("vae", version, root=root, store=store, cache_dir=cache_dir)
    )
    return LoadedVAE(_module_of(loaded, LabelVAE), loaded.kind, loaded.version, loaded.card, loaded.path)


def load_spade(
    version: str = DEFAULT_VERSION,
    *,
    root: Path | None = None,
    store: Any = None,
    cache_dir: Path | None = None,
    path: Path | None = None,
) -> LoadedSpade:
    """The SPADE translator ``version`` (from ``path`` when given, else the registry, else the object
    store as :func:`load_model_anywhere`), typed."""
    from cardiosynth.models.spade import SpadeTranslator

    loaded = (
        load_model_dir(path, kind="spade")
        if path is not None
        else load_model_anywhere("spade", version, root=root, store=store, cache_dir=cache_dir)
    )
    return LoadedSpade(
        _module_of(loaded, SpadeTranslator), loaded.kind, loaded.version, loaded.card, loaded.path
    )
