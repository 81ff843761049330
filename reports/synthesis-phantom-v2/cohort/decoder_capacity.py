"""Is the round trip's wall wobble a lack of decoder capacity at full resolution? A check.

The shipped VAE's decoder draws the 128 x 128 label map from 8 feature channels, the narrowest
stage of the network where the boundary is placed. Here a residual head at full resolution (the
decoder's last 8 feature channels and its 4 logits in, ``WIDTH`` channels, three convolutions, the
last one initialised to zero so the head starts as the shipped decoder) is added, and the decoder
with its head is fine-tuned on the frozen encoder's latents of the training slices (``z = mu +
sigma * eps``, the VAE's reconstruction loss, cosine decay; the same recipe as
``decoder_upsampling.py``, whose 8 epochs at 3e-4 without a head are the control: round trip
unchanged). The latent space, and every statistic built on it, is unchanged; then
:mod:`wall_profile` reports it.

    .venv/bin/python reports/synthesis-phantom-v2/cohort/decoder_capacity.py DATA [WIDTH] [EPOCHS] [LR]
"""

import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from wall_profile import report

from cardiosynth.models.onehot import labels_to_onehot
from cardiosynth.models.registry import load_model
from cardiosynth.models.slices import load_split
from cardiosynth.models.train_vae import cosine_lr

VERSION = "phantom-v2c"


class HeadedDecoder(nn.Module):
    """The shipped decoder (``body``: up to its last feature map; ``out``: its last convolution) plus a
    zero-initialised residual head on ``(features, logits)`` at full resolution."""

    def __init__(self, decoder: nn.Sequential, width: int, slope: float = 0.2) -> None:
        super().__init__()
        self.body, self.out = decoder[:-1], decoder[-1]
        c_feat, c_out = self.out.in_channels, self.out.out_channels
        self.head = nn.Sequential(
            nn.Conv2d(c_feat + c_out, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.LeakyReLU(slope),
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.LeakyReLU(slope),
            nn.Conv2d(width, c_out, 3, padding=1),
        )
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        features = self.body(h)
        logits = self.out(features)
        return logits + self.head(torch.cat([features, logits], dim=1))


if __name__ == "__main__":
    data = Path(sys.argv[1])
    width = int(sys.argv[2]) if len(sys.argv) > 2 else 24
    epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    lr = float(sys.argv[4]) if len(sys.argv) > 4 else 3e-4
    torch.manual_seed(0)
    vae = load_model("vae", VERSION).module
    vae.decoder = HeadedDecoder(vae.decoder, width, vae.config.negative_slope)
    split = load_split(data, holdout=0.2, seed=0)  # the split the shipped VAE was trained on
    labels = torch.from_numpy(split.train.labels.astype(np.int64))
    vae.eval()
    with torch.no_grad():
        posterior = [vae.encode(labels_to_onehot(labels[i : i + 128])) for i in range(0, len(labels), 128)]
    mu = torch.cat([p[0] for p in posterior])
    sigma = torch.exp(0.5 * torch.cat([p[1] for p in posterior]))
    # the head learns from zero at a higher rate than the pretrained decoder is nudged
    optimiser = torch.optim.Adam([
        {"params": [*vae.from_latent.parameters(), *vae.decoder.body.parameters(),
                    *vae.decoder.out.parameters()], "lr": lr},
        {"params": vae.decoder.head.parameters(), "lr": 3 * lr},
    ])  # fmt: skip
    base_lrs = [group["lr"] for group in optimiser.param_groups]
    vae.from_latent.train()
    vae.decoder.train()
    rng = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        for group, base in zip(optimiser.param_groups, base_lrs, strict=True):
            group["lr"] = cosine_lr(base, epoch, epochs)
        order = torch.randperm(len(labels), generator=rng)
        started, total = time.perf_counter(), 0.0
        for i in range(0, len(order), 32):
            idx = order[i : i + 32]
            z = mu[idx] + torch.randn(len(idx), mu.shape[1], generator=rng) * sigma[idx]
            loss = nn.functional.cross_entropy(vae.decode(z), labels[idx], reduction="sum") / len(idx)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += loss.item() * len(idx)
        sys.stdout.write(
            f"# head {width} epoch {epoch + 1}/{epochs}: cross-entropy {total / len(labels):.1f} per slice "
            f"({time.perf_counter() - started:.0f} s)\n"
        )
        sys.stdout.flush()
    vae.eval()
    report(vae, f"{VERSION}+head{width}", data)
