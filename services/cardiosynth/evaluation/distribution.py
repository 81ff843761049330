"""Distribution match between synthetic and real subjects, on biomarker vectors (pure numpy).

- :func:`knn_precision_recall`: improved precision and recall (Kynkäänniemi et al., NeurIPS 2019).
  Each point of a set gets a ball whose radius is the distance to its ``k``-th nearest neighbour in
  that set; precision is the share of synthetic points inside some real ball (realistic samples),
  recall the share of real points inside some synthetic ball (coverage of the real class). A
  generator that always returns the class mean scores high precision and low recall: its balls
  have radius ~0.
- :func:`normalised_w1`: 1-D Wasserstein distance of each biomarker to held-out real subjects,
  divided by the sampling floor, what a perfect generator would score. Two floors: ``split``, the
  distance between the training and the held-out real subjects (one draw; issue 9's definition), and
  ``bootstrap`` (the evaluation's target), its expectation at the synthetic set's size: the mean
  distance from the held-out subjects of training subsets resampled with replacement. The split floor
  is one noisy distance like the numerator, so their ratio does not tighten with more subjects: a
  perfect generator (new phantom subjects) keeps all seven ratios within 1.5 in only 20-25 % of
  draws per class at 12 training / 8 held-out / 10 synthetic subjects, 41-54 % at 20 / 40 / 40; with
  the bootstrap floor 66-84 % at 20 / 40 / 40, while a sampler with half the class's spread passes
  10-21 % (:mod:`.attainable`, ``reports/synthesis-phantom-v2/attainable/``).
- :func:`range_share`: share of subjects whose every biomarker lies in the real class's range.

Vectors are standardised with the mean and standard deviation of the real reference set, so that
ml, % and mm weigh alike. Rows with a non-finite entry are left out (and counted by the callers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from cardiosynth.data.biomarkers import Biomarkers

FloatArray = npt.NDArray[np.float64]

# The biomarkers that define the ACDC groups (indexed volumes, EFs, mass, wall thickness) and the
# regional one that tells MINF from DCM.
BIOMARKERS: tuple[str, ...] = (
    "lv_edv_index",
    "lv_ef",
    "rv_edv_index",
    "rv_ef",
    "mass_index",
    "max_wall_thickness",
    "regional_heterogeneity",
)
K_DEFAULT = 3
# Issue 9's targets on these figures: precision and recall at least MIN_PR, every normalised W1 at
# most MAX_W1_NORMALISED.
MIN_PR = 0.7
MAX_W1_NORMALISED = 1.5


def biomarker_matrix(bms: Sequence[Biomarkers | None], names: Sequence[str] = BIOMARKERS) -> FloatArray:
    """``(n, len(names))`` biomarker values; a missing subject or value is NaN."""
    out = np.full((len(bms), len(names)), np.nan)
    for i, b in enumerate(bms):
        if b is None:
            continue
        for j, name in enumerate(names):
            value = getattr(b, name)
            out[i, j] = np.nan if value is None else float(value)
    return out


def finite_rows(x: FloatArray) -> FloatArray:
    """The rows of ``x`` ``(n, d)`` without a non-finite entry."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"expected a matrix (n, d), got shape {arr.shape}")
    out: FloatArray = arr[np.isfinite(arr).all(axis=1)]
    return out


def standardiser(reference: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Mean and standard deviation (ddof 1; 1 where a column is constant) of ``reference`` ``(n, d)``."""
    ref = finite_rows(reference)
    if len(ref) < 2:
        raise ValueError(f"need at least 2 finite reference rows to standardise, got {len(ref)}")
    std = ref.std(axis=0, ddof=1)
    return ref.mean(axis=0), np.where(std > 0, std, 1.0)


def _distances(a: FloatArray, b: FloatArray) -> FloatArray:
    out: FloatArray = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1))
    return out


def knn_radii(points: FloatArray, k: int = K_DEFAULT) -> FloatArray:
    """Distance of each point ``(n, d)`` to its ``k``-th nearest other point of the set ``(n,)``."""
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    if len(points) <= k:
        raise ValueError(f"need more than k = {k} points for k-NN radii, got {len(points)}")
    d = np.sort(_distances(points, points), axis=1)
    out: FloatArray = d[:, k]  # column 0 is the point itself
    return out


def knn_precision_recall(
    real: FloatArray,
    synthetic: FloatArray,
    k: int = K_DEFAULT,
    *,
    scale: tuple[FloatArray, FloatArray] | None = None,
) -> tuple[float, float]:
    """Improved precision and recall of ``synthetic`` ``(m, d)`` against ``real`` ``(n, d)``.

    Both are standardised by ``scale`` (mean, std), by default the real set's. NaN when either set
    has no more than ``k`` finite rows.
    """
    r, s = finite_rows(real), finite_rows(synthetic)
    if r.shape[1:] != s.shape[1:]:
        raise ValueError(f"real and synthetic vectors differ in dimension: {r.shape} vs {s.shape}")
    if len(r) <= k or len(s) <= k:
        return float("nan"), float("nan")
    mean, std = scale if scale is not None else standardiser(r)
    r, s = (r - mean) / std, (s - mean) / std
    cross = _distances(s, r)  # (m, n)
    precision = float((cross <= knn_radii(r, k)[None, :]).any(axis=1).mean())
    recall = float((cross <= knn_radii(s, k)[:, None]).any(axis=0).mean())
    return precision, recall


W1Floor = Literal["split", "bootstrap"]
W1_FLOORS: tuple[str, ...] = get_args(W1Floor)
FLOOR_RESAMPLES = 200  # bootstrap resamples: the floor's Monte Carlo error is under 1 % of it
FLOOR_SEED = 0  # a fixed stream: the same sets give the same floor in every row and run
# The key suffix of each floor's figures in distribution_figures (the target's floor has none).
W1_KEY_SUFFIX: dict[W1Floor, str] = {"bootstrap": "", "split": "_split"}


def bootstrap_w1(
    train: FloatArray, held: FloatArray, size: int, resamples: int, rng: np.random.Generator
) -> float:
    """Mean over ``resamples`` of the 1-D W1 between ``size`` draws with replacement from ``train``
    and ``held`` (both 1-D, finite, non-empty).

    Vectorised: a resample takes values of ``train`` only, so every empirical CDF lives on one grid
    (the sorted union of both sets) and ``W1 = sum |F_a - F_b| * gap`` over its gaps.
    """
    if size < 1 or resamples < 1:
        raise ValueError(f"size and resamples must be positive, got {size} and {resamples}")
    grid = np.unique(np.concatenate([train, held]))
    if grid.size == 1:
        return 0.0
    gaps = np.diff(grid)
    # Multinomial counts of each training value in a resample, gathered onto the grid.
    counts = rng.multinomial(size, np.full(train.size, 1.0 / train.size), size=resamples)
    mass = np.zeros((resamples, grid.size))
    np.add.at(mass.T, np.searchsorted(grid, train), counts.T)
    cdf_a = np.cumsum(mass, axis=1)[:, :-1] / size
    cdf_b = np.searchsorted(np.sort(held), grid[:-1], side="right") / held.size
    return float((np.abs(cdf_a - cdf_b[None, :]) * gaps[None, :]).sum(axis=1).mean())


def normalised_w1(
    synthetic: FloatArray,
    held_out: FloatArray,
    train: FloatArray,
    names: Sequence[str] = BIOMARKERS,
    *,
    floor: W1Floor = "split",
    resamples: int = FLOOR_RESAMPLES,
) -> dict[str, float]:
    """Per biomarker: ``W1(synthetic, held_out) / floor`` (finite values of each column).

    ``floor``: ``split``, ``W1(train, held_out)``; ``bootstrap``, the mean W1 between the held-out
    values and ``resamples`` resamples (with replacement, seeded by :data:`FLOOR_SEED`) of the training
    values of the synthetic column's size (see the module's docstring for why).

    NaN where a column has no finite value in a set; ``inf`` where the floor is 0 and the distance not.
    """
    if floor not in W1_FLOORS:
        raise ValueError(f"unknown W1 floor {floor!r}; expected one of {list(W1_FLOORS)}")
    rng = np.random.default_rng(FLOOR_SEED)
    out: dict[str, float] = {}
    for j, name in enumerate(names):
        cols = [np.asarray(x, dtype=np.float64)[:, j] for x in (synthetic, held_out, train)]
        syn, held, tr = (c[np.isfinite(c)] for c in cols)
        if not (syn.size and held.size and tr.size):
            out[name] = float("nan")
            continue
        distance = float(sps.wasserstein_distance(syn, held))
        if floor == "split":
            base = float(sps.wasserstein_distance(tr, held))
        else:
            base = bootstrap_w1(tr, held, syn.size, resamples, rng)
        out[name] = distance / base if base > 0 else (0.0 if distance == 0 else float("inf"))
    return out


def range_share(reference: FloatArray, values: FloatArray) -> float:
    """Share of rows of ``values`` ``(m, d)`` with every entry inside ``reference``'s column range.

    A non-finite entry is outside. NaN for no rows.
    """
    ref = np.asarray(reference, dtype=np.float64)
    val = np.asarray(values, dtype=np.float64)
    if ref.ndim != 2 or val.ndim != 2 or ref.shape[1] != val.shape[1]:
        raise ValueError(f"need matrices of one width, got {ref.shape} and {val.shape}")
    if len(val) == 0:
        return float("nan")
    lo, hi = np.nanmin(ref, axis=0), np.nanmax(ref, axis=0)
    with np.errstate(invalid="ignore"):
        inside = np.isfinite(val) & (val >= lo) & (val <= hi)
    return float(inside.all(axis=1).mean())


def distribution_figures(
    synthetic: FloatArray, held_out: FloatArray, train: FloatArray, k: int = K_DEFAULT
) -> dict[str, Any]:
    """For one class: precision, recall, normalised W1 per biomarker with the bootstrap floor (and its
    maximum; the target), the same with the split floor (``*_split``, issue 9's first definition),
    range share."""
    precision, recall = knn_precision_recall(held_out, synthetic, k)
    out: dict[str, Any] = {"precision": precision, "recall": recall}
    for floor, suffix in W1_KEY_SUFFIX.items():
        w1 = normalised_w1(synthetic, held_out, train, floor=floor)
        measured = [v for v in w1.values() if not np.isnan(v)]  # inf (a zero floor) counts as a failure
        out[f"w1_normalised{suffix}"] = w1
        out[f"w1_normalised_max{suffix}"] = float(max(measured)) if measured else float("nan")
    out["range_share"] = range_share(held_out, synthetic)
    out["finite_rows"] = len(finite_rows(synthetic))
    return out
