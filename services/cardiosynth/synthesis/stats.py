"""Class statistics in latent space: per pathology and phase, over equalised subjects.

``mean``, ``std``, ``min``, ``max`` are ``(ns, nz)``; ``latent_factor`` is the Cholesky factor of
the class's latent correlation ``(nz, nz)`` (Kendall over every slice row of every subject), and
``population_basis`` the low-rank slice model per latent dimension ``(nz, ns, k)`` used by the
``population`` correlation mode. Statistics are an artefact: computed once per model version,
data fingerprint, pathology and phase, stored as ``.npz`` and reused.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from cardiosynth.synthesis.correlation import correlation_factor

FloatArray = npt.NDArray[np.float64]

# Below this, a latent coordinate is treated as constant over the class (standardising would divide
# by zero); its samples are the mean.
MIN_STD = 1e-8


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
    population_basis: FloatArray

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
            pathology=np.array(self.pathology),
            phase=np.array(self.phase),
            n_subjects=np.array(self.n_subjects),
            mean=self.mean,
            std=self.std,
            min=self.min,
            max=self.max,
            latent_factor=self.latent_factor,
            population_basis=self.population_basis,
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ClassStats:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return cls(
                pathology=str(z["pathology"]),
                phase=str(z["phase"]),
                n_subjects=int(z["n_subjects"]),
                mean=z["mean"],
                std=z["std"],
                min=z["min"],
                max=z["max"],
                latent_factor=z["latent_factor"],
                population_basis=z["population_basis"],
            )


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


def compute_class_stats(
    latents: npt.NDArray[np.floating[Any]], pathology: str, phase: str, *, population_rank: int = 4
) -> ClassStats:
    """Statistics of equalised latents ``(n_subjects, ns, nz)`` of one class and phase."""
    x = np.asarray(latents, dtype=np.float64)
    if x.ndim != 3 or x.shape[0] < 1:
        raise ValueError(f"need equalised latents (n_subjects >= 1, ns, nz), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{pathology} {phase}: latents contain non-finite values")
    n, ns, nz = x.shape
    mean = x.mean(axis=0)
    std = x.std(axis=0, ddof=1) if n > 1 else np.zeros((ns, nz))
    safe = np.where(std > MIN_STD, std, 1.0)
    standardised = np.where(std > MIN_STD, (x - mean) / safe, 0.0)
    factor = correlation_factor(x.reshape(n * ns, nz)) if n * ns >= 2 else np.eye(nz)
    return ClassStats(
        pathology=pathology,
        phase=phase,
        n_subjects=n,
        mean=mean,
        std=std,
        min=x.min(axis=0),
        max=x.max(axis=0),
        latent_factor=factor,
        population_basis=population_basis(standardised, population_rank),
    )


def stats_key(model_version: str, data_fingerprint: str, pathology: str, phase: str, ns: int) -> str:
    """Cache key of a class-statistics artefact (a path-safe string)."""
    digest = hashlib.sha256(f"{model_version}|{data_fingerprint}|{ns}".encode()).hexdigest()[:16]
    return f"stats/{model_version}/{digest}/{pathology}_{phase}.npz"
