"""Image realism: a classifier two-sample test and texture statistics per tissue, real vs synthetic.

Why these two: a label-fidelity score (a segmenter finds the labels in the images) passes images that
no one would take for MR, e.g. a clean cartoon with the right intensities per class. The audit found
SPADE images 2-4 x smoother than the data, which a mean-intensity check cannot see.

- **C2ST** (classifier two-sample test, Lopez-Paz & Oquab 2017): a small CNN learns to tell real
  slices from synthetic ones on some subjects and is scored on others. Held-out ROC AUC near 0.5
  means it could not tell them apart; near 1, trivially. The split is by subject (a subject's real and
  synthetic slices are on the same side), since slices of one heart are alike and a slice-level split
  would let the classifier recognise hearts instead of synthesis. The confidence interval comes from
  a bootstrap over test subjects, the unit of independence.
- **Texture per tissue** (blood pool = LV + RV cavity, myocardium, a background ring around the
  heart): mean and SD of intensity, SD of the 5-point Laplacian (white noise of SD ``s`` gives
  ``sqrt(20) s``), and noise power as the variance of a high-pass residual (image minus a Gaussian
  blur of 1 pixel). Tissue masks are eroded by one pixel so that the filters measure texture inside
  a tissue, not the edge between two. A whole-slice figure, the mean periodogram power in the top
  radial frequency band, is also given (white noise of variance ``v`` gives ``v``).

Shapes: slices ``(N, S, S)`` float in about [-1, 1]; labels ``(N, S, S)`` in {0, 1, 2, 3};
subject ids ``(N,)`` (any hashable values, compared as strings).

:func:`realism_arrays` builds the arrays from a data folder and a SPADE model: each processed
real slice, and the SPADE translation of its own label slice with its own image as style reference
(the same conditioning the synthesis engine uses), so that real and synthetic share labels exactly.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from scipy import ndimage
from torch import nn

from cardiosynth.data.labels import LV_CAVITY, LV_MYOCARDIUM, RV_CAVITY

log = logging.getLogger(__name__)

Slices = npt.NDArray[np.floating[Any]]
LabelSlices = npt.NDArray[np.integer[Any]]

TISSUES = ("blood", "myocardium", "background")
# Background ring: pixels 2 to 8 pixels (3 to 12 mm at 1.5 mm) outside the heart, where lungs, fat,
# liver and chest wall meet the heart and a smooth generator shows most.
RING_PX = (2, 8)
HIGHPASS_SIGMA_PX = 1.0
# Top radial band of the periodogram, in cycles per pixel (Nyquist is 0.5).
TOP_BAND = (0.375, 0.5)
_CROSS = ndimage.generate_binary_structure(2, 1)
_LAPLACIAN = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


# --------------------------------------------------------------------------------------------- AUC


def roc_auc(scores: npt.ArrayLike, targets: npt.ArrayLike) -> float:
    """ROC AUC of ``scores`` for binary ``targets`` (1 positive), ties counted one half (Mann-Whitney).

    Raises:
        ValueError: shapes differ, targets not in {0, 1}, or one class is absent.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    t = np.asarray(targets).ravel()
    if s.shape != t.shape:
        raise ValueError(f"scores {s.shape} and targets {t.shape} differ in shape")
    if not np.isin(t, (0, 1)).all():
        raise ValueError(f"targets must be 0 or 1, got values {np.unique(t)[:5].tolist()}")
    n_pos = int(t.sum())
    n_neg = t.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUC needs both classes, got {n_pos} positives and {n_neg} negatives")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size, dtype=np.float64)
    sorted_s = s[order]
    # Average ranks over ties.
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    mean_rank = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(mean_rank, counts)
    return float((ranks[t == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def bootstrap_auc_ci(
    scores: npt.ArrayLike,
    targets: npt.ArrayLike,
    groups: Sequence[Any] | npt.ArrayLike,
    *,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of :func:`roc_auc`, resampling whole ``groups`` (subjects) with
    replacement; draws that miss a class are skipped."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_bootstrap < 10:
        raise ValueError(f"n_bootstrap must be at least 10, got {n_bootstrap}")
    s = np.asarray(scores, dtype=np.float64).ravel()
    t = np.asarray(targets).ravel()
    g = np.asarray([str(x) for x in np.asarray(groups).ravel()])
    if not s.shape == t.shape == g.shape:
        raise ValueError(f"scores {s.shape}, targets {t.shape} and groups {g.shape} differ in shape")
    names, inverse = np.unique(g, return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(len(names))]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_bootstrap):
        pick = rng.integers(0, len(names), len(names))
        index = np.concatenate([members[i] for i in pick])
        tt = t[index]
        if tt.min() == tt.max():
            continue
        values.append(roc_auc(s[index], tt))
    if len(values) < n_bootstrap // 2:
        raise ValueError(f"only {len(values)} of {n_bootstrap} bootstrap draws held both classes")
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


# -------------------------------------------------------------------------------------------- C2ST


class SliceCritic(nn.Module):
    """A small CNN scoring ``(B, 1, S, S)`` slices (logit: synthetic). One full-resolution convolution
    keeps pixel-scale texture; four stride-2 blocks and a global mean pool make the score a
    statistic of texture and shape over the whole slice."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be positive, got {width}")
        chans = [1, width, width * 2, width * 4, width * 4, width * 8]
        layers: list[nn.Module] = []
        for i in range(len(chans) - 1):
            stride = 1 if i == 0 else 2
            layers += [
                nn.Conv2d(chans[i], chans[i + 1], 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(chans[i + 1]),
                nn.LeakyReLU(0.2),
            ]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.features(x).mean(dim=(2, 3)))
        return logits[:, 0]


@dataclass(frozen=True)
class C2STConfig:
    """Settings of :func:`c2st` (defaults: about 10-30 s of CPU for 2,000 slices)."""

    test_fraction: float = 0.5
    epochs: int = 6
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    width: int = 8
    n_bootstrap: int = 1000
    level: float = 0.95

    def __post_init__(self) -> None:
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError(f"need epochs >= 1 and batch_size >= 2, got {self.epochs}, {self.batch_size}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")


@dataclass(frozen=True)
class C2STResult:
    """Held-out AUC of the real-vs-synthetic classifier with its bootstrap interval."""

    auc: float
    ci_low: float
    ci_high: float
    train_subjects: int
    test_subjects: int
    train_slices: int
    test_slices: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_groups(
    real_subjects: Sequence[str], synthetic_subjects: Sequence[str], test_fraction: float, seed: int
) -> set[str]:
    """Test subjects, drawn separately among subjects with real slices only, synthetic only, and both,
    so that both sides of the split hold both classes. Returns the test subject ids."""
    real, synth = set(real_subjects), set(synthetic_subjects)
    rng = np.random.default_rng(seed)
    test: set[str] = set()
    for kind in (sorted(real - synth), sorted(synth - real), sorted(real & synth)):
        if not kind:
            continue
        n_test = round(test_fraction * len(kind))
        if len(kind) >= 2:
            n_test = min(max(n_test, 1), len(kind) - 1)
        test.update(str(x) for x in rng.permutation(kind)[:n_test])
    return test


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    # The dihedral group changes neither class, so the critic cannot lean on orientation.
    k = int(torch.randint(0, 4, (1,), generator=generator))
    x = torch.rot90(x, k, dims=(2, 3))
    if bool(torch.randint(0, 2, (1,), generator=generator)):
        x = torch.flip(x, dims=(3,))
    return x


def _fit_critic(
    x: npt.NDArray[np.float32], y: npt.NDArray[np.float32], config: C2STConfig, seed: int
) -> SliceCritic:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        critic = SliceCritic(config.width)
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(
        critic.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    n_pos = float(y.sum())
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor((len(y) - n_pos) / max(n_pos, 1.0)))
    xt, yt = torch.from_numpy(x)[:, None], torch.from_numpy(y)
    critic.train()
    for epoch in range(config.epochs):
        order = torch.randperm(len(xt), generator=generator)
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            index = order[start : start + config.batch_size]
            if len(index) < 2:  # batch norm needs two samples
                continue
            loss = loss_fn(critic(_augment(xt[index], generator)), yt[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(index)
        log.debug("c2st epoch %d: loss %.4f", epoch + 1, total / len(order))
    critic.eval()
    return critic


@torch.no_grad()
def _score(critic: SliceCritic, x: npt.NDArray[np.float32], batch_size: int = 256) -> npt.NDArray[np.float64]:
    out = [
        critic(torch.from_numpy(x[s : s + batch_size])[:, None]).numpy() for s in range(0, len(x), batch_size)
    ]
    return np.concatenate(out).astype(np.float64)


def _check_slices(name: str, slices: Slices, subjects: Sequence[Any]) -> None:
    if slices.ndim != 3 or slices.shape[1] != slices.shape[2] or len(slices) == 0:
        raise ValueError(f"{name} slices must be a non-empty (N, S, S) array, got {slices.shape}")
    if len(subjects) != len(slices):
        raise ValueError(f"{len(slices)} {name} slices but {len(subjects)} subject ids")
    if not np.isfinite(slices).all():
        raise ValueError(f"{name} slices hold NaN or infinite values")


def c2st(
    real: Slices,
    synthetic: Slices,
    real_subjects: Sequence[Any],
    synthetic_subjects: Sequence[Any],
    *,
    seed: int = 0,
    config: C2STConfig | None = None,
) -> C2STResult:
    """Classifier two-sample test of ``real`` ``(N1, S, S)`` against ``synthetic`` ``(N2, S, S)``.

    Subjects are split into training and test sides (:func:`split_groups`); a :class:`SliceCritic`
    is trained on the training side and its held-out AUC reported with a bootstrap interval over test
    subjects. Deterministic by ``seed`` (on one machine and thread count).

    Raises:
        ValueError: empty or mismatched arrays, or a split that leaves a class out of one side.
    """
    config = config or C2STConfig()
    real = np.asarray(real)
    synthetic = np.asarray(synthetic)
    _check_slices("real", real, real_subjects)
    _check_slices("synthetic", synthetic, synthetic_subjects)
    if real.shape[1:] != synthetic.shape[1:]:
        raise ValueError(f"real slices {real.shape[1:]} and synthetic slices {synthetic.shape[1:]} differ")
    r_ids = [str(s) for s in real_subjects]
    s_ids = [str(s) for s in synthetic_subjects]
    test = split_groups(r_ids, s_ids, config.test_fraction, seed)
    x = np.concatenate([real, synthetic]).astype(np.float32)
    y = np.concatenate([np.zeros(len(real)), np.ones(len(synthetic))]).astype(np.float32)
    groups = np.array(r_ids + s_ids)
    is_test = np.isin(groups, sorted(test))
    for side, mask in (("training", ~is_test), ("test", is_test)):
        if len(np.unique(y[mask])) < 2:
            raise ValueError(f"the {side} side of the subject split lacks a class; give more subjects")
    threads = torch.get_num_threads()
    # One thread: these small convolutions gain nothing from more, and on a shared machine extra
    # OpenMP threads spin against other processes (tens of times slower); one thread also keeps
    # the result independent of the machine's core count.
    torch.set_num_threads(1)
    try:
        critic = _fit_critic(x[~is_test], y[~is_test], config, seed)
        scores = _score(critic, x[is_test])
    finally:
        torch.set_num_threads(threads)
    auc = roc_auc(scores, y[is_test])
    low, high = bootstrap_auc_ci(
        scores, y[is_test], groups[is_test], n_bootstrap=config.n_bootstrap, level=config.level, seed=seed
    )
    result = C2STResult(
        auc=auc,
        ci_low=low,
        ci_high=high,
        train_subjects=len(set(groups[~is_test].tolist())),
        test_subjects=len(test),
        train_slices=int((~is_test).sum()),
        test_slices=int(is_test.sum()),
        seed=seed,
    )
    log.info("C2ST AUC %.3f [%.3f, %.3f] on %d test subjects", auc, low, high, len(test))
    return result


# ----------------------------------------------------------------------------------------- texture


def _per_slice(kernel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return kernel[None]


def laplacian(images: Slices) -> npt.NDArray[np.float64]:
    """5-point Laplacian of each slice ``(N, S, S)`` (edges reflected; slices never mix)."""
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"expected slices (N, S, S), got {x.shape}")
    out: npt.NDArray[np.float64] = ndimage.correlate(x, _per_slice(_LAPLACIAN), mode="reflect")
    return out


def highpass(images: Slices, sigma: float = HIGHPASS_SIGMA_PX) -> npt.NDArray[np.float64]:
    """Each slice minus its Gaussian blur of ``sigma`` pixels ``(N, S, S)``."""
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"expected slices (N, S, S), got {x.shape}")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    blurred: npt.NDArray[np.float64] = ndimage.gaussian_filter(x, sigma=(0.0, sigma, sigma), mode="reflect")
    return x - blurred


def high_frequency_power(images: Slices, band: tuple[float, float] = TOP_BAND) -> float:
    """Mean periodogram power ``|FFT|^2 / (S * S)`` over radial frequencies in ``band`` (cycles per
    pixel), slice means removed, averaged over slices. White noise of variance ``v`` gives ``v``."""
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 3 or x.shape[1] != x.shape[2]:
        raise ValueError(f"expected square slices (N, S, S), got {x.shape}")
    if not 0.0 <= band[0] < band[1]:
        raise ValueError(f"band must be (low, high) with 0 <= low < high, got {band}")
    size = x.shape[1]
    x = x - x.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fft2(x)) ** 2 / (size * size)
    f = np.fft.fftfreq(size)
    radius = np.hypot(f[:, None], f[None, :])
    in_band = (radius >= band[0]) & (radius <= band[1])
    return float(power[:, in_band].mean())


def tissue_masks(labels: LabelSlices, ring_px: tuple[int, int] = RING_PX) -> dict[str, npt.NDArray[np.bool_]]:
    """Masks ``(N, S, S)`` of blood pool (LV + RV cavity), myocardium and a background ring
    ``ring_px`` pixels outside the heart, each eroded by one pixel within its slice."""
    lab = np.asarray(labels)
    if lab.ndim != 3:
        raise ValueError(f"expected label slices (N, S, S), got {lab.shape}")
    if not 0 <= ring_px[0] < ring_px[1]:
        raise ValueError(f"ring_px must be (inner, outer) with 0 <= inner < outer, got {ring_px}")
    structure = _CROSS[None]  # in-plane only
    heart = lab > 0
    outer = ndimage.binary_dilation(heart, structure, iterations=ring_px[1])
    inner = ndimage.binary_dilation(heart, structure, iterations=ring_px[0]) if ring_px[0] else heart
    raw = {
        "blood": np.isin(lab, (LV_CAVITY, RV_CAVITY)),
        "myocardium": lab == LV_MYOCARDIUM,
        "background": outer & ~inner & ~heart,
    }
    # border_value=0 would erode the crop edge; 1 keeps tissue that touches it.
    return {name: ndimage.binary_erosion(m, structure, border_value=1) for name, m in raw.items()}


@dataclass(frozen=True)
class TextureStats:
    """Texture of one tissue pooled over slices (intensities in the [-1, 1] scale)."""

    mean: float
    sd: float
    laplacian_sd: float
    noise_power: float  # variance of the high-pass residual
    pixels: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def texture_stats(images: Slices, labels: LabelSlices) -> dict[str, TextureStats]:
    """:class:`TextureStats` per tissue of ``images`` ``(N, S, S)`` with their ``labels``.

    Raises:
        ValueError: shapes differ, or a tissue has no pixels after erosion.
    """
    x = np.asarray(images, dtype=np.float64)
    if x.shape != np.shape(labels):
        raise ValueError(f"images {x.shape} and labels {np.shape(labels)} differ in shape")
    lap = laplacian(x)
    hp = highpass(x)
    out: dict[str, TextureStats] = {}
    for name, mask in tissue_masks(labels).items():
        n = int(mask.sum())
        if n < 2:
            raise ValueError(f"tissue {name!r} has {n} pixels after erosion; cannot measure texture")
        out[name] = TextureStats(
            mean=float(x[mask].mean()),
            sd=float(x[mask].std()),
            laplacian_sd=float(lap[mask].std()),
            noise_power=float(hp[mask].var()),
            pixels=n,
        )
    return out


def compare_texture(
    real: Slices, real_labels: LabelSlices, synthetic: Slices, synthetic_labels: LabelSlices
) -> dict[str, Any]:
    """Per tissue and statistic: real, synthetic and the ratio synthetic / real; plus the whole-slice
    top-band power of each."""
    r = texture_stats(real, real_labels)
    s = texture_stats(synthetic, synthetic_labels)
    tissues: dict[str, Any] = {}
    for name in TISSUES:
        tissues[name] = {
            stat: {
                "real": getattr(r[name], stat),
                "synthetic": getattr(s[name], stat),
                "ratio": _ratio(getattr(s[name], stat), getattr(r[name], stat)),
            }
            for stat in ("mean", "sd", "laplacian_sd", "noise_power")
        }
    hf_r, hf_s = high_frequency_power(real), high_frequency_power(synthetic)
    return {
        "tissues": tissues,
        "high_frequency_power": {"real": hf_r, "synthetic": hf_s, "ratio": _ratio(hf_s, hf_r)},
    }


def _ratio(a: float, b: float) -> float | None:
    return None if b == 0 or not math.isfinite(a / b) else a / b


def image_realism(
    real: Slices,
    real_labels: LabelSlices,
    real_subjects: Sequence[Any],
    synthetic: Slices,
    synthetic_labels: LabelSlices,
    synthetic_subjects: Sequence[Any],
    *,
    seed: int = 0,
    config: C2STConfig | None = None,
) -> dict[str, Any]:
    """Both realism figures in one JSON-ready dict: ``{"c2st": ..., "texture": ...}``."""
    result = c2st(real, synthetic, real_subjects, synthetic_subjects, seed=seed, config=config)
    return {
        "c2st": result.to_dict(),
        "texture": compare_texture(real, real_labels, synthetic, synthetic_labels),
    }


# ------------------------------------------------------------------------------- arrays from models


@dataclass(frozen=True)
class RealismArrays:
    """Paired real and synthetic slices of the same subjects, ``(N, S, S)`` each.

    ``synthetic[i]`` is SPADE's translation of ``labels[i]`` with ``real[i]`` as its style reference.
    """

    real: npt.NDArray[np.float32]
    synthetic: npt.NDArray[np.float32]
    labels: npt.NDArray[np.uint8]
    subjects: tuple[str, ...]  # per slice

    def select(self, ids: Sequence[str]) -> RealismArrays:
        """The slices of the subjects ``ids``."""
        mask = np.isin(np.array(self.subjects), list(ids))
        return RealismArrays(
            self.real[mask],
            self.synthetic[mask],
            self.labels[mask],
            tuple(s for s, keep in zip(self.subjects, mask, strict=True) if keep),
        )


def realism_arrays(
    data_root: Path,
    spade: Any,
    *,
    subject_ids: Sequence[str] | None = None,
    style: str = "own",
    limit: int | None = None,
) -> RealismArrays:
    """Processed real slices (both phases) of the subjects under ``data_root`` (all, or ``subject_ids``;
    at most ``limit`` of them)
    and their SPADE translations by ``spade`` (a :class:`~cardiosynth.models.spade.SpadeTranslator`).

    ``style``: ``"own"`` takes each slice's own image as reference (as synthesis does with its base
    subject); ``"prior"`` uses the style prior's mean (a zero code: SPADE with no style).
    """
    from cardiosynth.data.acdc import iter_subjects
    from cardiosynth.data.preprocess import preprocess_subject

    if style not in ("own", "prior"):
        raise ValueError(f"style must be 'own' or 'prior', got {style!r}")
    wanted = set(subject_ids) if subject_ids is not None else None
    images: list[npt.NDArray[np.float32]] = []
    labels: list[npt.NDArray[np.uint8]] = []
    subjects: list[str] = []
    for subject in iter_subjects(Path(data_root)):
        if wanted is not None and subject.subject_id not in wanted:
            continue
        if limit is not None and len(set(subjects)) >= limit:
            break
        p = preprocess_subject(subject)
        for img, lab in ((p.ed_image, p.ed_label), (p.es_image, p.es_label)):
            images.append(img.astype(np.float32))
            labels.append(lab.astype(np.uint8))
            subjects += [p.subject_id] * len(lab)
    if not subjects:
        raise ValueError(f"no subjects found under {data_root} (wanted {sorted(wanted or [])})")
    if wanted is not None and limit is None and wanted - set(subjects):
        raise ValueError(f"subjects not under {data_root}: {sorted(wanted - set(subjects))}")
    real = np.concatenate(images)
    lab_all = np.concatenate(labels)
    synthetic = spade_images(spade, lab_all, real, style=style)
    log.info("realism arrays: %d slices of %d subjects", len(real), len(set(subjects)))
    return RealismArrays(real, synthetic, lab_all, tuple(subjects))


def spade_images(
    spade: Any, labels: LabelSlices, references: Slices, *, style: str = "own", batch_size: int = 64
) -> npt.NDArray[np.float32]:
    """SPADE images ``(N, S, S)`` of ``labels`` ``(N, S, S)``: with the style of each reference slice
    (``"own"``) or with the style prior's mean, a zero code (``"prior"``: SPADE with no style)."""
    from cardiosynth.models.onehot import labels_to_onehot
    from cardiosynth.models.spade import slice_noise, translate_array

    if style == "own":
        return translate_array(spade, labels, references, batch_size)
    if style != "prior":
        raise ValueError(f"style must be 'own' or 'prior', got {style!r}")
    was_training = spade.training
    spade.eval()
    chunks = []
    with torch.no_grad():
        for s in range(0, len(labels), batch_size):
            seg = labels_to_onehot(
                torch.from_numpy(np.asarray(labels[s : s + batch_size], dtype=np.int64)),
                spade.config.num_classes,
            )
            # The same per-slice noise as the own-style images, so the rows differ by the style alone.
            noise = (
                slice_noise(labels[s : s + batch_size], references[s : s + batch_size])
                if spade.config.noise
                else None
            )
            chunks.append(
                spade.generate(seg, torch.zeros(len(seg), spade.config.style_dim), noise)[:, 0].numpy()
            )
    spade.train(was_training)
    return np.concatenate(chunks).astype(np.float32)


def gaussian_blur(images: Slices, sigma: float) -> npt.NDArray[np.float32]:
    """Each slice blurred in-plane by ``sigma`` pixels (the deliberately bad synthetic baseline)."""
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    out: npt.NDArray[np.float32] = ndimage.gaussian_filter(
        np.asarray(images, dtype=np.float32), sigma=(0.0, sigma, sigma), mode="reflect"
    )
    return out


def add_matched_noise(
    synthetic: Slices, real: Slices, *, seed: int = 0
) -> tuple[npt.NDArray[np.float32], float]:
    """``synthetic`` plus white Gaussian noise whose variance is the top-band power the synthetic
    slices lack against ``real`` (:func:`high_frequency_power`), clipped to [-1, 1]; returns the
    images and the noise SD. A model-free candidate fix for over-smooth generator output."""
    missing = high_frequency_power(real) - high_frequency_power(synthetic)
    sd = math.sqrt(max(missing, 0.0))
    rng = np.random.default_rng(seed)
    noisy = np.asarray(synthetic, dtype=np.float64) + sd * rng.standard_normal(np.shape(synthetic))
    return np.clip(noisy, -1.0, 1.0).astype(np.float32), sd
