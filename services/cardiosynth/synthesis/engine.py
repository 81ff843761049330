"""The method end to end over a data folder and two loaded models (used by the CLI and evaluation;
the service's workers call the same stages one queue at a time).

encode -> equalise over the LV extent -> class statistics (cached) -> correlated Gaussian-copula sample
(or the base shifted into the class) -> interpolate by severity -> resample into the base subject's LV
extent (its atrial and post-apical slices kept) -> decode (labels and their probabilities) -> ES moved
to the class's in-plane ED -> ES motion (:mod:`.motion`) -> ES sectors widened to the class's regional
contraction (:mod:`.contraction`) -> clean up -> translate -> restore to the base subject's native
geometry (labels from the probabilities).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, cast

import numpy as np
import numpy.typing as npt
import torch

from cardiosynth.data.acdc import Subject, read_subject
from cardiosynth.data.biomarkers import Biomarkers, compute_biomarkers
from cardiosynth.data.classify import classify
from cardiosynth.data.labels import BACKGROUND, LV_CAVITY, LV_MYOCARDIUM, RV_CAVITY, Group
from cardiosynth.data.preprocess import (
    Geometry,
    LabelInterpolation,
    PreprocessedSubject,
    check_label_interpolation,
    composite_image,
    restore_image,
    restore_labels,
    restore_probabilities,
)
from cardiosynth.data.territory import TERRITORIES, check_territory, estimate_territory
from cardiosynth.data.topology import clean_labels as clean_label_stack
from cardiosynth.device import model_device, place, resolve_precision
from cardiosynth.models.spade import SpadeTranslator
from cardiosynth.models.vae import LabelVAE
from cardiosynth.parallel import thread_map
from cardiosynth.storage.base import ObjectStore
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.calibration import (
    DecoderCalibration,
    RoundTripEvidence,
    ZonedCalibration,
    calibrate,
    calibration_key,
    extent_zones,
    sampling_calibration_key,
)
from cardiosynth.synthesis.contraction import ContractionCalibration, sector_contraction
from cardiosynth.synthesis.contraction import calibrate_batch as calibrate_contraction
from cardiosynth.synthesis.equalise import (
    NS_DEFAULT,
    dither_pair,
    equalise_lv,
    extent_offsets,
    lv_extent,
    restore_lv,
    target_extent,
)
from cardiosynth.synthesis.modes import (
    DEFAULT_CORRELATION,
    DEFAULT_INTERPOLATION,
    CorrelationMode,
    Interpolation,
    check_interpolation,
    check_mode,
)
from cardiosynth.synthesis.motion import MotionCalibration, calibrate_batch, mid_displacements
from cardiosynth.synthesis.sampling import (
    copula_transform,
    gaussian_scores,
    interpolate,
    paper_slice_factor,
    shift_target,
)
from cardiosynth.synthesis.scale import IDENTITY, ClassScale, HeartBody, class_scale, lv_long_axis_mm
from cardiosynth.synthesis.stages import (
    Decoded,
    decode_logits,
    decode_slices,
    encode_stacks,
    stage_batch_size,
    translate_slices,
)
from cardiosynth.synthesis.stats import ClassStats, compute_class_stats, stats_key

log = logging.getLogger(__name__)
T = TypeVar("T")

PHASES = ("ED", "ES")
MAX_SUBJECTS = 100  # subjects made in one pass (make_labels without ``subjects``; the CLI, a dataset request)
# A service job: made in chunks of subjects (make_labels with ``subjects``), so memory does not grow with n.
MAX_JOB_SUBJECTS = 5000
MAX_TRAJECTORY = 20
# Slices translated between two progress reports (and cancellation checks) in the SPADE half: a few
# seconds of CPU work per chunk, a fraction of a second on a GPU.
TRANSLATE_CHUNK = 128
# On a GPU a job is translated in at least this many parts (when it has more than TRANSLATE_CHUNK
# slices), so that the CPU work of assembling one part overlaps the device's work on the next
# (Synthesizer.stream); one part is never more than one translate batch by free memory.
GPU_PARTS = 4
# Encoding (base subjects, class statistics) always runs in fp32: the statistics are cached and shared
# by every worker, so a bf16 GPU worker must compute the same latents as a CPU worker. It is cheap.
FP32: dict[str, Any] = {"precision": "fp32"}
# Fewer MINF subjects than this in a territory: its statistics would be noise, pool the class instead.
# 2, not 3 (reports/synthesis-phantom-v2/joint/README.md): with the evaluation's training split (LCx and
# RCA 2 subjects each) pooling averaged the infarcts of different territories away; their own
# statistics raised the MINF row from precision / recall 0.50 / 0.25 and 30 % MINF to 0.70 / 0.62 and
# 50 %, and put synthetic LCx infarcts in LCx 20/20 on the whole phantom (pooled: no territory).
MIN_TERRITORY_SUBJECTS = 2
# Subjects of the data set whose round trip fits the decoder's volume calibration (every one up to
# this many, else this many spread evenly over the sorted list): a few thousand slices are plenty for
# four offsets, and a data set of thousands would otherwise be read in full once.
CALIBRATION_SUBJECTS = 100
# End points per class and phase whose decoded LV extents fit its sampling calibration (Synthesizer.
# sampling_calibration), drawn as make_labels draws them with this seed: about 1,250 slices, 10-15 s
# on 2 CPU cores, once per class, phase, mode and family (cached). Fewer: the mean a fit matches is a
# mean over this many synthetic subjects (SD about 24 % per subject; 128 independent draws put it within
# about 2 %, 128 in antithetic pairs within about 0.5 %: SAMPLING_CALIBRATION_ANTITHETIC).
SAMPLING_CALIBRATION_SUBJECTS = 128  # a worker: CARDIOSYNTH_SAMPLING_CALIBRATION_SUBJECTS, same default
SAMPLING_CALIBRATION_SEED = 7919
# Antithetic end points (pairs sharing a base, the second with the first's Gaussian scores negated):
# the part of a subject's decoded area that is linear in its scores cancels within each pair, so the
# fitted mean depends less on which end points were drawn. Over six seeds of 128 end points (ED) the
# SD of the myocardial over-call the fit corrects fell from 0.024 to 0.006 (DCM), 0.013 to 0.004
# (HCM), 0.013 to 0.003 (NOR), 0.009 to 0.007 (RV), and the fitted offsets' from 0.19-0.85 to
# 0.03-0.13 logits (reports/synthesis-phantom-v2/cohort/sampling_calibration_noise.txt).
SAMPLING_CALIBRATION_ANTITHETIC = True
# What the sampling calibration fits (part of its cache key and of the motion and contraction
# calibrations', which draw through it): the LV's areas over its extent, and with calibrate_rv the
# RV's mean volume as well (Synthesizer.sampling_calibration).
SAMPLING_CALIBRATION_TARGET = {False: "lv-extent-areas", True: "lv-extent-areas+rv-volume"}
# Zones of the LV extent, base to apex, whose areas the sampling calibration fits each with offsets of
# their own (calibration.extent_zones; Synthesizer(sampling_zones=...)). One zone, the extent's mean
# area per slice, leaves the error along the ventricle in place (DCM's basal myocardium 5-18 % over
# the class's, its walls there 0.8 mm too thick), but 3 or 6 zones did not bring the thickest wall
# nearer the class's (DCM 11.42 -> 11.08 mm, real 10.34; RV 10.64 -> 10.78, real 9.80; NOR 9.65 ->
# 9.85, real 9.52: reports/synthesis-phantom-v2/cohort/sampling_zones.txt), so one it stays.
SAMPLING_CALIBRATION_ZONES = 1
# Whether LV extents run to the last slice with LV myocardium (the apical cap) rather than the last
# with an LV cavity (equalise.lv_extent; Synthesizer(apical_cap=...)). With the cap the synthetic apex
# is the real class's shape, but on a NOR base whose stack ends before its own cap the class's LV ends
# in a cap where cavity was, and the pathologies lose 2-4 % of mass and volume: 53 row targets over two
# seeds against 57, HCM's rule fidelity 90 -> 70 % on one
# (reports/synthesis-phantom-v2/cohort/README.md, cap-seed0/, cap-seed1/). So the cavity's it stays.
APICAL_CAP = False
# Synthetic subjects whose ED -> ES in-plane motion fits the motion calibration (Synthesizer.
# motion_calibration; synthesis.motion says why): made as make_labels makes them at severity 1, with
# this seed, once per class, mode and family (cached); about 1,300 slices, 10-20 s on 2 CPU cores.
MOTION_CALIBRATION_SUBJECTS = 64
MOTION_CALIBRATION_SEED = 104729
# A MINF territory's motion is calibrated on its own real subjects only from this many on: the
# spread and the mean's noise of fewer are no estimate (the default phantom's training LCx has 2
# subjects, whose slices' spread of 0.46 px would have halved every synthetic LCx heart's motion
# against LAD's 0.96). Fewer: the pooled MINF calibration, as a territory's statistics pool.
MIN_MOTION_TERRITORY_SUBJECTS = 5
# A MINF territory's regional contraction is calibrated from this many real subjects on; fewer: not
# at all. Two subjects give a standard error of one degree of freedom: the default phantom's two
# training LCx subjects agree within 0.01 in every sector, so their 0.22 in sectors 0 and 5 (held-out
# LCx: 0.29) passed as the class's and cut synthetic contraction there. The infarct's own sector is
# what differs by many standard errors (RCA's 4 subjects: only that sector's gain is below 1).
MIN_CONTRACTION_TERRITORY_SUBJECTS = 3
# Base subjects a Synthesizer keeps read and preprocessed: twice a service chunk's (16 by default), so a
# chunk never reloads its own bases, and at most a few hundred MiB however many NOR subjects a data
# set has.
BASE_CACHE_DEFAULT = 32
# Format of a cached class scale (:meth:`Synthesizer.class_scale`); a new one is measured afresh.
SCALE_FORMAT = "v1"


@dataclass(frozen=True)
class SynthesisRequest:
    """What to make. ``severities`` in (0, 1]; ``base_subjects`` pins the NOR subjects used.

    ``interpolation``: ``sample`` (the paper's, towards a fresh class sample) or ``shift`` (the base
    transported into the class's distribution, keeping its identity); ``shift_residual`` in [0, 1]:
    the share of a sampled copula residual mixed into ``shift`` (0: deterministic per base subject,
    seed and correlation mode then do not matter). See :mod:`cardiosynth.synthesis.sampling`.

    ``territory`` (MINF only): the coronary territory of the infarct, ``LAD``, ``LCx`` or ``RCA``
    (:mod:`cardiosynth.data.territory`); the class statistics then come from the MINF subjects whose
    territory, estimated from their labels, matches. ``None``: drawn per synthetic subject, seeded,
    with the territory frequencies of the data set's MINF subjects.
    """

    pathology: Group
    n: int = 1
    seed: int = 0
    severities: tuple[float, ...] = (1.0,)
    correlation: CorrelationMode = DEFAULT_CORRELATION
    phases: tuple[str, ...] = PHASES
    base_subjects: tuple[str, ...] = ()
    ns: int = NS_DEFAULT
    interpolation: Interpolation = DEFAULT_INTERPOLATION
    shift_residual: float = 0.0
    territory: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.n <= MAX_JOB_SUBJECTS:
            raise ValueError(f"n must be in 1..{MAX_JOB_SUBJECTS}, got {self.n}")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be in [0, 2^32), got {self.seed}")
        if not self.severities or any(not 0.0 < s <= 1.0 for s in self.severities):
            raise ValueError(f"severities must be in (0, 1], got {list(self.severities)}")
        check_mode(self.correlation)
        check_interpolation(self.interpolation)
        if not 0.0 <= self.shift_residual <= 1.0:
            raise ValueError(f"shift_residual must be in [0, 1], got {self.shift_residual}")
        if (
            not self.phases
            or any(p not in PHASES for p in self.phases)
            or len(set(self.phases)) != len(self.phases)
        ):
            raise ValueError(f"phases must be a non-empty subset of {list(PHASES)}, got {list(self.phases)}")
        if self.ns < 2:
            raise ValueError(f"ns must be at least 2, got {self.ns}")
        if self.territory is not None:
            object.__setattr__(self, "territory", check_territory(self.territory))  # canonical case
            if self.pathology is not Group.MINF:
                raise ValueError(
                    f"territory {self.territory!r} applies to MINF only, not to {self.pathology.value}"
                )

    @staticmethod
    def trajectory(steps: int) -> tuple[float, ...]:
        """``steps`` evenly spaced severities ending at 1.0 (e.g. 5 -> 0.2, 0.4, ..., 1.0)."""
        if not 1 <= steps <= MAX_TRAJECTORY:
            raise ValueError(f"trajectory must have 1..{MAX_TRAJECTORY} steps, got {steps}")
        return tuple(round((i + 1) / steps, 6) for i in range(steps))

    def provenance(self) -> dict[str, Any]:
        return {
            "pathology": self.pathology.value,
            "seed": self.seed,
            "severities": list(self.severities),
            "correlation": self.correlation,
            "phases": list(self.phases),
            "ns": self.ns,
            "interpolation": self.interpolation,
            "shift_residual": self.shift_residual,
            "territory": self.territory,
        }


@dataclass
class SyntheticPhase:
    """One phase of one synthetic subject at one severity, processed grid and native grid."""

    labels: npt.NDArray[np.uint8]  # (Z, S, S)
    images: npt.NDArray[np.float32]  # (Z, S, S) in [-1, 1]
    native_labels: npt.NDArray[np.uint8]  # (X, Y, Z)
    native_image: npt.NDArray[np.float32]  # (X, Y, Z), base subject's intensity scale


@dataclass
class SyntheticSubject:
    """A synthetic subject: for each severity, each requested phase; plus provenance."""

    name: str
    index: int
    base: Subject
    geometry: Geometry
    severities: tuple[float, ...]
    phases: dict[float, dict[str, SyntheticPhase]]
    base_stacks: dict[str, tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8]]]  # phase -> (images, labels)
    biomarkers: dict[float, Biomarkers | None] = field(default_factory=dict)
    diagnosis: dict[float, dict[str, Any]] = field(default_factory=dict)
    territory: str | None = None  # MINF: the infarct territory whose statistics made this subject
    # The class's length and body at each severity (:mod:`.scale`); a severity not here: the base's.
    scales: dict[float, ClassScale] = field(default_factory=dict)

    def scale(self, severity: float) -> ClassScale:
        return self.scales.get(severity, IDENTITY)

    def spacing(self, severity: float) -> tuple[float, float, float]:
        """Voxel size (mm) of the volumes at ``severity``: the base's, its slice spacing scaled."""
        return self.scale(severity).spacing(self.base.spacing)

    def affine(self, severity: float) -> npt.NDArray[np.float64]:
        """Voxel-to-world affine of the volumes at ``severity`` (:meth:`.ClassScale.affine`)."""
        return self.scale(severity).affine(self.base.affine, int(self.base.ed_label.shape[2]))

    def body(self, severity: float) -> tuple[float | None, float | None]:
        """Height (cm) and weight (kg) at ``severity``, over which the indices are taken."""
        return self.scale(severity).body(self.base.info.height, self.base.info.weight)


Progress = Callable[[str, int, int], None]
Stack = npt.NDArray[np.uint8]


def label_stack(p: PreprocessedSubject, phase: str, image: bool = False) -> npt.NDArray[Any]:
    """The processed label (or image) stack ``(Z, S, S)`` of ``phase``."""
    stacks = p.phase(phase)
    return stacks.image if image else stacks.label


@dataclass
class LabelBatch:
    """What the VAE half hands to the SPADE half: decoded label slices of every (subject, severity,
    phase) stack in ``plan`` order, with the base subject of each synthetic subject.

    Serialised as ``.npz`` (no pickle) so that it can travel through the object store between the
    two worker kinds; task messages carry only its key.

    ``clean_pending``: the labels are not cleaned yet (``make_labels(defer_clean=True)``): only
    :meth:`Synthesizer.stream` takes such a batch (it cleans each part before translating it); it
    cannot be serialised, translated or assembled as it is.

    ``scale``: the class's length and body at severity 1 (:mod:`.scale`), applied by severity when
    the batch is assembled; ``None`` (batches written before, or a Synthesizer with
    ``scale_to_class`` off): the base's own.

    ``probabilities`` ``(N, C, S, S)`` uint8 (:class:`.stages.Decoded`): the decoder's probabilities
    that ``labels`` were taken from, before any clean-up; with them the labels are put back on the
    base's native grid from the probabilities (one rasterisation, the boundary between pixels kept:
    :func:`cardiosynth.data.preprocess.restore_probabilities`), the clean-up's corrections kept.
    ``None`` (batches written before, or a Synthesizer with ``soft_restore`` off): from the labels.
    They take four times the labels' bytes in memory, much less in a compressed ``.npz``.
    """

    request: SynthesisRequest
    base_ids: list[str]
    plan: list[tuple[int, float, str, int]]  # (subject index, severity, phase, slices)
    labels: npt.NDArray[np.uint8]  # (N, S, S)
    territories: list[str | None] = field(default_factory=list)  # per synthetic subject (MINF)
    clean_pending: bool = False
    probabilities: npt.NDArray[np.uint8] | None = None  # (N, C, S, S), softmax x 255
    scale: ClassScale | None = None

    def __post_init__(self) -> None:
        if self.probabilities is not None and (
            self.probabilities.ndim != 4
            or self.probabilities.shape[0] != len(self.labels)
            or self.probabilities.shape[2:] != self.labels.shape[1:]
        ):
            raise ValueError(
                f"probabilities of shape {self.probabilities.shape} for labels of shape {self.labels.shape}"
            )

    def to_bytes(self) -> bytes:
        import io
        import json

        _check_cleaned(self, "serialised")
        buffer = io.BytesIO()
        meta = {
            "request": {**self.request.provenance(), "n": self.request.n,
                        "base_subjects": list(self.request.base_subjects)},
            "base_ids": self.base_ids,
            "plan": [list(p) for p in self.plan],
            "territories": self.territories,
            "scale": None if self.scale is None else self.scale.to_dict(),
        }  # fmt: skip
        meta_array = np.array(json.dumps(meta))
        if self.probabilities is None:
            np.savez_compressed(buffer, labels=self.labels, meta=meta_array)
        else:
            np.savez_compressed(buffer, labels=self.labels, meta=meta_array, probabilities=self.probabilities)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> LabelBatch:
        import io
        import json

        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            labels = z["labels"]
            probabilities = z["probabilities"] if "probabilities" in z.files else None
        r = meta["request"]
        request = SynthesisRequest(
            pathology=Group(r["pathology"]),
            n=int(r["n"]),
            seed=int(r["seed"]),
            severities=tuple(float(x) for x in r["severities"]),
            correlation=r["correlation"],
            phases=tuple(r["phases"]),
            base_subjects=tuple(r["base_subjects"]),
            ns=int(r["ns"]),
            # Batches written before these fields existed were made by ``sample``.
            interpolation=r.get("interpolation", "sample"),
            shift_residual=float(r.get("shift_residual", 0.0)),
            territory=r.get("territory"),
        )
        plan = [(int(i), float(a), str(ph), int(z)) for i, a, ph, z in meta["plan"]]
        territories = list(meta.get("territories", []))
        scale = meta.get("scale")
        return cls(
            request, list(meta["base_ids"]), plan, labels, territories, probabilities=probabilities,
            scale=None if scale is None else ClassScale.from_dict(scale),
        )  # fmt: skip

    def select(self, indices: Sequence[int]) -> LabelBatch:
        """The part of the batch that makes synthetic subjects ``indices``: their plan entries and
        slices in plan order, with subject indices, base ids and territories unchanged (so the part's
        subjects keep their names), for translating and writing a few subjects at a time."""
        wanted = set(indices)
        if not wanted <= set(range(len(self.base_ids))):
            raise ValueError(f"subject indices {sorted(wanted)} outside 0..{len(self.base_ids) - 1}")
        bounds = np.cumsum([0, *(p[3] for p in self.plan)])
        keep = [k for k, p in enumerate(self.plan) if p[0] in wanted]

        def rows(array: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
            return np.concatenate([array[bounds[k] : bounds[k + 1]] for k in keep]) if keep else array[:0]

        return LabelBatch(
            self.request,
            self.base_ids,
            [self.plan[k] for k in keep],
            rows(self.labels),
            self.territories,
            self.clean_pending,
            rows(self.probabilities) if self.probabilities is not None else None,
            self.scale,
        )


def _check_cleaned(batch: LabelBatch, what: str) -> None:
    if batch.clean_pending:
        raise ValueError(
            f"this label batch's clean-up was deferred (make_labels(defer_clean=True)): it cannot be {what}; "
            "pass it to Synthesizer.stream, which cleans each part first"
        )


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


class StatsCache:
    """Class statistics in a folder (CLI) or an object store (service); neither: no caching."""

    def __init__(self, root: Path | None = None, store: ObjectStore | None = None) -> None:
        self.root = root
        self.store = store

    def get_bytes(self, key: str) -> bytes | None:
        """The artefact under ``key``, ``None`` when there is none (or no cache)."""
        if self.store is not None:
            try:
                return self.store.get_bytes(key)
            except KeyError:
                return None
        if self.root is None or not (self.root / key).is_file():
            return None
        return (self.root / key).read_bytes()

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` (a folder: written whole, then renamed into place)."""
        if self.store is not None:
            self.store.put_bytes(key, data)
            return
        if self.root is None:
            return
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    def get(self, key: str) -> ClassStats | None:
        data = self.get_bytes(key)
        return None if data is None else ClassStats.from_bytes(data)

    def put(self, key: str, stats: ClassStats) -> None:
        self.put_bytes(key, stats.to_bytes())


def choose_bases(nor: Sequence[sources.SubjectRef], request: SynthesisRequest) -> list[sources.SubjectRef]:
    """The base NOR subject of each synthetic subject: the pinned ones in turn, else a seeded draw
    that uses every NOR subject once before repeating any."""
    if request.base_subjects:
        known = {r.subject_id: r for r in nor}
        missing = [s for s in request.base_subjects if s not in known]
        if missing:
            raise ValueError(f"base subjects {missing} are not NOR subjects of this data set")
        return [known[request.base_subjects[i % len(request.base_subjects)]] for i in range(request.n)]
    if not nor:
        raise ValueError("the data set has no NOR subject to start from")
    rng = np.random.default_rng([request.seed, 0xBA5E])
    order: list[sources.SubjectRef] = []
    while len(order) < request.n:
        order.extend(nor[i] for i in rng.permutation(len(nor)))
    return order[: request.n]


# The random stream of a synthetic subject's extent dither (extent_dither): a generator of its own, so
# that drawing it leaves the subject's latent draws as they were.
EXTENT_DITHER_STREAM = 0xD17E


def check_zones(zones: int, calibrate_rv: bool) -> None:
    """Raises ValueError unless ``zones`` is a sampling calibration's zone count (at least 1; 1 with
    ``calibrate_rv``, whose RV offset is fitted to a whole-stack volume)."""
    if isinstance(zones, bool) or not isinstance(zones, int) or zones < 1:
        raise ValueError(f"sampling_zones must be a whole number of at least 1, got {zones!r}")
    if calibrate_rv and zones != 1:
        raise ValueError(
            f"calibrate_rv fits one RV offset to the whole stack: sampling_zones must be 1, got {zones}"
        )


def zones_tag(zones: int) -> str:
    """The sampling calibration target's zone part (cache keys): nothing for one zone, so that
    calibrations fitted before zones existed are found again."""
    return "" if zones == 1 else f"|zones-{zones}"


def extent_tag(apical_cap: bool) -> str:
    """The tail an LV extent with the apical cap (:attr:`Synthesizer.apical_cap`) adds to the cache
    keys of the statistics and of the calibrations fitted over them: empty for the default (the
    cavity's), so that artefacts fitted before the option existed are found again."""
    return "|apical-cap" if apical_cap else ""


def extent_dither(seed: int, index: int, antithetic: bool = False) -> tuple[float, float]:
    """Synthetic subject ``index``'s dither of its LV extent's whole slices
    (:func:`.equalise.target_extent`) under ``seed``: one pair per subject, shared by its phases and
    severities, so that its extent moves one way as the severity grows. ``antithetic``: the pair
    reflected (:func:`.equalise.dither_pair`)."""
    return dither_pair(np.random.default_rng([seed, index, EXTENT_DITHER_STREAM]), antithetic)


def target_latents(
    request: SynthesisRequest,
    stats: ClassStats,
    nor_stats: ClassStats | None,
    base: npt.NDArray[np.float64],
    rng: np.random.Generator,
    *,
    negate: bool = False,
) -> npt.NDArray[np.float64]:
    """The severity-1 end point ``(ns, nz)`` for one base subject's equalised latents ``base`` and one
    phase: a copula sample of the class (``sample``) or the base moved by the class shift, its own
    residual kept (``shift``, :func:`.sampling.shift_target`, which needs the NOR statistics
    ``nor_stats`` of the same phase). ``negate``: the Gaussian scores ``rng`` draws, negated (the
    antithetic partner of the draw without it: every correlation mode's scores are symmetric about 0,
    so it is as likely a draw)."""
    paper = paper_slice_factor(base) if request.correlation == "paper" else None
    sign = -1.0 if negate else 1.0
    if request.interpolation == "sample":
        return copula_transform(sign * gaussian_scores(stats, request.correlation, paper, rng), stats)
    if nor_stats is None:
        raise ValueError("interpolation 'shift' needs the NOR class statistics")
    scores = (
        sign * gaussian_scores(stats, request.correlation, paper, rng) if request.shift_residual > 0 else None
    )
    return shift_target(base, nor_stats, stats, scores, request.shift_residual)


def _native_image(subject: Subject, phase: str) -> npt.NDArray[Any]:
    """The base subject's own native image ``(X, Y, Z)`` of ``phase`` (the composite's backdrop)."""
    return subject.ed_image if phase == "ED" else subject.es_image


def _native_labels(subject: Subject, phase: str) -> npt.NDArray[np.uint8]:
    """The base subject's own native labels ``(X, Y, Z)`` of ``phase`` (where its heart lies)."""
    return subject.ed_label if phase == "ED" else subject.es_label


def label_interpolation_of(vae: torch.nn.Module) -> LabelInterpolation:
    """How the label VAE's training labels were resampled (its config's ``label_interpolation``;
    models without one were trained on nearest neighbour): synthesis preprocesses base subjects and
    puts outputs back on their native grids the same way, so that decoded crops meet the grid
    statistics the model learned."""
    config = getattr(vae, "config", None)
    return check_label_interpolation(str(getattr(config, "label_interpolation", "nearest")))


def clean_stacks(
    labels: npt.NDArray[np.uint8], plan: Sequence[tuple[int, float, str, int]]
) -> npt.NDArray[np.uint8]:
    """Every stack of a batch ``(N, S, S)`` (``plan`` gives the slice counts, in order) through
    :func:`cardiosynth.data.topology.clean_labels`: one 3D heart at a time, not slice by slice."""
    if sum(p[3] for p in plan) != len(labels):
        raise ValueError(f"plan covers {sum(p[3] for p in plan)} slices, the batch has {len(labels)}")
    bounds = np.cumsum([0, *(p[3] for p in plan)])
    # Stacks are independent: cleaned by threads (cardiosynth.parallel), written back in order.
    cleaned = thread_map(clean_label_stack, [labels[a:b] for a, b in itertools.pairwise(bounds)])
    return np.concatenate(cleaned) if cleaned else labels.copy()


def _parts(plan: Sequence[tuple[int, float, str, int]], part_slices: int) -> list[list[int]]:
    """Subject indices of ``plan`` in order, grouped into parts of at least ``part_slices`` slices
    (the last part may hold fewer; a subject is never split)."""
    sizes: dict[int, int] = {}
    for index, _, _, z_count in plan:
        sizes[index] = sizes.get(index, 0) + z_count
    parts: list[list[int]] = []
    part: list[int] = []
    count = 0
    for index, size in sizes.items():
        part.append(index)
        count += size
        if count >= part_slices:
            parts.append(part)
            part, count = [], 0
    if part:
        parts.append(part)
    return parts


def _hand_over(subjects: list[SyntheticSubject]) -> Iterator[SyntheticSubject]:
    """Yield and drop each subject: the caller keeps no reference once it is handed over."""
    while subjects:
        yield subjects.pop(0)


class ClassTruth(NamedTuple):
    """What a class's real subjects give the sampling calibration, per phase: ``extent_pixels``, the
    mean pixel count per label ``(K, C)`` per slice over each of the ``K`` zones of their LV extents
    (:func:`.calibration.extent_zones`), and ``rv_mm3``, their mean RV cavity volume (mm3, on the
    processed grid: its in-plane pixel by the subject's slice spacing)."""

    extent_pixels: dict[str, npt.NDArray[np.float64]]
    rv_mm3: dict[str, float]


class Synthesizer:
    """Pathology synthesis with a loaded VAE and SPADE over one ACDC-layout data folder."""

    def __init__(
        self,
        vae: LabelVAE,
        spade: SpadeTranslator | None,
        data_root: Path,
        *,
        model_versions: dict[str, str] | None = None,
        cache_dir: Path | None = None,
        cache_store: ObjectStore | None = None,
        clean_labels: bool = True,
        calibrate_decoder: bool = True,
        calibrate_sampling: bool = True,
        calibrate_rv: bool = False,
        sampling_zones: int = SAMPLING_CALIBRATION_ZONES,
        sampling_calibration_subjects: int | None = None,
        calibrate_motion: bool = True,
        motion_calibration_subjects: int | None = None,
        calibrate_contraction: bool = True,
        dither_extents: bool = True,
        apical_cap: bool = APICAL_CAP,
        soft_restore: bool = True,
        scale_to_class: bool = True,
        device: str | torch.device | None = None,
        precision: str | None = None,
        batch_size: int | None = None,
        base_cache: int = BASE_CACHE_DEFAULT,
    ) -> None:
        """``clean_labels``: apply :func:`cardiosynth.data.topology.clean_labels` to every decoded
        stack in :meth:`make_labels`, before translation (off only to measure what it does).
        ``calibrate_decoder``: decode with the volume calibration of :meth:`decoder_calibration`
        (off only to measure what it does). ``calibrate_sampling``: decode the synthetic LV with the
        class's :meth:`sampling_calibration` as well, blended with the round trip's by severity (needs
        ``calibrate_decoder``; off only to measure what it does), fitted on
        ``sampling_calibration_subjects`` end points per class and phase (``None``:
        :data:`SAMPLING_CALIBRATION_SUBJECTS`). ``calibrate_rv``: fit the RV's mean volume in the
        sampling calibration as well as the LV's areas (off by default, where the RV keeps the round
        trip's offset: on two seeds against the held-out cohort it met no more targets, moved the
        RV class's RV EDV index toward the real and NOR's away from it;
        reports/synthesis-phantom-v2/cohort/README.md). ``sampling_zones``: the zones of the LV extent,
        base to apex, whose mean areas the sampling calibration fits each with offsets of its own
        (:data:`SAMPLING_CALIBRATION_ZONES`; 1: the extent's as a whole; with ``calibrate_rv`` only 1,
        the RV's one offset is fitted to a whole-stack volume). ``calibrate_motion``: move each
        synthetic ES stack so that in-plane ED -> ES motion the sampler adds beyond the real class's
        spread is taken out (:meth:`motion_calibration`, fitted on ``motion_calibration_subjects``
        synthetic subjects, ``None``: :data:`MOTION_CALIBRATION_SUBJECTS`; off only to measure what it
        does).
        ``calibrate_contraction``: widen each synthetic mid-ventricular ES slice per sector so that
        contraction the decoder adds to a sector beyond the real class's is taken out
        (:meth:`contraction_calibration`, fitted on as many synthetic subjects as the motion
        calibration; off only to measure what it does).
        ``dither_extents``: make each synthetic phase's LV placement whole slices by a seeded dither,
        so that the class's mean placement comes back over its subjects (off only to measure what it
        does: the nearest whole slice; :mod:`.equalise` says why).
        ``apical_cap``: take every LV extent (class statistics, placement, sampling calibration) from
        the first to the last slice with LV myocardium or cavity, the apical cap below the cavity
        included, instead of the slices with an LV cavity (:func:`.equalise.lv_extent`; off by
        default: :data:`APICAL_CAP` says what it measured).
        ``soft_restore``: put decoded stacks back on the base's native grid from the decoder's
        probabilities, not its labels (:class:`LabelBatch`; off only to measure what it does).
        ``scale_to_class``: give each synthetic subject its class's heart length and body by
        severity (:meth:`class_scale`, :mod:`.scale`; off only to measure what it does: the base's).

        ``device``: where the models run (``None``: where they are; a spec such as ``cuda`` moves
        them there once, here). ``precision``: autocast of decode and translate (``None``: fp32 on
        CPU, bf16 on CUDA). ``batch_size``: slices per forward pass (``None``: by free memory).
        ``base_cache``: base subjects kept read and preprocessed, least recently used dropped first
        (about 8 MiB each on a phantom subject).

        A Synthesizer is not for concurrent use by several callers; :meth:`stream` uses a background
        thread of its own, safely.

        Raises:
            ValueError: ``base_cache`` or ``sampling_zones`` below 1, or ``sampling_zones`` above 1 with
                ``calibrate_rv``."""
        if base_cache < 1:
            raise ValueError(f"base_cache must be at least 1 subject, got {base_cache}")
        check_zones(sampling_zones, calibrate_rv)
        if sampling_calibration_subjects is None:
            sampling_calibration_subjects = SAMPLING_CALIBRATION_SUBJECTS
        if sampling_calibration_subjects < 1:
            raise ValueError(
                f"sampling_calibration_subjects must be at least 1, got {sampling_calibration_subjects}"
            )
        if motion_calibration_subjects is None:
            motion_calibration_subjects = MOTION_CALIBRATION_SUBJECTS
        if not 1 <= motion_calibration_subjects <= MAX_SUBJECTS:
            raise ValueError(
                f"motion_calibration_subjects must be in 1..{MAX_SUBJECTS}, got {motion_calibration_subjects}"
            )
        if device is not None:
            place(vae, device)
            if spade is not None:
                place(spade, model_device(vae))
        self.vae = vae.eval()
        self.label_interpolation = label_interpolation_of(vae)
        self.clean_labels = clean_labels
        self.calibrate_decoder = calibrate_decoder
        self.calibrate_sampling = calibrate_sampling
        self.calibrate_rv = calibrate_rv
        self.sampling_zones = sampling_zones
        self.sampling_calibration_subjects = sampling_calibration_subjects
        self._sampling: dict[str, ZonedCalibration] = {}
        self.calibrate_motion = calibrate_motion
        self.motion_calibration_subjects = motion_calibration_subjects
        self._motion: dict[str, MotionCalibration] = {}
        self.calibrate_contraction = calibrate_contraction
        self._contraction: dict[str, ContractionCalibration] = {}
        self.dither_extents = dither_extents
        self.apical_cap = apical_cap
        self._class_truths: dict[tuple[Group, str | None, str, int, bool], ClassTruth] = {}
        self.soft_restore = soft_restore
        self.scale_to_class = scale_to_class
        self._scales: dict[str, ClassScale] = {}
        self._calibration: DecoderCalibration | None = None
        self.spade = spade.eval() if spade is not None else None
        self.device = model_device(self.vae)
        self.precision = resolve_precision(precision, self.device)  # fp16 on CPU fails here, at load
        self.batch_size = batch_size
        self.data_root = Path(data_root)
        self.model_versions = model_versions or {}
        self.cache = StatsCache(cache_dir, cache_store)
        self.refs = sources.scan(self.data_root)
        self._fingerprints: dict[tuple[Group, str | None], str] = {}
        self._stats: dict[tuple[Group, str, int, str | None, bool], ClassStats] = {}
        self._territories: dict[str, str] | None = None  # MINF subject id -> estimated territory
        self._pooled: set[str] = set()  # territories too rare for their own statistics
        # Bounded: a warm worker serves many jobs, and a data set with hundreds of NOR subjects would
        # otherwise keep every one it ever used (gigabytes; reports/memory.txt).
        self._loaded: OrderedDict[str, sources.LoadedSubject] = OrderedDict()
        self._base_cache = base_cache
        # ``stream`` on a GPU assembles one part on a background thread while the next is translated:
        # both threads use the base cache and the timings.
        self._lock = threading.RLock()
        self.timings: dict[str, float] = {}

    def _timed(self, stage: str, started: float) -> None:
        with self._lock:
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - started

    def _cache_key(self, pathology: Group, phase: str, ns: int, territory: str | None = None) -> str:
        version = self.model_versions.get("vae", "unversioned")
        group = (pathology, territory)
        name = pathology.value if territory is None else f"{pathology.value}-{territory}"
        return stats_key(version, self._fingerprints[group], name, phase, ns, extent_tag(self.apical_cap))

    def minf_territories(self) -> dict[str, str]:
        """The infarct territory of every MINF subject of the data set, estimated from its labels
        (:func:`cardiosynth.data.territory.estimate_territory`; real ACDC has no annotation).
        Subjects whose labels allow no estimate (no RV, say) are left out, with a warning."""
        if self._territories is None:
            started = time.perf_counter()
            found: dict[str, str] = {}
            for ref in sources.by_group(self.refs, Group.MINF):
                processed = self._load(ref).processed
                try:
                    found[ref.subject_id] = estimate_territory(
                        processed.ed_label, processed.es_label
                    ).territory
                except ValueError as exc:
                    log.warning("no infarct territory for %s: %s", ref.subject_id, exc)
            self._territories = found
            self._timed("territory", started)
            log.info("MINF territories: %s", {t: list(found.values()).count(t) for t in TERRITORIES})
        return self._territories

    def territory_frequencies(self) -> dict[str, float]:
        """Share of the data set's MINF subjects in each territory (estimated; sums to 1).

        Raises:
            ValueError: no MINF subject with an estimable territory.
        """
        found = list(self.minf_territories().values())
        if not found:
            raise ValueError(f"the data set under {self.data_root} has no MINF subject with a territory")
        return {t: found.count(t) / len(found) for t in TERRITORIES}

    def subject_territories(self, request: SynthesisRequest) -> list[str | None]:
        """The infarct territory of each synthetic subject: the requested one, or (MINF without one)
        drawn, seeded, with :meth:`territory_frequencies`; ``None`` for other pathologies."""
        if request.pathology is not Group.MINF:
            return [None] * request.n
        if request.territory is not None:
            return [request.territory] * request.n
        freq = self.territory_frequencies()
        rng = np.random.default_rng([request.seed, 0x7E2217])  # its own stream: the latents do not move
        drawn = rng.choice(len(TERRITORIES), size=request.n, p=[freq[t] for t in TERRITORIES])
        return [TERRITORIES[int(i)] for i in drawn]

    def _stats_refs(
        self, pathology: Group, territory: str | None
    ) -> tuple[list[sources.SubjectRef], str | None]:
        """The subjects the statistics come from and the territory they stand for (``None``: pooled)."""
        refs = sources.by_group(self.refs, pathology)
        if not refs:
            raise ValueError(f"the data set under {self.data_root} has no {pathology.value} subject")
        if territory is None:
            return refs, None
        if pathology is not Group.MINF:
            raise ValueError(f"territory {territory!r} applies to MINF only, not to {pathology.value}")
        territory = cast(str, check_territory(territory))
        members = self.minf_territories()
        subset = [r for r in refs if members.get(r.subject_id) == territory]
        if len(subset) < MIN_TERRITORY_SUBJECTS:
            if territory not in self._pooled:
                self._pooled.add(territory)
                log.warning(
                    "only %d MINF subject(s) in territory %s (< %d): using the pooled MINF statistics",
                    len(subset), territory, MIN_TERRITORY_SUBJECTS,
                )  # fmt: skip
            return refs, None
        return subset, territory

    def class_stats(
        self, pathology: Group, phase: str, ns: int = NS_DEFAULT, territory: str | None = None
    ) -> ClassStats:
        """Statistics of ``pathology`` at ``phase`` (memory, then disk cache, then computed).

        ``territory`` (MINF only): over the MINF subjects whose estimated infarct territory matches;
        with fewer than :data:`MIN_TERRITORY_SUBJECTS` of them, the pooled MINF statistics (logged).
        """
        refs, territory = self._stats_refs(pathology, territory)
        key = (pathology, phase, ns, territory, self.apical_cap)
        if key in self._stats:
            return self._stats[key]
        self._fingerprint(pathology, territory, refs)
        stats = self.cache.get(self._cache_key(pathology, phase, ns, territory))
        if stats is None:
            started = time.perf_counter()
            loaded = thread_map(self._load, refs)  # independent reads: by threads, in order
            self._timed("load", started)
            ed_stacks = [x.processed.phase("ED").label for x in loaded]
            for ph in PHASES:  # both phases from one read of the subjects
                started = time.perf_counter()
                stacks = [x.processed.phase(ph).label for x in loaded]
                cap = self.apical_cap
                pairs = zip(ed_stacks, stacks, strict=True)
                offsets = np.array([extent_offsets(e, s, cap) for e, s in pairs])
                # Over each subject's LV extent (first to last slice with an LV cavity, or with any LV
                # label under apical_cap): stack position is not anatomy (equalise.py says why).
                encoded = encode_stacks(self.vae, stacks, **FP32)
                latents = np.stack([equalise_lv(z, s, ns, cap) for z, s in zip(encoded, stacks, strict=True)])
                self._timed("encode", started)
                started = time.perf_counter()
                computed = compute_class_stats(latents, pathology.value, ph, extent_offsets=offsets)
                self._timed("stats", started)
                self.cache.put(self._cache_key(pathology, ph, ns, territory), computed)
                self._stats[(pathology, ph, ns, territory, cap)] = computed
            where = "" if territory is None else f" (territory {territory})"
            log.info("computed %s statistics%s over %d subjects", pathology.value, where, len(refs))
            return self._stats[key]
        self._stats[key] = stats
        return stats

    def class_scale(self, pathology: Group) -> ClassScale:
        """``pathology``'s mean LV ED long-axis extent, height and weight over NOR's (memory, then
        cache, then measured; :mod:`.scale`), over the data set's subjects of the two groups (those the
        statistics come from; MINF's territories pooled: a territory's few subjects would make its
        length noise). Subjects without an LV cavity at ED are left out, with a warning.

        Raises:
            ValueError: no subject of ``pathology`` or NOR with an LV cavity.
        """
        refs = {g: sources.by_group(self.refs, g) for g in (pathology, Group.NOR)}
        for g, found in refs.items():
            if not found:
                raise ValueError(f"the data set under {self.data_root} has no {g.value} subject")
        prints = "|".join(self._fingerprint(g, None, found) for g, found in refs.items())
        key = f"scale/{SCALE_FORMAT}-{hashlib.sha256(prints.encode()).hexdigest()[:16]}.json"

        def decode(data: bytes) -> ClassScale:
            return ClassScale.from_dict(json.loads(data))  # ValueError for anything else: measured again

        found_scale = self._stored(key, self._scales, decode, "class scale")
        if found_scale is not None:
            return found_scale
        started = time.perf_counter()

        def body(ref: sources.SubjectRef) -> HeartBody | None:
            subject = read_subject(ref.path)
            try:
                length = lv_long_axis_mm(subject.ed_label, subject.spacing[2])
            except ValueError as exc:
                log.warning("%s left out of the class scale: %s", ref.subject_id, exc)
                return None
            return HeartBody(length, subject.info.height, subject.info.weight)

        bodies = {g: [b for b in thread_map(body, found) if b is not None] for g, found in refs.items()}
        fitted = class_scale(bodies[pathology], bodies[Group.NOR])
        self._timed("scale", started)
        self.cache.put_bytes(key, json.dumps(fitted.to_dict()).encode())
        log.info("class scale of %s over NOR: %s", pathology.value,
                 {k: round(v, 4) for k, v in fitted.to_dict().items()})  # fmt: skip
        self._scales[key] = fitted
        return fitted

    def decoder_calibration(self) -> DecoderCalibration:
        """The decoder's volume calibration for this data set (memory, then cache, then fitted).

        Fitted on the round trip (encode, decode) of the data set's own subjects, both phases, up
        to :data:`CALIBRATION_SUBJECTS` of them (:mod:`.calibration` says why and how)."""
        if self._calibration is not None:
            return self._calibration
        refs = sorted(self.refs, key=lambda r: r.subject_id)
        if not refs:
            raise ValueError(f"the data set under {self.data_root} has no subject to calibrate on")
        if len(refs) > CALIBRATION_SUBJECTS:
            refs = [refs[int(i)] for i in np.linspace(0, len(refs) - 1, CALIBRATION_SUBJECTS).round()]
        version = self.model_versions.get("vae", "unversioned")
        key = calibration_key(version, sources.fingerprint(refs))
        cached = self.cache.get_bytes(key)
        if cached is not None:
            try:
                self._calibration = DecoderCalibration.from_bytes(cached)
                return self._calibration
            except ValueError:
                log.info("decoder calibration under %s is of another format: refitting", key)
        started = time.perf_counter()

        def round_trips() -> Iterator[tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8]]]:
            for ref in refs:  # one subject in memory at a time
                processed = self._load(ref).processed
                stacks = [label_stack(processed, ph) for ph in PHASES]
                truth = np.concatenate(stacks)
                latents = np.concatenate(encode_stacks(self.vae, stacks, **FP32))
                done = 0
                for logits in decode_logits(self.vae, latents, self.batch_size):
                    yield logits, truth[done : done + len(logits)]
                    done += len(logits)

        fitted = calibrate(round_trips(), self.vae.config.num_classes)
        self._timed("calibrate", started)
        self.cache.put_bytes(key, fitted.to_bytes())
        log.info(
            "decoder calibration over %d subjects (%d slices): logit offsets %s, volume ratios %s -> %s",
            len(refs), fitted.n_slices, np.round(fitted.logit_bias, 3).tolist(),
            np.round(fitted.ratio_before, 3).tolist(), np.round(fitted.ratio_after, 3).tolist(),
        )  # fmt: skip
        self._calibration = fitted
        return fitted

    def _fingerprint(self, pathology: Group, territory: str | None, refs: list[sources.SubjectRef]) -> str:
        group = (pathology, territory)
        if group not in self._fingerprints:
            self._fingerprints[group] = sources.fingerprint(refs)
        return self._fingerprints[group]

    def _class_truth(
        self, pathology: Group, territory: str | None, refs: list[sources.SubjectRef]
    ) -> ClassTruth:
        """The sampling calibration's truth over ``refs`` (the class's real subjects) in
        :attr:`sampling_zones` zones, read once per class (every mode and family of a class shares it)."""
        zones = self.sampling_zones
        group = (pathology, territory, self._fingerprint(pathology, territory, refs), zones, self.apical_cap)
        if group not in self._class_truths:
            classes = self.vae.config.num_classes
            totals = {phase: np.zeros((zones, classes), dtype=np.float64) for phase in PHASES}
            slices = {phase: np.zeros(zones, dtype=np.int64) for phase in PHASES}
            rv_mm3 = dict.fromkeys(PHASES, 0.0)
            for ref in refs:
                loaded = self._load(ref)
                voxel_mm3 = loaded.processed.geometry.target_spacing**2 * loaded.subject.spacing[2]
                for phase in PHASES:
                    labels = label_stack(loaded.processed, phase)
                    first, last = lv_extent(labels, self.apical_cap)
                    for zone, row in zip(extent_zones(last - first + 1, zones), labels[first : last + 1],
                                         strict=True):  # fmt: skip
                        totals[phase][zone] += np.bincount(row.ravel(), minlength=classes)
                        slices[phase][zone] += 1
                    rv_mm3[phase] += float(np.count_nonzero(labels == RV_CAVITY)) * voxel_mm3
            # a zone no real extent reaches (all shorter than the zones) has no truth: NaN, not fitted
            counts = {phase: np.where(slices[phase] > 0, slices[phase], np.nan)[:, None] for phase in PHASES}
            self._class_truths[group] = ClassTruth(
                {phase: totals[phase] / counts[phase] for phase in PHASES},
                {phase: rv_mm3[phase] / len(refs) for phase in PHASES},
            )
        return self._class_truths[group]

    def sampling_calibration(
        self, request: SynthesisRequest, phase: str, territory: str | None = None
    ) -> ZonedCalibration:
        """The decoder's volume calibration for ``request``'s severity-1 end points at ``phase``
        (memory, then cache, then fitted): its class (``territory``: MINF's, as in
        :meth:`class_stats`), correlation mode, interpolation family and ``ns``.

        The round trip's calibration (:meth:`decoder_calibration`) keeps the volumes of real hearts,
        whose latents the decoder was trained on. A sampled end point is no real heart's latent, and
        the decoder draws its LV with more myocardium per slice than the class has: 11 % in DCM, 5 %
        in RV and HCM, 1.5 % in NOR (reports/synthesis-phantom-v2/cohort/README.md), which thickens
        the synthetic walls. The same fit (:mod:`.calibration`) on the LV extents of
        :attr:`sampling_calibration_subjects` end points made as :meth:`make_labels` makes them at
        severity 1 (target_latents resampled into the base's extent; the data set's NOR subjects as
        bases in turn, a fixed seed, in antithetic pairs where there is a draw:
        :data:`SAMPLING_CALIBRATION_ANTITHETIC`) makes their mean pixel count per slice of the LV
        cavity and the myocardium the class's, over the LV extents of the class's real subjects (those its
        statistics come from). The RV keeps the round trip's offset: it runs past the LV extent into
        the base's own basal slices, decoded with the round trip's offsets. With
        :attr:`calibrate_rv` its one offset inside the extent is fitted as well, so that its mean
        cavity volume over the whole stack is the class's (at the class's slice spacing where
        :attr:`scale_to_class`): decoded as it is, a severity-1 RV has 6-7 % less area per slice
        than the RV class's at ED and ES (reports/synthesis-phantom-v2/cohort/rv_long_axis.txt), but
        the fit to the mean volumes of 20 training subjects met no more targets on two seeds (it
        moved NOR's RV EDV index away from the held-out cohort's, 1.57 / 1.50 -> 1.70 / 1.81 W1n),
        so it is off by default. With :attr:`sampling_zones` above 1 the LV extent is cut into that
        many zones by relative position, base to apex (:func:`.calibration.extent_zones`), and each
        zone is fitted to the class's mean areas per slice in the same zone of its real extents, with
        offsets of its own (:class:`.calibration.ZonedCalibration`; one zone by default: 3 or 6 zones
        did not bring the synthetic walls' thickest segment nearer the class's,
        reports/synthesis-phantom-v2/cohort/sampling_zones.txt). The class's means are matched, not
        its spread or shapes; never fitted from held-out subjects."""
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {list(PHASES)}, got {phase!r}")
        check_zones(self.sampling_zones, self.calibrate_rv)  # the attributes may have been set since
        stats = self.class_stats(request.pathology, phase, request.ns, territory)
        refs, territory = self._stats_refs(request.pathology, territory)  # None where pooled
        nor_refs = sorted(sources.by_group(self.refs, Group.NOR), key=lambda r: r.subject_id)
        if not nor_refs:
            raise ValueError(f"the data set under {self.data_root} has no NOR subject to synthesise from")
        nor_stats = (
            self.class_stats(Group.NOR, phase, request.ns) if request.interpolation == "shift" else None
        )
        name = request.pathology.value if territory is None else f"{request.pathology.value}-{territory}"
        what = (
            f"{name}|{phase}|{request.ns}|{request.correlation}|{request.interpolation}|"
            f"{request.shift_residual}|{self._sampling_provenance(request.pathology, territory, refs)}"
        )
        key = sampling_calibration_key(self.model_versions.get("vae", "unversioned"), what)
        found = self._stored(key, self._sampling, ZonedCalibration.from_bytes, "sampling calibration")
        if found is not None:
            return found
        started = time.perf_counter()
        classes = self.vae.config.num_classes
        truth = self._class_truth(request.pathology, territory, refs)
        # The stacks' slice spacing as make_labels writes it at severity 1: the class's length
        # (scale_to_class), so the RV's volume target counts the pixels the class's volume needs.
        stretch = self._rv_stretch(request.pathology)
        # The synthetic LV extents, made as make_labels makes them at severity 1 (the bases through
        # the base cache: make_labels reads the same subjects next).
        # With SAMPLING_CALIBRATION_ANTITHETIC, end points come in pairs on one base, the second
        # drawn with the first's scores negated (rounded up to whole pairs; see the constant).
        # (A deterministic shift, no residual drawn, has nothing to negate: no pairs.)
        drawn = request.interpolation == "sample" or request.shift_residual > 0
        pairs = SAMPLING_CALIBRATION_ANTITHETIC and drawn
        count = self.sampling_calibration_subjects
        if pairs:
            count += count % 2
        bases = [nor_refs[(k // 2 if pairs else k) % len(nor_refs)] for k in range(count)]
        loaded = {ref.subject_id: self._base(ref) for ref in dict.fromkeys(bases)}
        stacks = {sid: label_stack(b.processed, phase) for sid, b in loaded.items()}
        eds = {sid: label_stack(b.processed, "ED") for sid, b in loaded.items()}
        encoded = dict(zip(stacks, encode_stacks(self.vae, list(stacks.values()), **FP32), strict=True))
        blocks, zone_rows, rv_pixels = [], [], 0.0
        for k, ref in enumerate(bases):
            sid = ref.subject_id
            rng = np.random.default_rng([SAMPLING_CALIBRATION_SEED, k // 2 if pairs else k])
            base_eq = equalise_lv(encoded[sid], stacks[sid], request.ns, self.apical_cap)
            target = target_latents(request, stats, nor_stats, base_eq, rng, negate=pairs and k % 2 == 1)
            first, last = extent = target_extent(
                lv_extent(eds[sid], self.apical_cap),
                extent_offsets(eds[sid], stacks[sid], self.apical_cap),
                stats.extent_offset,
                1.0,
                len(stacks[sid]),
                self._extent_dither(SAMPLING_CALIBRATION_SEED, k // 2 if pairs else k, pairs and k % 2 == 1),
            )
            blocks.append(restore_lv(target, encoded[sid], extent))
            slice_zones = np.full(len(stacks[sid]), -1, dtype=np.intp)  # -1: outside the LV extent
            slice_zones[first : last + 1] = extent_zones(last - first + 1, self.sampling_zones)
            zone_rows.append(slice_zones)
            geometry, slice_mm = loaded[sid].processed.geometry, loaded[sid].subject.spacing[2]
            rv_pixels += truth.rv_mm3[phase] / (geometry.target_spacing**2 * slice_mm * stretch)
        latents, slice_zone = np.concatenate(blocks), np.concatenate(zone_rows)
        if not self.calibrate_rv:  # only the LV extents are fitted: decode nothing else
            latents, slice_zone = latents[slice_zone >= 0], slice_zone[slice_zone >= 0]
        round_trip = self.decoder_calibration().logit_bias
        evidence = [RoundTripEvidence.empty(classes) for _ in range(self.sampling_zones)]
        outside = np.zeros(classes, dtype=np.int64)
        done = 0
        for logits in decode_logits(self.vae, latents, self.batch_size):
            rows = slice_zone[done : done + len(logits)]
            done += len(logits)
            for zone, part in enumerate(evidence):
                part.add_logits(logits[rows == zone])
            # Outside the LV extent make_labels decodes the base's own latents with the round trip's
            # offsets, whatever the class: counted as decoded, out of the fit's reach.
            moved = logits[rows < 0] + round_trip.astype(np.float32)[None, :, None, None]
            outside += np.bincount(moved.argmax(1).ravel(), minlength=classes)
        # The LV's labels: in each zone (one: the whole extent) the class's mean areas per slice there.
        # With calibrate_rv (one zone only), pixels outside the extent enter both sides of the LV's
        # counts (they cannot move), so its fit is the extent's, and the RV's target is the class's
        # mean volume over the whole stack, its basal slices outside the LV extent included (the
        # base's own, decoded as they are), through the one offset it gets inside (matching its area
        # inside the extent alone had moved its volume away from the class's: DCM RVEF 37 % -> 29 %,
        # real 37 %). Each phase's mean volume is matched, not the subjects' RVEF: on seed 0 DCM's
        # fell 37.7 -> 32.5 % (held out 37.4).
        labels = (LV_MYOCARDIUM, LV_CAVITY, RV_CAVITY) if self.calibrate_rv else (LV_MYOCARDIUM, LV_CAVITY)
        zones = []
        for zone, part in enumerate(evidence):
            count = int(np.count_nonzero(slice_zone == zone))
            per_slice = truth.extent_pixels[phase][zone]
            if count == 0 or not np.isfinite(per_slice).all():  # a zone no extent reaches: round trip's
                zones.append(DecoderCalibration(round_trip, np.ones(classes), np.ones(classes), 0))
                continue
            wanted = np.rint(per_slice * count).astype(np.int64)
            if self.calibrate_rv:
                wanted += outside
                wanted[RV_CAVITY] = round(rv_pixels)
                part.certain += outside
            part.add_truth(wanted)
            decoded = len(latents) if self.calibrate_rv else count  # the slices the fit decoded
            zones.append(DecoderCalibration.fit(part, decoded, labels=labels, start=round_trip))
        fitted = ZonedCalibration(tuple(zones))
        self._timed("calibrate", started)
        self.cache.put_bytes(key, fitted.to_bytes())
        log.info(
            "sampling calibration of %s %s (%s/%s), %d end points, %d zone(s): offsets %s, volume ratios "
            "%s -> %s",
            name, phase, request.correlation, request.interpolation, len(blocks), len(zones),
            np.round(fitted.logit_bias, 3).tolist(), [np.round(z.ratio_before, 3).tolist() for z in zones],
            [np.round(z.ratio_after, 3).tolist() for z in zones],
        )  # fmt: skip
        self._sampling[key] = fitted
        return fitted

    def _rv_stretch(self, pathology: Group) -> float:
        """The slice spacing factor the RV's volume fit counts its pixels at: the class's at severity
        1 with :attr:`calibrate_rv` and :attr:`scale_to_class`, else 1 (no fit, or the base's)."""
        if self.calibrate_rv and self.scale_to_class:
            return self.class_scale(pathology).slice_spacing
        return 1.0

    def _extent_dither(self, seed: int, index: int, antithetic: bool = False) -> tuple[float, float] | None:
        """:func:`extent_dither`; ``None`` (the nearest whole slice) with :attr:`dither_extents` off."""
        return extent_dither(seed, index, antithetic) if self.dither_extents else None

    def placement_dithers(self, seed: int, n: int) -> list[tuple[float, float]] | None:
        """The LV extent dithers of subjects ``0..n-1`` of a request with ``seed``, as
        :meth:`make_labels` places them (for a baseline placed as the method places its samples);
        ``None`` with :attr:`dither_extents` off (the nearest slice)."""
        return [extent_dither(seed, k) for k in range(n)] if self.dither_extents else None

    def _sampling_provenance(
        self, pathology: Group, territory: str | None, refs: list[sources.SubjectRef]
    ) -> str:
        """What a sampling calibration's fit depends on beyond the request (its end points, seed and
        pairing, the class's and the NOR bases' data): the tail of the sampling and motion
        calibrations' cache keys (the motion fit draws through the sampling calibration)."""
        nor = sources.by_group(self.refs, Group.NOR)
        return (
            f"{SAMPLING_CALIBRATION_TARGET[self.calibrate_rv]}{zones_tag(self.sampling_zones)}"
            f"{extent_tag(self.apical_cap)}|"
            f"{self._rv_stretch(pathology):.6f}|"
            f"{self.sampling_calibration_subjects}|{SAMPLING_CALIBRATION_SEED}|"
            f"{'antithetic' if SAMPLING_CALIBRATION_ANTITHETIC else 'plain'}|"
            f"{'dithered' if self.dither_extents else 'nearest'}|"
            f"{self._fingerprint(pathology, territory, refs)}|{self._fingerprint(Group.NOR, None, nor)}"
        )

    def _stored(self, key: str, memory: dict[str, T], decode: Callable[[bytes], T], what: str) -> T | None:
        """The fitted artefact under ``key``: from ``memory``, else from the cache (then kept in
        ``memory``); ``None`` when neither holds it or the cache holds another format (refit)."""
        if key in memory:
            return memory[key]
        cached = self.cache.get_bytes(key)
        if cached is not None:
            try:
                memory[key] = decode(cached)
                return memory[key]
            except ValueError:
                log.info("%s under %s is of another format: refitting", what, key)
        return None

    def motion_calibration(
        self, request: SynthesisRequest, territory: str | None = None
    ) -> MotionCalibration:
        """The in-plane ED -> ES motion calibration of ``request``'s class, mode and family (memory,
        then cache, then fitted; :mod:`.motion`): the per-slice displacement of the LV cavity's
        centroid in the mid-ventricular slices over the class's real subjects (those its statistics
        come from) against :attr:`motion_calibration_subjects` synthetic subjects made as
        :meth:`make_labels` makes them at severity 1 (seeded, every other step as configured).
        ``territory`` (MINF): the infarct territory's subjects against synthetic subjects of that
        territory, since an infarct moves the cavity toward its own wall (a territory with fewer
        than :data:`MIN_MOTION_TERRITORY_SUBJECTS` subjects gets the pooled calibration); ``None``:
        the class's subjects, MINF's territories pooled and drawn. Never fitted from held-out
        subjects."""
        refs, used = self._stats_refs(request.pathology, territory)
        if territory is not None and (used is None or len(refs) < MIN_MOTION_TERRITORY_SUBJECTS):
            return self.motion_calibration(request, None)
        steps = f"{int(self.clean_labels)}{int(self.calibrate_decoder)}{int(self.calibrate_sampling)}"
        # "-weighted": the offset from slice-weighted means (a cache of the unweighted fit is not reused)
        key = self._es_calibration_key("motion-offset-weighted", request, used, refs, steps)
        stored = self._stored(key, self._motion, MotionCalibration.from_bytes, "motion calibration")
        if stored is not None:
            return stored
        started = time.perf_counter()
        real = [mid_displacements(ed, es) for ed, es in self._real_pairs(refs)]
        pairs = self._calibration_subjects(request, used, motion=False)
        synthetic = [mid_displacements(ed, es) for ed, es in pairs]
        try:
            fitted = MotionCalibration.fit(real, synthetic)
        except ValueError as exc:  # no slice with a measurable cavity in both phases: nothing to move
            log.warning(
                "motion calibration of %s: %s; ES stacks are left where decoded", request.pathology.value, exc
            )
            fitted = MotionCalibration.identity()
        self._timed("calibrate", started)
        self.cache.put_bytes(key, fitted.to_bytes())
        log.info(
            "motion calibration of %s%s (%s/%s): ED -> ES displacement real mean %s rms %.2f px, "
            "synthetic mean %s rms %.2f px: gain %.2f, offset %s px",
            request.pathology.value, "" if used is None else f" ({used})", request.correlation,
            request.interpolation, np.round(fitted.mean_real, 2).tolist(), fitted.rms_real,
            np.round(fitted.mean_synthetic, 2).tolist(), fitted.rms_synthetic, fitted.gain,
            np.round(fitted.offset, 2).tolist(),
        )  # fmt: skip
        self._motion[key] = fitted
        return fitted

    def _es_calibration_key(
        self,
        kind: str,
        request: SynthesisRequest,
        used: str | None,
        refs: list[sources.SubjectRef],
        steps: str,
    ) -> str:
        """The cache key of an ES calibration (``kind``: motion or contraction) of ``request``'s class,
        mode and family, fitted on ``refs`` (the statistics' territory ``used``) with ``steps`` on."""
        what = (
            f"{kind}|{request.pathology.value}|{used}|{request.ns}|{request.correlation}|"
            f"{request.interpolation}|{request.shift_residual}|{self.motion_calibration_subjects}|"
            f"{MOTION_CALIBRATION_SEED}|{steps}|{self._sampling_provenance(request.pathology, used, refs)}"
        )
        return sampling_calibration_key(self.model_versions.get("vae", "unversioned"), what)

    def _real_pairs(
        self, refs: list[sources.SubjectRef]
    ) -> list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]]:
        """The processed ``(ED, ES)`` label stacks of real subjects ``refs``."""
        return [(label_stack(p, "ED"), label_stack(p, "ES")) for p in (self._load(r).processed for r in refs)]

    def _calibration_subjects(
        self, request: SynthesisRequest, territory: str | None, *, motion: bool
    ) -> list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]]:
        """The ``(ED, ES)`` label stacks of :attr:`motion_calibration_subjects` synthetic subjects made
        as :meth:`make_labels` makes ``request``'s at severity 1 (seeded; ``territory``: the one the
        statistics stand for), with or without the motion calibration and always without the
        contraction calibration: what those two calibrations are fitted on."""
        fit_request = SynthesisRequest(
            request.pathology, n=self.motion_calibration_subjects, seed=MOTION_CALIBRATION_SEED,
            correlation=request.correlation, ns=request.ns, interpolation=request.interpolation,
            shift_residual=request.shift_residual, territory=territory,
        )  # fmt: skip
        batch = self.make_labels(fit_request, motion=motion, contraction=False)
        at = np.cumsum([0, *(z for *_, z in batch.plan)])
        blocks = {(i, ph): batch.labels[at[k] : at[k + 1]] for k, (i, _, ph, _) in enumerate(batch.plan)}
        return [(blocks[(i, "ED")], blocks[(i, "ES")]) for i in range(fit_request.n)]

    def contraction_calibration(
        self, request: SynthesisRequest, territory: str | None = None
    ) -> ContractionCalibration:
        """The regional ED -> ES contraction calibration of ``request``'s class, mode and family
        (memory, then cache, then fitted; :mod:`.contraction`): the mean FAC of each LV sector over
        the mid-ventricular slices of the class's real subjects (those its statistics come from)
        against :attr:`motion_calibration_subjects` synthetic subjects made as :meth:`make_labels`
        makes them at severity 1, the motion calibration included. MINF is fitted per infarct
        territory (an infarct is akinetic in its own sectors); a MINF request whose statistics are
        pooled over territories (``territory`` ``None``, or too few subjects in it) gets the identity,
        since pooled sector means would move every territory's infarct toward the commonest one's
        sectors (and so does a territory of fewer than :data:`MIN_CONTRACTION_TERRITORY_SUBJECTS`).
        Never fitted from held-out subjects."""
        refs, used = self._stats_refs(request.pathology, territory)
        too_few = len(refs) < MIN_CONTRACTION_TERRITORY_SUBJECTS
        if request.pathology is Group.MINF and (used is None or too_few):
            return ContractionCalibration.identity()
        steps = (
            f"{int(self.clean_labels)}{int(self.calibrate_decoder)}{int(self.calibrate_sampling)}"
            f"{int(self.calibrate_motion)}"
        )
        key = self._es_calibration_key("contraction", request, used, refs, steps)
        decode = ContractionCalibration.from_bytes
        stored = self._stored(key, self._contraction, decode, "contraction calibration")
        if stored is not None:
            return stored
        started = time.perf_counter()
        real = [sector_contraction(ed, es) for ed, es in self._real_pairs(refs)]
        pairs = self._calibration_subjects(request, used, motion=True)
        try:
            fitted = ContractionCalibration.fit(real, [sector_contraction(ed, es) for ed, es in pairs])
        except ValueError as exc:  # no subject with every sector measured: nothing to calibrate
            log.warning("contraction calibration of %s: %s; ES left as decoded", request.pathology.value, exc)
            fitted = ContractionCalibration.identity()
        self._timed("calibrate", started)
        self.cache.put_bytes(key, fitted.to_bytes())
        log.info(
            "contraction calibration of %s%s (%s/%s): sector FAC real %s, synthetic %s: gains %s",
            request.pathology.value, "" if used is None else f" ({used})", request.correlation,
            request.interpolation, np.round(fitted.fac_real, 3).tolist(),
            np.round(fitted.fac_synthetic, 3).tolist(), np.round(fitted.gains, 2).tolist(),
        )  # fmt: skip
        self._contraction[key] = fitted
        return fitted

    def slice_bias(
        self,
        request: SynthesisRequest,
        plan: Sequence[tuple[int, float, str, int]],
        extents: Sequence[tuple[int, int]],
        territories: Sequence[str | None],
    ) -> npt.NDArray[np.float64] | None:
        """The logit offsets ``(sum of slices, C)`` of each decoded slice of :meth:`make_labels`'
        blocks (``plan``: subject, severity, phase, slices; ``extents``: each block's synthetic LV
        extent; ``territories``: each block's). The round trip's calibration everywhere; inside the
        synthetic LV extent blended towards the class's :meth:`sampling_calibration` by severity, as
        the latents are blended from the base's towards the end point's. ``None`` with the
        calibration off."""
        round_trip = self.logit_bias()
        if round_trip is None:
            return None
        rows = []
        for (_, severity, phase, z_count), (first, last), territory in zip(
            plan, extents, territories, strict=True
        ):
            block = np.tile(round_trip, (z_count, 1))
            if self.calibrate_sampling:
                own = self.sampling_calibration(request, phase, territory).extent_bias(last - first + 1)
                block[first : last + 1] = (1.0 - severity) * round_trip + severity * own
            rows.append(block)
        return np.concatenate(rows)

    def end_point_bias(
        self, request: SynthesisRequest
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
        """The (ED, ES) offsets ``(K, C)`` per zone (:attr:`sampling_zones`) :meth:`make_labels`
        decodes a severity-1 LV extent of ``request``'s class, mode and family with
        (:meth:`sampling_calibration`, pooled over MINF's territories), so that a baseline can be
        decoded as the method decodes; ``None`` with either calibration off."""
        if self.logit_bias() is None or not self.calibrate_sampling:
            return None
        ed, es = (self.sampling_calibration(request, phase).logit_bias for phase in PHASES)
        return ed, es

    def logit_bias(self) -> npt.NDArray[np.float64] | None:
        """The offsets every synthetic decode adds to the logits (``None`` with the calibration off)."""
        return self.decoder_calibration().logit_bias if self.calibrate_decoder else None

    def _load(self, ref: sources.SubjectRef) -> sources.LoadedSubject:
        """``ref`` read and preprocessed as the label VAE's training data was."""
        return sources.load(ref, self.label_interpolation)

    def _base(self, ref: sources.SubjectRef) -> sources.LoadedSubject:
        """A base subject read and preprocessed once while it stays among the ``base_cache`` most
        recently used (workers serve many jobs)."""
        with self._lock:
            if ref.subject_id in self._loaded:
                self._loaded.move_to_end(ref.subject_id)
                return self._loaded[ref.subject_id]
            started = time.perf_counter()
            loaded = self._loaded[ref.subject_id] = self._load(ref)
            while len(self._loaded) > self._base_cache:
                self._loaded.popitem(last=False)
            self._timed("load", started)
            return loaded

    def _bases(self, refs: Sequence[sources.SubjectRef]) -> dict[str, sources.LoadedSubject]:
        """Several base subjects by id: the cached ones as :meth:`_base` gives them, the others read
        and preprocessed by threads (cardiosynth.parallel; NIfTI decompression and resampling release
        the GIL: 20 subjects 1.34 s -> 0.77 s on 2 cores). Every subject asked for is returned, even
        when there are more than ``base_cache`` of them (the cache keeps the most recent)."""
        unique = {ref.subject_id: ref for ref in refs}
        with self._lock:
            out = {sid: self._base(ref) for sid, ref in unique.items() if sid in self._loaded}
            missing = [ref for sid, ref in unique.items() if sid not in out]
            if missing:
                started = time.perf_counter()
                for ref, loaded in zip(missing, thread_map(self._load, missing), strict=True):
                    out[ref.subject_id] = self._loaded[ref.subject_id] = loaded
                while len(self._loaded) > self._base_cache:
                    self._loaded.popitem(last=False)
                self._timed("load", started)
        return {sid: out[sid] for sid in unique}

    def base_subjects(self, subject_ids: Sequence[str]) -> list[sources.LoadedSubject]:
        """Subjects of the data set by id, read and preprocessed as synthesis reads its bases (through
        the base cache: the bases of a batch just made cost nothing)."""
        loaded = self._bases([self._ref(sid) for sid in subject_ids])
        return [loaded[sid] for sid in subject_ids]

    def _batch_bases(self, batch: LabelBatch) -> dict[str, sources.LoadedSubject]:
        """The base subjects of the stacks ``batch.plan`` holds, by id (:meth:`_bases`)."""
        return self._bases([self._ref(batch.base_ids[index]) for index, *_ in batch.plan])

    def _ref(self, subject_id: str) -> sources.SubjectRef:
        for ref in self.refs:
            if ref.subject_id == subject_id:
                return ref
        raise ValueError(f"subject {subject_id!r} is not in {self.data_root}")

    def make_labels(
        self,
        request: SynthesisRequest,
        progress: Progress = _no_progress,
        *,
        subjects: range | None = None,
        defer_clean: bool = False,
        motion: bool = True,
        contraction: bool = True,
    ) -> LabelBatch:
        """The VAE half: encode -> stats -> copula sample or shift -> interpolate -> decode.

        ``subjects``: only these subject indices (a chunk of a service job, up to ``MAX_JOB_SUBJECTS``);
        ``None``: all ``request.n`` in one pass (at most ``MAX_SUBJECTS``). Each subject's random stream
        is seeded by (seed, subject index) and base and territory draws are prefixes of one seeded
        sequence, so a subject does not depend on its chunk; with ``subjects`` each subject is also
        decoded as a batch of its own, since a batched convolution's float rounding can depend on its
        batch neighbours (labels byte-identical whatever the chunking).

        ``defer_clean``: leave the label clean-up to :meth:`stream`, which cleans each part while the
        device translates the previous one (:meth:`run` on a GPU); the batch is marked
        ``clean_pending``. The labels are the same either way: stacks are cleaned one by one.

        ``motion``: with :attr:`calibrate_motion` and both phases, move the ES stacks by the class's
        :meth:`motion_calibration` after decoding (False: without it, as its own fit makes them).
        ``contraction``: likewise the :meth:`contraction_calibration`, after the motion's."""
        if subjects is None:
            if request.n > MAX_SUBJECTS:
                raise ValueError(
                    f"n={request.n} in one pass: at most {MAX_SUBJECTS}; make larger requests in chunks "
                    "of subjects (the service does)"
                )
            wanted = range(request.n)
        else:
            if subjects.step != 1 or not 0 <= subjects.start < subjects.stop <= request.n:
                raise ValueError(f"subjects {subjects} is not a non-empty range within 0..{request.n}")
            wanted = subjects
        territories = self.subject_territories(request)
        stats = {
            (t, ph): self.class_stats(request.pathology, ph, request.ns, t)
            for t in dict.fromkeys(territories[i] for i in wanted)
            for ph in request.phases
        }
        nor = (
            {ph: self.class_stats(Group.NOR, ph, request.ns) for ph in request.phases}
            if request.interpolation == "shift"
            else {}
        )
        progress("stats", 1, 1)
        bases = choose_bases(sources.by_group(self.refs, Group.NOR), request)
        loaded = self._bases([bases[i] for i in wanted])

        # Encode every base subject's stacks in one pass.
        started = time.perf_counter()
        keys = [(sid, ph) for sid in loaded for ph in request.phases]
        stacks = [label_stack(loaded[sid].processed, ph) for sid, ph in keys]
        encoded = encode_stacks(self.vae, stacks, **FP32)
        base_latents = dict(zip(keys, encoded, strict=True))
        # Each phase's LV placement: the base's ED extent moved by offsets interpolated between the
        # base's own and the class's (equalise.target_extent says why).
        cap = self.apical_cap
        ed_extents = {sid: lv_extent(label_stack(loaded[sid].processed, "ED"), cap) for sid in loaded}
        base_offsets = {
            (sid, ph): extent_offsets(label_stack(loaded[sid].processed, "ED"), s, cap)
            for (sid, ph), s in zip(keys, stacks, strict=True)
        }
        self._timed("encode", started)
        progress("encode", 1, 1)

        # Sample (or shift) and interpolate: latents for every (subject, severity, phase) slice.
        started = time.perf_counter()
        plan: list[tuple[int, float, str, int]] = []  # (subject, severity, phase, n slices)
        blocks: list[npt.NDArray[np.float64]] = []
        extents: list[tuple[int, int]] = []  # each block's synthetic LV extent on its base's grid
        for index in wanted:
            ref = bases[index]
            # ED and ES share one stream of Gaussian scores (the same seeded generator per subject
            # index): a heart drawn large at ED is large at ES, so ejection fractions stay within the
            # class's range (independent phases would pair a small ED with a large ES).
            for phase in request.phases:
                rng = np.random.default_rng([request.seed, index])
                own = base_latents[(ref.subject_id, phase)]
                phase_stats = stats[(territories[index], phase)]
                phase_labels = label_stack(loaded[ref.subject_id].processed, phase)
                base_eq = equalise_lv(own, phase_labels, request.ns, cap)
                target = target_latents(request, phase_stats, nor.get(phase), base_eq, rng)
                z_count = len(own)
                for severity in request.severities:
                    # The synthetic LV goes into its extent on the base's grid; the base's atrial and
                    # post-apical slices are its own, at every severity (not blended with a ring).
                    extent = target_extent(
                        ed_extents[ref.subject_id],
                        base_offsets[(ref.subject_id, phase)],
                        phase_stats.extent_offset,
                        severity,
                        z_count,
                        self._extent_dither(request.seed, index),
                    )
                    blocks.append(restore_lv(interpolate(base_eq, target, severity), own, extent))
                    extents.append(extent)
                    plan.append((index, severity, phase, z_count))
        self._timed("sample", started)
        progress("correlate", 1, 1)

        bias = self.slice_bias(request, plan, extents, [territories[i] for i, *_ in plan])
        started = time.perf_counter()
        if subjects is None:
            decoded = decode_slices(self.vae, np.concatenate(blocks), self.batch_size, self.precision, bias,
                                    probabilities=self.soft_restore)  # fmt: skip
        else:  # one subject per decode call: its labels do not depend on the chunk's other subjects
            per_subject = len(request.phases) * len(request.severities)
            at = np.cumsum([0, *(len(b) for b in blocks)])
            decoded = Decoded.concatenate([
                decode_slices(self.vae, np.concatenate(blocks[k : k + per_subject]), self.batch_size,
                              self.precision, None if bias is None else bias[at[k] : at[k + per_subject]],
                              probabilities=self.soft_restore)
                for k in range(0, len(blocks), per_subject)
            ])  # fmt: skip
        labels, probabilities = decoded.labels, decoded.probabilities
        self._timed("decode", started)
        if motion and self.calibrate_motion and set(request.phases) == set(PHASES):
            # MINF: each subject's territory's (an infarct moves the cavity toward its own wall)
            by_territory = {
                t: self.motion_calibration(request, t) for t in dict.fromkeys(territories[i] for i in wanted)
            }
            calibration = {i: by_territory[territories[i]] for i in wanted}
            started = time.perf_counter()
            labels, probabilities = calibrate_batch(labels, probabilities, plan, calibration)
            self._timed("motion", started)
        if contraction and self.calibrate_contraction and set(request.phases) == set(PHASES):
            # MINF: each subject's territory's (an infarct is akinetic in its own sectors)
            drawn = dict.fromkeys(territories[i] for i in wanted)
            per_territory = {t: self.contraction_calibration(request, t) for t in drawn}
            started = time.perf_counter()
            labels, probabilities = calibrate_contraction(
                labels, probabilities, plan, {i: per_territory[territories[i]] for i in wanted}
            )
            self._timed("contraction", started)
        pending = self.clean_labels and defer_clean
        if self.clean_labels and not defer_clean:
            # Cleaned here, before the batch leaves the VAE half, so that SPADE draws exactly the
            # labels that are written (cleaning after translation left images and labels apart).
            started = time.perf_counter()
            labels = clean_stacks(labels, plan)
            self._timed("clean", started)
        progress("decode", 1, 1)
        # The territory whose statistics each subject was made from (None: pooled MINF statistics).
        used = [self._stats_refs(request.pathology, t)[1] for t in territories]
        ids = [ref.subject_id for ref in bases]
        scale = self.class_scale(request.pathology) if self.scale_to_class else None
        return LabelBatch(request, ids, plan, labels, used, pending, probabilities, scale)

    def translate(self, batch: LabelBatch, progress: Progress = _no_progress) -> npt.NDArray[np.float32]:
        """The SPADE half: every decoded slice with its base subject's own slice as style.

        Translated in chunks of ``TRANSLATE_CHUNK`` slices with ``progress("translate", done, total)``
        after each: the service's cooperative cancellation point (the callback raises to stop), so
        a cancelled job stops within one chunk instead of after the whole batch.
        """
        if self.spade is None:
            raise ValueError("no SPADE model loaded: cannot translate")
        _check_cleaned(batch, "translated")
        started = time.perf_counter()
        bases = self._batch_bases(batch)
        references = np.concatenate(
            [label_stack(bases[batch.base_ids[i]].processed, ph, image=True) for i, _, ph, _ in batch.plan]
        )
        total = len(batch.labels)
        chunks = []
        size = stage_batch_size(self.spade, "translate", self.precision, self.batch_size)
        # On a GPU a chunk is at least one full batch (the GPU is fed whole batches); on the CPU it is
        # TRANSLATE_CHUNK, the cancellation granularity, as in ``stream``.
        chunk = max(TRANSLATE_CHUNK, size) if self.device.type == "cuda" else TRANSLATE_CHUNK
        for start in range(0, total, chunk):
            stop = min(start + chunk, total)
            chunks.append(
                translate_slices(
                    self.spade, batch.labels[start:stop], references[start:stop], size, self.precision
                )
            )
            progress("translate", stop, total)
        images = np.concatenate(chunks) if chunks else np.zeros(batch.labels.shape, np.float32)
        self._timed("translate", started)
        return images

    def assemble(self, batch: LabelBatch, images: npt.NDArray[np.float32] | None) -> list[SyntheticSubject]:
        """Restore every stack to its base subject's native grid; biomarkers and the rule diagnosis.

        Label stacks arrive cleaned by :meth:`make_labels` (:mod:`cardiosynth.data.topology`, unless
        ``clean_labels`` is off), on the processed grid where the decoder made them; they go back to
        the native grid from the batch's probabilities when it carries them
        (:func:`cardiosynth.data.preprocess.restore_probabilities`, the clean-up's corrections kept),
        by :func:`cardiosynth.data.preprocess.restore_labels` otherwise. Images are
        composited into the base subject's own native image with a feathered seam
        (:func:`cardiosynth.data.preprocess.composite_image`); without SPADE images there is no image
        to composite and the native image is the constant low end of the base's window.
        """
        _check_cleaned(batch, "assembled")
        request = batch.request
        started = time.perf_counter()
        out: list[SyntheticSubject] = []
        offset = 0
        by_subject: dict[int, dict[float, dict[str, SyntheticPhase]]] = {}
        bases = self._batch_bases(batch)
        stacks = []
        for index, _, phase, z_count in batch.plan:
            lab = batch.labels[offset : offset + z_count]
            img = images[offset : offset + z_count] if images is not None else None
            shares = batch.probabilities
            probs = shares[offset : offset + z_count] if shares is not None else None
            stacks.append((bases[batch.base_ids[index]], phase, lab, img, probs))
            offset += z_count

        def restore(item: tuple[sources.LoadedSubject, str, Stack, Any, Stack | None]) -> SyntheticPhase:
            base, phase, lab, img, probs = item
            geometry = base.processed.geometry
            window = base.processed.phase(phase).window
            native_labels = (
                restore_labels(lab, geometry, self.label_interpolation)
                if probs is None
                else restore_probabilities(probs, geometry, lab)
            )
            if img is None:  # no SPADE images: the native image is the low end of the base's window
                img = np.full(lab.shape, -1.0, np.float32)
                native_image = restore_image(img, geometry, window)
            else:
                # the synthetic image only around the heart, the synthetic one and the base's own
                # (which must not show through): elsewhere the base's own image (preprocess docstring)
                heart = (native_labels != BACKGROUND) | (_native_labels(base.subject, phase) != BACKGROUND)
                native_image = composite_image(
                    img, geometry, _native_image(base.subject, phase), window, region=heart
                )
            return SyntheticPhase(
                labels=lab, images=img, native_labels=native_labels, native_image=native_image
            )

        # Stacks are independent: restored and composited by threads (cardiosynth.parallel), in order.
        restored_stacks = thread_map(restore, stacks)
        for (index, severity, phase, _), restored in zip(batch.plan, restored_stacks, strict=True):
            by_subject.setdefault(index, {}).setdefault(severity, {})[phase] = restored

        subjects = {i: bases[batch.base_ids[i]].subject for i in by_subject}

        # The class's length and body by severity (:mod:`.scale`): the volumes over the scaled slice
        # spacing, the indices over the scaled body.
        scale = batch.scale if batch.scale is not None else IDENTITY
        scales = {severity: scale.at(severity) for severity in request.severities}

        def markers(index: int) -> dict[float, Biomarkers]:
            base = subjects[index]
            found = {}
            for severity, phases in by_subject[index].items():
                if set(phases) == set(PHASES):
                    s = scales[severity]
                    height, weight = s.body(base.info.height, base.info.weight)
                    found[severity] = compute_biomarkers(
                        phases["ED"].native_labels, phases["ES"].native_labels, s.spacing(base.spacing),
                        height=height, weight=weight,
                    )  # fmt: skip
            return found

        biomarkers = dict(zip(by_subject, thread_map(markers, list(by_subject)), strict=True))
        for index in by_subject:  # the subjects the plan holds (all, or a part: LabelBatch.select)
            base = bases[batch.base_ids[index]]
            subject = SyntheticSubject(
                name=f"{request.pathology.value}_{index:03d}",
                index=index,
                base=base.subject,
                geometry=base.processed.geometry,
                severities=request.severities,
                phases=by_subject[index],
                base_stacks={
                    ph: (label_stack(base.processed, ph, image=True), label_stack(base.processed, ph))
                    for ph in request.phases
                },
                territory=batch.territories[index] if index < len(batch.territories) else None,
                scales={severity: scales[severity] for severity in by_subject[index]},
            )
            for severity in subject.phases:
                b = biomarkers[index].get(severity)
                if b is not None:
                    subject.biomarkers[severity] = b
                    try:
                        d = classify(b)
                        subject.diagnosis[severity] = {"group": d.label, "reasons": list(d.reasons)}
                    except ValueError as exc:  # no height/weight: no indexed volumes, no rules
                        subject.diagnosis[severity] = {"group": None, "reasons": [str(exc)]}
                else:
                    subject.biomarkers[severity] = None
            out.append(subject)
        self._timed("restore", started)
        return out

    def stream(
        self,
        batch: LabelBatch,
        progress: Progress = _no_progress,
        *,
        part_slices: int | None = None,
        overlap: bool | None = None,
    ) -> Iterator[SyntheticSubject]:
        """:meth:`translate` then :meth:`assemble`, a few subjects at a time, yielding each subject.

        Subjects are taken in order until a part holds at least ``part_slices`` slices (a subject is
        never split), so memory holds a part's images and native volumes (two parts with
        ``overlap``) instead of the whole job's: a consumer that writes each subject and drops it
        keeps the peak independent of ``n``. ``progress("translate", done, total)`` counts over the
        whole batch. ``part_slices`` ``None``: ``TRANSLATE_CHUNK`` on CPU; on a GPU one translate
        batch (by free memory) at most, and small enough that a job of more than
        ``TRANSLATE_CHUNK`` slices comes in at least ``GPU_PARTS`` parts.

        ``overlap`` (``None``: on a GPU): a background thread assembles part k (CPU work: restoring,
        compositing, biomarkers) while part k + 1 is translated on the device and while the consumer
        handles part k - 1's subjects. Subjects and their order are the same either way; on the CPU
        the two would only compete for the same cores, so it is off there.
        """
        gpu = self.spade is not None and self.device.type == "cuda"
        overlap = gpu if overlap is None else overlap
        total = len(batch.labels)
        if part_slices is None:
            part_slices = TRANSLATE_CHUNK
            if gpu and self.spade is not None:
                size = stage_batch_size(self.spade, "translate", self.precision, self.batch_size)
                part_slices = max(TRANSLATE_CHUNK, min(size, -(-total // GPU_PARTS)))
        if part_slices < 1:
            raise ValueError(f"part_slices must be >= 1, got {part_slices}")
        parts = _parts(batch.plan, part_slices)
        if not overlap:
            done = 0
            for part in parts:
                piece = self._part(batch, part)
                images = self._translate_part(piece, progress, done, total)
                done += len(piece.labels)
                subjects = self.assemble(piece, images)
                del images, piece  # the part's subjects hold what they need
                yield from _hand_over(subjects)
            return
        # One background thread, first in first out: part k + 1 is selected (and cleaned, when
        # pending) before part k is assembled, so it is ready when the device is done with part k.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cardiosynth-assemble") as pool:
            if not parts:
                return
            ready = pool.submit(self._part, batch, parts[0])
            pending: Future[list[SyntheticSubject]] | None = None
            done = 0
            for k in range(len(parts)):
                piece = ready.result()
                if k + 1 < len(parts):
                    ready = pool.submit(self._part, batch, parts[k + 1])
                images = self._translate_part(piece, progress, done, total)
                done += len(piece.labels)
                assembling = pool.submit(self.assemble, piece, images)
                del images, piece
                if pending is not None:
                    yield from _hand_over(pending.result())
                pending = assembling
            if pending is not None:
                yield from _hand_over(pending.result())

    def _part(self, batch: LabelBatch, part: Sequence[int]) -> LabelBatch:
        """The part of ``batch`` that makes subjects ``part``, cleaned when its clean-up is pending."""
        piece = batch.select(part)
        if not piece.clean_pending:
            return piece
        started = time.perf_counter()
        labels = clean_stacks(piece.labels, piece.plan)
        self._timed("clean", started)
        return dataclasses.replace(piece, labels=labels, clean_pending=False)

    def _translate_part(
        self, piece: LabelBatch, progress: Progress, offset: int, total: int
    ) -> npt.NDArray[np.float32] | None:
        """:meth:`translate` of one part of a batch, its progress counted over the whole batch."""
        if self.spade is None:
            return None

        def report(stage: str, count: int, _: int) -> None:
            progress(stage, offset + count, total)

        return self.translate(piece, report)

    def run(self, request: SynthesisRequest, progress: Progress = _no_progress) -> list[SyntheticSubject]:
        """Make ``request.n`` synthetic subjects (all severities and phases), deterministic by seed."""
        if self.spade is not None and self.device.type == "cuda":
            # The CPU work (label clean-up, restoring, compositing, biomarkers) overlaps the device's.
            return list(self.stream(self.make_labels(request, progress, defer_clean=True), progress))
        batch = self.make_labels(request, progress)
        images = self.translate(batch, progress) if self.spade is not None else None
        return self.assemble(batch, images)
