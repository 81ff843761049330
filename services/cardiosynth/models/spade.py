"""Label-to-image translator: MONAI's SPADE generator with its VAE style encoder.

MONAI's ``SPADENet`` decoder runs its last SPADE block at half the output resolution (each block is
followed by an upsampling), so thin structures such as the myocardium would be drawn from a
64 x 64 map. We let it produce ``head_channels`` feature maps and add one more MONAI
``SPADENetResBlock`` at full resolution, then a ``3x3`` convolution and tanh to one channel in
[-1, 1] (the preprocessing's intensity range).

With ``noise=True`` (:class:`SpadeConfig`) the generator also takes one Gaussian noise image per
slice and adds it, scaled per channel by learned weights that start at zero, to the features after
every decoder block and before the head (StyleGAN's noise injection, Karras et al. 2019). A
label-conditioned generator without it is a deterministic function of the labels and one global
style code, so it can only draw the average texture of a tissue: the blood pool's papillary muscles
and trabeculations and the image noise are random, not in the labels, and come out smoothed away
(issue 9's image realism). The SPADE normalisation that follows each injection scales the noise by
tissue, so its strength can depend on the label as MR noise and texture do. At inference the noise
of a slice is drawn from a seed hashed from its own label map and reference image
(:func:`slice_noise`): the same slice gives the same image on any device, batch size or order.

Shapes: labels ``(B, S, S)`` integers in {0, 1, 2, 3} or one-hot ``(B, C, S, S)``; images
``(B, 1, S, S)``; style codes ``(B, style_dim)``.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from monai.networks.nets import MultiScalePatchDiscriminator, SPADENet
from monai.networks.nets.spade_network import SPADENetResBlock
from torch import nn

from cardiosynth.data.labels import NUM_CLASSES
from cardiosynth.device import autocast, model_device, to_model, to_numpy
from cardiosynth.models.onehot import labels_to_onehot
from cardiosynth.parallel import thread_map


@dataclass(frozen=True)
class SpadeConfig:
    """Constructor arguments of :class:`SpadeTranslator` (stored with the weights)."""

    num_classes: int = NUM_CLASSES
    image_size: int = 128
    channels: tuple[int, ...] = (16, 32, 64, 128)
    style_dim: int = 16
    spade_hidden: int = 16
    head_channels: int = 8
    noise: bool = False  # noise injection; False for the weights shipped before it existed

    def __post_init__(self) -> None:
        if not self.channels or any(c < 1 for c in self.channels):
            raise ValueError(f"channels must be positive widths, got {self.channels}")
        if self.image_size % (2 ** len(self.channels)):
            raise ValueError(
                f"image_size {self.image_size} must be divisible by "
                f"2**len(channels) = {2 ** len(self.channels)}"
            )
        for name in ("num_classes", "style_dim", "spade_hidden", "head_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpadeConfig:
        values = dict(data)
        if "channels" in values:
            values["channels"] = tuple(int(v) for v in values["channels"])
        return cls(**values)


SPADE_WIDTHS: dict[str, dict[str, Any]] = {
    "cpu-small": {"channels": (16, 32, 64, 128), "spade_hidden": 16, "head_channels": 8},
    "paper": {"channels": (64, 128, 256, 512, 1024), "spade_hidden": 128, "head_channels": 64},
}


def spade_widths(preset: str) -> dict[str, Any]:
    try:
        return SPADE_WIDTHS[preset]
    except KeyError:
        raise ValueError(f"unknown SPADE preset {preset!r}; expected one of {sorted(SPADE_WIDTHS)}") from None


class SpadeTranslator(nn.Module):
    """SPADE generator conditioned on labels, with a style code from a reference image."""

    def __init__(self, config: SpadeConfig | None = None) -> None:
        super().__init__()
        self.config = config or SpadeConfig()
        cfg = self.config
        self.net = SPADENet(
            spatial_dims=2,
            in_channels=1,
            out_channels=cfg.head_channels,
            label_nc=cfg.num_classes,
            input_shape=(cfg.image_size, cfg.image_size),
            channels=list(cfg.channels),  # SPADENet reverses and extends the list it is given
            z_dim=cfg.style_dim,
            is_vae=True,
            spade_intermediate_channels=cfg.spade_hidden,
            norm="INSTANCE",
        )
        self.head = SPADENetResBlock(
            spatial_dims=2,
            in_channels=cfg.head_channels,
            out_channels=cfg.head_channels,
            label_nc=cfg.num_classes,
            spade_intermediate_channels=cfg.head_channels,
            norm="INSTANCE",
        )
        self.to_image = nn.Conv2d(cfg.head_channels, 1, kernel_size=3, padding=1)
        if cfg.noise:
            # One weight per channel per injection: after each decoder block (its output width) and
            # before the head. Zero at the start, so training begins from the noise-free generator.
            widths = [*list(self.net.decoder.num_channels[1:]), cfg.head_channels]
            self.noise_weights = nn.ParameterList([nn.Parameter(torch.zeros(1, w, 1, 1)) for w in widths])

    def _check_image(self, image: torch.Tensor) -> None:
        s = self.config.image_size
        if image.ndim != 4 or tuple(image.shape[1:]) != (1, s, s):
            raise ValueError(f"expected images (B, 1, {s}, {s}), got {tuple(image.shape)}")

    def _check_onehot(self, seg: torch.Tensor) -> None:
        s, c = self.config.image_size, self.config.num_classes
        if seg.ndim != 4 or tuple(seg.shape[1:]) != (c, s, s):
            raise ValueError(f"expected one-hot labels (B, {c}, {s}, {s}), got {tuple(seg.shape)}")

    def encode_style(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Style posterior of reference images ``(B, 1, S, S)``: ``mu, logvar`` each ``(B, style_dim)``."""
        self._check_image(image)
        mu, logvar = self.net.encoder(image)
        return mu, logvar

    def generate(
        self, seg: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Image ``(B, 1, S, S)`` in [-1, 1] from one-hot labels and style codes ``(B, style_dim)``.

        ``noise`` ``(B, 1, S, S)``: the standard-normal noise image of each slice for a model with
        noise injection (a fresh random draw when ``None``, as in training); ignored without it."""
        self._check_onehot(seg)
        if style.ndim != 2 or style.shape != (seg.shape[0], self.config.style_dim):
            raise ValueError(
                f"expected style ({seg.shape[0]}, {self.config.style_dim}), got {tuple(style.shape)}"
            )
        if not self.config.noise:
            features = self.net.decode(seg, style)
            return torch.tanh(self.to_image(self.head(features, seg)))
        s = self.config.image_size
        if noise is None:
            noise = torch.randn(seg.shape[0], 1, s, s, device=seg.device)
        elif tuple(noise.shape) != (seg.shape[0], 1, s, s):
            raise ValueError(f"expected noise ({seg.shape[0]}, 1, {s}, {s}), got {tuple(noise.shape)}")
        noise = noise.to(seg.device)
        decoder = self.net.decoder
        # MONAI's SPADEDecoder.forward with the injections added (same modules, same order).
        x = decoder.fc(style).view(-1, decoder.num_channels[0], *decoder.latent_spatial_shape)
        for block, weight in zip(decoder.blocks, self.noise_weights, strict=False):
            x = decoder.upsampling(block(x, seg))
            x = x + weight * _noise_at(noise, x.shape[-1])
        x = decoder.last_conv(x)
        x = x + self.noise_weights[-1] * _noise_at(noise, x.shape[-1])
        return torch.tanh(self.to_image(self.head(x, seg)))

    def forward(
        self, seg: torch.Tensor, reference: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: a style draw from ``reference`` -> ``(image, mu, logvar)``."""
        mu, logvar = self.encode_style(reference)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.generate(seg, z), mu, logvar

    @torch.no_grad()
    def translate(
        self, labels: torch.Tensor, reference: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Inference: integer labels ``(B, S, S)`` and reference images ``(B, 1, S, S)`` -> images.

        The style is the posterior mean of each reference and the noise (a model with noise
        injection) is ``noise`` or else :func:`slice_noise` of each slice: deterministic; call in
        eval mode.
        """
        seg = labels_to_onehot(labels, self.config.num_classes)
        mu, _ = self.encode_style(reference)
        if self.config.noise and noise is None:
            noise = slice_noise(labels.cpu().numpy(), reference.float().cpu().numpy()[:, 0])
        return self.generate(seg, mu, noise)  # generate moves the noise to the labels' device


def _noise_at(noise: torch.Tensor, size: int) -> torch.Tensor:
    """The full-resolution noise ``(B, 1, S, S)`` read at ``size x size``: every ``S / size``-th pixel
    from offset ``S / size / 2``. Strided reads keep unit variance (pooling would shrink it), and the
    offsets make the coarser levels read disjoint pixels of the image."""
    stride = noise.shape[-1] // size
    if stride == 1:
        return noise
    start = stride // 2
    return noise[..., start::stride, start::stride]


def slice_noise(labels: npt.NDArray[Any], references: npt.NDArray[np.floating[Any]]) -> torch.Tensor:
    """Standard-normal noise images ``(N, 1, S, S)`` for labels and references ``(N, S, S)``: each
    slice's from a seed hashed from its own label map and reference image, so a slice's image does
    not depend on the device, the batch it comes in or the slices around it. Slices are drawn by
    threads (NumPy's generators and zlib's CRC release the GIL): about 0.15 ms a slice on one core."""
    labels = np.asarray(labels)
    references = np.asarray(references, dtype=np.float32)
    if labels.shape != references.shape or labels.ndim != 3:
        raise ValueError(f"labels {labels.shape} and references {references.shape} must both be (N, S, S)")
    out = np.empty((len(labels), 1, *labels.shape[1:]), np.float32)

    def draw(i: int) -> None:
        # Two CRC-32s make a 64-bit seed; a checksum, not a secret, is all a noise seed needs.
        lab = zlib.crc32(np.ascontiguousarray(labels[i], dtype=np.uint8).tobytes())
        ref = zlib.crc32(np.ascontiguousarray(references[i]).tobytes())
        rng = np.random.default_rng((lab << 32) | ref)
        rng.standard_normal(labels.shape[1:], dtype=np.float32, out=out[i, 0])

    thread_map(draw, range(len(labels)))
    return torch.from_numpy(out)


def build_discriminator(config: SpadeConfig, channels: int = 32) -> MultiScalePatchDiscriminator:
    """Two-scale conditional patch discriminator over ``concat(one-hot labels, image)``."""
    if config.image_size < 64:
        # The coarse scale halves four times and instance norm needs more than one pixel after that.
        raise ValueError(f"the discriminator needs images of at least 64 pixels, got {config.image_size}")
    return MultiScalePatchDiscriminator(
        # Scale i has 2 * (i + 1) stride-2 layers: patches of about 34 and 94 pixels at 128 x 128.
        num_d=2,
        num_layers_d=2,
        spatial_dims=2,
        channels=channels,
        in_channels=config.num_classes + 1,
        out_channels=1,
        norm="INSTANCE",
        minimum_size_im=config.image_size,
    )


@torch.no_grad()
def translate_array(
    model: SpadeTranslator,
    labels: npt.NDArray[np.integer[Any]],
    references: npt.NDArray[np.floating[Any]],
    batch_size: int = 64,
    precision: str | None = None,
) -> npt.NDArray[np.float32]:
    """Images ``(N, S, S)`` for labels ``(N, S, S)``, each with the style of its reference slice
    ``(N, S, S)``, in batches and in eval mode (the model's mode is restored afterwards), on the
    model's device at ``precision`` (see :func:`cardiosynth.device.autocast`); a CPU array back."""
    if np.shape(labels) != np.shape(references):
        raise ValueError(f"labels {np.shape(labels)} and references {np.shape(references)} differ in shape")
    was_training = model.training
    model.eval()
    out = []
    device = model_device(model)
    # Label maps travel to the device as bytes when they are bytes (a GPU copy 8 x smaller than int64).
    wire = np.uint8 if np.asarray(labels).dtype == np.uint8 else np.int64
    for start in range(0, len(labels), batch_size):
        lab_np = np.ascontiguousarray(labels[start : start + batch_size], dtype=wire)
        ref_np = np.asarray(references[start : start + batch_size], dtype=np.float32)
        lab, ref = torch.from_numpy(lab_np), torch.from_numpy(ref_np)[:, None]
        # The noise from the host arrays: translate would otherwise copy the labels back to hash them.
        noise = to_model(slice_noise(lab_np, ref_np), model) if model.config.noise else None
        with autocast(device, precision):
            image = model.translate(to_model(lab, model).long(), to_model(ref, model), noise)
        out.append(to_numpy(image[:, 0]))
    model.train(was_training)
    size = model.config.image_size
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, size, size), np.float32)
