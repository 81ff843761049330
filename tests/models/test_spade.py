from __future__ import annotations

import numpy as np
import pytest
import torch

from cardiosynth.models.spade import (
    SpadeConfig,
    SpadeTranslator,
    build_discriminator,
    labels_to_onehot,
    slice_noise,
    spade_widths,
    translate_array,
)

TINY = SpadeConfig(image_size=32, channels=(4, 8), style_dim=4, spade_hidden=4, head_channels=4)


def _pair(n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    labels = torch.zeros(n, 32, 32, dtype=torch.long)
    labels[:, 8:24, 8:24] = 2
    labels[:, 12:20, 12:20] = 3
    labels[:, 10:22, 2:8] = 1
    intensity = torch.tensor([-0.6, 0.7, -0.3, 0.8])
    images = intensity[labels] + 0.05 * torch.randn(n, 32, 32, generator=g)
    return labels, images[:, None]


def test_translate_shapes_range_and_determinism() -> None:
    torch.manual_seed(0)
    model = SpadeTranslator(TINY).eval()
    labels, images = _pair()
    out = model.translate(labels, images)
    assert out.shape == (4, 1, 32, 32)
    assert torch.isfinite(out).all()
    assert out.abs().max() <= 1.0
    assert torch.equal(out, model.translate(labels, images))
    fake, mu, logvar = model.train()(labels_to_onehot(labels), images)
    assert fake.shape == (4, 1, 32, 32)
    assert mu.shape == logvar.shape == (4, 4)


def test_bad_labels_raise_value_error() -> None:
    model = SpadeTranslator(TINY).eval()
    labels, images = _pair(1)
    with pytest.raises(ValueError, match=r"\[4\] outside 0\.\.3"):
        model.translate(torch.full((1, 32, 32), 4), images)
    with pytest.raises(ValueError, match=r"\[-1\]"):
        labels_to_onehot(torch.full((1, 32, 32), -1))
    with pytest.raises(ValueError, match="fractional"):
        labels_to_onehot(torch.full((1, 32, 32), 1.5))
    with pytest.raises(ValueError, match=r"\(B, S, S\)"):
        labels_to_onehot(torch.zeros(32, 32, dtype=torch.long))
    with pytest.raises(ValueError, match="images"):
        model.translate(labels, images[:, :, :16])
    with pytest.raises(ValueError, match="divisible"):
        SpadeConfig(image_size=36, channels=(4, 8, 16))
    with pytest.raises(ValueError, match="unknown SPADE preset"):
        spade_widths("huge")
    # Float labels with integral values are accepted (ACDC files are often stored as float).
    assert labels_to_onehot(labels.float()).shape == (1, 4, 32, 32)


def test_discriminator_scales() -> None:
    with pytest.raises(ValueError, match="at least 64"):
        build_discriminator(TINY)
    disc = build_discriminator(SpadeConfig(image_size=64, channels=(4, 8)), channels=4)
    labels, images = _pair(2)
    up = torch.nn.functional.interpolate
    seg = up(labels_to_onehot(labels), scale_factor=2.0)
    logits, features = disc(torch.cat([seg, up(images, scale_factor=2.0)], 1))
    assert len(logits) == 2
    assert all(torch.isfinite(x).all() for x in logits)
    assert logits[1].shape[-1] < logits[0].shape[-1]
    assert len(features) == 2


def test_a_few_steps_lower_the_reconstruction_loss() -> None:
    torch.manual_seed(0)
    model = SpadeTranslator(TINY)
    labels, images = _pair()
    seg = labels_to_onehot(labels)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        fake, _, _ = model(seg, images)
        loss = (fake - images).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


NOISY = SpadeConfig(image_size=32, channels=(4, 8), style_dim=4, spade_hidden=4, head_channels=4, noise=True)


def test_noise_injection_starts_as_the_noise_free_generator() -> None:
    """Zero-initialised noise weights: a fresh noisy model draws what the same weights draw without."""
    torch.manual_seed(0)
    plain = SpadeTranslator(TINY).eval()
    noisy = SpadeTranslator(NOISY).eval()
    missing = noisy.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing
    assert all(k.startswith("noise_weights.") for k in missing)
    labels, images = _pair()
    assert torch.equal(plain.translate(labels, images), noisy.translate(labels, images))


def test_noise_is_used_and_is_a_function_of_each_slice() -> None:
    torch.manual_seed(0)
    model = SpadeTranslator(NOISY).eval()
    for weight in model.noise_weights:
        torch.nn.init.constant_(weight, 0.5)
    labels, images = _pair()
    labels[1, 0, 0] = 1  # slices 0 and 1 differ in one pixel of their labels
    out = model.translate(labels, images)
    # Another noise image changes the output ...
    seg, mu = labels_to_onehot(labels), model.encode_style(images)[0]
    other = model.generate(seg, mu, torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(1)))
    assert (other - out).abs().max() > 1e-2
    # ... but the translation of a slice does not depend on its batch or its neighbours.
    assert torch.allclose(model.translate(labels[2:3], images[2:3]), out[2:3], atol=1e-6)
    assert torch.allclose(model.translate(labels.flip(0), images.flip(0)).flip(0), out, atol=1e-6)
    arr = translate_array(model, labels.numpy().astype(np.uint8), images[:, 0].numpy(), batch_size=3)
    assert np.allclose(arr, out[:, 0].numpy(), atol=1e-6)


def test_slice_noise_is_seeded_by_content() -> None:
    labels, images = _pair(3)
    lab, ref = labels.numpy(), images[:, 0].numpy()
    noise = slice_noise(lab, ref)
    assert noise.shape == (3, 1, 32, 32)
    assert noise.dtype == torch.float32
    assert torch.equal(noise, slice_noise(lab, ref))
    assert torch.equal(noise[1:2], slice_noise(lab[1:2], ref[1:2]))
    moved = ref.copy()
    moved[0, 0, 0] += 0.25
    assert not torch.equal(slice_noise(lab, moved)[0], noise[0])  # reference is part of the seed
    assert torch.equal(slice_noise(lab, moved)[1:], noise[1:])
    assert abs(float(noise.mean())) < 0.1
    assert abs(float(noise.std()) - 1.0) < 0.1
    with pytest.raises(ValueError, match=r"\(N, S, S\)"):
        slice_noise(lab, ref[:, :16])


def test_noise_shape_is_checked() -> None:
    model = SpadeTranslator(NOISY).eval()
    labels, _ = _pair(2)
    with pytest.raises(ValueError, match="expected noise"):
        model.generate(labels_to_onehot(labels), torch.zeros(2, 4), torch.zeros(2, 1, 16, 16))
