from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from cardiosynth.models.train_vae import vae_preset
from cardiosynth.models.vae import LabelVAE, VAEConfig, vae_loss, widths

TINY = VAEConfig(image_size=32, channels=(2, 4, 4, 8), fc_features=(16, 16, 8), latent_dim=4)


def _batch(n: int = 6, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        r = int(torch.randint(4, 9, (1,), generator=g))
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        d2 = (yy - size // 2) ** 2 + (xx - size // 2) ** 2
        labels[i][d2 < (r + 3) ** 2] = 2
        labels[i][d2 < r**2] = 3
        labels[i][(xx < size // 2 - r - 4) & ((yy - size // 2).abs() < r)] = 1
    return labels, F.one_hot(labels, 4).permute(0, 3, 1, 2).float()


def test_shapes_and_finite_outputs() -> None:
    torch.manual_seed(0)
    model = LabelVAE(TINY)
    _, x = _batch()
    out = model(x)
    assert out.logits.shape == (6, 4, 32, 32)
    assert out.mu.shape == out.logvar.shape == (6, 4)
    assert torch.isfinite(out.logits).all()
    model.eval()
    probs = model.predict(out.mu)
    assert torch.allclose(probs.sum(1), torch.ones(6, 32, 32), atol=1e-5)


def test_eval_mode_uses_running_statistics() -> None:
    # In eval mode a slice's reconstruction must not depend on the other slices of its batch.
    torch.manual_seed(0)
    model = LabelVAE(TINY)
    _, x = _batch()
    model(x)  # one training-mode pass updates the running statistics
    model.eval()
    alone = model(x[:1], sample=False).logits
    batched = model(x, sample=False).logits[:1]
    assert torch.allclose(alone, batched, atol=1e-5)


def test_bad_shapes_and_configs_raise() -> None:
    model = LabelVAE(TINY)
    with pytest.raises(ValueError, match="one-hot input"):
        model.encode(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="latent"):
        model.decode(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="channels"):
        VAEConfig(channels=(8, 16, 32))
    with pytest.raises(ValueError, match="image_size"):
        VAEConfig(image_size=40)
    with pytest.raises(ValueError, match="unknown VAE preset"):
        widths("huge")
    assert VAEConfig.from_dict(TINY.to_dict()) == TINY


def test_loss_normalisation_follows_the_reference() -> None:
    labels, _ = _batch(2)
    logits = torch.randn(2, 4, 32, 32)
    mu, logvar = torch.zeros(2, 4), torch.zeros(2, 4)
    loss = vae_loss(logits, labels, mu, logvar)
    # Cross-entropy summed over the pixels of a slice, averaged over the batch.
    expected = F.cross_entropy(logits, labels, reduction="none").sum((1, 2)).mean()
    assert torch.allclose(loss.reconstruction, expected)
    assert float(loss.kld) == pytest.approx(0.0)
    # KLD summed over latent dimensions: mu = 1 in every dimension gives 0.5 * nz per slice.
    shifted = vae_loss(logits, labels, torch.ones(2, 4), logvar, beta=15.0)
    assert float(shifted.kld) == pytest.approx(2.0)
    assert float(shifted.total) == pytest.approx(float(expected) + 15.0 * 2.0, rel=1e-5)
    with pytest.raises(ValueError, match="beta"):
        vae_loss(logits, labels, mu, logvar, beta=-1.0)


def test_a_few_steps_lower_the_loss_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    model = LabelVAE(TINY)
    labels, x = _batch()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        out = model(x, sample=False)
        loss = vae_loss(out.logits, labels, out.mu, out.logvar)
        optimiser.zero_grad()
        loss.total.backward()
        optimiser.step()
        losses.append(loss.total.item())
    assert losses[-1] < 0.7 * losses[0]


def test_the_label_interpolation_travels_with_the_config() -> None:
    linear = dataclasses.replace(TINY, label_interpolation="linear")
    assert VAEConfig.from_dict(linear.to_dict()) == linear
    old = TINY.to_dict()
    del old["label_interpolation"]  # a model saved before the setting existed was trained on nearest
    assert VAEConfig.from_dict(old).label_interpolation == "nearest"
    with pytest.raises(ValueError, match="'cubic'"):
        VAEConfig(label_interpolation="cubic")
    with pytest.raises(ValueError, match="'cubic'"):
        vae_preset("cpu-small", label_interpolation="cubic")
    assert (
        vae_preset("cpu-small", label_interpolation="linear").model_config().label_interpolation == "linear"
    )
