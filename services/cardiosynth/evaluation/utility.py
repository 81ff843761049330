"""Downstream utility: does training data from the method help a segmenter on held-out real subjects?

One 2D MONAI UNet (:func:`cardiosynth.evaluation.segmenter.build_segmenter`) is trained in every arm
with the same budget (optimiser steps, not epochs, so an arm with more data gets no more updates),
the same optimiser, loss and augmentation; only the training slices differ:

- ``real``: the protocol's real training subjects;
- ``real+synthetic``: plus synthetic subjects made by the method (:class:`Synthesizer`, the
  project's default correlation mode and interpolation, severity 1);
- ``real+elastic``: plus as many real subjects of the added groups under a random 2D elastic
  deformation (MONAI ``Rand2DElasticd``): classic augmentation, no new anatomy;
- ``real+class_mean``: plus as many class-mean decodes (:func:`.baselines.class_mean_decode`,
  translated by SPADE with the same base subjects' style): the class without its variability;
- ``synthetic``: the synthetic subjects alone (every pathology, no real image).

Protocols: ``full`` (the whole real training split), ``low_data`` (a few real subjects per group;
the method's class statistics and base subjects come from those few only) and ``missing:<G>`` (no
real subject of group G, or ``keep_missing`` of them; the method's statistics of G come from the
label maps of G's training-split subjects, whose images the segmenter never sees; the elastic arm
deforms the kept real subjects of G, or with none kept the NOR bases the synthetic subjects were
made from).

The test subjects are the held-out side of :func:`.split.split_subjects`: no subject that the class
statistics, the base subjects or any arm's training set draw on is among them. Metrics per held-out
subject and phase on the evaluation grid (the processed crop resampled to ``image_size``): Dice per
class, HD95 per class (MONAI, mm), and the absolute errors of LVEDV, LVEF, RVEF and myocardial mass
(:mod:`cardiosynth.data.biomarkers` volumes) of the predicted ED/ES stacks against the ground-truth
labels on the same grid, so the errors are the segmenter's and not the resampling's.

Pure core: models, a data folder and a config in, a report dict out
(:mod:`.utility_report` writes JSON, Markdown and the figure).
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

from cardiosynth.data.biomarkers import MYOCARDIAL_DENSITY_G_PER_ML, ejection_fraction, volume_ml
from cardiosynth.data.labels import LABEL_NAMES, LV_CAVITY, LV_MYOCARDIUM, NUM_CLASSES, RV_CAVITY, Group
from cardiosynth.data.overlap import dice_per_class
from cardiosynth.evaluation.baselines import class_mean_decode
from cardiosynth.evaluation.segmenter import build_segmenter
from cardiosynth.evaluation.split import link_folder, split_subjects
from cardiosynth.models.spade import SpadeTranslator
from cardiosynth.models.training import epoch_batches, seed_everything
from cardiosynth.models.vae import LabelVAE
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.engine import LabelBatch, SynthesisRequest, Synthesizer

log = logging.getLogger(__name__)

DEFAULT_ARMS: tuple[str, ...] = ("real", "real+synthetic", "real+elastic", "real+class_mean", "synthetic")
# ``real+real`` is the ceiling: the same number of *real* training subjects of the added groups
# (those a protocol held back) instead of synthetic ones. What it gains over ``real`` bounds what
# any synthetic data could gain on that protocol, so a missed target can be told apart from a target
# the data set does not allow. Opt-in: it is one more training per protocol and seed, and
# protocol (a) holds nothing back (the arm is skipped there, with a note).
ARMS: tuple[str, ...] = (*DEFAULT_ARMS, "real+real")
PATHOLOGIES: tuple[Group, ...] = (Group.DCM, Group.HCM, Group.MINF, Group.RV)
GROUPS: tuple[Group, ...] = (Group.DCM, Group.HCM, Group.MINF, Group.NOR, Group.RV)
PROTOCOL_KINDS: tuple[str, ...] = ("full", "low_data", "missing")
PHASES: tuple[str, ...] = ("ED", "ES")
FOREGROUND: tuple[int, ...] = (RV_CAVITY, LV_MYOCARDIUM, LV_CAVITY)
CLINICAL: tuple[str, ...] = ("lv_edv", "lv_ef", "rv_ef", "myo_mass")
TARGET_GAIN = 0.03  # protocol (c): Dice gain on the missing group that counts as help
TARGET_OTHERS = 0.01  # ... without lowering another group by more than this

Stack = npt.NDArray[np.uint8]
ImageStack = npt.NDArray[np.float32]


@dataclass(frozen=True)
class UtilityConfig:
    """What the benchmark runs; :data:`PRESETS` holds the named ones."""

    image_size: int = 64  # the processed 128 x 128 crop resampled to this (labels nearest)
    channels: tuple[int, ...] = (16, 32, 64)
    iterations: int = 150  # optimiser steps per arm, the same in every arm
    batch_size: int = 16
    learning_rate: float = 2e-3
    seeds: tuple[int, ...] = (0, 1)
    synthetic_per_group: int = 6  # subjects added per group (synthetic, elastic and class-mean alike)
    low_data: int = 5  # real subjects per group in the low-data protocol
    keep_missing: int = 0  # real subjects of the missing group kept in protocol ``missing``
    train_fraction: float = 0.6
    split_seed: int = 0
    data_seed: int = 0  # synthesis, elastic fields and subset draws (the same for every training seed)
    protocols: tuple[str, ...] = PROTOCOL_KINDS
    missing_groups: tuple[Group, ...] = PATHOLOGIES
    arms: tuple[str, ...] = DEFAULT_ARMS
    elastic_spacing: float = 16.0  # control-point spacing at 128 px (scaled to image_size)
    elastic_magnitude: tuple[float, float] = (2.0, 5.0)  # offsets at 128 px (scaled to image_size)

    def __post_init__(self) -> None:
        if self.image_size < 16 or self.image_size % 2 ** (len(self.channels) - 1):
            raise ValueError(
                f"image_size must be >= 16 and divisible by 2^{len(self.channels) - 1}, got {self.image_size}"
            )
        if len(self.channels) < 2 or any(c < 1 for c in self.channels):
            raise ValueError(f"channels must be at least two positive widths, got {self.channels}")
        for name in ("iterations", "synthetic_per_group", "low_data"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be at least 2 (BatchNorm), got {self.batch_size}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or any(s < 0 for s in self.seeds):
            raise ValueError(f"seeds must be distinct non-negative integers, got {list(self.seeds)}")
        if self.keep_missing < 0:
            raise ValueError(f"keep_missing must be >= 0, got {self.keep_missing}")
        if not 0.0 < self.train_fraction < 1.0:
            raise ValueError(f"train_fraction must be in (0, 1), got {self.train_fraction}")
        unknown = [p for p in self.protocols if p not in PROTOCOL_KINDS]
        if not self.protocols or unknown:
            raise ValueError(f"protocols must be among {list(PROTOCOL_KINDS)}, got {list(self.protocols)}")
        bad = [g for g in self.missing_groups if g not in PATHOLOGIES]
        if bad or ("missing" in self.protocols and not self.missing_groups):
            raise ValueError(
                f"missing_groups must be among {[g.value for g in PATHOLOGIES]}, got "
                f"{[getattr(g, 'value', g) for g in self.missing_groups]}"
            )
        unknown = [a for a in self.arms if a not in ARMS]
        if not self.arms or unknown or "real" not in self.arms:
            raise ValueError(f"arms must be among {list(ARMS)} and include 'real', got {list(self.arms)}")
        low, high = self.elastic_magnitude
        if not 0 <= low <= high or not self.elastic_spacing > 0:
            raise ValueError(
                f"elastic magnitude must be 0 <= low <= high and spacing positive, got "
                f"{self.elastic_magnitude} and {self.elastic_spacing}"
            )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["missing_groups"] = [g.value for g in self.missing_groups]
        return out


PRESETS: dict[str, UtilityConfig] = {
    # CPU: 26 distinct trainings x 2 seeds of 150 steps at 64 x 64, 6 subjects added per group; about
    # 15 CPU-minutes single-threaded (measured figures in reports/utility).
    "small": UtilityConfig(),
    # A GPU: the full 128 crop, a wider UNet, a real training budget, five seeds.
    "paper": UtilityConfig(
        image_size=128,
        channels=(32, 64, 128, 256),
        iterations=4000,
        batch_size=32,
        learning_rate=1e-3,
        seeds=(0, 1, 2, 3, 4),
        synthetic_per_group=20,
    ),
}


def preset(name: str, **overrides: Any) -> UtilityConfig:
    """The named preset with ``overrides`` (``None`` values ignored).

    Raises:
        ValueError: an unknown preset name or an invalid override.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class Case:
    """One training or test subject on the evaluation grid: per phase an image and a label stack
    ``(Z, S, S)``; ``sources``: the real subjects it derives from (itself, or its base subject)."""

    name: str
    group: Group
    origin: str  # real, synthetic, elastic, class_mean
    images: dict[str, ImageStack]
    labels: dict[str, Stack]
    spacing: tuple[float, float, float]  # (z, y, x) in mm on the evaluation grid
    sources: tuple[str, ...]

    def slices(self) -> tuple[ImageStack, Stack]:
        return (
            np.concatenate([self.images[p] for p in PHASES]),
            np.concatenate([self.labels[p] for p in PHASES]),
        )


def resample(images: npt.NDArray[Any], labels: npt.NDArray[Any], size: int) -> tuple[ImageStack, Stack]:
    """Stacks ``(Z, S, S)`` to ``(Z, size, size)``: images bilinear with antialiasing, labels nearest."""
    if images.shape != labels.shape or images.ndim != 3:
        raise ValueError(
            f"need image and label stacks (Z, S, S) of one shape, got {images.shape}, {labels.shape}"
        )
    img = np.asarray(images, dtype=np.float32)
    lab = np.asarray(labels, dtype=np.uint8)
    if images.shape[-1] == size and images.shape[-2] == size:
        return img, lab
    x = torch.from_numpy(np.ascontiguousarray(img))[:, None]
    y = torch.from_numpy(lab.astype(np.float32))[:, None]
    xi = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    yi = F.interpolate(y, size=(size, size), mode="nearest-exact")
    return xi[:, 0].numpy().astype(np.float32), yi[:, 0].numpy().round().astype(np.uint8)


def _case(
    name: str,
    group: Group,
    origin: str,
    stacks: dict[str, tuple[npt.NDArray[Any], npt.NDArray[Any]]],
    z_spacing: float,
    size: int,
    srcs: Sequence[str],
) -> Case:
    images: dict[str, ImageStack] = {}
    labels: dict[str, Stack] = {}
    processed = 0
    for phase, (img, lab) in stacks.items():
        processed = img.shape[-1]
        images[phase], labels[phase] = resample(img, lab, size)
    inplane = 1.5 * processed / size  # the processed grid is 1.5 mm (preprocess.TARGET_SPACING_MM)
    return Case(name, group, origin, images, labels, (float(z_spacing), inplane, inplane), tuple(srcs))


def real_case(loaded: sources.LoadedSubject, group: Group, size: int) -> Case:
    p = loaded.processed
    return _case(
        loaded.subject.subject_id,
        group,
        "real",
        {"ED": (p.ed_image, p.ed_label), "ES": (p.es_image, p.es_label)},
        loaded.subject.spacing[2],
        size,
        (loaded.subject.subject_id,),
    )


# --- the added subjects -----------------------------------------------------------------------


@dataclass
class Generated:
    """What the method and its class-mean baseline made for one group, from one synthesizer."""

    synthetic: list[Case]
    class_mean: list[Case]
    bases: list[Case]  # the NOR base subject of each synthetic subject (the elastic fallback)


def generate(
    synth: Synthesizer, group: Group, n: int, seed: int, size: int, tag: str, bases: dict[str, Case]
) -> Generated:
    """``n`` synthetic subjects of ``group`` (severity 1) and ``n`` class-mean decodes on the same
    base subjects, both translated by SPADE with the base's own style (one translation pass).

    The method's two halves (:meth:`Synthesizer.make_labels`, :meth:`Synthesizer.translate`) on the
    processed grid, where the segmenter trains: restoring to the native grid, compositing and the
    biomarkers of :meth:`Synthesizer.assemble` would be computed only to be thrown away.
    ``bases``: the real training cases by subject id (the base subjects are among them).
    """
    request = SynthesisRequest(group, n=n, seed=seed)
    batch = synth.make_labels(request)
    counts = [z for i, _, phase, z in batch.plan if phase == "ED"]
    # The class mean placed and decoded as the method places and decodes its samples (each base's LV
    # extent, the same decoder offsets), so that the arms differ by the sampling only.
    loaded = synth.base_subjects(batch.base_ids)
    pairs = class_mean_decode(
        synth.vae,
        synth.class_stats(group, "ED"),
        synth.class_stats(group, "ES"),
        counts,
        bases=[(b.processed.ed_label, b.processed.es_label) for b in loaded],
        logit_bias=synth.logit_bias(),
        extent_bias=synth.end_point_bias(request),
        extent_dithers=synth.placement_dithers(seed, n),
        apical_cap=synth.apical_cap,
    ).pairs
    mean_plan = [(i, 1.0, p, counts[i]) for i in range(n) for p in PHASES]
    mean_labels = np.concatenate([pair[j] for pair in pairs for j in range(2)])
    both = LabelBatch(
        request,
        batch.base_ids,
        [*batch.plan, *mean_plan],
        np.concatenate([batch.labels, mean_labels]),
        batch.territories,
    )
    images = synth.translate(both)
    stacks: dict[int, dict[str, tuple[npt.NDArray[Any], npt.NDArray[Any]]]] = {}
    means: dict[int, dict[str, tuple[npt.NDArray[Any], npt.NDArray[Any]]]] = {}
    offset = 0
    for k, (i, _, phase, z) in enumerate(both.plan):
        target = stacks if k < len(batch.plan) else means
        target.setdefault(i, {})[phase] = (images[offset : offset + z], both.labels[offset : offset + z])
        offset += z
    synthetic, class_mean, base_cases = [], [], []
    # severity 1: the class's slice spacing (cardiosynth.synthesis.scale), as the engine writes it
    stretch = batch.scale.slice_spacing if batch.scale is not None else 1.0
    for i, base_id in enumerate(batch.base_ids):
        base = bases[base_id]
        z_mm = base.spacing[0] * stretch
        name = f"{group.value}_{i:03d}"
        synthetic.append(_case(f"{tag}:syn-{name}", group, "synthetic", stacks[i], z_mm, size, (base_id,)))
        class_mean.append(_case(f"{tag}:mean-{name}", group, "class_mean", means[i], z_mm, size, (base_id,)))
        base_cases.append(base)
    return Generated(synthetic, class_mean, base_cases)


def elastic(
    cases: Sequence[Case], n: int, group: Group, seed: int, cfg: UtilityConfig, tag: str
) -> list[Case]:
    """``n`` cases (``cases`` in turn) under a random 2D elastic deformation per slice (MONAI
    ``Rand2DElasticd``, image bilinear, label nearest), deterministic by ``seed``."""
    from monai.transforms import Rand2DElasticd

    if not cases:
        raise ValueError(f"no {group.value} subjects to deform")
    scale = cfg.image_size / 128.0
    transform = Rand2DElasticd(
        keys=("image", "label"),
        spacing=max(2.0, cfg.elastic_spacing * scale),
        magnitude_range=(cfg.elastic_magnitude[0] * scale, cfg.elastic_magnitude[1] * scale),
        prob=1.0,
        rotate_range=0.2,
        scale_range=0.1,
        mode=("bilinear", "nearest"),
        padding_mode=("border", "zeros"),
    )
    transform.set_random_state(seed=int(np.random.default_rng([seed, 0xE1A5]).integers(2**31)))
    out = []
    for i in range(n):
        src = cases[i % len(cases)]
        images: dict[str, ImageStack] = {}
        labels: dict[str, Stack] = {}
        for p in PHASES:
            deformed = [
                transform({"image": img[None], "label": lab[None].astype(np.float32)})
                for img, lab in zip(src.images[p], src.labels[p], strict=True)
            ]
            images[p] = np.stack([np.asarray(d["image"])[0] for d in deformed]).astype(np.float32)
            labels[p] = np.stack([np.asarray(d["label"])[0] for d in deformed]).round().astype(np.uint8)
        out.append(
            Case(
                f"{tag}:elastic-{group.value}_{i:03d}",
                group,
                "elastic",
                images,
                labels,
                src.spacing,
                src.sources,
            )
        )
    return out


# --- training and testing ---------------------------------------------------------------------


@dataclass
class Trained:
    model: torch.nn.Module
    steps: int
    slices: int
    seconds: float


def train(cases: Sequence[Case], cfg: UtilityConfig, seed: int) -> Trained:
    """The UNet trained for exactly ``cfg.iterations`` optimiser steps on every slice of ``cases``
    (shuffled epochs, repeated as needed); augmentation: random flips on both axes and an intensity
    gain/offset jitter, the same in every arm."""
    if not cases:
        raise ValueError("no training cases")
    started = time.perf_counter()
    pairs = [c.slices() for c in cases]
    x_all = torch.from_numpy(np.concatenate([p[0] for p in pairs]))[:, None]
    y_all = torch.from_numpy(np.concatenate([p[1] for p in pairs]).astype(np.int64))[:, None]
    seed_everything(seed)
    model = build_segmenter(cfg.channels)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    steps, epoch = 0, 0
    while steps < cfg.iterations:
        for idx in epoch_batches(len(x_all), cfg.batch_size, seed, epoch):
            if steps >= cfg.iterations:
                break
            batch = torch.from_numpy(idx)
            x, y = x_all[batch], y_all[batch]
            flips = torch.rand(2, generator=generator)
            if flips[0] < 0.5:
                x, y = x.flip(-1), y.flip(-1)
            if flips[1] < 0.5:
                x, y = x.flip(-2), y.flip(-2)
            jitter = torch.randn(2, generator=generator)
            x = x * (1 + 0.1 * jitter[0]) + 0.05 * jitter[1]
            loss = loss_fn(model(x), y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            steps += 1
        epoch += 1
    model.eval()
    return Trained(model, steps, len(x_all), time.perf_counter() - started)


@torch.no_grad()
def predict(model: torch.nn.Module, images: ImageStack, batch_size: int = 64) -> Stack:
    model.eval()
    out = [
        model(torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size]))[:, None]).argmax(1)
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out).to(torch.uint8).numpy() if out else np.zeros(images.shape, np.uint8)


def hd95(pred: Stack, ref: Stack, spacing: tuple[float, float, float]) -> dict[int, float]:
    """95th-percentile Hausdorff distance (mm, MONAI) of each foreground class of two stacks
    ``(Z, S, S)``. A class present in one stack only scores the stack's diagonal (the worst
    distance there is); absent from both, 0."""
    from monai.metrics import compute_hausdorff_distance

    diagonal = float(np.sqrt(sum((n * s) ** 2 for n, s in zip(ref.shape, spacing, strict=True))))
    eye = np.eye(NUM_CLASSES, dtype=np.float32)
    p = torch.from_numpy(eye[pred].transpose(3, 0, 1, 2)[None])
    r = torch.from_numpy(eye[ref].transpose(3, 0, 1, 2)[None])
    with warnings.catch_warnings():
        # An empty class is handled below; MONAI's warning about it (and a deprecation inside MONAI's
        # own call chain) would only repeat in the log once per subject.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        values = compute_hausdorff_distance(
            p, r, include_background=False, percentile=95, spacing=list(spacing)
        )
    out = {}
    for i, c in enumerate(FOREGROUND):
        has_p, has_r = bool((pred == c).any()), bool((ref == c).any())
        if not has_p and not has_r:
            out[c] = 0.0
        elif has_p != has_r:
            out[c] = diagonal
        else:
            value = float(values[0, i])
            out[c] = value if math.isfinite(value) else diagonal
    return out


def clinical(ed: Stack, es: Stack, spacing: tuple[float, float, float]) -> dict[str, float]:
    """LVEDV (ml), LVEF and RVEF (%) and myocardial mass (g) of an ED/ES stack pair."""
    lv_edv, lv_esv = volume_ml(ed, spacing, LV_CAVITY), volume_ml(es, spacing, LV_CAVITY)
    rv_edv, rv_esv = volume_ml(ed, spacing, RV_CAVITY), volume_ml(es, spacing, RV_CAVITY)
    return {
        "lv_edv": lv_edv,
        "lv_ef": ejection_fraction(lv_edv, lv_esv),
        "rv_ef": ejection_fraction(rv_edv, rv_esv),
        "myo_mass": volume_ml(ed, spacing, LV_MYOCARDIUM) * MYOCARDIAL_DENSITY_G_PER_ML,
    }


def score_case(model: torch.nn.Module, case: Case) -> dict[str, float]:
    """Dice and HD95 per class (mean of ED and ES), their foreground means, and the absolute errors
    of the clinical figures, for one held-out subject."""
    preds = {p: predict(model, case.images[p]) for p in PHASES}
    out: dict[str, float] = {}
    dices = [dice_per_class(preds[p], case.labels[p], FOREGROUND) for p in PHASES]
    dists = [hd95(preds[p], case.labels[p], case.spacing) for p in PHASES]
    for c in FOREGROUND:
        out[f"dice:{LABEL_NAMES[c]}"] = float(np.mean([d[c] for d in dices]))
        out[f"hd95:{LABEL_NAMES[c]}"] = float(np.mean([d[c] for d in dists]))
    out["dice"] = float(np.mean([out[f"dice:{LABEL_NAMES[c]}"] for c in FOREGROUND]))
    out["hd95"] = float(np.mean([out[f"hd95:{LABEL_NAMES[c]}"] for c in FOREGROUND]))
    truth = clinical(case.labels["ED"], case.labels["ES"], case.spacing)
    found = clinical(preds["ED"], preds["ES"], case.spacing)
    for key in CLINICAL:
        error = abs(found[key] - truth[key])
        out[f"err:{key}"] = error if math.isfinite(error) else math.nan
    return out


METRICS: tuple[str, ...] = (
    "dice",
    *(f"dice:{LABEL_NAMES[c]}" for c in FOREGROUND),
    "hd95",
    *(f"hd95:{LABEL_NAMES[c]}" for c in FOREGROUND),
    *(f"err:{k}" for k in CLINICAL),
)


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def score_groups(model: torch.nn.Module, test: dict[Group, list[Case]]) -> dict[str, dict[str, float]]:
    """Per group, each metric's mean over its held-out subjects."""
    out = {}
    for group, cases in test.items():
        rows = [score_case(model, c) for c in cases]
        out[group.value] = {m: _nanmean([r[m] for r in rows]) for m in METRICS}
    return out


# --- protocols --------------------------------------------------------------------------------


@dataclass
class Protocol:
    """A real training set and the groups whose subjects the non-real arms add."""

    name: str
    real: list[Case]
    added: tuple[Group, ...]
    pool: str  # which synthesizer's subjects the method arms take
    elastic_sources: dict[Group, list[Case]]
    notes: list[str] = field(default_factory=list)
    # Real training subjects of the added groups that this protocol leaves out of ``real``: the pool
    # of the ``real+real`` ceiling arm.
    spare: dict[Group, list[Case]] = field(default_factory=dict)


def _draw(cases: Sequence[Case], k: int, seed: int, salt: int) -> list[Case]:
    order = np.random.default_rng([seed, salt]).permutation(len(cases))
    return sorted((cases[i] for i in order[:k]), key=lambda c: c.name)


def plan_protocols(train: dict[Group, list[Case]], cfg: UtilityConfig) -> list[Protocol]:
    """The protocols of ``cfg`` over the real training cases ``train`` (per group)."""
    protocols: list[Protocol] = []
    everyone = [c for g in GROUPS for c in train.get(g, [])]
    if "full" in cfg.protocols:
        protocols.append(Protocol("full", everyone, PATHOLOGIES, "full", {g: train[g] for g in PATHOLOGIES}))
    if "low_data" in cfg.protocols:
        low = {g: _draw(train[g], cfg.low_data, cfg.data_seed, i) for i, g in enumerate(GROUPS)}
        short = [f"{g.value}: {len(train[g])}" for g in GROUPS if len(train[g]) < cfg.low_data]
        notes = (
            [f"fewer training subjects than low_data={cfg.low_data} ({', '.join(short)})"] if short else []
        )
        spare = {g: [c for c in train[g] if c.name not in {k.name for k in low[g]}] for g in PATHOLOGIES}
        protocols.append(
            Protocol("low_data", [c for g in GROUPS for c in low[g]], PATHOLOGIES, "low_data",
                     {g: low[g] for g in PATHOLOGIES}, notes, spare)
        )  # fmt: skip
    if "missing" in cfg.protocols:
        for i, target in enumerate(cfg.missing_groups):
            kept = _draw(train[target], cfg.keep_missing, cfg.data_seed, 100 + i) if cfg.keep_missing else []
            real = [c for g in GROUPS if g is not target for c in train[g]] + kept
            spare = {target: [c for c in train[target] if c.name not in {k.name for k in kept}]}
            protocols.append(
                Protocol(f"missing:{target.value}", real, (target,), "full", {target: kept} if kept else {},
                         spare=spare)
            )  # fmt: skip
    return protocols


def _arm_cases(
    arm: str,
    protocol: Protocol,
    made: Callable[[str, Group], Generated],
    cfg: UtilityConfig,
) -> list[Case]:
    if arm == "real":
        return list(protocol.real)
    if arm == "synthetic":
        return [c for g in PATHOLOGIES for c in made(protocol.pool, g).synthetic]
    added: list[Case] = []
    if arm == "real+real":
        # As many as the synthetic arm adds (fewer if the protocol held back fewer), drawn the same
        # way for every seed, so the ceiling compares like with like.
        for i, g in enumerate(protocol.added):
            spare = protocol.spare.get(g, [])
            added += _draw(spare, min(cfg.synthetic_per_group, len(spare)), cfg.data_seed, 200 + i)
        return list(protocol.real) + added
    for g in protocol.added:
        gen = made(protocol.pool, g)
        if arm == "real+synthetic":
            added += gen.synthetic
        elif arm == "real+class_mean":
            added += gen.class_mean
        elif arm == "real+elastic":
            # Without real subjects of the group, the NOR bases the method started from.
            src = protocol.elastic_sources.get(g) or gen.bases
            added += elastic(src, len(gen.synthetic), g, cfg.data_seed, cfg, protocol.name)
        else:
            raise ValueError(f"unknown arm {arm!r}")
    return list(protocol.real) + added


# What an arm's report says of its training set (a resumed arm takes these over with its runs).
TRAINING_SET_KEYS = ("cases", "origins", "sources")


def _training_set(cases: Sequence[Case]) -> dict[str, Any]:
    """An arm's training set as its report records it: size, origins and source subjects."""
    origins = ("real", "synthetic", "elastic", "class_mean")
    return {
        "cases": len(cases),
        "origins": {o: sum(c.origin == o for c in cases) for o in origins},
        "sources": sorted({s for c in cases for s in c.sources}),
    }


def _summary(per_seed: Sequence[dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per group and metric: mean and sample standard deviation over seeds (0 for one seed)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for group in per_seed[0]:
        out[group] = {}
        for m in METRICS:
            values = [r[group][m] for r in per_seed if math.isfinite(r[group][m])]
            mean = float(np.mean(values)) if values else math.nan
            sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            out[group][m] = {"mean": mean, "sd": sd}
    return out


def run_utility(
    vae: LabelVAE,
    spade: SpadeTranslator,
    data_root: Path,
    cfg: UtilityConfig,
    *,
    model_versions: dict[str, str] | None = None,
    cache_dir: Path | None = None,
    checkpoint: Callable[[dict[str, Any]], None] | None = None,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run every protocol and arm of ``cfg`` on the data under ``data_root``; return the report.

    Protocol (c) runs first (its figures are the targets), then (a) and (b); ``checkpoint`` gets the
    report so far after each arm (``pending`` lists the protocols not finished), so that a run cut
    short still leaves what it finished. ``previous``: such a report (as read from JSON) of the same
    configuration, split and models; its finished runs are taken over instead of trained again
    (every run is deterministic by its seed).

    Raises:
        ValueError: the data lack a group, or ``previous`` was made with another configuration,
            split or models (naming what differs).
    """
    started = time.perf_counter()
    cpu_started = time.process_time()
    refs = sources.scan(Path(data_root))
    split = split_subjects(refs, cfg.train_fraction, cfg.split_seed)
    missing = [g.value for g in GROUPS if g not in split.train]
    if missing:
        raise ValueError(f"the data under {data_root} has no subjects of {missing}")
    size = cfg.image_size
    log.info("loading %d subjects", sum(len(v) for v in (*split.train.values(), *split.held_out.values())))
    train_cases = {g: [real_case(sources.load(r), g, size) for r in split.train[g]] for g in GROUPS}
    test = {g: [real_case(sources.load(r), g, size) for r in split.held_out[g]] for g in GROUPS}
    protocols = plan_protocols(train_cases, cfg)
    timings: dict[str, float] = {"load": time.perf_counter() - started}

    pool_refs: dict[str, list[sources.SubjectRef]] = {"full": split.train_refs()}
    low = next((p for p in protocols if p.pool == "low_data"), None)
    if low is not None:
        ids = {c.name for c in low.real}
        pool_refs["low_data"] = [r for r in split.train_refs() if r.subject_id in ids]
    statistics = {pool: sorted(r.subject_id for r in refs) for pool, refs in pool_refs.items()}
    by_id = {c.name: c for cases in train_cases.values() for c in cases}
    split_ids = {
        g.value: {
            "train": [r.subject_id for r in split.train[g]],
            "held_out": [r.subject_id for r in split.held_out[g]],
        }
        for g in GROUPS
    }
    reuse = _previous_runs(previous, cfg, split_ids, dict(model_versions or {}))
    taken = _previous_arms(previous) if reuse else {}
    # Link folders of the synthesis pools, for the whole run (removed at the end, or by the object's
    # finaliser if the run fails).
    tmp = tempfile.TemporaryDirectory(prefix="cardiosynth-utility-")
    synths: dict[str, Synthesizer] = {}
    made: dict[tuple[str, Group], Generated] = {}

    def generated(pool: str, group: Group) -> Generated:
        """Made on first use, so that the runs that need nothing new start at once."""
        if (pool, group) not in made:
            t0 = time.perf_counter()
            if pool not in synths:
                root = link_folder(pool_refs[pool], Path(tmp.name) / pool)
                synths[pool] = Synthesizer(
                    vae, spade, root, model_versions=model_versions, cache_dir=cache_dir
                )
            log.info(
                "synthesising %d %s subjects from the %s pool", cfg.synthetic_per_group, group.value, pool
            )
            made[(pool, group)] = generate(
                synths[pool], group, cfg.synthetic_per_group, cfg.data_seed, size, pool, by_id
            )
            timings[f"synthesis:{pool}"] = timings.get(f"synthesis:{pool}", 0.0) + time.perf_counter() - t0
        return made[(pool, group)]

    cache: dict[tuple[tuple[str, ...], int], dict[str, Any]] = {}
    report_protocols: dict[str, Any] = {}
    train_seconds = 0.0
    order = sorted(protocols, key=lambda p: not p.name.startswith("missing:"))

    def assemble(pending: Sequence[Protocol]) -> dict[str, Any]:
        timings["train_and_test"] = train_seconds
        timings["total"] = time.perf_counter() - started
        timings["cpu"] = time.process_time() - cpu_started  # this process's CPU time, load aside
        report: dict[str, Any] = {
            "config": cfg.to_dict(),
            "data": str(data_root),
            "models": dict(model_versions or {}),
            "split": split_ids,
            "statistics_subjects": statistics,
            # In the report's order (a, b, c) whatever the order they ran in.
            "protocols": {p.name: report_protocols[p.name] for p in protocols if p.name in report_protocols},
            "pending": [p.name for p in pending],
            "timings_s": {k: round(v, 1) for k, v in timings.items()},
        }
        report["targets"] = check_targets(report)
        return report

    for done, protocol in enumerate(order):
        arms: dict[str, Any] = {}
        report_protocols[protocol.name] = {
            "real_subjects": {g.value: sorted(c.name for c in protocol.real if c.group is g) for g in GROUPS},
            "added_groups": [g.value for g in protocol.added],
            "pool": protocol.pool,
            "elastic_from": {
                g.value: ("real" if protocol.elastic_sources.get(g) else "NOR bases") for g in protocol.added
            },
            "notes": protocol.notes,
            "arms": arms,  # filled arm by arm
        }
        for index, arm in enumerate(cfg.arms):
            if arm == "real+real" and not any(protocol.spare.get(g) for g in protocol.added):
                note = "real+real skipped: this protocol holds no real subject of its added groups back"
                report_protocols[protocol.name]["notes"] = [*protocol.notes, note]
                continue
            runs: dict[str, Any]
            finished = taken.get((protocol.name, arm))
            if finished is not None and all((protocol.name, arm, seed) in reuse for seed in cfg.seeds):
                # Every run of this arm is in the previous report: take the arm over whole, without
                # building its training set (no synthesis for an arm that trains nothing).
                training = {k: finished[k] for k in TRAINING_SET_KEYS}
                runs = {str(seed): reuse[(protocol.name, arm, seed)] for seed in cfg.seeds}
                log.info("%s / %s: every run taken from the previous report", protocol.name, arm)
            else:
                cases = _arm_cases(arm, protocol, generated, cfg)
                training = _training_set(cases)
                runs = {}
                for seed in cfg.seeds:
                    key = (tuple(sorted(c.name for c in cases)), seed)
                    if key not in cache and (protocol.name, arm, seed) in reuse:
                        cache[key] = reuse[(protocol.name, arm, seed)]
                        log.info(
                            "%s / %s / seed %d: taken from the previous report", protocol.name, arm, seed
                        )
                    elif key not in cache:
                        trained = train(cases, cfg, seed)
                        t0 = time.perf_counter()
                        groups = score_groups(trained.model, test)
                        cache[key] = {
                            "steps": trained.steps,
                            "slices": trained.slices,
                            "train_s": round(trained.seconds, 2),
                            "test_s": round(time.perf_counter() - t0, 2),
                            "groups": groups,
                        }
                        train_seconds += trained.seconds + cache[key]["test_s"]
                        log.info(
                            "%s / %s / seed %d: %d cases, %d slices, %d steps, %.1f s; mean Dice %s",
                            protocol.name, arm, seed, len(cases), trained.slices, trained.steps,
                            trained.seconds, {g: round(v["dice"], 3) for g, v in groups.items()},
                        )  # fmt: skip
                    else:
                        log.info(
                            "%s / %s / seed %d: the same training set as an earlier run",
                            protocol.name,
                            arm,
                            seed,
                        )
                    runs[str(seed)] = cache[key]
            arms[arm] = {**training, "runs": runs, "summary": _summary([r["groups"] for r in runs.values()])}
            # After every arm, the protocols not finished yet (this one while it has arms to go).
            pending = order[done:] if index + 1 < len(cfg.arms) else order[done + 1 :]
            if checkpoint is not None and pending:
                checkpoint(assemble(pending))
    tmp.cleanup()
    return assemble([])


def _previous_runs(
    previous: dict[str, Any] | None,
    cfg: UtilityConfig,
    split: dict[str, Any],
    models: dict[str, str],
) -> dict[tuple[str, str, int], dict[str, Any]]:
    """The finished runs of ``previous`` by (protocol, arm, seed), after checking that it was made
    with the same configuration, split and models."""
    if previous is None:
        return {}
    mine = json.loads(json.dumps(cfg.to_dict()))
    # Which arms run changes no run's result (each is keyed by protocol, arm and seed, trained from
    # its own seed), so a report can be extended by an arm; every other setting must match.
    differs = sorted(k for k in mine if k != "arms" and previous.get("config", {}).get(k) != mine[k])
    if previous.get("split") != split:
        differs.append("split")
    if previous.get("models") != models:
        differs.append("models")
    if differs:
        raise ValueError(f"the previous report differs in {differs}: cannot take its runs over")
    out: dict[tuple[str, str, int], dict[str, Any]] = {}
    for name, proto in previous.get("protocols", {}).items():
        for arm, result in proto.get("arms", {}).items():
            for seed, run in result.get("runs", {}).items():
                groups = {
                    g: {m: math.nan if v is None else float(v) for m, v in values.items()}
                    for g, values in run["groups"].items()
                }
                out[(name, arm, int(seed))] = {**run, "groups": groups}
    return out


def _previous_arms(previous: dict[str, Any] | None) -> dict[tuple[str, str], dict[str, Any]]:
    """The arms of ``previous`` (already checked by :func:`_previous_runs`) that record their training
    set (size, origins and sources), by (protocol, arm)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for name, proto in (previous or {}).get("protocols", {}).items():
        for arm, result in proto.get("arms", {}).items():
            if all(k in result for k in TRAINING_SET_KEYS):
                out[(name, arm)] = result
    return out


def check_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Protocol (c), per missing group G: real+synthetic vs real on G's held-out subjects (Dice gain
    >= 0.03, lower HD95, lower LVEF error), beats real+elastic on G, and loses no more than 0.01 Dice
    on any other group."""
    out: list[dict[str, Any]] = []
    for name, proto in report["protocols"].items():
        if not name.startswith("missing:"):
            continue
        arms = proto["arms"]
        if "real+synthetic" not in arms or "real" not in arms:
            continue
        group = name.split(":", 1)[1]
        syn = arms["real+synthetic"]["summary"]
        real = arms["real"]["summary"]
        gain = syn[group]["dice"]["mean"] - real[group]["dice"]["mean"]
        row: dict[str, Any] = {
            "protocol": name,
            "group": group,
            "dice_real": real[group]["dice"]["mean"],
            "dice_synthetic": syn[group]["dice"]["mean"],
            "dice_gain": gain,
            "gain_met": bool(gain >= TARGET_GAIN),
            "hd95_real": real[group]["hd95"]["mean"],
            "hd95_synthetic": syn[group]["hd95"]["mean"],
            "hd95_improves": bool(syn[group]["hd95"]["mean"] < real[group]["hd95"]["mean"]),
            "lvef_err_real": real[group]["err:lv_ef"]["mean"],
            "lvef_err_synthetic": syn[group]["err:lv_ef"]["mean"],
            "lvef_improves": bool(syn[group]["err:lv_ef"]["mean"] < real[group]["err:lv_ef"]["mean"]),
        }
        if "real+real" in arms:
            # The ceiling: what the same number of real subjects of the group gains. A target above
            # it is out of reach for any synthetic data on this data set.
            ceiling = arms["real+real"]["summary"][group]["dice"]["mean"]
            row["dice_real_more"] = ceiling
            row["ceiling_gain"] = ceiling - real[group]["dice"]["mean"]
            row["ceiling_allows_target"] = bool(row["ceiling_gain"] >= TARGET_GAIN)
        if "real+elastic" in arms:
            el = arms["real+elastic"]["summary"][group]["dice"]["mean"]
            row["dice_elastic"] = el
            row["beats_elastic"] = bool(syn[group]["dice"]["mean"] > el)
        drops = {g: syn[g]["dice"]["mean"] - real[g]["dice"]["mean"] for g in syn if g != group}
        row["worst_other"] = min(drops.items(), key=lambda kv: kv[1]) if drops else None
        row["others_kept"] = bool(all(d >= -TARGET_OTHERS for d in drops.values()))
        row["met"] = bool(row["gain_met"] and row.get("beats_elastic", True) and row["others_kept"])
        out.append(row)
    return out
