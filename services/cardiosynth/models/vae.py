"""The paper's 2D label VAE (Amirrajab et al., section 2.3).

Encoder: four blocks of three ``3x3`` convolutions, each followed by BatchNorm and LeakyReLU (the last
convolution of a block has stride 2), then four fully connected layers with LeakyReLU between them
ending in ``2 * latent_dim`` outputs (mu and logvar). Decoder: a fully connected layer back to the
coarsest feature map, four blocks of (nearest upsampling, two convolutions + BN + LeakyReLU), and a
last block of convolution + BN + LeakyReLU + convolution to the class channels. Softmax is applied in
:meth:`LabelVAE.predict`; the loss takes logits (a log-softmax inside cross-entropy is stable).

Shapes: input one-hot ``(B, C, S, S)`` with ``C = num_classes`` and ``S = image_size``; latent
``(B, latent_dim)``; output logits ``(B, C, S, S)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cardiosynth.data.labels import NUM_CLASSES
from cardiosynth.data.preprocess import check_label_interpolation


@dataclass(frozen=True)
class VAEConfig:
    """Constructor arguments of :class:`LabelVAE` (stored with the weights)."""

    num_classes: int = NUM_CLASSES
    latent_dim: int = 16
    image_size: int = 128
    channels: tuple[int, ...] = (8, 16, 32, 64)
    fc_features: tuple[int, ...] = (256, 128, 64)
    negative_slope: float = 0.2
    # How the training labels were resampled to 1.5 mm (cardiosynth.data.preprocess): synthesis
    # preprocesses base subjects and restores outputs the same way. Older models omit it: nearest.
    label_interpolation: str = "nearest"

    def __post_init__(self) -> None:
        check_label_interpolation(self.label_interpolation)
        if len(self.channels) != 4 or any(c < 1 for c in self.channels):
            raise ValueError(
                f"channels must be 4 positive widths (the paper's 4 blocks), got {self.channels}"
            )
        if len(self.fc_features) != 3 or any(f < 1 for f in self.fc_features):
            raise ValueError(
                f"fc_features must be 3 positive widths (4 fully connected layers), got {self.fc_features}"
            )
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be positive, got {self.latent_dim}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")
        if self.image_size < 16 or self.image_size % 16:
            raise ValueError(f"image_size must be a multiple of 16 (four halvings), got {self.image_size}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VAEConfig:
        values = dict(data)
        for key in ("channels", "fc_features"):
            if key in values:
                values[key] = tuple(int(v) for v in values[key])
        return cls(**values)


# Preset widths. "paper" follows the reference implementation's scale; "cpu-small" trains on a laptop.
VAE_WIDTHS: dict[str, dict[str, tuple[int, ...]]] = {
    "cpu-small": {"channels": (8, 16, 32, 64), "fc_features": (256, 128, 64)},
    "paper": {"channels": (64, 128, 256, 512), "fc_features": (1024, 512, 256)},
}


def _conv_bn_act(c_in: int, c_out: int, stride: int, slope: float) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(slope, inplace=True),
    ]


@dataclass
class VAEOutput:
    """Forward pass of :class:`LabelVAE`: logits ``(B, C, S, S)``, mu and logvar ``(B, latent_dim)``."""

    logits: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor


class LabelVAE(nn.Module):
    """Variational autoencoder of one-hot cardiac label slices."""

    def __init__(self, config: VAEConfig | None = None) -> None:
        super().__init__()
        self.config = config or VAEConfig()
        cfg = self.config
        slope = cfg.negative_slope
        layers: list[nn.Module] = []
        c_in = cfg.num_classes
        for c_out in cfg.channels:
            layers += _conv_bn_act(c_in, c_out, 1, slope)
            layers += _conv_bn_act(c_out, c_out, 1, slope)
            layers += _conv_bn_act(c_out, c_out, 2, slope)
            c_in = c_out
        self.encoder = nn.Sequential(*layers)
        self._coarse = cfg.image_size // 16
        flat = cfg.channels[-1] * self._coarse**2
        f1, f2, f3 = cfg.fc_features
        self.to_latent = nn.Sequential(
            nn.Linear(flat, f1),
            nn.LeakyReLU(slope, inplace=True),
            nn.Linear(f1, f2),
            nn.LeakyReLU(slope, inplace=True),
            nn.Linear(f2, f3),
            nn.LeakyReLU(slope, inplace=True),
            nn.Linear(f3, 2 * cfg.latent_dim),
        )
        self.from_latent = nn.Sequential(nn.Linear(cfg.latent_dim, flat), nn.LeakyReLU(slope, inplace=True))
        layers = []
        widths = [*reversed(cfg.channels)]
        c_in = widths[0]
        for c_out in [*widths[1:], widths[-1]]:
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            layers += _conv_bn_act(c_in, c_out, 1, slope)
            layers += _conv_bn_act(c_out, c_out, 1, slope)
            c_in = c_out
        layers += _conv_bn_act(c_in, c_in, 1, slope)
        layers.append(nn.Conv2d(c_in, cfg.num_classes, kernel_size=3, padding=1))
        self.decoder = nn.Sequential(*layers)

    def _check_input(self, x: torch.Tensor) -> None:
        cfg = self.config
        expected = (cfg.num_classes, cfg.image_size, cfg.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"expected one-hot input (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}"
            )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, C, S, S)`` one-hot -> ``mu, logvar``, each ``(B, latent_dim)``."""
        self._check_input(x)
        h = self.encoder(x).flatten(1)
        mu, logvar = self.to_latent(h).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, latent_dim)`` -> logits ``(B, C, S, S)``."""
        if z.ndim != 2 or z.shape[1] != self.config.latent_dim:
            raise ValueError(f"expected latent (B, {self.config.latent_dim}), got {tuple(z.shape)}")
        h = self.from_latent(z).view(z.shape[0], self.config.channels[-1], self._coarse, self._coarse)
        out: torch.Tensor = self.decoder(h)
        return out

    def forward(self, x: torch.Tensor, *, sample: bool = True) -> VAEOutput:
        """Reconstruct ``x``; ``sample=False`` decodes the posterior mean instead of a draw."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        return VAEOutput(self.decode(z), mu, logvar)

    @torch.no_grad()
    def predict(self, z: torch.Tensor) -> torch.Tensor:
        """Class probabilities (softmax) ``(B, C, S, S)`` for latents ``z``; caller sets eval mode."""
        return torch.softmax(self.decode(z), dim=1)


@dataclass(frozen=True)
class VAELoss:
    """Loss terms, each averaged over the batch."""

    total: torch.Tensor
    reconstruction: torch.Tensor
    kld: torch.Tensor


def vae_loss(
    logits: torch.Tensor, target: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, beta: float = 15.0
) -> VAELoss:
    """Cross-entropy summed over a slice's pixels plus ``beta`` x KLD summed over latent dimensions.

    Both are averaged over the batch, as the reference implementation normalises them: a per-pixel
    mean cross-entropy against a summed KLD with beta = 15 would let the prior crush the shapes.

    Args:
        logits: ``(B, C, S, S)``.
        target: class indices ``(B, S, S)`` (int64).
        mu, logvar: ``(B, latent_dim)``.
        beta: KLD weight (the paper's 15).
    """
    if beta < 0:
        raise ValueError(f"beta must be non-negative, got {beta}")
    batch = logits.shape[0]
    ce = F.cross_entropy(logits, target, reduction="sum") / batch
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / batch
    return VAELoss(ce + beta * kld, ce, kld)


def widths(preset: str) -> dict[str, tuple[int, ...]]:
    """Channel and fully connected widths of a named preset."""
    try:
        return VAE_WIDTHS[preset]
    except KeyError:
        raise ValueError(f"unknown VAE preset {preset!r}; expected one of {sorted(VAE_WIDTHS)}") from None
