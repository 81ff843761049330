"""A small MONAI UNet segmenter, the judge of image label-fidelity.

Trained on real images, it is applied to synthetic images made from known labels: if the synthetic
images show the anatomy they were asked to show, it finds those labels again.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from tqdm import tqdm

from cardiosynth.data.labels import NUM_CLASSES
from cardiosynth.models.training import epoch_batches, seed_everything

log = logging.getLogger(__name__)


def build_segmenter(channels: tuple[int, ...] = (16, 32, 64, 128)) -> UNet:
    """2D UNet: image ``(B, 1, S, S)`` -> logits ``(B, 4, S, S)``."""
    return UNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=NUM_CLASSES,
        channels=channels,
        strides=(2,) * (len(channels) - 1),
        num_res_units=1,
        norm="BATCH",
    )


def train_segmenter(
    images: npt.NDArray[np.floating[Any]],
    labels: npt.NDArray[np.integer],
    *,
    epochs: int = 4,
    batch_size: int = 16,
    learning_rate: float = 2e-3,
    seed: int = 0,
    show_progress: bool = True,
) -> UNet:
    """Train :func:`build_segmenter` on slices ``images`` ``(N, S, S)`` with ``labels`` ``(N, S, S)``."""
    if images.shape != labels.shape or images.ndim != 3:
        raise ValueError(
            f"need images and labels (N, S, S) of one shape, got {images.shape} and {labels.shape}"
        )
    seed_everything(seed)
    model = build_segmenter()
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    x_all = torch.from_numpy(np.asarray(images, dtype=np.float32))[:, None]
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64))[:, None]
    model.train()
    for epoch in range(epochs):
        batches = list(epoch_batches(len(images), batch_size, seed, epoch))
        total = 0.0
        with tqdm(
            batches, desc=f"segmenter {epoch + 1}/{epochs}", disable=not show_progress, leave=False
        ) as bar:
            for idx in bar:
                x, y = x_all[idx], y_all[idx]
                # Random flips and intensity jitter: the judge must not depend on one exact appearance.
                if torch.rand(()) < 0.5:
                    x, y = x.flip(-1), y.flip(-1)
                x = x * (1 + 0.1 * torch.randn(())) + 0.05 * torch.randn(())
                loss = loss_fn(model(x), y)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total += loss.item()
                bar.set_postfix(loss=f"{loss.item():.3f}")
        log.info("segmenter epoch %d/%d loss=%.4f", epoch + 1, epochs, total / max(len(batches), 1))
    model.eval()
    return model


@torch.no_grad()
def segment(
    model: UNet, images: npt.NDArray[np.floating[Any]], batch_size: int = 32
) -> npt.NDArray[np.uint8]:
    """Labels ``(N, S, S)`` predicted for images ``(N, S, S)`` (eval mode)."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.asarray(images[start : start + batch_size], dtype=np.float32))[:, None]
        out.append(model(x).argmax(1).to(torch.uint8).numpy())
    return np.concatenate(out) if out else np.zeros(images.shape, np.uint8)
