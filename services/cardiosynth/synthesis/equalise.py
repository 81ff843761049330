"""Slice equalisation: latent sequences of any length, base to apex, resampled to a fixed count.

Subject ``k``'s slice ``i`` of ``Z`` sits at relative position ``i / (Z - 1)`` (0 the base, 1 the
apex); linear interpolation in latent space at ``ns`` evenly spaced positions gives every subject
the same slice grid, and the inverse maps a synthetic ``ns`` stack back to the base subject's ``Z``.

The synthesis equalises over the **LV extent** only (:func:`lv_extent`, :func:`equalise_lv`): the
slices from the first to the last one with an LV cavity. Stacks start above the mitral plane (an
atrial slice without LV) in about half of the phantom-v2 subjects and end in a slice without a
cavity (apical cap or nothing) in nearly all, so stack position is not anatomical position: at one
relative position the class statistics mixed atrial, open-ring and full-ring latents, and a blend of
an atrial latent with a ring's decodes to a solid myocardium around a small cavity (an atrial latent
75 % toward the next basal ring decodes to a 21 mm wall where the ring decodes to 12 mm). The
slices outside the extent are not interpolated: a synthetic stack keeps its base subject's own
latents there, slice for slice (:func:`restore_lv`), so nothing is blended across the mitral plane
or past the apex.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from cardiosynth.data.labels import LV_CAVITY

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
    """Resample a subject's whole latent stack ``(Z, nz)`` to ``(ns, nz)`` (stack position)."""
    return resample_slices(latents, ns)


def lv_extent(labels: npt.NDArray[np.integer[Any]]) -> tuple[int, int]:
    """``(first, last)``: the first and last slice of a label stack ``(Z, H, W)`` with an LV cavity.

    A stack without any LV cavity has no anatomical landmark: its whole length is the extent (what
    plain :func:`equalise` does).
    """
    lab = np.asarray(labels)
    if lab.ndim != 3 or len(lab) < 1:
        raise ValueError(f"need a label stack (Z >= 1, H, W), got shape {lab.shape}")
    present = np.flatnonzero((lab == LV_CAVITY).any(axis=(1, 2)))
    if present.size == 0:
        return 0, len(lab) - 1
    return int(present[0]), int(present[-1])


def _check_extent(extent: tuple[int, int], z: int) -> tuple[int, int]:
    first, last = int(extent[0]), int(extent[1])
    if not 0 <= first <= last < z:
        raise ValueError(f"LV extent {extent} is not within a stack of {z} slices")
    return first, last


def equalise_lv(
    latents: npt.NDArray[np.floating[Any]],
    labels: npt.NDArray[np.integer[Any]],
    ns: int = NS_DEFAULT,
) -> npt.NDArray[np.float64]:
    """The latents ``(Z, nz)`` of the LV extent of ``labels`` ``(Z, H, W)`` resampled to ``(ns, nz)``:
    position 0 is the first slice with an LV cavity, 1 the last."""
    x = np.asarray(latents, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(labels):
        raise ValueError(f"latents {x.shape} and labels {np.shape(labels)} must have one slice count")
    first, last = _check_extent(lv_extent(labels), len(x))
    return resample_slices(x[first : last + 1], ns)


def restore_lv(
    equalised: npt.NDArray[np.floating[Any]],
    base_latents: npt.NDArray[np.floating[Any]],
    extent: tuple[int, int],
) -> npt.NDArray[np.float64]:
    """A synthetic LV ``(ns, nz)`` on the base subject's slice grid ``(Z, nz)``: resampled into the
    base's LV extent ``(first, last)``; the base's own latents before and after it, unchanged (the
    atrial and post-apical slices are carried, not blended)."""
    eq = np.asarray(equalised, dtype=np.float64)
    base = np.asarray(base_latents, dtype=np.float64)
    if base.ndim != 2 or eq.ndim != 2 or eq.shape[1] != base.shape[1]:
        raise ValueError(f"need (ns, nz) and (Z, nz) latents of one nz, got {eq.shape} and {base.shape}")
    first, last = _check_extent(extent, len(base))
    out = base.copy()
    out[first : last + 1] = resample_slices(eq, last - first + 1)
    return out
