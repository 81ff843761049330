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

**The apical cap** (``cap`` of :func:`lv_extent`, ``Synthesizer(apical_cap=True)``; off by default):
the extent may instead run from the first to the last slice with any LV label, myocardium or cavity,
so that the myocardial cap below the cavity is part of what is equalised and placed. By the cavity
alone, the cap stays outside the extent and a synthetic stack keeps its NOR base's: a DCM placed into
a NOR base without a cap slice ends in a full-size ring (its last myocardial slice 252 px of
myocardium and 271 of cavity against the real DCM's 133 and 78;
reports/synthesis-phantom-v2/cohort/apex.txt). With the cap the last slice is the real class's shape
(218 and 118), but where the base's stack ends before a cap the class's LV ends in one on a slice that
held cavity, and the pathologies' volumes and mass fall by 2-4 %: it met fewer of the evaluation's
targets on both seeds (reports/synthesis-phantom-v2/cohort/README.md), so it is not the default.

**Where the LV lies at ES** (:func:`extent_offsets`, :func:`target_extent`): the mitral plane moves
toward the apex in systole, and by how much is a property of the class, not of the base subject.
On the default phantom the ES extent is 0.87 of the ED extent in NOR (the base descends 1.3
slices) but 0.97 in DCM and 0.96 in MINF. Placing a synthetic DCM's ES slices into its NOR base's
own ES extent cut ~10 % off the ES cavity and raised the ejection fraction from the class's ~20 %
to 25-28 %. A synthetic stack's extent at each phase is therefore the base's ED extent moved by the
offsets interpolated by severity between the base's own and the class's mean (the class
statistics carry them: :attr:`.stats.ClassStats.extent_offset`).

**Whole slices, unbiased** (``dither`` of :func:`target_extent`): an offset is a fraction of a
slice, and a stack has whole slices. Rounded to the nearest slice, the class's mean offset is lost
wherever it is under half a slice: DCM's base descends 0.03 ED lengths (0.3 of a slice on a
10-slice LV), so every synthetic DCM kept its whole ED extent at ES (ES / ED slice count 1.000
against the class's 0.973; MINF 0.996 against 0.960, NOR 0.892 against 0.872), its ES cavity a
slice too long: synthetic LVEF DCM 16.3 %, MINF 23.0 % (held out 19.1, 26.3); dithered 17.9 and
24.3 % (reports/synthesis-phantom-v2/cohort/README.md). Rounded with a uniform
dither ``u`` (``floor(x + u)``), a subject's base descends a whole slice with probability equal to
the fraction, and the class's mean placement comes back over its subjects, as it does in real
hearts (a quarter of real DCM bases descend one slice, the rest none). Known limit: the count is
right on average, what a lost slice costs is not. A real base that loses its LV at ES held a sliver
of cavity there; a synthetic stack one slice shorter loses an average slice's area, about a tenth of
its ES volume (reports/synthesis-phantom-v2/cohort/extent_subgroups.txt). The sampling
calibration's offsets cannot give a shorter extent the tenth more area per slice it would need
(reports/synthesis-phantom-v2/cohort/offset_response.txt), and matching the ES volume per ED-extent
slice instead of the area per slice did not help (cohort/README.md).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from cardiosynth.data.labels import LV_CAVITY, LV_MYOCARDIUM

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


def lv_extent(labels: npt.NDArray[np.integer[Any]], cap: bool = False) -> tuple[int, int]:
    """``(first, last)``: the first and last slice of a label stack ``(Z, H, W)`` with an LV cavity;
    ``cap``: with an LV cavity or LV myocardium (the apical cap below the cavity included).

    A stack without any such slice has no anatomical landmark: its whole length is the extent (what
    plain :func:`equalise` does).
    """
    lab = np.asarray(labels)
    if lab.ndim != 3 or len(lab) < 1:
        raise ValueError(f"need a label stack (Z >= 1, H, W), got shape {lab.shape}")
    lv = (lab == LV_CAVITY) | (lab == LV_MYOCARDIUM) if cap else lab == LV_CAVITY
    present = np.flatnonzero(lv.any(axis=(1, 2)))
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
    cap: bool = False,
) -> npt.NDArray[np.float64]:
    """The latents ``(Z, nz)`` of the LV extent of ``labels`` ``(Z, H, W)`` resampled to ``(ns, nz)``:
    position 0 is the first slice with an LV cavity, 1 the last (``cap``: of :func:`lv_extent`)."""
    x = np.asarray(latents, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(labels):
        raise ValueError(f"latents {x.shape} and labels {np.shape(labels)} must have one slice count")
    first, last = _check_extent(lv_extent(labels, cap), len(x))
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


def extent_offsets(
    ed_labels: npt.NDArray[np.integer[Any]], labels: npt.NDArray[np.integer[Any]], cap: bool = False
) -> tuple[float, float]:
    """Where a phase's LV extent lies relative to the same subject's ED extent: the first and last
    slice offsets ``(first - first_ED, last - last_ED)`` in units of the ED extent's length (slices
    from its first to its last; ``cap``: extents of :func:`lv_extent`). ``(0, 0)`` for the ED stack
    itself; a base that descends 1.3 slices over a 10-slice extent gives ``(0.13, 0)``."""
    n_ed, n = np.shape(ed_labels)[0], np.shape(labels)[0]
    if n_ed != n:
        raise ValueError(f"stacks of {n_ed} and {n} slices: one subject's phases share one grid")
    ed_first, ed_last = lv_extent(ed_labels, cap)
    first, last = lv_extent(labels, cap)
    length = ed_last - ed_first + 1
    return (first - ed_first) / length, (last - ed_last) / length


def target_extent(
    ed_extent: tuple[int, int],
    base_offsets: tuple[float, float],
    class_offsets: npt.NDArray[np.floating[Any]] | tuple[float, float],
    severity: float,
    z: int,
    dither: tuple[float, float] | None = None,
) -> tuple[int, int]:
    """The LV extent ``(first, last)`` of a synthetic phase on its base's grid of ``z`` slices: the
    base's ED extent moved by ``(1 - a) base_offsets + a class_offsets`` (in ED extent lengths, made
    whole slices, kept on the grid and at least one slice long). Severity 0 gives the base's own
    extent back; severity 1 the class's mean placement.

    ``dither`` ``(u_first, u_last)``, each in ``[0, 1)``: a move of ``x`` slices becomes
    ``floor(x + u)``, so that over uniform draws its mean is ``x`` (:func:`dither_pair` draws them;
    the module docstring says why). ``None``: the nearest whole slice. A whole move (the base's own
    placement) is kept exactly whatever the draw."""
    if not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must be in [0, 1], got {severity}")
    first, last = _check_extent(ed_extent, z)
    c = np.asarray(class_offsets, dtype=np.float64)
    if c.shape != (2,) or not np.isfinite(c).all():
        raise ValueError(f"class offsets must be two finite numbers, got {class_offsets!r}")
    if dither is not None and (len(dither) != 2 or not all(0.0 <= u < 1.0 for u in dither)):
        raise ValueError(f"dither must be two numbers in [0, 1), got {dither!r}")
    length = last - first + 1
    moved = [(1.0 - severity) * b + severity * float(o) for b, o in zip(base_offsets, c, strict=True)]
    shift = [_whole_slices(m * length, None if dither is None else dither[k]) for k, m in enumerate(moved)]
    new_first = min(max(first + shift[0], 0), z - 1)
    new_last = min(max(last + shift[1], new_first), z - 1)
    return new_first, new_last


# A move within this many slices of a whole number is that whole number: the base's own offsets times
# its own length come back as integers only up to floating point.
_WHOLE = 1e-9


def _whole_slices(x: float, u: float | None) -> int:
    nearest = round(x)
    if u is None or abs(x - nearest) < _WHOLE:
        return int(nearest)
    return math.floor(x + u)


def dither_pair(rng: np.random.Generator, antithetic: bool = False) -> tuple[float, float]:
    """Two uniform draws in ``[0, 1)`` for :func:`target_extent`'s ``dither``; ``antithetic``: the
    same draws reflected (``1 - u``, kept below 1), whose whole slices average with the first's to
    the offset more closely than two independent draws."""
    u = rng.random(2)
    if antithetic:
        u = (1.0 - u) % 1.0
    return float(u[0]), float(u[1])
