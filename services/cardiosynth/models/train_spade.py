"""Training of the SPADE translator on paired (label, image) slices.

Losses as in SPADE (Park et al. 2019) with MONAI's pieces: hinge adversarial loss over a two-scale
conditional patch discriminator, discriminator feature matching (weight 10) and the style encoder's
KLD (weight 0.05; ``--kld-weight``). At that weight with the L1 weight at 1, the style code of
``phantom-v2c`` carries about 2 nats a slice and predicts half of the blood pool's brightness
(R2 0.51); ``phantom-v2d``, trained with 0.005, carries about 18 nats (R2 0.74); a classifier
two-sample test's median over seven seeds is 0.75 against 0.85 on own labels, not yet measured
enough to change the default (``reports/realism-phantom-v2/``).
SPADE's VGG perceptual loss needs ImageNet weights, which we may not download; an L1 reconstruction
term takes its place: weight 1 with noise injection (the default), 10 (as pix2pix uses) for the models
trained before it. L1 against the one real image rewards the average texture, so a large weight
undoes what the noise is for. Optimisers: TTUR, generator 1e-4, discriminator 4e-4, betas (0, 0.9).
The exported generator is an exponential moving average of the trained one's weights (decay 0.999,
about five epochs of the default data; torch's ``AveragedModel``), as StyleGAN's: a GAN generator's
output drifts from step to step (here the blood-pool intensity by tens of percent between epochs),
and the average keeps its mean.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from monai.losses import PatchAdversarialLoss
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from cardiosynth.device import autocast, configure_training, place, resolve_device
from cardiosynth.models.onehot import labels_to_onehot
from cardiosynth.models.slices import SliceSet
from cardiosynth.models.spade import (
    SpadeConfig,
    SpadeTranslator,
    build_discriminator,
    spade_widths,
    translate_array,
)
from cardiosynth.models.training import (
    BatchFeed,
    append_history,
    check_resumable,
    label_colours,
    load_checkpoint,
    restore_rng,
    rng_state,
    save_checkpoint,
    save_grid,
    seed_everything,
    training_precision,
    truncate_history,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpadeTrainConfig:
    """Hyper-parameters of a SPADE training run."""

    preset: str = "cpu-small"
    epochs: int = 6
    batch_size: int = 8
    learning_rate: float = 1e-4  # generator; the discriminator gets 4x (TTUR)
    discriminator_lr_ratio: float = 4.0
    discriminator_channels: int = 16
    lambda_feature_matching: float = 10.0
    lambda_l1: float = 1.0  # 10 for the models trained before noise injection
    lambda_kld: float = 0.05  # SPADE's; phantom-v2d was trained with 0.005
    style_dim: int = 16
    noise: bool = True  # noise injection (see cardiosynth.models.spade); runs before it had none
    ema_decay: float = 0.999  # 0: export the last weights as they are (the earlier models)
    seed: int = 0

    def __post_init__(self) -> None:
        spade_widths(self.preset)
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError(f"need epochs >= 1 and batch_size >= 2, got {self.epochs}, {self.batch_size}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        for name in ("lambda_feature_matching", "lambda_l1", "lambda_kld"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")

    def model_config(self) -> SpadeConfig:
        return SpadeConfig(style_dim=self.style_dim, noise=self.noise, **spade_widths(self.preset))


SPADE_PRESETS: dict[str, SpadeTrainConfig] = {
    "cpu-small": SpadeTrainConfig(preset="cpu-small", epochs=24, batch_size=8, discriminator_channels=16),
    "paper": SpadeTrainConfig(preset="paper", epochs=200, batch_size=16, discriminator_channels=64),
}


def spade_preset(name: str, **overrides: Any) -> SpadeTrainConfig:
    try:
        base = SPADE_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(SPADE_PRESETS)}") from None
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def class_means(images: npt.NDArray[np.floating[Any]], labels: npt.NDArray[np.integer]) -> dict[int, float]:
    """Mean intensity of each class 0..3 over all slices (NaN for an absent class)."""
    return {c: float(images[labels == c].mean()) if (labels == c).any() else float("nan") for c in range(4)}


def _feature_matching(fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]]) -> torch.Tensor:
    total = torch.zeros(())
    count = 0
    for fake_scale, real_scale in zip(fake, real, strict=True):
        for f, r in zip(fake_scale, real_scale, strict=True):
            total = total + torch.nn.functional.l1_loss(f, r.detach())
            count += 1
    return total / max(count, 1)


def train_spade(
    train: SliceSet,
    val: SliceSet | None,
    config: SpadeTrainConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    show_progress: bool = True,
    device: str | torch.device | None = "cpu",
    precision: str | None = None,
) -> tuple[SpadeTranslator, list[dict[str, Any]]]:
    """Train a :class:`SpadeTranslator`; return it (the moving average of its weights when
    ``config.ema_decay > 0``) in eval mode (on ``device``) with its per-epoch history. ``device``
    and ``precision`` (AMP) as in :func:`cardiosynth.models.train_vae.train_vae`."""
    if len(train) < 2:
        raise ValueError(f"need at least 2 training slices, got {len(train)}")
    target = device if isinstance(device, torch.device) else resolve_device(device)
    amp = training_precision(precision, target)
    seed_everything(config.seed)
    configure_training(target)
    model_config = config.model_config()
    generator = place(SpadeTranslator(model_config), target)
    discriminator = place(build_discriminator(model_config, config.discriminator_channels), target)
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.learning_rate, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(
        discriminator.parameters(), lr=config.learning_rate * config.discriminator_lr_ratio, betas=(0.0, 0.9)
    )
    adversarial = PatchAdversarialLoss(criterion="hinge", reduction="mean")
    # The weights that are validated, previewed and exported: the moving average, or the generator.
    ema = (
        AveragedModel(generator, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
        if config.ema_decay > 0
        else None
    )
    shipped: SpadeTranslator = generator if ema is None else ema.module  # type: ignore[assignment]
    history: list[dict[str, Any]] = []
    start_epoch = 0
    run_dir.mkdir(parents=True, exist_ok=True)
    if resume and (state := load_checkpoint(run_dir)) is not None:
        check_resumable(run_dir, state.get("config", {}), asdict(config))
        generator.load_state_dict(state["generator"])
        discriminator.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        if ema is not None:
            ema.load_state_dict(state["generator_ema"])
        history = list(state["history"])
        start_epoch = int(state["epoch"])
        restore_rng(state, target)
        truncate_history(run_dir, start_epoch)
        log.info("resuming %s at epoch %d", run_dir, start_epoch + 1)
    labels = torch.from_numpy(train.labels.astype(np.int64))
    images = torch.from_numpy(train.images.astype(np.float32))[:, None]
    feed = BatchFeed((labels, images), config.batch_size, config.seed, target)
    shown = val if val is not None and len(val) else train
    preview_idx = np.linspace(0, len(shown) - 1, 8).astype(int)
    for epoch in range(start_epoch, config.epochs):
        generator.train()
        discriminator.train()
        started = time.perf_counter()
        sums: dict[str, float] = {}
        n_batches = 0
        n_total, batches = feed.epoch(epoch)
        bar = tqdm(batches, total=n_total, desc=f"spade {epoch + 1}/{config.epochs}",
                   disable=not show_progress, leave=False)  # fmt: skip
        for labels, real in bar:
            seg = labels_to_onehot(labels)
            with autocast(target, amp):
                fake, mu, logvar = generator(seg, real)
                # Generator step.
                fake_logits, fake_features = discriminator(torch.cat([seg, fake], 1))
                with torch.no_grad():
                    _, real_features = discriminator(torch.cat([seg, real], 1))
                g_adv = adversarial(fake_logits, target_is_real=True, for_discriminator=False)
                g_fm = _feature_matching(fake_features, real_features)
                g_l1 = torch.nn.functional.l1_loss(fake, real)
                g_kld = -0.5 * torch.mean(torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1))
                g_loss = (
                    g_adv
                    + config.lambda_feature_matching * g_fm
                    + config.lambda_l1 * g_l1
                    + config.lambda_kld * g_kld
                )
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            if ema is not None:
                ema.update_parameters(generator)
            # Discriminator step.
            with autocast(target, amp):
                fake_logits, _ = discriminator(torch.cat([seg, fake.detach()], 1))
                real_logits, _ = discriminator(torch.cat([seg, real], 1))
                d_loss = 0.5 * (
                    adversarial(fake_logits, target_is_real=False, for_discriminator=True)
                    + adversarial(real_logits, target_is_real=True, for_discriminator=True)
                )
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            values = {
                "g_adv": g_adv.item(),
                "g_fm": g_fm.item(),
                "g_l1": g_l1.item(),
                "g_kld": g_kld.item(),
                "d": d_loss.item(),
            }
            for key, value in values.items():
                sums[key] = sums.get(key, 0.0) + value
            n_batches += 1
            bar.set_postfix({k: f"{v:.3f}" for k, v in values.items()})
        bar.close()
        record: dict[str, Any] = {"epoch": epoch + 1, **{k: v / max(n_batches, 1) for k, v in sums.items()}}
        if val is not None and len(val):
            fake_val = translate_array(shipped, val.labels, val.images)
            record["val_l1"] = float(np.abs(fake_val - val.images).mean())
            real_means, fake_means = class_means(val.images, val.labels), class_means(fake_val, val.labels)
            for c, name in ((0, "bg"), (1, "rv"), (2, "myo"), (3, "lv")):
                record[f"val_mean_{name}_real"] = real_means[c]
                record[f"val_mean_{name}_fake"] = fake_means[c]
        record["seconds"] = time.perf_counter() - started
        history.append(record)
        append_history(run_dir, record)
        log.info(
            "spade epoch %d/%d %s",
            epoch + 1,
            config.epochs,
            " ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "epoch"),
        )
        fake_preview = translate_array(shipped, shown.labels[preview_idx], shown.images[preview_idx])
        save_grid(
            [label_colours(shown.labels[preview_idx]), shown.images[preview_idx], fake_preview],
            ["labels", "real", "SPADE"],
            run_dir / "samples" / f"epoch_{epoch + 1:03d}.png",
        )
        save_checkpoint(
            run_dir,
            {
                "config": asdict(config),
                "generator": generator.state_dict(),
                **({} if ema is None else {"generator_ema": ema.state_dict()}),
                "discriminator": discriminator.state_dict(),
                "opt_g": opt_g.state_dict(),
                "opt_d": opt_d.state_dict(),
                "history": history,
                "epoch": epoch + 1,
                **rng_state(target),
            },
        )
    shipped.eval()
    return shipped, history


def run_spade_training(
    data: Path,
    run_dir: Path,
    config: SpadeTrainConfig,
    *,
    holdout: float = 0.2,
    resume: bool = False,
    overwrite: bool = False,
    version: str = "phantom-v1",
    model_root: Path | None = None,
    show_progress: bool = True,
    device: str | torch.device | None = "cpu",
    precision: str | None = None,
) -> Path:
    """Train on the subjects under ``data`` and export the model directory (see ``run_vae_training``)."""
    from cardiosynth.models.slices import load_split
    from cardiosynth.models.training import check_run_dir, data_card, export_model

    target = resolve_device(device)  # before the data is read: a missing GPU fails at once
    check_run_dir(run_dir, resume=resume, overwrite=overwrite)
    split = load_split(data, holdout=holdout, seed=config.seed)
    model, history = train_spade(split.train, split.heldout, config, run_dir, resume=resume,
                                 show_progress=show_progress, device=target, precision=precision)  # fmt: skip
    last = history[-1] if history else {}
    card = {
        "description": "SPADE label-to-image translator (MONAI SPADENet + full-resolution SPADE head)",
        "preset": config.preset,
        "epochs": config.epochs,
        "seed": config.seed,
        "training": asdict(config),
        **data_card(data, split.train, split.heldout),
        "metrics": {k: v for k, v in last.items() if k.startswith("val_")},
    }
    return export_model(model, run_dir, kind="spade", version=version, card=card, model_root=model_root)
