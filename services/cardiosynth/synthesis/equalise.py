"""Slice equalisation: latent sequences of any length, base to apex, resampled to a fixed count.

Subject ``k``'s slice ``i`` of ``Z`` sits at relative position ``i / (Z - 1)`` (0 the base, 1 the
apex); linear interpolation in latent space at ``ns`` evenly spaced positions gives every subject
the same slice grid, and the inverse maps a synthetic ``ns`` stack back to the base subject's ``Z``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

NS_DEFAULT = 32


def resample_slices(latents: npt.NDArray[np.floating[Any]], n_out: int) -> npt.NDArray[np.float64]:
    """``(Z, nz)`` -> ``(n_out, nz)`` by linear interpolation over relative slice position.

    A single slice is repeated (nothing to interpolate between).
    """
    x = np.asarray(latents, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"need latents (Z >= 1, nz), got shape {x.shape}")
    if n_out < 1:
        raise ValueError(f"n_out must be positive, got {n_out}")
    z = x.shape[0]
    if z == 1:
        return np.repeat(x, n_out, axis=0)
    source = np.linspace(0.0, 1.0, z)
    target = np.linspace(0.0, 1.0, n_out) if n_out > 1 else np.array([0.5])
    out = np.empty((n_out, x.shape[1]))
    for d in range(x.shape[1]):
        out[:, d] = np.interp(target, source, x[:, d])
    return out


def equalise(latents: npt.NDArray[np.floating[Any]], ns: int = NS_DEFAULT) -> npt.NDArray[np.float64]:
    """Resample a subject's latent stack ``(Z, nz)`` to ``(ns, nz)``."""
    return resample_slices(latents, ns)
