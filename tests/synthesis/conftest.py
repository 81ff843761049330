"""Fixtures shared by the synthesis tests."""

from __future__ import annotations

import pytest
import torch

from cardiosynth.models.vae import LabelVAE, VAEConfig


@pytest.fixture(scope="module")
def vae() -> LabelVAE:
    """A small untrained VAE (seed 0) for driving the engine end to end; a test module that needs
    another defines its own ``vae``."""
    torch.manual_seed(0)
    return LabelVAE(VAEConfig(channels=(4, 4, 8, 8), fc_features=(32, 32, 32))).eval()
