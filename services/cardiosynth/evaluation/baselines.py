"""Baselines that the synthesis evaluation must be able to tell from the method.

Each makes, for one base NOR subject, an (ED, ES) pair of processed label stacks ``(Z, S, S)``
that is measured exactly like the method's output (restored to the base's native grid, biomarkers
with the base's spacing, height and weight, rule diagnosis). The two that decode latents return
the decoder's probabilities too (:class:`DecodedPairs`), so that they are restored as the method's
outputs are, from the probabilities (:func:`cardiosynth.data.preprocess.restore_probabilities`):

- :func:`class_mean_decode`: the class mean latent, resampled into the base's LV extent, decoded.
  No sampling, no correlation: if this passes the evaluation, the evaluation measures nothing.
- :func:`nearest_replay`: the training subject of the class nearest to the base in latent space,
  returned as it is (memorisation: perfect realism, no novelty).
- :func:`elastic_nor`: the base's own labels under a random elastic deformation (MONAI
  ``Rand3DElasticd``, nearest interpolation, one field for both phases): realistic shapes, but NOR.
- :func:`shuffle_slices` (:func:`shuffle_decoded_slices` with their probabilities): the method's
  stacks with their slices in random order. Decoding is per slice, so this is exactly the decode
  of slice-shuffled latents: the volumes stay, the 3D consistency goes.
- :func:`shuffle_dims`: the method's stacks re-encoded, each slice's latent dimensions permuted,
  decoded (a broken sampler: off the class manifold).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from cardiosynth.models.vae import LabelVAE
from cardiosynth.synthesis.calibration import zone_offsets
from cardiosynth.synthesis.equalise import (
    NS_DEFAULT,
    equalise,
    lv_extent,
    resample_slices,
    restore_lv,
    target_extent,
)
from cardiosynth.synthesis.stages import decode_slices, encode_stacks
from cardiosynth.synthesis.stats import ClassStats

LabelStack = npt.NDArray[np.uint8]
Pair = tuple[LabelStack, LabelStack]  # (ED, ES), each (Z, S, S)
ProbabilityPair = tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]  # (ED, ES), each (Z, C, S, S)


@dataclass(frozen=True)
class DecodedPairs:
    """Decoded (ED, ES) pairs and, pair by pair, the uint8 probabilities they were taken from
    (:class:`cardiosynth.synthesis.stages.Decoded`)."""

    pairs: list[Pair]
    probabilities: list[ProbabilityPair]


def _decode_pairs(
    vae: LabelVAE,
    blocks: Sequence[npt.NDArray[np.floating[Any]]],
    logit_bias: npt.NDArray[np.floating[Any]] | None,
) -> DecodedPairs:
    """Latent blocks ``[(Z_k, nz)]``, ED and ES alternating, decoded into pairs (``logit_bias``
    ``(C,)`` or one row per slice of the blocks)."""
    if not blocks:
        return DecodedPairs([], [])
    decoded = decode_slices(vae, np.concatenate(blocks), logit_bias=logit_bias, probabilities=True)
    probabilities = cast(npt.NDArray[np.uint8], decoded.probabilities)  # asked for
    bounds = np.cumsum([0, *(len(b) for b in blocks)])
    labels = [decoded.labels[bounds[i] : bounds[i + 1]] for i in range(len(blocks))]
    shares = [probabilities[bounds[i] : bounds[i + 1]] for i in range(len(blocks))]
    pairs = range(0, len(blocks), 2)
    return DecodedPairs(
        [(labels[i], labels[i + 1]) for i in pairs], [(shares[i], shares[i + 1]) for i in pairs]
    )


BASELINES: tuple[str, ...] = (
    "class_mean",
    "nearest_replay",
    "elastic_nor",
    "shuffled_slices",
    "shuffled_dims",
)


def class_mean_decode(
    vae: LabelVAE,
    stats_ed: ClassStats,
    stats_es: ClassStats,
    slice_counts: Sequence[int],
    *,
    bases: Sequence[Pair] | None = None,
    logit_bias: npt.NDArray[np.floating[Any]] | None = None,
    extent_bias: tuple[npt.NDArray[np.floating[Any]], npt.NDArray[np.floating[Any]]] | None = None,
    extent_dithers: Sequence[tuple[float, float]] | None = None,
    apical_cap: bool = False,
) -> DecodedPairs:
    """The decoded class mean ``(ns, nz)`` of each phase, resampled to each of ``slice_counts``.

    ``logit_bias``: the decoder calibration the method decodes with (:mod:`.synthesis.calibration`).

    With ``bases`` (one (ED, ES) pair per slice count), as the method places its samples: into each
    base's LV extent, the base's own latents before and after it (:func:`.equalise.restore_lv`), so
    that the baseline differs from the method by the sampling only; ``extent_bias`` (ED, ES), with
    ``bases`` and ``logit_bias`` only: the offsets the method decodes its LV extent with at severity
    1 (its sampling calibration, :meth:`.synthesis.engine.Synthesizer.sampling_calibration`: ``(C,)``
    for the whole extent or ``(K, C)`` per zone, :func:`.synthesis.calibration.zone_offsets`);
    ``extent_dithers``, with ``bases`` only: one per base, the whole-slice dither the method places
    that base's subject with (:func:`.synthesis.engine.extent_dither`; ``None``: the nearest slice);
    ``apical_cap``: the LV extents as the statistics took them (:func:`.equalise.lv_extent`'s ``cap``).
    """
    if extent_bias is not None and (bases is None or logit_bias is None):
        raise ValueError("extent_bias needs bases and logit_bias (it applies inside the bases' LV extents)")
    if extent_dithers is not None and (bases is None or len(extent_dithers) != len(bases)):
        got = "no bases" if bases is None else f"{len(bases)} bases"
        raise ValueError(f"extent_dithers needs one dither per base: {len(extent_dithers)} for {got}")
    if any(z < 1 for z in slice_counts):
        raise ValueError(f"slice counts must be positive, got {list(slice_counts)}")
    if not slice_counts:
        return DecodedPairs([], [])
    if bases is None:
        blocks = [resample_slices(s.mean, z) for z in slice_counts for s in (stats_ed, stats_es)]
    else:
        if [len(ed) for ed, _ in bases] != list(slice_counts):
            raise ValueError(
                f"bases of {[len(ed) for ed, _ in bases]} slices for slice counts {list(slice_counts)}"
            )
        base_stacks = [s for pair in bases for s in pair]
        encoded = encode_stacks(vae, base_stacks)
        # Severity 1's placement: the base's ED extent moved by the class's mean offsets.
        eds = [ed for ed, _ in bases for _ in range(2)]
        dithers = [None if extent_dithers is None else extent_dithers[k // 2] for k in range(len(eds))]
        extents = [
            target_extent(lv_extent(ed, apical_cap), (0, 0), stats.extent_offset, 1.0, len(z), dither)
            for z, ed, stats, dither in zip(
                encoded, eds, [stats_ed, stats_es] * len(bases), dithers, strict=True
            )
        ]
        blocks = [
            restore_lv(stats.mean, z, extent)
            for z, extent, stats in zip(encoded, extents, [stats_ed, stats_es] * len(bases), strict=True)
        ]
        if extent_bias is not None and logit_bias is not None:
            rows = [np.tile(np.asarray(logit_bias, dtype=np.float64), (len(b), 1)) for b in blocks]
            for k, (first, last) in enumerate(extents):
                rows[k][first : last + 1] = zone_offsets(extent_bias[k % 2], last - first + 1)
            return _decode_pairs(vae, blocks, np.concatenate(rows))
    return _decode_pairs(vae, blocks, logit_bias)


def nearest_indices(
    vae: LabelVAE, bases: Sequence[LabelStack], candidates: Sequence[LabelStack], ns: int = NS_DEFAULT
) -> list[int]:
    """For each base ED stack, the index of the candidate ED stack nearest in equalised latent space
    (Euclidean over the ``(ns, nz)`` posterior means)."""
    if not candidates:
        raise ValueError("no candidate subjects to replay")
    encoded = encode_stacks(vae, [*bases, *candidates])
    flat = np.stack([equalise(z, ns).ravel() for z in encoded])
    b, c = flat[: len(bases)], flat[len(bases) :]
    distance = ((b[:, None, :] - c[None, :, :]) ** 2).sum(axis=-1)
    return [int(i) for i in distance.argmin(axis=1)]


def elastic_nor(
    pairs: Sequence[Pair],
    seed: int,
    *,
    sigma_range: tuple[float, float] = (6.0, 8.0),
    magnitude_range: tuple[float, float] = (100.0, 200.0),
    scale: float = 0.1,
) -> list[Pair]:
    """Each (ED, ES) pair under one random elastic deformation (and a scale of up to ``scale``),
    labels by nearest neighbour; deterministic by ``seed``."""
    from monai.transforms import Rand3DElasticd

    out: list[Pair] = []
    for index, (ed, es) in enumerate(pairs):
        if ed.shape != es.shape or ed.ndim != 3:
            raise ValueError(f"ED and ES stacks must be 3D of one shape, got {ed.shape} and {es.shape}")
        transform = Rand3DElasticd(
            keys=("ed", "es"),
            sigma_range=sigma_range,
            magnitude_range=magnitude_range,
            prob=1.0,
            scale_range=(scale, scale, scale),
            mode="nearest",
            padding_mode="zeros",
        )
        transform.set_random_state(seed=int(np.random.default_rng([seed, index]).integers(2**31)))
        result: dict[str, Any] = transform(
            {"ed": ed[None].astype(np.float32), "es": es[None].astype(np.float32)}
        )
        out.append(
            (
                np.asarray(result["ed"])[0].round().astype(np.uint8),
                np.asarray(result["es"])[0].round().astype(np.uint8),
            )
        )
    return out


def shuffle_slices(pairs: Sequence[Pair], seed: int) -> list[Pair]:
    """Each pair with its slices in one random order (the same for ED and ES)."""
    return [(ed[order], es[order]) for (ed, es), order in zip(pairs, _slice_orders(pairs, seed), strict=True)]


def shuffle_decoded_slices(decoded: DecodedPairs, seed: int) -> DecodedPairs:
    """:func:`shuffle_slices` of decoded pairs, their probabilities in the same orders."""
    orders = _slice_orders(decoded.pairs, seed)
    return DecodedPairs(
        shuffle_slices(decoded.pairs, seed),
        [(ed[o], es[o]) for (ed, es), o in zip(decoded.probabilities, orders, strict=True)],
    )


def _slice_orders(pairs: Sequence[Pair], seed: int) -> list[npt.NDArray[np.intp]]:
    return [np.random.default_rng([seed, index]).permutation(len(ed)) for index, (ed, _) in enumerate(pairs)]


def shuffle_dims(
    vae: LabelVAE,
    pairs: Sequence[Pair],
    seed: int,
    logit_bias: npt.NDArray[np.floating[Any]] | None = None,
) -> DecodedPairs:
    """Each pair re-encoded, its latent dimensions permuted per slice, decoded (with ``logit_bias``,
    the method's decoder calibration)."""
    if not pairs:
        return DecodedPairs([], [])
    encoded = encode_stacks(vae, [s for pair in pairs for s in pair])
    rng = np.random.default_rng(seed)
    return _decode_pairs(
        vae, [np.stack([row[rng.permutation(len(row))] for row in z]) for z in encoded], logit_bias
    )
