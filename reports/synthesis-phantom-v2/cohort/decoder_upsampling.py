"""Is the round trip's wall wobble the decoder's nearest-neighbour upsampling? A check.

The shipped VAE's decoder upsamples an 8 x 8 map four times by pixel repetition; the repeated
blocks could print bumps on the ring. Here the decoder's upsampling is switched to bilinear and the
decoder (with its input layer) fine-tuned on the frozen encoder's latents of the training slices
(``z = mu + sigma * eps``, the VAE's reconstruction loss, cosine decay from ``LR``), so the latent
space, and every statistic built on it, is unchanged; then :mod:`wall_profile` reports it.

    .venv/bin/python reports/synthesis-phantom-v2/cohort/decoder_upsampling.py DATA [EPOCHS] [LR] >> OUT.txt
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

VERSION = "phantom-v2c"  # the VAE the check was made on (phantom-v2b's weights)


def fine_tune_decoder(
    vae: nn.Module, data: Path, optimiser: torch.optim.Optimizer, epochs: int, tag: str
) -> None:
    """Fine-tune ``vae``'s decoder (the parameters ``optimiser`` holds, rates decayed from their
    initial ones by :func:`cosine_lr`) on the frozen encoder's latents ``z = mu + sigma * eps`` of the
    training slices of the shipped VAE's split, with the VAE's reconstruction loss; one line per
    epoch, labelled ``tag``."""
    split = load_split(data, holdout=0.2, seed=0)  # the split the shipped VAE was trained on
    labels = torch.from_numpy(split.train.labels.astype(np.int64))
    vae.eval()
    with torch.no_grad():
        posterior = [vae.encode(labels_to_onehot(labels[i : i + 128])) for i in range(0, len(labels), 128)]
    mu = torch.cat([p[0] for p in posterior])
    sigma = torch.exp(0.5 * torch.cat([p[1] for p in posterior]))
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
            f"# {tag} epoch {epoch + 1}/{epochs}: cross-entropy {total / len(labels):.1f} per slice "
            f"({time.perf_counter() - started:.0f} s)\n"
        )
        sys.stdout.flush()
    vae.eval()


if __name__ == "__main__":
    data = Path(sys.argv[1])
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    lr = float(sys.argv[3]) if len(sys.argv) > 3 else 3e-4
    torch.manual_seed(0)
    vae = load_model("vae", VERSION).module
    for module in vae.decoder.modules():
        if isinstance(module, nn.Upsample):
            module.mode, module.align_corners = "bilinear", False
    params = [*vae.from_latent.parameters(), *vae.decoder.parameters()]
    fine_tune_decoder(vae, data, torch.optim.Adam(params, lr=lr), epochs, "bilinear decoder")
    report(vae, f"{VERSION}+bilinear", data)
