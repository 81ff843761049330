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
from pathlib import Path

import torch
from decoder_upsampling import fine_tune_decoder
from torch import nn
from wall_profile import report

from cardiosynth.models.registry import load_model

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
    # the head learns from zero at a higher rate than the pretrained decoder is nudged
    optimiser = torch.optim.Adam([
        {"params": [*vae.from_latent.parameters(), *vae.decoder.body.parameters(),
                    *vae.decoder.out.parameters()], "lr": lr},
        {"params": vae.decoder.head.parameters(), "lr": 3 * lr},
    ])  # fmt: skip
    fine_tune_decoder(vae, data, optimiser, epochs, f"head {width}")
    report(vae, f"{VERSION}+head{width}", data)
