"""Training of the label VAE on 2D slices (pure: arrays in, model and metrics out, files in a run dir)."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from tqdm import tqdm

from cardiosynth.data.preprocess import check_label_interpolation
from cardiosynth.device import (
    autocast,
    configure_training,
    model_device,
    place,
    resolve_device,
    to_model,
    to_numpy,
)
from cardiosynth.models.onehot import labels_to_onehot
from cardiosynth.models.slices import SliceSet
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
from cardiosynth.models.vae import LabelVAE, VAEConfig, vae_loss, widths

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VAETrainConfig:
    """Hyper-parameters of a VAE training run."""

    preset: str = "cpu-small"
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-3
    beta: float = 15.0
    latent_dim: int = 16
    seed: int = 0
    label_interpolation: str = "nearest"  # how the training labels are resampled (data.preprocess)

    def __post_init__(self) -> None:
        widths(self.preset)  # validates the name
        check_label_interpolation(self.label_interpolation)
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError(f"need epochs >= 1 and batch_size >= 2, got {self.epochs}, {self.batch_size}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if not (self.beta >= 0 and math.isfinite(self.beta)):
            raise ValueError(f"beta (the KL weight) must be finite and >= 0, got {self.beta}")

    def model_config(self) -> VAEConfig:
        w = widths(self.preset)
        return VAEConfig(latent_dim=self.latent_dim, channels=w["channels"], fc_features=w["fc_features"],
                         label_interpolation=self.label_interpolation)  # fmt: skip


VAE_PRESETS: dict[str, VAETrainConfig] = {
    "cpu-small": VAETrainConfig(preset="cpu-small", epochs=24, batch_size=32, learning_rate=1e-3),
    "paper": VAETrainConfig(preset="paper", epochs=200, batch_size=32, learning_rate=1e-4),
}


def vae_preset(name: str, **overrides: Any) -> VAETrainConfig:
    try:
        base = VAE_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(VAE_PRESETS)}") from None
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def cosine_lr(base: float, epoch: int, epochs: int, floor: float = 0.05) -> float:
    """Cosine decay from ``base`` at epoch 0 to ``floor * base`` at the last epoch.

    A constant rate leaves the held-out Dice swinging by several points from epoch to epoch; the
    decay lets the last epoch (the one shipped) settle. A function of the epoch alone, so resumed
    runs follow the same schedule.
    """
    if epochs <= 1:
        return base
    t = epoch / (epochs - 1)
    return base * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t)))


@torch.no_grad()
def reconstruct(
    model: LabelVAE, labels: npt.NDArray[np.uint8], batch_size: int = 64, precision: str | None = None
) -> npt.NDArray[np.uint8]:
    """Posterior-mean reconstruction (eval mode, on the model's device) of label slices
    ``(N, S, S)`` -> ``(N, S, S)``; ``precision`` as in :func:`cardiosynth.device.autocast`."""
    was_training = model.training
    model.eval()
    out = []
    device = model_device(model)
    for start in range(0, len(labels), batch_size):
        x = to_model(torch.from_numpy(labels[start : start + batch_size].astype(np.int64)), model)
        with autocast(device, precision):
            logits = model(labels_to_onehot(x), sample=False).logits
        out.append(to_numpy(logits.argmax(1).to(torch.uint8)))
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros_like(labels)


def reconstruction_dice(model: LabelVAE, slices: SliceSet, batch_size: int = 64) -> dict[int, float]:
    """Per-class Dice of posterior-mean reconstructions, one Dice per subject and phase volume, averaged."""
    return slices.dice_per_volume(reconstruct(model, slices.labels, batch_size))


def train_vae(
    train: SliceSet,
    val: SliceSet | None,
    config: VAETrainConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    show_progress: bool = True,
    device: str | torch.device | None = "cpu",
    precision: str | None = None,
) -> tuple[LabelVAE, list[dict[str, Any]]]:
    """Train a :class:`LabelVAE` and return it (eval mode, on ``device``) with its per-epoch history.

    ``run_dir`` receives ``checkpoint.pt`` after each epoch (resumable with ``resume=True``, on any
    device: it is loaded onto the CPU first), ``history.jsonl`` and ``samples/epoch_NNN.png``.
    ``device``: a spec for :func:`cardiosynth.device.resolve_device`; ``precision``: AMP, default
    bf16 on CUDA and fp32 (no autocast: the CPU path is the one that always ran) on CPU.
    """
    if len(train) < 2:
        raise ValueError(f"need at least 2 training slices, got {len(train)}")
    target = device if isinstance(device, torch.device) else resolve_device(device)
    amp = training_precision(precision, target)
    seed_everything(config.seed)
    configure_training(target)
    model = place(LabelVAE(config.model_config()), target)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    run_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        state = load_checkpoint(run_dir)
        if state is not None:
            check_resumable(run_dir, state.get("config", {}), asdict(config))
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimiser"])
            history = list(state["history"])
            start_epoch = int(state["epoch"])
            restore_rng(state, target)
            truncate_history(run_dir, start_epoch)
            log.info("resuming %s at epoch %d", run_dir, start_epoch + 1)
    feed = BatchFeed(
        (torch.from_numpy(train.labels.astype(np.int64)),), config.batch_size, config.seed, target
    )
    preview_idx = np.linspace(0, len(val or train) - 1, 8).astype(int)
    for epoch in range(start_epoch, config.epochs):
        for group in optimiser.param_groups:
            group["lr"] = cosine_lr(config.learning_rate, epoch, config.epochs)
        model.train()
        started = time.perf_counter()
        sums = {"loss": 0.0, "ce": 0.0, "kld": 0.0}
        n_batches = 0
        n_total, batches = feed.epoch(epoch)
        with tqdm(
            batches,
            total=n_total,
            desc=f"vae {epoch + 1}/{config.epochs}",
            disable=not show_progress,
            leave=False,
        ) as bar:
            for (labels,) in bar:
                with autocast(target, amp):
                    out = model(labels_to_onehot(labels))
                    loss = vae_loss(out.logits, labels, out.mu, out.logvar, config.beta)
                optimiser.zero_grad(set_to_none=True)
                loss.total.backward()
                optimiser.step()
                values = {"loss": loss.total.item(), "ce": loss.reconstruction.item(), "kld": loss.kld.item()}
                for key, value in values.items():
                    sums[key] += value
                n_batches += 1
                bar.set_postfix(
                    loss=f"{values['loss']:.0f}", ce=f"{values['ce']:.0f}", kld=f"{values['kld']:.1f}"
                )
        record: dict[str, Any] = {"epoch": epoch + 1, **{k: v / max(n_batches, 1) for k, v in sums.items()}}
        record["lr"] = optimiser.param_groups[0]["lr"]
        if val is not None and len(val):
            dice = reconstruction_dice(model, val)
            record.update({"val_dice_rv": dice[1], "val_dice_myo": dice[2], "val_dice_lv": dice[3]})
        record["seconds"] = time.perf_counter() - started
        history.append(record)
        append_history(run_dir, record)
        log.info(
            "vae epoch %d/%d %s",
            epoch + 1,
            config.epochs,
            " ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "epoch"),
        )
        shown = val if val is not None and len(val) else train
        recon = reconstruct(model, shown.labels[preview_idx])
        save_grid(
            [label_colours(shown.labels[preview_idx]), label_colours(recon)],
            ["labels", "reconstruction"],
            run_dir / "samples" / f"epoch_{epoch + 1:03d}.png",
        )
        save_checkpoint(
            run_dir,
            {
                "config": asdict(config),
                "model": model.state_dict(),
                "optimiser": optimiser.state_dict(),
                "history": history,
                "epoch": epoch + 1,
                **rng_state(target),
            },
        )
    model.eval()
    return model, history


def run_vae_training(
    data: Path,
    run_dir: Path,
    config: VAETrainConfig,
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
    """Train on the subjects under ``data`` (held-out split by group), export the model directory to
    ``run_dir/model`` (and ``model_root/vae/version`` when given) with its card; return its path.
    ``device`` and ``precision`` as in :func:`train_vae` (they do not enter the card's settings)."""
    from cardiosynth.models.slices import load_split
    from cardiosynth.models.training import check_run_dir, data_card, export_model

    target = resolve_device(device)  # before the data is read: a missing GPU fails at once
    check_run_dir(run_dir, resume=resume, overwrite=overwrite)
    split = load_split(
        data, holdout=holdout, seed=config.seed, label_interpolation=config.label_interpolation
    )
    model, history = train_vae(split.train, split.heldout, config, run_dir, resume=resume,
                               show_progress=show_progress, device=target, precision=precision)  # fmt: skip
    dice = reconstruction_dice(model, split.heldout)
    card = {
        "description": "2D label VAE (Amirrajab et al.); metrics: posterior-mean Dice, held-out subjects",
        "preset": config.preset,
        "epochs": config.epochs,
        "seed": config.seed,
        "training": asdict(config),
        **data_card(data, split.train, split.heldout),
        "metrics": {
            "heldout_dice_rv": dice[1],
            "heldout_dice_myo": dice[2],
            "heldout_dice_lv": dice[3],
            "final_train_loss": history[-1]["loss"] if history else None,
        },
    }
    return export_model(model, run_dir, kind="vae", version=version, card=card, model_root=model_root)
