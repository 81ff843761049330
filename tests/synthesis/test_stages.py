from __future__ import annotations

import numpy as np
import pytest
import torch

from cardiosynth.models.spade import SpadeConfig, SpadeTranslator
from cardiosynth.models.vae import LabelVAE, VAEConfig
from cardiosynth.synthesis.stages import decode_latents, encode_slices, encode_stacks, translate_slices

VAE_TINY = VAEConfig(image_size=32, channels=(2, 4, 4, 8), fc_features=(16, 16, 8), latent_dim=4)


def test_batched_encoding_equals_per_slice_encoding() -> None:
    torch.manual_seed(0)
    vae = LabelVAE(VAE_TINY).eval()
    rng = np.random.default_rng(0)
    stacks = [rng.integers(0, 4, (z, 32, 32)).astype(np.uint8) for z in (3, 5)]
    batched = encode_stacks(vae, stacks)
    assert [b.shape for b in batched] == [(3, 4), (5, 4)]
    single = np.concatenate([encode_slices(vae, s[k : k + 1]) for s in stacks for k in range(len(s))])
    assert np.allclose(np.concatenate(batched), single, atol=1e-5)
    assert encode_stacks(vae, []) == []
    with pytest.raises(ValueError, match="outside"):
        encode_slices(vae, np.full((1, 32, 32), 7, np.uint8))


def test_decode_and_translate_shapes() -> None:
    torch.manual_seed(0)
    vae = LabelVAE(VAE_TINY).eval()
    labels = decode_latents(vae, np.zeros((6, 4)), batch_size=4)
    assert labels.shape == (6, 32, 32)
    assert labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 1, 2, 3}
    with pytest.raises(ValueError, match="latents"):
        decode_latents(vae, np.zeros((2, 5)))
    spade = SpadeTranslator(
        SpadeConfig(image_size=32, channels=(4, 8), style_dim=4, spade_hidden=4, head_channels=4)
    )
    images = translate_slices(spade, labels, np.zeros((6, 32, 32), np.float32), batch_size=4)
    assert images.shape == (6, 32, 32)
    assert np.isfinite(images).all()
    with pytest.raises(ValueError, match="differ in shape"):
        translate_slices(spade, labels, np.zeros((5, 32, 32), np.float32))
