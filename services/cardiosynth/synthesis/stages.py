"""Network stages of the method, batched: encode, decode, translate.

Each takes and returns arrays; models are used in eval mode (BatchNorm running statistics, style
posterior means), under ``torch.no_grad``. Everything is batched across subjects, slices, phases
and severities: the per-slice Python loop is what makes naive pipelines slow.

Each stage runs on its model's device (:mod:`cardiosynth.device`): batches go there, results come
back as CPU arrays. ``precision`` (``None``: fp32 on CPU, bf16 on CUDA) is the autocast of the pass;
``batch_size`` ``None`` is the CPU default below on CPU and, on CUDA, what the free memory holds.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from cardiosynth.data.labels import as_label_map
from cardiosynth.device import (
    activation_bytes,
    autocast,
    batch_size_for,
    model_device,
    resolve_precision,
    to_model,
    to_numpy,
)
from cardiosynth.models.onehot import labels_to_onehot
from cardiosynth.models.spade import SpadeTranslator, translate_array
from cardiosynth.models.vae import LabelVAE

BATCH = 256
TRANSLATE_BATCH = 64

# Measured peak bytes per batch item of each model, per (stage, precision): once per model.
_ITEM_BYTES: weakref.WeakKeyDictionary[torch.nn.Module, dict[tuple[str, str], int]] = (
    weakref.WeakKeyDictionary()
)


def stage_batch_size(
    model: torch.nn.Module, stage: str, precision: str | None = None, setting: int | None = None
) -> int:
    """Batch size of ``stage`` (``encode``, ``decode``, ``translate``) for ``model`` on its device.

    ``setting`` wins; on CPU the sizes this module always used (256, 64 for translate); on CUDA the
    free memory divided by the peak memory per slice of that stage, measured once per model on a
    batch of 8 (so a 24 GB card gets smaller batches than an 80 GB one, and neither runs out).
    """
    cpu_default = TRANSLATE_BATCH if stage == "translate" else BATCH
    device = model_device(model)
    if setting is not None or device.type != "cuda":
        return batch_size_for(device, 1, setting=setting, cpu_default=cpu_default)
    resolved = resolve_precision(precision, device)
    known = _ITEM_BYTES.setdefault(model, {})
    if (stage, resolved) not in known:
        known[(stage, resolved)] = _measure(model, stage, resolved)
    return batch_size_for(device, known[(stage, resolved)], cpu_default=cpu_default)


def _measure(model: torch.nn.Module, stage: str, precision: str) -> int:
    config: Any = getattr(model, "config")  # noqa: B009 - LabelVAE and SpadeTranslator both have one
    s, probe = int(config.image_size), 8
    device = model_device(model)
    with autocast(device, precision):
        if stage == "decode":
            return activation_bytes(model, (torch.zeros(probe, int(config.latent_dim)),), "decode")
        if stage == "encode":
            onehot = labels_to_onehot(torch.zeros(probe, s, s, dtype=torch.int64))
            return activation_bytes(model, (onehot,), "encode")
        labels = torch.zeros(probe, s, s, dtype=torch.int64)
        return activation_bytes(model, (labels, torch.zeros(probe, 1, s, s)), "translate")


@torch.no_grad()
def encode_slices(
    vae: LabelVAE,
    labels: npt.NDArray[np.integer[Any]],
    batch_size: int | None = None,
    precision: str | None = None,
) -> npt.NDArray[np.float64]:
    """Posterior means ``(N, nz)`` of label slices ``(N, S, S)``."""
    checked = as_label_map(np.asarray(labels), what="labels to encode")
    vae.eval()
    device = model_device(vae)
    size = stage_batch_size(vae, "encode", precision, batch_size)
    out = []
    for start in range(0, len(checked), size):
        # Bytes travel to the device (a GPU copy 8 x smaller than int64); widened there.
        x = to_model(torch.from_numpy(checked[start : start + size].astype(np.uint8)), vae).long()
        with autocast(device, precision):
            mu, _ = vae.encode(labels_to_onehot(x))
        out.append(to_numpy(mu.double()))
    return np.concatenate(out) if out else np.zeros((0, vae.config.latent_dim))


def encode_stacks(
    vae: LabelVAE,
    stacks: Sequence[npt.NDArray[np.integer[Any]]],
    batch_size: int | None = None,
    precision: str | None = None,
) -> list[npt.NDArray[np.float64]]:
    """Posterior means of several stacks ``(Z_k, S, S)`` in one batched pass -> ``[(Z_k, nz)]``."""
    if not stacks:
        return []
    latents = encode_slices(vae, np.concatenate(list(stacks)), batch_size, precision)
    bounds = np.cumsum([0, *(len(s) for s in stacks)])
    return [latents[bounds[i] : bounds[i + 1]] for i in range(len(stacks))]


def decode_latents(
    vae: LabelVAE,
    latents: npt.NDArray[np.floating[Any]],
    batch_size: int | None = None,
    precision: str | None = None,
    logit_bias: npt.NDArray[np.floating[Any]] | None = None,
) -> npt.NDArray[np.uint8]:
    """Label slices ``(N, S, S)`` (argmax of the decoder's softmax) for latents ``(N, nz)``.

    ``logit_bias`` ``(C,)``: added to every pixel's class logits before the argmax (the decoder's
    volume calibration, :mod:`.calibration`), or ``(N, C)``: one row per slice; ``None``: the plain
    argmax."""
    return decode_slices(vae, latents, batch_size, precision, logit_bias).labels


@dataclass(frozen=True)
class Decoded:
    """Decoded label slices with the probabilities they were taken from.

    ``labels`` ``(N, S, S)`` uint8: the argmax; ``probabilities`` ``(N, C, S, S)`` uint8: each
    class's softmax probability times 255, rounded (a boundary between pixels is placed to within
    1/500 of a pixel's share, at a quarter of float32's bytes), or ``None`` when not asked for."""

    labels: npt.NDArray[np.uint8]
    probabilities: npt.NDArray[np.uint8] | None

    @staticmethod
    def concatenate(parts: Sequence[Decoded]) -> Decoded:
        """The parts' slices in order (all with probabilities, or none)."""
        if not parts:
            raise ValueError("no decoded parts to concatenate")
        labels = np.concatenate([p.labels for p in parts])
        shares = [p.probabilities for p in parts if p.probabilities is not None]
        if not shares:
            return Decoded(labels, None)
        if len(shares) < len(parts):
            raise ValueError("decoded parts with and without probabilities")
        return Decoded(labels, np.concatenate(shares))


@torch.no_grad()
def decode_slices(
    vae: LabelVAE,
    latents: npt.NDArray[np.floating[Any]],
    batch_size: int | None = None,
    precision: str | None = None,
    logit_bias: npt.NDArray[np.floating[Any]] | None = None,
    *,
    probabilities: bool = False,
) -> Decoded:
    """:func:`decode_latents`, with the calibrated softmax probabilities as well when
    ``probabilities`` (:class:`Decoded`): for putting the slices back on a native grid from the
    probabilities (:func:`cardiosynth.data.preprocess.restore_probabilities`), not the labels."""
    z_all = _check_latents(vae, latents)
    bias = None
    if logit_bias is not None:
        b = np.asarray(logit_bias, dtype=np.float32)
        c = vae.config.num_classes
        if b.shape not in ((c,), (len(z_all), c)):
            raise ValueError(f"logit_bias must have shape ({c},) or ({len(z_all)}, {c}), got {b.shape}")
        bias = to_model(torch.from_numpy(b.reshape(-1, c)), vae)[:, :, None, None]
    vae.eval()
    device = model_device(vae)
    size = stage_batch_size(vae, "decode", precision, batch_size)
    labels, shares = [], []
    for start in range(0, len(z_all), size):
        z = to_model(torch.from_numpy(z_all[start : start + size]), vae)
        with autocast(device, precision):
            logits = vae.decode(z)
        if bias is not None:
            logits = logits.float() + (bias if len(bias) == 1 else bias[start : start + len(z)])
        # argmax (and quantised probabilities) on the device: bytes come back, not float32 per class.
        labels.append(to_numpy(logits.argmax(1).to(torch.uint8)))
        if probabilities:
            quantised = torch.softmax(logits.float(), 1).mul_(255.0).round_().to(torch.uint8)
            shares.append(to_numpy(quantised))
    s, c = vae.config.image_size, vae.config.num_classes
    return Decoded(
        np.concatenate(labels) if labels else np.zeros((0, s, s), np.uint8),
        (np.concatenate(shares) if shares else np.zeros((0, c, s, s), np.uint8)) if probabilities else None,
    )


def _check_latents(vae: LabelVAE, latents: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float32]:
    z_all = np.asarray(latents, dtype=np.float32)
    if z_all.ndim != 2 or z_all.shape[1] != vae.config.latent_dim:
        raise ValueError(f"expected latents (N, {vae.config.latent_dim}), got {z_all.shape}")
    return z_all


@torch.no_grad()
def decode_logits(
    vae: LabelVAE, latents: npt.NDArray[np.floating[Any]], batch_size: int | None = None
) -> Iterator[npt.NDArray[np.float32]]:
    """The decoder's fp32 class logits ``(n, C, S, S)`` for latents ``(N, nz)``, batch by batch (a
    generator: the logits of a whole data set would not fit in memory)."""
    z_all = _check_latents(vae, latents)
    vae.eval()
    size = stage_batch_size(vae, "decode", "fp32", batch_size)
    for start in range(0, len(z_all), size):
        z = to_model(torch.from_numpy(z_all[start : start + size]), vae)
        yield to_numpy(vae.decode(z).float())


def translate_slices(
    spade: SpadeTranslator,
    labels: npt.NDArray[np.integer[Any]],
    references: npt.NDArray[np.floating[Any]],
    batch_size: int | None = None,
    precision: str | None = None,
) -> npt.NDArray[np.float32]:
    """Images ``(N, S, S)`` for labels ``(N, S, S)``, each with the style of its reference slice."""
    size = stage_batch_size(spade, "translate", precision, batch_size)
    return translate_array(spade, labels, references, size, precision)
