"""The shipped models (phantom-v1, phantom-v2, phantom-v2b, phantom-v2c and phantom-v2d): present, within
the size budget, loadable, carded, and sane."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch

from cardiosynth.models.catalog import DEFAULT_VERSION, PACKAGE_ROOT
from cardiosynth.models.registry import load_model
from cardiosynth.models.slices import SliceSet
from cardiosynth.models.spade import SpadeTranslator, translate_array
from cardiosynth.models.train_spade import spade_preset
from cardiosynth.models.train_vae import reconstruction_dice
from cardiosynth.models.vae import LabelVAE

BUDGET_BYTES = 40 * 1024 * 1024
SHIPPED = pytest.mark.parametrize(
    "version", ["phantom-v1", "phantom-v2", "phantom-v2b", "phantom-v2c", "phantom-v2d"]
)


@SHIPPED
def test_shipped_models_fit_the_budget_and_carry_cards(version: str) -> None:
    total = sum(p.stat().st_size for p in PACKAGE_ROOT.rglob("*") if p.is_file())
    assert total <= BUDGET_BYTES, f"shipped models take {total / 2**20:.1f} MiB"
    for kind in ("vae", "spade"):
        model = load_model(kind, version, PACKAGE_ROOT)
        assert model.card["preset"] == "cpu-small"
        assert len(model.card["data_fingerprint"]) == 64
        assert model.card["metrics"]
        assert not model.module.training


@SHIPPED
def test_shipped_vae_reconstructs_phantom_hearts(phantom_slices: SliceSet, version: str) -> None:
    # The fixture subjects come from the same generator (another seed): the shipped VAE has seen
    # such hearts and must reconstruct them well (the held-out figures are in its card).
    vae = load_model("vae", version, PACKAGE_ROOT).module
    assert isinstance(vae, LabelVAE)
    dice = reconstruction_dice(vae, phantom_slices)
    assert min(dice.values()) > 0.75, dice


@SHIPPED
def test_shipped_spade_draws_bright_blood_and_dark_muscle(phantom_slices: SliceSet, version: str) -> None:
    spade = load_model("spade", version, PACKAGE_ROOT).module
    assert isinstance(spade, SpadeTranslator)
    torch.manual_seed(0)
    images = translate_array(spade, phantom_slices.labels[:16], phantom_slices.images[:16])
    labels = phantom_slices.labels[:16]
    assert np.isfinite(images).all()
    assert images[labels == 3].mean() > images[labels == 2].mean() + 0.5  # LV blood vs myocardium
    with pytest.raises(ValueError, match="outside"):
        spade.translate(torch.full((1, 128, 128), 9), torch.zeros(1, 1, 128, 128))


def test_the_default_translator_is_the_presets_recipe() -> None:
    """`cardiosynth train spade` with the preset's defaults reproduces the shipped default translator
    (scripts/train_default_models.sh relies on it): its card's training settings are the preset's."""
    card = load_model("spade", DEFAULT_VERSION, PACKAGE_ROOT).card
    assert card["training"] == asdict(spade_preset("cpu-small"))
