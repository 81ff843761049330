"""Network stages of the method, batched: encode, decode, translate.

Each takes and returns arrays; models are used in eval mode (BatchNorm running statistics, style
posterior means), under ``torch.no_grad``. Everything is batched across subjects, slices, phases
and severities: the per-slice Python loop is what makes naive pipelines slow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from cardiosynth.data.labels import as_label_map
from cardiosynth.models.onehot import labels_to_onehot
from cardiosynth.models.spade import SpadeTranslator, translate_array
from cardiosynth.models.vae import LabelVAE

BATCH = 256


@torch.no_grad()
def encode_slices(
    vae: LabelVAE, labels: npt.NDArray[np.integer[Any]], batch_size: int = BATCH
) -> npt.NDArray[np.float64]:
    """Posterior means ``(N, nz)`` of label slices ``(N, S, S)``."""
    checked = as_label_map(np.asarray(labels), what="labels to encode")
    vae.eval()
    out = []
    for start in range(0, len(checked), batch_size):
        x = torch.from_numpy(checked[start : start + batch_size].astype(np.int64))
        mu, _ = vae.encode(labels_to_onehot(x))
        out.append(mu.double().numpy())
    return np.concatenate(out) if out else np.zeros((0, vae.config.latent_dim))


def encode_stacks(
    vae: LabelVAE, stacks: Sequence[npt.NDArray[np.integer[Any]]]
) -> list[npt.NDArray[np.float64]]:
    """Posterior means of several stacks ``(Z_k, S, S)`` in one batched pass -> ``[(Z_k, nz)]``."""
    if not stacks:
        return []
    latents = encode_slices(vae, np.concatenate(list(stacks)))
    bounds = np.cumsum([0, *(len(s) for s in stacks)])
    return [latents[bounds[i] : bounds[i + 1]] for i in range(len(stacks))]


@torch.no_grad()
def decode_latents(
    vae: LabelVAE, latents: npt.NDArray[np.floating[Any]], batch_size: int = BATCH
) -> npt.NDArray[np.uint8]:
    """Label slices ``(N, S, S)`` (argmax of the decoder's softmax) for latents ``(N, nz)``."""
    z_all = np.asarray(latents, dtype=np.float32)
    if z_all.ndim != 2 or z_all.shape[1] != vae.config.latent_dim:
        raise ValueError(f"expected latents (N, {vae.config.latent_dim}), got {z_all.shape}")
    vae.eval()
    out = []
    for start in range(0, len(z_all), batch_size):
        out.append(
            vae.decode(torch.from_numpy(z_all[start : start + batch_size])).argmax(1).to(torch.uint8).numpy()
        )
    size = vae.config.image_size
    return np.concatenate(out) if out else np.zeros((0, size, size), np.uint8)


def translate_slices(
    spade: SpadeTranslator,
    labels: npt.NDArray[np.integer[Any]],
    references: npt.NDArray[np.floating[Any]],
    batch_size: int = 64,
) -> npt.NDArray[np.float32]:
    """Images ``(N, S, S)`` for labels ``(N, S, S)``, each with the style of its reference slice."""
    return translate_array(spade, labels, references, batch_size)
