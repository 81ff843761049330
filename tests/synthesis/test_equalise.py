from __future__ import annotations

import numpy as np
import pytest

from cardiosynth.synthesis.equalise import equalise, resample_slices


@pytest.mark.parametrize("z", [6, 18, 32, 1])
def test_any_slice_count_equalises_to_32(z: int) -> None:
    t = np.linspace(0, 1, z)[:, None]
    latents = np.hstack([2 * t + 1, -t])  # linear in position: interpolation must keep it exactly
    out = equalise(latents, 32)
    assert out.shape == (32, 2)
    if z > 1:
        expected = np.linspace(0, 1, 32)[:, None]
        assert np.allclose(out, np.hstack([2 * expected + 1, -expected]))
        back = resample_slices(out, z)
        assert np.allclose(back, latents)  # base and apex stay put; nothing is dropped
    else:
        assert np.allclose(out, latents[0])


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="latents"):
        equalise(np.zeros(5))
    with pytest.raises(ValueError, match="n_out"):
        resample_slices(np.zeros((3, 2)), 0)
