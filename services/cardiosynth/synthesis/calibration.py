"""Decoder volume calibration: per-label logit offsets so that the VAE's round trip keeps volumes.

The label VAE decodes each pixel as the argmax of its class logits. Its round trip of real subjects
is not volume-neutral: on the phantom, the shipped ``phantom-v2`` decoder returns 7.5 % more
myocardium and 4 % less right ventricle than it was given (an argmax over smooth logits shrinks
small convex regions, such as an end-systolic cavity, and the ring around them gains what they
lose), and the synthetic walls come out 0.2-2.4 mm thicker than the real ones before any sampling.

The correction is a classifier's prior shift: one additive offset per label on the logits (the
background's fixed at 0), fitted so that over the round trip of a data set's own subjects every
label's decoded pixel count equals its true count. It is fitted once per model version and data
set, from the data the class statistics come from (never from held-out subjects), and applied to
every decode of the synthesis. Four numbers; the decoder itself is not touched.

Fitting needs the logits of every pixel under every candidate offset. Offsets stay within
``+-MARGIN / 2``, so a pixel whose two largest logits differ by more than ``MARGIN`` can never
change label: it is counted once (``certain``) and only the other pixels' logits are kept
(``uncertain``, a few per cent of the pixels). The fit is then exact, and memory stays small for
any number of slices.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# Largest gap between a pixel's two top logits for which an offset within +-MARGIN/2 can flip it.
MARGIN = 4.0
# Version of the fit and of the artefact's fields (part of the cache key).
CALIBRATION_FORMAT = 2  # 2: secant steps (1: fixed 0.5 log-ratio steps)
# Steps of the fit, the relative volume error at which it stops, and the steps without a better
# iterate after which it gives up (a decoder no offset can fix, such as an untrained one, would
# otherwise run every step over millions of unsure pixels).
FIT_ITERATIONS = 200
FIT_TOLERANCE = 1e-3
FIT_PATIENCE = 10
# Each step is a per-label secant (Newton) step on log(decoded / true) against the offset. The slope
# before any is measured (2: the step b <- b - 0.5 log ratio), the range a measured slope is held in,
# and the largest step (logits): measured slopes are 0.1-0.3 on trained decoders, where the fixed
# 0.5 step needed 144-202 count passes and the secant 9-17 (reports/synthesis-phantom-v2/cohort/README.md).
FIT_FIRST_SLOPE = 2.0
FIT_SLOPES = (0.02, 50.0)
FIT_MAX_STEP = 0.5


@dataclass
class RoundTripEvidence:
    """What the fit needs from a round trip: ``truth`` ``(C,)`` true pixel counts per label,
    ``certain`` ``(C,)`` decoded counts of pixels no admissible offset can flip, and
    :attr:`uncertain`, the ``(M, C)`` float32 logits of the others (kept per batch, joined once)."""

    truth: npt.NDArray[np.int64]
    certain: npt.NDArray[np.int64]
    parts: list[npt.NDArray[np.float32]]

    @classmethod
    def empty(cls, classes: int) -> RoundTripEvidence:
        if classes < 2:
            raise ValueError(f"need at least 2 label classes, got {classes}")
        z = np.zeros(classes, dtype=np.int64)
        return cls(z.copy(), z.copy(), [np.zeros((0, classes), dtype=np.float32)])

    @property
    def uncertain(self) -> npt.NDArray[np.float32]:
        if len(self.parts) > 1:
            self.parts = [np.concatenate(self.parts)]
        return self.parts[0]

    @property
    def classes(self) -> int:
        return int(self.truth.shape[0])

    def add(self, logits: npt.NDArray[np.floating], labels: npt.NDArray[np.integer]) -> None:
        """Accumulate one batch: decoder ``logits`` ``(N, C, H, W)`` and the true ``labels``
        ``(N, H, W)`` they should reproduce."""
        x = np.asarray(logits, dtype=np.float32)
        y = np.asarray(labels)
        if x.ndim != 4 or x.shape[1] != self.classes or y.shape != (x.shape[0], *x.shape[2:]):
            raise ValueError(
                f"logits (N, {self.classes}, H, W) and labels (N, H, W) expected, got {x.shape} and {y.shape}"
            )
        if y.size and (y.min() < 0 or y.max() >= self.classes):
            raise ValueError(f"labels outside 0..{self.classes - 1}: {int(y.min())}..{int(y.max())}")
        self.add_truth(np.bincount(y.ravel(), minlength=self.classes))
        self.add_logits(x)

    def add_truth(self, counts: npt.NDArray[np.integer]) -> None:
        """Add ``counts`` ``(C,)`` true pixels per label (for a fit whose truth is not the decoded
        slices' own labels: :meth:`cardiosynth.synthesis.engine.Synthesizer.sampling_calibration`)."""
        c = np.asarray(counts)
        if c.shape != (self.classes,) or (c < 0).any():
            raise ValueError(f"true counts must be {self.classes} non-negative numbers, got {c!r}")
        self.truth += c.astype(np.int64)

    def add_logits(self, logits: npt.NDArray[np.floating]) -> None:
        """Add decoder ``logits`` ``(N, C, H, W)`` whose argmax counts are fitted to the truth."""
        x = np.asarray(logits, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != self.classes:
            raise ValueError(f"logits (N, {self.classes}, H, W) expected, got {x.shape}")
        flat = np.moveaxis(x, 1, -1).reshape(-1, self.classes)
        top2 = np.partition(flat, self.classes - 2, axis=1)[:, -2:]
        sure = (top2[:, 1] - top2[:, 0]) > MARGIN
        self.certain += np.bincount(flat[sure].argmax(1), minlength=self.classes)
        self.parts.append(flat[~sure])

    def counts(self, bias: FloatArray) -> FloatArray:
        """Decoded pixel count per label with ``bias`` ``(C,)`` added to every pixel's logits."""
        moved = (self.uncertain + np.asarray(bias, dtype=np.float32)).argmax(1)
        return (self.certain + np.bincount(moved, minlength=self.classes)).astype(np.float64)


def fit_logit_bias(
    evidence: RoundTripEvidence,
    labels: Sequence[int] | None = None,
    start: npt.NDArray[np.floating] | None = None,
) -> FloatArray:
    """Offsets ``(C,)`` (background 0) that make the decoded count of each label match its true
    count, within ``+-MARGIN / 2``.

    A root of ``log(decoded_c / true_c)`` per label, found by secant steps: a label decoded too often
    is made less likely, and vice versa. Labels absent from the truth keep offset 0. Returns the iterate with
    the smallest worst-label volume error, the start included: where no admissible offset helps (a
    decoder that never draws a label), the calibration does not make the volumes worse.

    ``labels``: fit only these (not the background); the others keep their offset in ``start``
    ``(C,)`` (default 0), which is also where the fit starts.
    """
    truth = evidence.truth.astype(np.float64)
    if truth.sum() == 0:
        raise ValueError("no pixels to calibrate on")
    bias = np.zeros(evidence.classes) if start is None else np.array(start, dtype=np.float64)
    if bias.shape != (evidence.classes,) or not np.isfinite(bias).all() or bias[0] != 0:
        raise ValueError(
            f"start must be {evidence.classes} finite offsets, the background's 0, got {start!r}"
        )
    present = truth > 0
    present[0] = False  # the background is the reference
    if labels is not None:
        chosen = np.zeros(evidence.classes, dtype=bool)
        for c in labels:
            if not 0 < int(c) < evidence.classes:
                raise ValueError(f"labels to fit must be in 1..{evidence.classes - 1}, got {list(labels)}")
            chosen[int(c)] = True
        present &= chosen
    best, best_error, since_best = bias, np.inf, 0
    previous: tuple[FloatArray, FloatArray] | None = None
    for _ in range(FIT_ITERATIONS):
        decoded = evidence.counts(bias)
        log_ratio = np.where(present, np.log(np.maximum(decoded, 1.0) / np.where(present, truth, 1.0)), 0.0)
        error = float(np.abs(log_ratio).max())
        if error < best_error:
            best, best_error, since_best = bias, error, 0
        else:
            since_best += 1
        if error < FIT_TOLERANCE or since_best >= FIT_PATIENCE:
            break
        # A label's count rises with its own offset; the slope is measured from the last step where
        # the offset moved and the count followed (the labels are coupled, so this is a diagonal
        # secant, kept in bounds and step-limited; the best iterate is what is returned anyway).
        slope = np.full(evidence.classes, FIT_FIRST_SLOPE)
        if previous is not None:
            moved = bias - previous[0]
            with np.errstate(divide="ignore", invalid="ignore"):
                measured = (log_ratio - previous[1]) / moved
            ok = present & (np.abs(moved) > 1e-9) & np.isfinite(measured) & (measured > 0)
            slope[ok] = np.clip(measured[ok], *FIT_SLOPES)
        step = np.clip(-log_ratio / slope, -FIT_MAX_STEP, FIT_MAX_STEP)
        previous = (bias, log_ratio)
        bias = np.clip(bias + step, -MARGIN / 2, MARGIN / 2)
    return best


@dataclass(frozen=True)
class DecoderCalibration:
    """The fitted offsets ``logit_bias`` ``(C,)`` and, per label, the decoded-over-true volume
    ratio of the round trip without (``ratio_before``) and with them (``ratio_after``)."""

    logit_bias: FloatArray
    ratio_before: FloatArray
    ratio_after: FloatArray
    n_slices: int

    @classmethod
    def fit(
        cls,
        evidence: RoundTripEvidence,
        n_slices: int,
        labels: Sequence[int] | None = None,
        start: npt.NDArray[np.floating] | None = None,
    ) -> DecoderCalibration:
        """Fitted on ``evidence`` of ``n_slices`` slices (``labels``, ``start``: :func:`fit_logit_bias`;
        ``ratio_before`` is then at ``start``)."""
        truth = np.maximum(evidence.truth.astype(np.float64), 1.0)
        bias = fit_logit_bias(evidence, labels, start)
        before = evidence.counts(np.zeros(evidence.classes) if start is None else np.asarray(start)) / truth
        return cls(bias, before, evidence.counts(bias) / truth, n_slices)

    def to_bytes(self) -> bytes:
        """Serialise as ``.npz`` (no pickle)."""
        buffer = io.BytesIO()
        np.savez(
            buffer,
            format=np.array(CALIBRATION_FORMAT),
            logit_bias=self.logit_bias,
            ratio_before=self.ratio_before,
            ratio_after=self.ratio_after,
            n_slices=np.array(self.n_slices),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> DecoderCalibration:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            version = int(z["format"]) if "format" in z.files else 0
            if version != CALIBRATION_FORMAT:
                raise ValueError(f"decoder calibration of format {version}, expected {CALIBRATION_FORMAT}")
            return cls(z["logit_bias"], z["ratio_before"], z["ratio_after"], int(z["n_slices"]))


def extent_zones(length: int, zones: int) -> npt.NDArray[np.intp]:
    """The zone ``(length,)`` of each slice of an LV extent of ``length`` slices cut into ``zones``
    equal parts by relative position, base (0) to apex (``zones - 1``): slice ``k``'s centre
    ``(k + 0.5) / length`` in zone ``floor(zones (k + 0.5) / length)``, so extents of any length
    share the zones' places along the ventricle (an extent shorter than ``zones`` leaves some out).

    Raises:
        ValueError: ``length`` or ``zones`` below 1.
    """
    if length < 1 or zones < 1:
        raise ValueError(f"need an extent of at least 1 slice and at least 1 zone, got {length} and {zones}")
    where = zones * (np.arange(length) + 0.5) / length
    out: npt.NDArray[np.intp] = np.minimum(where.astype(np.intp), zones - 1)
    return out


@dataclass(frozen=True)
class ZonedCalibration:
    """One :class:`DecoderCalibration` per zone of the LV extent (:func:`extent_zones`), base to apex:
    the sampling calibration (:meth:`cardiosynth.synthesis.engine.Synthesizer.sampling_calibration`).
    One zone is the plain calibration (and is stored as one, so artefacts fitted before zones existed
    are read back unchanged)."""

    zones: tuple[DecoderCalibration, ...]

    def __post_init__(self) -> None:
        if not self.zones or len({z.logit_bias.shape for z in self.zones}) != 1:
            raise ValueError(f"need at least one zone, all with offsets of one shape, got {self.zones}")

    @property
    def logit_bias(self) -> FloatArray:
        """The offsets ``(K, C)`` of the ``K`` zones, base to apex."""
        return np.stack([z.logit_bias for z in self.zones]).astype(np.float64)

    def extent_bias(self, length: int) -> FloatArray:
        """The offsets ``(length, C)`` of each slice of an LV extent of ``length`` slices: its zone's."""
        return zone_offsets(self.logit_bias, length)

    def to_bytes(self) -> bytes:
        """Serialise as ``.npz`` (no pickle); one zone as :meth:`DecoderCalibration.to_bytes`."""
        if len(self.zones) == 1:
            return self.zones[0].to_bytes()
        buffer = io.BytesIO()
        np.savez(
            buffer,
            format=np.array(CALIBRATION_FORMAT),
            zones=np.array(len(self.zones)),
            logit_bias=self.logit_bias,
            ratio_before=np.stack([z.ratio_before for z in self.zones]),
            ratio_after=np.stack([z.ratio_after for z in self.zones]),
            n_slices=np.array([z.n_slices for z in self.zones]),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ZonedCalibration:
        """Raises ValueError on anything but :meth:`to_bytes`' (or :meth:`DecoderCalibration.to_bytes`')
        output of this format."""
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            if "zones" not in z.files:
                return cls((DecoderCalibration.from_bytes(data),))
            try:
                version = int(z["format"])
                if version != CALIBRATION_FORMAT:
                    raise ValueError(f"sampling calibration of format {version}, not {CALIBRATION_FORMAT}")
                return cls(tuple(
                    DecoderCalibration(b, rb, ra, int(n))
                    for b, rb, ra, n in zip(z["logit_bias"], z["ratio_before"], z["ratio_after"],
                                            z["n_slices"], strict=True)
                ))  # fmt: skip
            except KeyError as exc:  # a field missing: not an artefact of this format (refit)
                raise ValueError(f"not a zoned calibration: {exc}") from exc


def zone_offsets(bias: npt.NDArray[np.floating], length: int) -> FloatArray:
    """Per-slice offsets ``(length, C)`` of an LV extent of ``length`` slices from ``bias``: ``(C,)``
    for every slice, or ``(K, C)`` per zone (:func:`extent_zones`)."""
    b = np.asarray(bias, dtype=np.float64)
    if b.ndim == 1:
        return np.tile(b, (length, 1))
    if b.ndim != 2 or len(b) < 1:
        raise ValueError(f"offsets must be (C,) or (zones, C), got shape {b.shape}")
    out: FloatArray = b[extent_zones(length, len(b))]
    return out


def calibrate(
    batches: Iterable[tuple[npt.NDArray[np.floating], npt.NDArray[np.integer]]], classes: int
) -> DecoderCalibration:
    """Fit from ``(logits (N, C, H, W), true labels (N, H, W))`` batches of a round trip."""
    evidence = RoundTripEvidence.empty(classes)
    slices = 0
    for logits, labels in batches:
        evidence.add(logits, labels)
        slices += int(np.shape(labels)[0])
    if slices == 0:
        raise ValueError("no slices to calibrate on")
    return DecoderCalibration.fit(evidence, slices)


def calibration_key(model_version: str, data_fingerprint: str) -> str:
    """Cache key of a calibration artefact (path-safe); changes with :data:`CALIBRATION_FORMAT`."""
    digest = hashlib.sha256(f"{CALIBRATION_FORMAT}|{model_version}|{data_fingerprint}".encode()).hexdigest()[
        :16
    ]
    return f"calibration/{model_version}/c{CALIBRATION_FORMAT}-{digest}.npz"


def sampling_calibration_key(model_version: str, what: str) -> str:
    """Cache key of a sampling calibration (path-safe): ``what`` names its class, phase, mode and data
    (:meth:`cardiosynth.synthesis.engine.Synthesizer.sampling_calibration`)."""
    digest = hashlib.sha256(f"{CALIBRATION_FORMAT}|{model_version}|{what}".encode()).hexdigest()[:16]
    return f"calibration/{model_version}/s{CALIBRATION_FORMAT}-{digest}.npz"
