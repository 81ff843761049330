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


def spy_batch_calibration(
    monkeypatch: pytest.MonkeyPatch, module: object, name: str, fill: int
) -> list[tuple[object, ...]]:
    """Replace ``module.name``, a batch calibration ``(labels, probabilities, plan, calibration)``,
    by one that records ``(labels copy, plan, calibration)`` per call and returns labels all
    ``fill`` (probabilities as given): what the engine hands to a calibration and on from it."""
    import numpy as np

    calls: list[tuple[object, ...]] = []

    def spy(labels, probabilities, plan, calibration):  # type: ignore[no-untyped-def]
        calls.append((labels.copy(), list(plan), calibration))
        return np.full_like(labels, fill), probabilities

    monkeypatch.setattr(module, name, spy)
    return calls
