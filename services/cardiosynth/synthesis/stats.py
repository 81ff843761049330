"""Class statistics in latent space: per pathology and phase, over equalised subjects.

``mean``, ``std``, ``min``, ``max`` are ``(ns, nz)``. Correlations are estimated on the class's
per-slice standardised residuals ``u = (x - mean[slice]) / std[slice]``, the quantity the sampler
correlates (raw pooled rows would mix the differences between slice means into the latent
correlation):

- ``latent_factor`` ``(nz, nz)``: Cholesky factor of the latent correlation ``Cz``, Kendall tau over
  the residual rows of every slice of every subject;
- ``slice_factor`` ``(ns, ns)``: Cholesky factor of the slice correlation ``Cs``, Kendall tau between
  slices with subjects as observations (see :func:`slice_correlation_factor`);
- ``population_basis`` ``(nz, ns, k)``: the low-rank slice model per latent dimension used by the
  ``population`` correlation mode;
- ``subject_residuals`` ``(n_subjects, ns, nz)``: the class's own standardised residuals, centred
  and divided by ``sqrt(n - 1)``, for the ``joint`` mode: ``sum_i h_i R_i`` with ``h ~ N(0, I_n)``
  has exactly the class's sample correlation over every (slice, latent) pair at once, with no
  separability assumption (rank ``n - 1``: the span of the class's own hearts).

Statistics are an artefact: computed once per model version, data fingerprint, pathology and phase,
stored as ``.npz`` and reused; :data:`STATS_FORMAT` is part of the cache key so that artefacts of an
older estimator are never read back.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from cardiosynth.synthesis.correlation import correlation_factor

FloatArray = npt.NDArray[np.float64]

# Below this, a latent coordinate is treated as constant over the class (standardising would divide
# by zero); its samples are the mean.
MIN_STD = 1e-8
# Version of the estimator and of the artefact's fields. 1: latent correlation on raw pooled rows, no
# class slice correlation. 2: both on standardised residuals, ``slice_factor`` stored. 3: subjects
# equalised over their LV extent, not the whole stack (synthesis/equalise.py). 4: ``subject_residuals``.
# 5: ``extent_offset`` (where the class's LV lies at this phase, equalise.target_extent).
STATS_FORMAT = 5


@dataclass(frozen=True)
class ClassStats:
    """Latent statistics of one pathology and phase."""

    pathology: str
    phase: str
    n_subjects: int
    mean: FloatArray
    std: FloatArray
    min: FloatArray
    max: FloatArray
    latent_factor: FloatArray
    slice_factor: FloatArray
    population_basis: FloatArray
    subject_residuals: FloatArray
    # Mean (first, last) LV extent offset of this phase from the subject's ED extent, in ED extent
    # lengths (equalise.extent_offsets; 0 at ED): where the synthetic LV goes on the base's grid.
    extent_offset: FloatArray = field(default_factory=lambda: np.zeros(2))

    @property
    def ns(self) -> int:
        return int(self.mean.shape[0])

    @property
    def nz(self) -> int:
        return int(self.mean.shape[1])

    def to_bytes(self) -> bytes:
        """Serialise as ``.npz`` (no pickle)."""
        buffer = io.BytesIO()
        np.savez(
            buffer,
            format=np.array(STATS_FORMAT),
            pathology=np.array(self.pathology),
            phase=np.array(self.phase),
            n_subjects=np.array(self.n_subjects),
            mean=self.mean,
            std=self.std,
            min=self.min,
            max=self.max,
            latent_factor=self.latent_factor,
            slice_factor=self.slice_factor,
            population_basis=self.population_basis,
            subject_residuals=self.subject_residuals,
            extent_offset=self.extent_offset,
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ClassStats:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            version = int(z["format"]) if "format" in z.files else 1
            if version != STATS_FORMAT:
                raise ValueError(f"class statistics of format {version}, expected {STATS_FORMAT}: recompute")
            return cls(
                pathology=str(z["pathology"]),
                phase=str(z["phase"]),
                n_subjects=int(z["n_subjects"]),
                mean=z["mean"],
                std=z["std"],
                min=z["min"],
                max=z["max"],
                latent_factor=z["latent_factor"],
                slice_factor=z["slice_factor"],
                population_basis=z["population_basis"],
                subject_residuals=z["subject_residuals"],
                extent_offset=z["extent_offset"],
            )


def standardise(x: npt.NDArray[np.floating[Any]], mean: FloatArray, std: FloatArray) -> FloatArray:
    """``(x - mean) / std`` over the trailing ``(ns, nz)`` axes; 0 where ``std`` is (near) 0."""
    live = std > MIN_STD
    safe = np.where(live, std, 1.0)
    out: FloatArray = np.where(live, (np.asarray(x, dtype=np.float64) - mean) / safe, 0.0)
    return out


def latent_correlation_factor(standardised: FloatArray) -> FloatArray:
    """Cholesky factor ``(nz, nz)`` of the latent correlation of residuals ``(n_subjects, ns, nz)``.

    Observations are the ``n_subjects * ns`` residual rows: after standardising per slice, every
    slice row of every subject is a draw of the same ``nz``-vector of unit-variance residuals, so
    pooling them is what the sampler's ``g Lz^T`` assumes (raw rows are not: their slice-to-slice
    mean differences would dominate the rank order).
    """
    n, ns, nz = standardised.shape
    if n < 2:
        return np.eye(nz)
    return correlation_factor(standardised.reshape(n * ns, nz))


def slice_correlation_factor(standardised: FloatArray) -> FloatArray:
    """Cholesky factor ``(ns, ns)`` of the slice correlation of residuals ``(n_subjects, ns, nz)``.

    Variables are the ``ns`` slices; observations are the ``n_subjects * nz`` (subject, latent
    dimension) pairs ``u[i, :, d]``. Why pool the latent dimensions: the sampler's model is separable,
    ``v = Ls g Lz^T`` has ``Cov(vec v) = Cz (x) Cs``, i.e. one slice correlation shared by every latent
    dimension, and under it each ``u[i, :, d]`` is a draw with correlation ``Cs``. A class has ~20
    subjects, fewer than its 32 slices: a per-dimension estimate would be rank-deficient and noisy,
    pooling gives ``20 * 16`` observations. Dimensions of one subject are not independent of each
    other (they co-vary through ``Cz``); that leaves Kendall's tau consistent and only widens its
    sampling error. Subjects, not one subject's latent values, are the observations: the paper's
    single-subject estimate measures how alike that subject's slice profiles are, not how slices
    co-vary in the class (it is kept as the ``paper`` mode in the sampler).
    """
    n, ns, nz = standardised.shape
    if n < 2:
        return np.eye(ns)
    return correlation_factor(standardised.transpose(0, 2, 1).reshape(n * nz, ns))


def population_basis(standardised: FloatArray, rank: int = 4) -> FloatArray:
    """Low-rank slice model per latent dimension (Volokitin et al. 2020).

    Args:
        standardised: ``(n_subjects, ns, nz)`` standardised latents of one class.
        rank: components kept per latent dimension (fewer when there are fewer subjects).

    Returns:
        ``(nz, ns, k)``: for dimension ``d``, ``basis[d] @ g`` with ``g ~ N(0, I_k)`` has the class's
        slice covariance (of rank ``k``) for that dimension.
    """
    n, ns, nz = standardised.shape
    k = max(1, min(rank, n - 1)) if n > 1 else 1
    basis = np.zeros((nz, ns, k))
    if n < 2:
        return basis
    for d in range(nz):
        x = standardised[:, :, d] - standardised[:, :, d].mean(axis=0)
        _, s, vt = np.linalg.svd(x, full_matrices=False)
        basis[d] = vt[:k].T * (s[:k] / np.sqrt(n - 1))
    return basis


def joint_residuals(standardised: FloatArray) -> FloatArray:
    """The ``joint`` mode's basis ``(n_subjects, ns, nz)``: residuals centred over subjects, divided by
    ``sqrt(n - 1)``, so that ``sum_i h_i R_i`` (``h ~ N(0, I_n)``) has the residuals' sample
    covariance; zeros for a single subject (no spread to draw from)."""
    n = standardised.shape[0]
    if n < 2:
        return np.zeros_like(standardised)
    out: FloatArray = (standardised - standardised.mean(axis=0)) / np.sqrt(n - 1)
    return out


def compute_class_stats(
    latents: npt.NDArray[np.floating[Any]],
    pathology: str,
    phase: str,
    *,
    population_rank: int = 4,
    extent_offsets: npt.NDArray[np.floating[Any]] | None = None,
) -> ClassStats:
    """Statistics of equalised latents ``(n_subjects, ns, nz)`` of one class and phase;
    ``extent_offsets`` ``(n_subjects, 2)``: each subject's LV extent offsets of this phase
    (:func:`.equalise.extent_offsets`; ``None``: 0, the ED placement)."""
    x = np.asarray(latents, dtype=np.float64)
    if x.ndim != 3 or x.shape[0] < 1:
        raise ValueError(f"need equalised latents (n_subjects >= 1, ns, nz), got shape {x.shape}")
    offsets = np.zeros((x.shape[0], 2)) if extent_offsets is None else np.asarray(extent_offsets, np.float64)
    if offsets.shape != (x.shape[0], 2) or not np.isfinite(offsets).all():
        raise ValueError(f"extent offsets must be finite, shape ({x.shape[0]}, 2), got {offsets.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{pathology} {phase}: latents contain non-finite values")
    n, ns, nz = x.shape
    mean = x.mean(axis=0)
    std = x.std(axis=0, ddof=1) if n > 1 else np.zeros((ns, nz))
    residuals = standardise(x, mean, std)
    return ClassStats(
        pathology=pathology,
        phase=phase,
        n_subjects=n,
        mean=mean,
        std=std,
        min=x.min(axis=0),
        max=x.max(axis=0),
        latent_factor=latent_correlation_factor(residuals),
        slice_factor=slice_correlation_factor(residuals),
        population_basis=population_basis(residuals, population_rank),
        subject_residuals=joint_residuals(residuals),
        extent_offset=offsets.mean(axis=0),
    )


def stats_key(
    model_version: str, data_fingerprint: str, pathology: str, phase: str, ns: int, extent: str = ""
) -> str:
    """Cache key of a class-statistics artefact (a path-safe string); changes with :data:`STATS_FORMAT`.
    ``extent``: what the LV extents were taken over beyond the default (the engine's ``extent_tag``;
    empty for the LV cavity, so that statistics computed before the option existed are found again)."""
    text = f"{STATS_FORMAT}|{model_version}|{data_fingerprint}|{ns}{extent}"
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"stats/{model_version}/v{STATS_FORMAT}-{digest}/{pathology}_{phase}.npz"
