"""``cardiosynth evaluate models``: the figures the model cards and the models issue ask for.

- VAE: Dice of posterior-mean reconstructions on held-out subjects, per class.
- SPADE label fidelity: a UNet trained on the real images of the training subjects segments (a) the
  real held-out images (the ceiling) and (b) SPADE images made from the held-out labels with the
  style of the same subject's own slice; Dice against the labels, per class and foreground mean.
- SPADE intensity: per-class mean intensity of SPADE vs real held-out images (normalised scale),
  with the relative difference ``|fake - real| / |real|``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cardiosynth.data.labels import LABEL_NAMES
from cardiosynth.evaluation.metrics import named
from cardiosynth.models.catalog import DEFAULT_VERSION
from cardiosynth.models.registry import LoadedModel, load_model, load_model_dir
from cardiosynth.models.slices import SliceSet, load_slices, split_subjects

log = logging.getLogger(__name__)

TARGETS = {
    "vae_dice_lv": 0.92,
    "vae_dice_myo": 0.85,
    "vae_dice_rv": 0.88,
    "spade_fidelity_mean_dice": 0.85,
    "spade_intensity_max_relative_difference": 0.10,
}


@dataclass(frozen=True)
class ModelRefs:
    """Which models to evaluate: registry ``version`` (and optional root) or explicit directories."""

    vae_version: str = DEFAULT_VERSION
    spade_version: str = DEFAULT_VERSION
    root: Path | None = None
    vae_dir: Path | None = None
    spade_dir: Path | None = None
    device: str | None = None  # where the models run (cardiosynth.device spec); None: CPU

    def load(self) -> tuple[LoadedModel, LoadedModel]:
        vae = (
            load_model_dir(self.vae_dir, kind="vae")
            if self.vae_dir
            else load_model("vae", self.vae_version, self.root)
        )
        spade = (
            load_model_dir(self.spade_dir, kind="spade")
            if self.spade_dir
            else load_model("spade", self.spade_version, self.root)
        )
        if self.device is not None:
            from cardiosynth.device import place

            place(vae.module, self.device)
            place(spade.module, self.device)
        return vae, spade


def _heldout_split(slices: SliceSet, card: dict[str, Any], seed: int) -> tuple[list[str], list[str], str]:
    listed = [s for s in card.get("heldout_subjects", []) if s in slices.subject_ids]
    if listed and len(listed) == len(card.get("heldout_subjects", [])):
        train = [s for s in slices.subject_ids if s not in set(listed)]
        return train, listed, "the model card's held-out subjects"
    train, test = split_subjects(slices.subject_ids, slices.groups, holdout=0.2, seed=seed)
    return train, test, "a fresh stratified 20 % split (the card's held-out subjects are not in this data)"


def evaluate_models(
    data: Path,
    refs: ModelRefs,
    *,
    segmenter_epochs: int = 4,
    seed: int = 0,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Compute the report (a JSON-ready dict)."""
    from cardiosynth.evaluation.segmenter import segment, train_segmenter
    from cardiosynth.models.spade import SpadeTranslator, translate_array
    from cardiosynth.models.train_spade import class_means
    from cardiosynth.models.train_vae import reconstruct
    from cardiosynth.models.vae import LabelVAE

    vae, spade = refs.load()
    if not isinstance(vae.module, LabelVAE) or not isinstance(spade.module, SpadeTranslator):
        raise ValueError("expected a VAE and a SPADE model")
    # Preprocessed as the VAE's training labels were; SPADE then translates labels of that kind too,
    # as in synthesis, where it gets the VAE's.
    slices = load_slices(data, label_interpolation=vae.module.config.label_interpolation)
    train_ids, test_ids, split_note = _heldout_split(slices, vae.card, seed)
    train, test = slices.select_subjects(train_ids), slices.select_subjects(test_ids)
    log.info("evaluating on %d held-out subjects (%s)", len(test_ids), split_note)

    vae_dice = test.dice_per_volume(reconstruct(vae.module, test.labels))

    segmenter = train_segmenter(
        train.images, train.labels, epochs=segmenter_epochs, seed=seed, show_progress=show_progress
    )
    real_dice = test.dice_per_volume(segment(segmenter, test.images))
    fake_images = translate_array(spade.module, test.labels, test.images)
    fake_dice = test.dice_per_volume(segment(segmenter, fake_images))

    real_means, fake_means = class_means(test.images, test.labels), class_means(fake_images, test.labels)
    intensity = {
        LABEL_NAMES[c]: {
            "real": real_means[c],
            "spade": fake_means[c],
            "relative_difference": abs(fake_means[c] - real_means[c]) / max(abs(real_means[c]), 1e-6),
        }
        for c in range(4)
    }

    figures = {
        "vae_dice_lv": vae_dice[3],
        "vae_dice_myo": vae_dice[2],
        "vae_dice_rv": vae_dice[1],
        "spade_fidelity_mean_dice": float(np.mean(list(fake_dice.values()))),
        "segmenter_real_mean_dice": float(np.mean(list(real_dice.values()))),
        "spade_intensity_max_relative_difference": max(v["relative_difference"] for v in intensity.values()),
    }
    checks = {
        name: {
            "value": figures[name],
            "target": target,
            "met": figures[name] <= target if "difference" in name else figures[name] >= target,
        }
        for name, target in TARGETS.items()
    }
    return {
        "data": data.name,
        "split": split_note,
        "heldout_subjects": test_ids,
        "heldout_slices": len(test),
        "models": {
            "vae": {
                "version": vae.version,
                "path": vae.path.name,
                "card_metrics": vae.card.get("metrics", {}),
            },
            "spade": {"version": spade.version, "path": spade.path.name},
        },
        "vae_reconstruction_dice": named(vae_dice),
        "segmenter": {"epochs": segmenter_epochs, "train_slices": len(train)},
        "segmenter_dice_on_real": named(real_dice),
        "segmenter_dice_on_spade": named(fake_dice),
        "intensity": intensity,
        "figures": figures,
        "checks": checks,
    }


def report_markdown(report: dict[str, Any]) -> str:
    """The report for people."""
    lines = [
        "# Model evaluation",
        "",
        f"Data: `{report['data']}`; held-out: {len(report['heldout_subjects'])} subjects, "
        f"{report['heldout_slices']} slices ({report['split']}).",
        f"Models: VAE `{report['models']['vae']['version']}`, "
        f"SPADE `{report['models']['spade']['version']}`.",
        "",
        "## Targets",
        "",
        "| figure | value | target | met |",
        "|---|---|---|---|",
    ]
    for name, check in report["checks"].items():
        op = "<=" if "difference" in name else ">="
        lines.append(
            f"| {name} | {check['value']:.4f} | {op} {check['target']} | {'yes' if check['met'] else 'NO'} |"
        )
    lines += [
        "",
        "## Dice per class",
        "",
        "| class | VAE reconstruction | segmenter on real | segmenter on SPADE |",
        "|---|---|---|---|",
    ]
    for cls in report["vae_reconstruction_dice"]:
        lines.append(
            f"| {cls} | {report['vae_reconstruction_dice'][cls]:.4f} "
            f"| {report['segmenter_dice_on_real'][cls]:.4f} "
            f"| {report['segmenter_dice_on_spade'][cls]:.4f} |"
        )
    lines += [
        "",
        "## Mean intensity per class (normalised scale)",
        "",
        "| class | real | SPADE | relative difference |",
        "|---|---|---|---|",
    ]
    for cls, v in report["intensity"].items():
        lines.append(f"| {cls} | {v['real']:.4f} | {v['spade']:.4f} | {v['relative_difference']:.4f} |")
    lines.append("")
    return "\n".join(lines)


def write_report(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write ``models.json`` and ``models.md`` into ``out_dir`` (each replaced atomically)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = (out_dir / "models.json", out_dir / "models.md")
    for path, text in zip(paths, (json.dumps(report, indent=2) + "\n", report_markdown(report)), strict=True):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return paths
