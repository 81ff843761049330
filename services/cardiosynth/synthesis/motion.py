"""The LV's in-plane motion between ED and ES, and its calibration to the class's.

A heart moves in-plane between end-diastole and end-systole; on the phantom in a direction that is
random per subject (mean within 0.3 px of zero in every class but MINF, SD 0.7-1.1 px per axis; DCM,
which barely contracts, 0.14; an infarct's cavity moves toward the akinetic wall, below). The
regional heterogeneity biomarker splits each slice into sectors about its ED cavity centroid, so
that motion makes most of it (real NOR / HCM / RV: 0.14-0.15 measured, 0.03-0.05 with ES moved back
onto ED). Synthesis decodes ED and ES separately, and a sampled
heart's ES lands where the decoder puts it: DCM's synthetic LV moved with an SD of 0.20 px against
the class's 0.14, enough to raise its heterogeneity from the class's 0.109 to 0.157; the other
classes' moved less than real (SD 0.41-0.63 against 0.70-1.06 px;
reports/synthesis-phantom-v2/cohort/es_motion.txt).

The calibration (:class:`MotionCalibration`) maps a synthetic subject's per-slice ED -> ES
displacement ``d`` (the LV cavity's centroid, pixels of the processed grid) to ``mean_synthetic +
offset + gain * (d - mean_synthetic)``, with ``gain = rms_real / rms_synthetic`` of the centred
displacements (at most 1: :data:`GAIN_RANGE`), so that the class's spread of motion comes out as the
real class's where the sampler added motion, and nothing changes where it did not. ``offset`` is the
real mean minus the synthetic mean over slices, shrunk by its standard error (subjects as the
observations, weighted by their slice counts; :func:`shrunk_difference`): zero where the two means
differ by less than their noise, and at most 0.07 px for `sample` draws of every class but MINF on
the phantom (differences of 0.05-0.2 px, standard errors 0.05-0.3 px; HCM's `shift` 0.15). An
infarct moves the cavity's centroid toward the akinetic wall by a territory's own displacement
(training LAD / LCx / RCA subjects +0.69 / -1.22 / +0.74 px toward the RV, +1.19 / -0.22 / -1.32
across; the held-out cohort's within 0.25 px of those), which the decoder, smoothing the regional
defect, draws 0.15-0.45 px short; MINF is calibrated per territory (where the territory has enough
subjects: ``engine.MIN_MOTION_TERRITORY_SUBJECTS``). The ES slice is moved by the difference,
sub-pixel, on the decoder's class probabilities before the argmax (:func:`move_slices`), so the
heart is drawn once; ED is not touched. A slice with no RV beside it (apical) takes the stack's mean
frame (:func:`fill_frames`) and moves with the rest of the heart. Shape, area and contraction are
kept; only where the ES heart lies relative to the ED heart changes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from cardiosynth.data.labels import LV_CAVITY, RV_CAVITY

FloatArray = npt.NDArray[np.float64]

MIN_CAVITY_PIXELS = 20  # a slice's cavity smaller than this has no reliable centroid (apex)
# The calibration takes out motion the sampler adds; it never adds motion (gain <= 1). Measured on the
# cohort (reports/synthesis-phantom-v2/cohort/README.md): letting it amplify brought HCM's
# heterogeneity to the class's (0.129 -> 0.147, real 0.145) but NOR's past it (0.145 -> 0.189, real
# 0.139): the spread of 20 training subjects' per-slice motion is itself a noisy estimate, and an
# amplification multiplies the synthetic slice-to-slice jitter with the heart's motion.
GAIN_RANGE = (0.25, 1.0)


def cavity_centroids(labels: npt.NDArray[np.integer[Any]]) -> FloatArray:
    """The LV cavity's centroid ``(Z, 2)`` (pixels) of each slice of a ``(Z, S, S)`` label stack; NaN
    where a slice has fewer than :data:`MIN_CAVITY_PIXELS` cavity pixels.

    Raises:
        ValueError: ``labels`` not 3D.
    """
    lab = np.asarray(labels)
    if lab.ndim != 3:
        raise ValueError(f"labels must be a (Z, S, S) stack, got shape {lab.shape}")
    out = np.full((lab.shape[0], 2), np.nan)
    for k in range(lab.shape[0]):
        cavity = lab[k] == LV_CAVITY
        if cavity.sum() >= MIN_CAVITY_PIXELS:
            out[k] = ndimage.center_of_mass(cavity)
    return out


def displacements(ed: npt.NDArray[np.integer[Any]], es: npt.NDArray[np.integer[Any]]) -> FloatArray:
    """ES minus ED cavity centroid ``(Z, 2)`` per slice of two ``(Z, S, S)`` stacks of one subject
    (NaN where either phase has no measurable cavity).

    Raises:
        ValueError: the stacks differ in shape.
    """
    if np.shape(ed) != np.shape(es):
        raise ValueError(f"ED and ES stacks differ in shape: {np.shape(ed)} and {np.shape(es)}")
    d: FloatArray = cavity_centroids(es) - cavity_centroids(ed)
    return d


MID_FRACTION = 0.2  # basal and apical share of LV slices left out, as the regional biomarkers do


def mid_ventricular(ed: npt.NDArray[np.integer[Any]]) -> npt.NDArray[np.bool_]:
    """Which slices of an ED stack ``(Z, S, S)`` are mid-ventricular: those with LV cavity, less
    ``floor(0.2 n)`` at each end (:data:`cardiosynth.data.biomarkers` measures regional function
    there). The calibration is fitted on them: the base and the apex move differently."""
    lv = np.flatnonzero((np.asarray(ed) == LV_CAVITY).any(axis=(1, 2)))
    out = np.zeros(len(ed), dtype=bool)
    drop = math.floor(MID_FRACTION * lv.size)
    out[lv[drop : lv.size - drop] if lv.size - 2 * drop >= 1 else lv] = True
    return out


def rv_axes(ed: npt.NDArray[np.integer[Any]]) -> FloatArray:
    """Per slice of an ED stack ``(Z, S, S)``, the unit vector ``(Z, 2)`` from the LV cavity's centroid
    to the RV cavity's: the heart's own frame, in which motion is compared (hearts lie at different
    angles in their images; a bias toward the septum would average out in image axes). NaN where a
    slice has no measurable LV or RV cavity."""
    lab = np.asarray(ed)
    lv = cavity_centroids(lab)
    out = np.full((len(lab), 2), np.nan)
    for k in range(len(lab)):
        rv = lab[k] == RV_CAVITY
        if np.isfinite(lv[k]).all() and rv.sum() >= MIN_CAVITY_PIXELS:
            u = np.asarray(ndimage.center_of_mass(rv)) - lv[k]
            norm = float(np.linalg.norm(u))
            if norm > 0:
                out[k] = u / norm
    return out


def fill_frames(axes: FloatArray) -> FloatArray:
    """:func:`rv_axes` ``(Z, 2)`` with each slice that has no frame (no RV cavity beside it: apical
    slices) given the stack's mean direction, so that its ES moves with the rest of the heart, the
    calibration's offset included (slices of one heart moving differently would read as regional
    dysfunction). A stack with no frame at all is returned as it is."""
    out = np.array(axes, dtype=np.float64)
    framed = np.isfinite(out).all(axis=1)
    if framed.any() and not framed.all():
        mean = out[framed].mean(axis=0)
        norm = float(np.linalg.norm(mean))
        if norm > 0:
            out[~framed] = mean / norm
    return out


def to_frame(d: npt.NDArray[np.floating[Any]], axes: FloatArray) -> FloatArray:
    """Displacements ``(Z, 2)`` in image axes to (toward the RV, across) with :func:`rv_axes`."""
    u = np.asarray(axes, dtype=np.float64)
    w = np.stack([-u[:, 1], u[:, 0]], axis=1)
    d = np.asarray(d, dtype=np.float64)
    out: FloatArray = np.stack([np.sum(d * u, axis=1), np.sum(d * w, axis=1)], axis=1)
    return out


def from_frame(f: npt.NDArray[np.floating[Any]], axes: FloatArray) -> FloatArray:
    """The inverse of :func:`to_frame`."""
    u = np.asarray(axes, dtype=np.float64)
    w = np.stack([-u[:, 1], u[:, 0]], axis=1)
    f = np.asarray(f, dtype=np.float64)
    out: FloatArray = f[:, :1] * u + f[:, 1:] * w
    return out


def mid_displacements(ed: npt.NDArray[np.integer[Any]], es: npt.NDArray[np.integer[Any]]) -> FloatArray:
    """:func:`displacements` in the heart's frame (:func:`to_frame`), NaN outside
    :func:`mid_ventricular` and where a slice has no frame: what the calibration is fitted on."""
    f = to_frame(displacements(ed, es), rv_axes(ed))
    f[~mid_ventricular(ed)] = np.nan
    return f


@dataclass(frozen=True)
class MotionCalibration:
    """Mean ``(2,)`` (toward the RV, across) and root-mean-square spread (about the mean, pixels) of
    the per-slice ED -> ES displacement of real subjects of a class and of synthetic ones made as
    synthesis makes them, in the heart's frame over their mid-ventricular slices
    (:func:`mid_displacements`)."""

    mean_real: tuple[float, float]
    rms_real: float
    mean_synthetic: tuple[float, float]
    rms_synthetic: float
    slices_real: int = 0
    slices_synthetic: int = 0
    offset: tuple[float, float] = (0.0, 0.0)  # added to every displacement: shrunk real - synthetic mean
    subjects_real: int = 0
    subjects_synthetic: int = 0

    def __post_init__(self) -> None:
        # a NaN here would reach every ES shift of every subject it calibrates
        values = (*self.mean_real, self.rms_real, *self.mean_synthetic, self.rms_synthetic, *self.offset)
        if not all(math.isfinite(v) for v in values) or self.rms_real < 0 or self.rms_synthetic < 0:
            raise ValueError(f"a motion calibration needs finite means, offset and spreads >= 0, got {self}")

    @property
    def gain(self) -> float:
        """``rms_real / rms_synthetic``, bounded to :data:`GAIN_RANGE` (1 without synthetic spread)."""
        if not self.rms_synthetic > 0:
            return 1.0
        return float(np.clip(self.rms_real / self.rms_synthetic, *GAIN_RANGE))

    @property
    def moves(self) -> bool:
        """Whether :meth:`target` changes anything (a gain below 1 or a non-zero offset)."""
        return self.gain < 1.0 or any(o != 0.0 for o in self.offset)

    def target(self, d: npt.NDArray[np.floating[Any]]) -> FloatArray:
        """The calibrated displacement of each row of ``d`` ``(Z, 2)``, in the heart's frame (NaN rows
        stay NaN): its spread about the synthetic mean scaled by :attr:`gain`, plus :attr:`offset`.
        The mean moves only by the offset, the part of the real-minus-synthetic difference beyond
        its noise: imposing the real mean outright moved every ES by the 20 training subjects'
        sampling noise (on the cohort HCM's heterogeneity W1n went from 1.97 to 2.36 with it, RV's
        from 1.81 to 1.88)."""
        d = np.asarray(d, dtype=np.float64)
        mean = np.asarray(self.mean_synthetic)
        out: FloatArray = mean + np.asarray(self.offset) + self.gain * (d - mean)
        return out

    @classmethod
    def identity(cls) -> MotionCalibration:
        """The calibration that moves nothing (``target(d) == d``)."""
        return cls((0.0, 0.0), 1.0, (0.0, 0.0), 1.0)

    @classmethod
    def fit(cls, real: list[FloatArray], synthetic: list[FloatArray]) -> MotionCalibration:
        """From per-subject displacement arrays ``(Z, 2)`` (NaN rows ignored).

        Raises:
            ValueError: no measurable slice on either side.
        """
        stats = []
        subject_means = []
        for name, parts in (("real", real), ("synthetic", synthetic)):
            per_subject = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in parts]
            per_subject = [p[np.isfinite(p).all(axis=1)] for p in per_subject]
            per_subject = [p for p in per_subject if len(p)]
            if not per_subject:
                raise ValueError(f"no {name} slice with a measurable LV cavity in both phases")
            rows = np.concatenate(per_subject)
            mean = rows.mean(axis=0)
            rms = float(math.sqrt(np.mean(np.sum((rows - mean) ** 2, axis=1))))
            stats.append(((float(mean[0]), float(mean[1])), rms, len(rows)))
            subject_means.append((np.stack([p.mean(axis=0) for p in per_subject]),
                                  np.array([len(p) for p in per_subject], dtype=np.float64)))  # fmt: skip
        (m_r, s_r, n_r), (m_s, s_s, n_s) = stats
        # weighted by slice counts, the subjects' means average to the slice means :meth:`target`
        # anchors on, so the offset closes the gap it is applied to (subjects differ in slice count)
        (real_means, real_slices), (synthetic_means, synthetic_slices) = subject_means
        offset = shrunk_difference(real_means, synthetic_means, real_slices, synthetic_slices)
        return cls(m_r, s_r, m_s, s_s, n_r, n_s, (float(offset[0]), float(offset[1])),
                   len(real_means), len(synthetic_means))  # fmt: skip

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> MotionCalibration:
        """Raises ValueError on anything but :meth:`to_bytes`' output."""
        try:
            raw = json.loads(data.decode())
            return cls(
                mean_real=(float(raw["mean_real"][0]), float(raw["mean_real"][1])),
                rms_real=float(raw["rms_real"]),
                mean_synthetic=(float(raw["mean_synthetic"][0]), float(raw["mean_synthetic"][1])),
                rms_synthetic=float(raw["rms_synthetic"]),
                slices_real=int(raw["slices_real"]),
                slices_synthetic=int(raw["slices_synthetic"]),
                offset=(float(raw["offset"][0]), float(raw["offset"][1])),
                subjects_real=int(raw["subjects_real"]),
                subjects_synthetic=int(raw["subjects_synthetic"]),
            )
        except (KeyError, TypeError, IndexError, ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a motion calibration: {exc}") from exc


def _weighted_mean_and_variance(
    means: FloatArray, weights: npt.NDArray[np.floating[Any]] | None
) -> tuple[FloatArray, FloatArray]:
    """The ``weights``-weighted mean of per-subject ``means`` ``(n, m)`` and its variance with the
    subjects as clusters (``n / (n - 1) * sum(w_i^2 (m_i - mean)^2) / sum(w_i)^2``; equal weights:
    the sample variance over ``n``)."""
    n = len(means)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError(f"need {n} positive finite weights, got {w}")
    w = w / w.sum()
    mean = (w[:, None] * means).sum(axis=0)
    var = n / (n - 1) * (w[:, None] ** 2 * (means - mean) ** 2).sum(axis=0)
    return mean, var


def shrunk_difference(
    real: npt.NDArray[np.floating[Any]],
    synthetic: npt.NDArray[np.floating[Any]],
    real_weights: npt.NDArray[np.floating[Any]] | None = None,
    synthetic_weights: npt.NDArray[np.floating[Any]] | None = None,
) -> FloatArray:
    """The difference of the means of two samples of per-subject means ``(n, m)`` (displacements:
    ``m = 2``; sector contractions, :mod:`.contraction`: ``m = 6``), per component shrunk toward
    zero by its standard error ``se`` (Welch: ``var_r / n_r + var_s / n_s``): ``diff * max(0, 1 -
    se^2 / diff^2)`` (positive-part James-Stein for one mean). A difference within one standard
    error gives exactly 0; one of many standard errors is kept nearly whole. Subjects are the
    observations: a heart's slices move together, so its slices are not independent draws. With
    weights (a subject's slice count) the means are weighted, so the difference is that of the
    slice means, and the standard error is the clustered one of those weighted means. Fewer than
    two subjects on a side: no estimate of the noise, 0.

    Raises:
        ValueError: not ``(n, m)`` arrays of the same ``m``, values that are not finite, or weights
            that do not fit.
    """
    r = np.asarray(real, dtype=np.float64)
    s = np.asarray(synthetic, dtype=np.float64)
    if r.ndim != 2 or s.ndim != 2 or r.shape[1] != s.shape[1] or r.shape[1] < 1:
        raise ValueError(f"need (n, m) per-subject means of one m, got {r.shape} and {s.shape}")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(s))):
        raise ValueError(f"per-subject means must be finite, got {r.tolist()} and {s.tolist()}")
    if len(r) < 2 or len(s) < 2:
        return np.zeros(r.shape[1])
    mean_r, var_r = _weighted_mean_and_variance(r, real_weights)
    mean_s, var_s = _weighted_mean_and_variance(s, synthetic_weights)
    diff = mean_r - mean_s
    var = var_r + var_s
    with np.errstate(divide="ignore", invalid="ignore"):
        keep = np.where(diff != 0, np.clip(1.0 - var / diff**2, 0.0, 1.0), 0.0)
    out: FloatArray = diff * keep
    return out


def move_slices(
    labels: npt.NDArray[np.uint8],
    probabilities: npt.NDArray[np.uint8] | None,
    shifts: npt.NDArray[np.floating[Any]],
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8] | None]:
    """Each slice of ``labels`` ``(Z, S, S)`` (and its ``probabilities`` ``(Z, C, S, S)``, softmax x
    255) moved in-plane by ``shifts`` ``(Z, 2)`` pixels (NaN or zero rows: unchanged), by linear
    interpolation of the class shares (edges extended) and the argmax. Without probabilities the
    labels' one-hot shares are moved. Returns new arrays.

    Raises:
        ValueError: shapes that do not match.
    """
    lab = np.asarray(labels)
    if lab.ndim != 3:
        raise ValueError(f"labels must be a (Z, S, S) stack, got shape {lab.shape}")
    shifts = np.asarray(shifts, dtype=np.float64)
    if shifts.shape != (lab.shape[0], 2):
        raise ValueError(f"shifts must be ({lab.shape[0]}, 2), got {shifts.shape}")
    if probabilities is not None and (probabilities.ndim != 4 or probabilities.shape[0] != lab.shape[0]
                                      or probabilities.shape[2:] != lab.shape[1:]):  # fmt: skip
        raise ValueError(f"probabilities {probabilities.shape} do not match labels {lab.shape}")
    out_labels = lab.copy()
    out_probs = None if probabilities is None else probabilities.copy()
    classes = probabilities.shape[1] if probabilities is not None else int(lab.max(initial=0)) + 1
    for k, d in enumerate(shifts):
        if not np.all(np.isfinite(d)) or not np.any(np.abs(d) > 1e-9):  # (a rounding, not a move)
            continue
        if probabilities is not None:
            shares = probabilities[k].astype(np.float64)
        else:
            shares = np.stack([(lab[k] == c).astype(np.float64) for c in range(classes)])
        moved = np.stack([ndimage.shift(s, d, order=1, mode="nearest") for s in shares])
        out_labels[k] = np.argmax(moved, axis=0).astype(np.uint8)
        if out_probs is not None:
            out_probs[k] = np.clip(np.rint(moved), 0, 255).astype(np.uint8)
    return out_labels, out_probs


def phase_pairs(
    plan: list[tuple[int, float, str, int]], total: int
) -> list[tuple[int, float, int, int, int]]:
    """``(subject, severity, ED start, ES start, slices)`` for each block pair of a decoded batch's
    ``plan`` ``(subject, severity, phase, slices)`` that has both phases (blocks in plan order from
    slice 0); the subjects a calibration of ES against ED applies to.

    Raises:
        ValueError: ``plan`` does not cover ``total`` slices, or a pair's phases differ in length.
    """
    starts = np.cumsum([0, *(z for *_, z in plan)])
    if starts[-1] != total:
        raise ValueError(f"plan covers {starts[-1]} slices, labels have {total}")
    blocks = {
        (index, severity, phase): (int(at), z)
        for (index, severity, phase, z), at in zip(plan, starts, strict=False)
    }
    out = []
    for (index, severity, phase), (at, z) in blocks.items():
        if phase != "ES" or (index, severity, "ED") not in blocks:
            continue
        ed_at, ed_z = blocks[(index, severity, "ED")]
        if ed_z != z:
            raise ValueError(f"subject {index}: ED has {ed_z} slices, ES {z}")
        out.append((index, severity, ed_at, at, z))
    return out


C = TypeVar("C")


def for_subject(calibration: C | Mapping[int, C], index: int, kind: type[C], what: str) -> C:
    """``calibration`` itself when it is one ``kind`` for every subject, else subject ``index``'s
    (``what``: its name in the error).

    Raises:
        ValueError: a mapping without ``index``.
    """
    if isinstance(calibration, kind):
        return calibration
    assert isinstance(calibration, Mapping)  # narrowing for the type checker: the other union arm
    if index not in calibration:
        raise ValueError(f"no {what} for subject {index}")
    found: C = calibration[index]
    return found


def calibrate_batch(
    labels: npt.NDArray[np.uint8],
    probabilities: npt.NDArray[np.uint8] | None,
    plan: list[tuple[int, float, str, int]],
    calibration: MotionCalibration | Mapping[int, MotionCalibration],
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8] | None]:
    """A decoded batch's ES stacks moved so that each slice's ED -> ES displacement ``d`` becomes
    ``d + a (calibration.target(d) - d)`` (in the heart's frame, :func:`rv_axes`) at the block's
    severity ``a`` (the end point's motion is the
    sampler's; a severity-0 stack would be the base's own round trip). ``labels`` ``(N, S, S)`` and
    ``probabilities`` ``(N, C, S, S)`` are the blocks of ``plan`` ``(subject, severity, phase,
    slices)`` in order; subjects without both phases at a severity are left as they are.
    ``calibration``: one for every subject, or one per subject index (MINF: its territory's).

    Raises:
        ValueError: ``plan`` does not cover ``labels``, or a subject of ``plan`` has no calibration.
    """
    out_labels = labels.copy()
    out_probs = None if probabilities is None else probabilities.copy()
    for index, severity, ed_at, at, z in phase_pairs(plan, len(labels)):
        cal = for_subject(calibration, index, MotionCalibration, "motion calibration")
        if not cal.moves:  # nothing to take out or add: the decoded stack, bit for bit
            continue
        ed = labels[ed_at : ed_at + z]
        d = displacements(ed, labels[at : at + z])
        axes = fill_frames(rv_axes(ed))
        wanted = from_frame(cal.target(to_frame(d, axes)), axes)
        # a stack without any frame (no RV beside any slice) keeps its direction and gets the gain
        no_frame = ~np.isfinite(axes).all(axis=1)
        wanted[no_frame] = cal.gain * d[no_frame]
        shifts = severity * (wanted - d)
        moved, moved_probs = move_slices(
            labels[at : at + z], None if probabilities is None else probabilities[at : at + z], shifts
        )
        out_labels[at : at + z] = moved
        if out_probs is not None and moved_probs is not None:
            out_probs[at : at + z] = moved_probs
    return out_labels, out_probs
